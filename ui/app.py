"""The Callcard web app: the chat with its card deck, the conversations sidebar, the Tools, Audit and Tickets tabs.

`build_app(engine=..., people=...)` lays the page out and wires its events to the handlers in ui/page.py;
`launch(demo, people=...)` serves it with the theme, CSS, security headers, logins and /healthz. Every listener is
static (none is created inside `@gr.render`), so no event can lose its follow-up when something re-renders.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import gradio as gr
from fastapi.responses import JSONResponse
from starlette.middleware import Middleware

from backend.engine import Engine
from backend.health import HealthReport
from backend.models.protocol import ModelInfo
from backend.storage.tables import CallStatus
from backend.tools import ToolRegistry
from ui.auth import People
from ui.deck import DECK_CSS, DECK_JS, DECK_TEMPLATE, deck_value
from ui.page import DEFAULT_CONCURRENCY, Page, frame_interval
from ui.present import AUDIT_COLUMNS, TICKET_COLUMNS
from ui.security import SecurityHeaders

if TYPE_CHECKING:
    from backend.tools.mcp_servers import McpServers

__all__ = ["CSS", "DEFAULT_CONCURRENCY", "EPHEMERAL_NOTE", "build_app", "frame_interval", "launch"]

_STORAGE_KEY = "callcard.conversation"

# Shown where storage does not outlive the process (a Space without persistent storage); exporting keeps one.
EPHEMERAL_NOTE = "ℹ️ This demo's conversations are not kept after a restart: export one as JSON to keep it."

# The send step runs this in the browser at the keypress: the deck shows "working" (and Stop) at once, and the run
# id it makes lets Stop find this reply later.
_SEND_JS = """(text, run) => {
  const deck = window.callcardDeck;
  if (!deck || !(text || '').trim()) return [text, ''];
  return [text, deck.busy('The model is answering…')];
}"""

# On a phone the sidebar would cover the chat: the page tells the server how wide it is, and the sidebar starts closed
# when it is narrow (set through the component, so no script races Gradio's own rendering of it).
_WIDTH_JS = "(width) => [window.innerWidth]"
_PHONE_WIDTH = 768

CSS = (
    """
.cc-status { font-size: var(--text-sm); }
.cc-status blockquote { margin: 4px 0 !important; }
/* The chat's own trash icon only cleared the view; deleting is the sidebar's "Delete…", with a confirmation. */
#cc-chat .top-panel { display: none !important; }
/* Audit and ticket tables: proportional type, so JSON and sentences fit their columns without sideways scrolling. */
#cc-audit [role=gridcell], #cc-audit th, #cc-tickets [role=gridcell], #cc-tickets th {
  font-family: var(--font); font-size: var(--text-sm); }
"""
    + DECK_CSS
)


def build_app(
    *,
    engine: Engine,
    registry: ToolRegistry | None = None,
    people: People | None = None,
    backend_info: ModelInfo | None = None,
    concurrency_limit: int | None = DEFAULT_CONCURRENCY,
    browser_secret: str | None = None,
    tickets: Callable[[], list[Any]] | None = None,
    ephemeral_storage: bool = False,
    mcp: McpServers | None = None,
    title: str = "Callcard",
) -> gr.Blocks:
    """The Callcard Blocks, queued; `registry` defaults to the engine's, `people` to open access (user "local").

    `backend_info` skips asking the backend what it serves; `browser_secret` encrypts the conversation id kept in
    the browser (default: derived from the database URL, so a restart keeps people in their conversation);
    `tickets` lists the support desk's tickets for the Tickets tab; `ephemeral_storage` (a Space without persistent
    storage) adds a note that conversations are lost when the app restarts; `mcp` (the MCP servers, started) shows
    their state in the Tools tab and their questions during a call on the deck.
    """
    page = Page(
        engine=engine, registry=registry or engine.registry, people=people or People.open(),
        backend_info=backend_info, tickets=tickets, mcp=mcp,
    )
    secret = browser_secret or hashlib.sha256(f"callcard:{engine.store.url}".encode()).hexdigest()[:32]
    with gr.Blocks(title=title, fill_width=True) as demo:
        conversation_id = gr.BrowserState(None, storage_key=_STORAGE_KEY, secret=secret)

        with gr.Sidebar(label="Conversations", open=True, width=300) as sidebar:
            gr.Markdown("## 📇 Callcard")
            if page.people.mode == "oauth":
                gr.LoginButton()
            who = gr.Markdown(elem_classes=["cc-status"])
            sign_out = gr.Button("Sign out", size="sm", link="logout", link_target="_self", visible=False)
            new_button = gr.Button("➕ New conversation", variant="secondary")
            conversation_list = gr.Radio(label="Conversations", choices=[], interactive=True, elem_id="cc-conversations")
            with gr.Accordion("This conversation", open=False):
                title_box = gr.Textbox(label="Title", max_lines=1, interactive=True)
                rename_button = gr.Button("Rename", size="sm")
                export_button = gr.Button("Export as JSON", size="sm")
                export_file = gr.File(label="Download", visible=False, interactive=False)
                delete_button = gr.Button("Delete…", size="sm", variant="stop")
                with gr.Row(visible=False) as delete_row:
                    delete_yes = gr.Button("Yes, delete it", size="sm", variant="stop")
                    delete_no = gr.Button("Keep it", size="sm")
            import_button = gr.UploadButton("Import a conversation (JSON)", file_types=[".json"], size="sm", type="filepath")
            if ephemeral_storage:
                gr.Markdown(EPHEMERAL_NOTE, elem_id="cc-ephemeral", elem_classes=["cc-status"])

        status = gr.Markdown("Checking the model server…", elem_classes=["cc-status"], elem_id="cc-status")
        with gr.Tabs() as tabs:
            with gr.Tab("Chat", id="chat"):
                chatbot = gr.Chatbot(
                    show_label=False, height="min(55vh, 560px)", sanitize_html=True, allow_tags=False, render_markdown=True,
                    feedback_options=None, group_consecutive_messages=False, elem_id="cc-chat", buttons=[],
                    placeholder="**Ask something.** Callcard shows every function call the model wants to make as a "
                    "card: check it, edit it, then confirm or reject it. Try *Where is order A1001?*",
                )
                deck = gr.HTML(
                    deck_value([]), html_template=DECK_TEMPLATE, js_on_load=DECK_JS, elem_id="cc-deck",
                    apply_default_css=False, container=False,
                )
                with gr.Row(equal_height=True):
                    textbox = gr.Textbox(
                        show_label=False, placeholder="Write a message and press Enter", lines=1, max_lines=8,
                        scale=8, autofocus=True, elem_id="cc-input",
                    )
                    send_button = gr.Button("Send", variant="primary", scale=1, min_width=80)
                with gr.Accordion("Settings for this conversation", open=False):
                    system_box = gr.Textbox(label="System prompt", lines=3, max_lines=12, interactive=True)
                    with gr.Row():
                        temperature = gr.Slider(0, 2, step=0.05, label="Temperature", interactive=True)
                        max_tokens = gr.Number(label="Max new tokens", precision=0, minimum=1, maximum=8192, interactive=True)
                    save_settings = gr.Button("Save settings", size="sm")
            with gr.Tab("Tools", id="tools") as tools_tab:
                gr.Markdown(
                    "Every function the model may call, what it does, its arguments, whether it asks for "
                    "confirmation, and where it comes from."
                    + (" MCP servers connect, drop and change their tools while Callcard runs." if mcp else "")
                )
                tools_refresh = gr.Button("Refresh", size="sm", elem_id="cc-tools-refresh")
                tools_view = gr.Markdown(page.tools_view(), elem_id="cc-tools")
            with gr.Tab("Audit", id="audit") as audit_tab:
                audit_note = gr.Markdown()
                with gr.Row():
                    audit_status = gr.Dropdown(
                        [("any status", "")] + [(s.value, s.value) for s in CallStatus], value="", label="Status",
                        interactive=True,
                    )
                    audit_function = gr.Dropdown(
                        [("any function", "")] + [(t.name, t.name) for t in page.registry.tools()], value="",
                        label="Function", interactive=True, allow_custom_value=True,
                    )
                    audit_user = gr.Textbox(label="User", placeholder="any user", visible=False, interactive=True)
                with gr.Row():
                    audit_refresh = gr.Button("Refresh", size="sm")
                    audit_export = gr.Button("Export CSV", size="sm")
                audit_table = gr.Dataframe(
                    headers=AUDIT_COLUMNS, value=[], interactive=False, wrap=True, elem_id="cc-audit", max_chars=120,
                    column_widths=["9%", "6%", "12%", "10%", "8%", "9%", "19%", "12%", "10%", "5%"],
                )
                audit_links = gr.State([])
                audit_file = gr.File(label="Download", visible=False, interactive=False)
            with gr.Tab("Tickets", id="tickets", visible=False) as tickets_tab:
                gr.Markdown("Support tickets the support desk opened, newest first.")
                tickets_refresh = gr.Button("Refresh", size="sm")
                tickets_table = gr.Dataframe(
                    headers=TICKET_COLUMNS, value=[], interactive=False, wrap=True, elem_id="cc-tickets",
                )

        view = gr.State(None)
        pending = gr.Textbox(visible=False)  # the message being sent (a box, not a state, so the API can send one)
        run_box = gr.Textbox(visible=False)  # the browser's id for the reply it starts, for Stop
        page_width = gr.Number(visible=False)
        private: dict[str, Any] = {"api_visibility": "private", "show_progress": "hidden"}

        # After every stream, its final view is shown as plain values (see ui/page.py).
        settle: dict[str, Any] = {
            "fn": page.show_view, "inputs": [view, status],
            "outputs": [chatbot, deck, textbox, conversation_id, conversation_list, title_box, status], **private,
        }
        # The message moves to a hidden box and the textbox goes off at once; then the stream, then the final view.
        take: dict[str, Any] = {
            "fn": page.take_message, "inputs": [textbox, run_box], "outputs": [pending, textbox], "queue": False,
            "js": _SEND_JS, **private,
        }
        # A stream also draws the deck, but only when an MCP server asks a question during a call (ui/page.py).
        send_options: dict[str, Any] = {
            "inputs": [pending, conversation_id], "outputs": [chatbot, view, deck], "show_progress": "hidden",
        }
        textbox.submit(**take).then(page.send, api_name="send", **send_options).then(**settle)
        send_button.click(**take).then(page.send, api_visibility="private", **send_options).then(**settle)
        # Card actions stream like a message; "multiple" because a click must never be dropped while another runs
        # (the engine decides what may happen, and says so).
        deck.submit(
            page.on_deck, [conversation_id], [chatbot, view, deck], trigger_mode="multiple", **private,
        ).then(**settle)
        # Stop, and answers to a server's question: said while a stream runs, shown by that stream.
        deck.click(page.on_deck_click, None, None, queue=False, trigger_mode="multiple", **private)

        open_outputs = [
            chatbot, deck, conversation_id, conversation_list, title_box, system_box, temperature, max_tokens,
            export_file,
        ]
        demo.load(
            page.on_load, [conversation_id],
            [*open_outputs, who, sign_out, audit_user, audit_note, tickets_tab, tickets_table], **private,
        )
        demo.load(
            lambda width: gr.Sidebar(open=not width or width > _PHONE_WIDTH), [page_width], [sidebar], js=_WIDTH_JS,
            queue=False, **private,
        )
        demo.load(page.status, None, [status], **private)
        gr.Timer(60).tick(page.status, None, [status], **private)

        conversation_list.input(page.on_switch, [conversation_list], open_outputs, **private)
        new_button.click(page.on_new, None, open_outputs, **private)
        rename_button.click(page.on_rename, [conversation_id, title_box], [conversation_list, title_box], **private)
        title_box.submit(page.on_rename, [conversation_id, title_box], [conversation_list, title_box], **private)
        export_button.click(page.on_export, [conversation_id], [export_file], **private)
        delete_button.click(lambda: gr.Row(visible=True), None, [delete_row], **private)
        delete_no.click(lambda: gr.Row(visible=False), None, [delete_row], **private)
        delete_yes.click(page.on_delete, [conversation_id], [*open_outputs, delete_row], **private)
        import_button.upload(page.on_import, [import_button], open_outputs, **private)
        save_settings.click(
            page.on_save_settings, [conversation_id, system_box, temperature, max_tokens],
            [conversation_id, conversation_list], **private,
        )

        audit_inputs = [audit_status, audit_function, audit_user]
        for trigger in (audit_tab.select, audit_refresh.click, audit_status.input, audit_function.input, audit_user.submit):
            trigger(page.audit, audit_inputs, [audit_table, audit_links], **private)
        audit_tab.select(page.function_choices, None, [audit_function], **private)
        audit_export.click(page.audit_export, audit_inputs, [audit_file], **private)
        for trigger in (tools_tab.select, tools_refresh.click):
            trigger(page.tools_view, None, [tools_view], **private)
        audit_table.select(page.open_from_audit, [audit_links], [*open_outputs, tabs], **private)
        for trigger in (tickets_tab.select, tickets_refresh.click):
            trigger(page.ticket_rows, None, [tickets_table], **private)

    demo.queue(default_concurrency_limit=concurrency_limit)
    return demo


def launch(
    demo: gr.Blocks,
    *,
    people: People | None = None,
    health: Callable[[], Awaitable[HealthReport]] | None = None,
    **options: Any,
) -> Any:
    """Serve `demo` with Callcard's theme, CSS and security headers, password logins when `people` has accounts,
    and `/healthz`."""
    people = people or People.open()
    login = people.login
    if login is not None:
        options.setdefault("auth", login)
        options.setdefault("auth_message", "Sign in to Callcard.")
    # Gradio runs at most `max_threads` (default 40) queued jobs at once, whatever the concurrency limit: without
    # this, the 41st of 50 chats waited for the first to finish (bench_app_concurrency).
    options.setdefault("max_threads", DEFAULT_CONCURRENCY)
    app_kwargs = dict(options.pop("app_kwargs", None) or {})
    app_kwargs["middleware"] = [*app_kwargs.get("middleware", []), Middleware(SecurityHeaders)]
    keep_thread = options.pop("prevent_thread_lock", False)
    # System fonts: the theme's default web fonts would be fetched from another host, which the page must never do.
    theme = gr.themes.Soft(
        primary_hue="indigo",
        font=["ui-sans-serif", "system-ui", "sans-serif"],
        font_mono=["ui-monospace", "Consolas", "monospace"],
    )
    served = demo.launch(theme=theme, css=CSS, prevent_thread_lock=True, app_kwargs=app_kwargs, **options)
    if health is not None:
        demo.app.add_api_route("/healthz", _health_endpoint(health), methods=["GET"])  # open: probes do not log in
    if not keep_thread:
        demo.block_thread()
    return served


def _health_endpoint(health: Callable[[], Awaitable[HealthReport]]) -> Callable[[], Awaitable[JSONResponse]]:
    async def healthz() -> JSONResponse:
        report = await health()
        return JSONResponse(report.model_dump(), status_code=200 if report.ok else 503)

    return healthz
