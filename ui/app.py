"""The Callcard web app: the chat with its call cards, the conversations sidebar, the Tools and Audit tabs.

`build_app(engine=..., people=...)` returns the Blocks; `launch(demo, people=...)` serves it with the theme, CSS and
logins. All per-person state lives in the browser (`gr.BrowserState`: the open conversation) or the session
(`gr.State`: the cards); the content lives in the store, behind the engine.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import json
import logging
import re
import shutil
import tempfile
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import gradio as gr
from fastapi.responses import JSONResponse

from backend.engine import Engine, EngineEvent, ErrorEvent, Token
from backend.errors import CallcardError
from backend.health import HealthReport
from backend.llm import ModelInfo
from backend.store import CallStatus, Conversation, MessageRole
from backend.tools import ToolRegistry
from ui.auth import People
from ui.cards import CardWiring, render_card
from ui.present import (
    AUDIT_COLUMNS,
    ChatStream,
    audit_csv,
    audit_rows,
    conversation_choices,
    error_text,
    history_chat,
    md_text,
    open_cards,
    status_markdown,
    tools_markdown,
    update_cards,
)

__all__ = ["CSS", "DEFAULT_CONCURRENCY", "build_app", "frame_interval", "launch"]

log = logging.getLogger(__name__)

# Chats spend their time waiting on the model server, not on this process: 64 streams at once cost little here, and
# below 50 people chatting together would queue behind each other (see bench/bench_app_concurrency.py).
DEFAULT_CONCURRENCY = 64
_STORAGE_KEY = "callcard.conversation"
_MAX_IMPORT_BYTES = 20 * 1024 * 1024
_EXPORT_TTL_S = 3600
_STATUS_TIMEOUT_S = 5.0
# How often a streaming answer is redrawn at most: still smooth to read, and a fraction of one update per token.
_FRAME_S = 0.08
# Redraws per second shared by all the answers streaming at once: each costs Gradio ~0.6 ms of the one core its event
# loop runs on, so with many chats each one is redrawn less often and their first words are not held back.
_FRAMES_PER_S = 150

# Card buttons are switched off in the browser while a card's action runs (re-rendering the cards mid-stream is
# what _Frame avoids); the follow-up event of every chat stream switches them on again.
_IDLE_JS = """(...args) => {
  const area = document.getElementById("cc-cards");
  if (area) { delete area.dataset.busy; }
  document.querySelectorAll(".cc-card.cc-running").forEach((card) => card.classList.remove("cc-running"));
  return args.slice(0, 1);
}"""

CSS = """
.cc-card { border: 1px solid var(--border-color-primary); border-radius: var(--radius-lg); padding: 6px; margin: 8px 0; }
.cc-card-proposed { border-left: 4px solid var(--color-accent); }
.cc-card-succeeded { border-left: 4px solid #16a34a; }
.cc-card-failed, .cc-card-interrupted { border-left: 4px solid #dc2626; }
.cc-card-rejected { border-left: 4px solid #9ca3af; }
.cc-card-running, .cc-card-confirmed { border-left: 4px solid #f59e0b; }
.cc-card-header h4 { margin: 2px 0 !important; }
.cc-missing { background: #fffbeb; }
.cc-missing-input { box-shadow: inset 0 0 0 2px #f59e0b !important; }
.cc-ask p { color: #b45309; font-size: var(--text-sm); margin: 0 8px 4px !important; }
.cc-error p { color: #dc2626; font-size: var(--text-sm); margin: 0 8px 4px !important; }
.cc-help p { font-size: var(--text-sm); color: var(--body-text-color-subdued); margin: 0 8px !important; }
.cc-status { font-size: var(--text-sm); }
#cc-cards[data-busy] .cc-card button { pointer-events: none; opacity: 0.5; }
.cc-card.cc-running::before { content: "⏳ Running… the result appears here when the function returns.";
  display: block; padding: 4px 8px; font-weight: 600; color: #b45309; }
.cc-status blockquote { margin: 4px 0 !important; }
"""


def build_app(
    *,
    engine: Engine,
    registry: ToolRegistry | None = None,
    people: People | None = None,
    backend_info: ModelInfo | None = None,
    concurrency_limit: int | None = DEFAULT_CONCURRENCY,
    browser_secret: str | None = None,
    title: str = "Callcard",
) -> gr.Blocks:
    """The Callcard Blocks, queued; `registry` defaults to the engine's, `people` to open access (user "local").

    `backend_info` skips asking the backend what it serves; `browser_secret` encrypts the conversation id kept in
    the browser (default: derived from the database URL, so a restart keeps people in their conversation).
    """
    page = _Page(engine=engine, registry=registry or engine.registry, people=people or People.open(), backend_info=backend_info)
    secret = browser_secret or hashlib.sha256(f"callcard:{engine.store.url}".encode()).hexdigest()[:32]
    with gr.Blocks(title=title, fill_width=True) as demo:
        conversation_id = gr.BrowserState(None, storage_key=_STORAGE_KEY, secret=secret)
        cards = gr.State([])

        with gr.Sidebar(label="Conversations", open=True, width=300):
            gr.Markdown("## 📇 Callcard")
            if page.people.mode == "oauth":
                gr.LoginButton()
            who = gr.Markdown(elem_classes=["cc-status"])
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

        status = gr.Markdown("Checking the model server…", elem_classes=["cc-status"], elem_id="cc-status")
        with gr.Tabs():
            with gr.Tab("Chat", id="chat"):
                chatbot = gr.Chatbot(
                    label="Conversation", height="60vh", sanitize_html=True, allow_tags=False, render_markdown=True,
                    feedback_options=None, group_consecutive_messages=False, elem_id="cc-chat",
                    placeholder="**Ask something.** Callcard shows every function call the model wants to make as a "
                    "card: check it, edit it, then confirm or reject it. Try *Where is order A1001?*",
                )
                retry_button = gr.Button("↻ Retry", visible=False, size="sm", variant="secondary")
                card_area = gr.Column(elem_id="cc-cards")
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
            with gr.Tab("Tools", id="tools"):
                gr.Markdown(
                    "Every function the model may call, what it does, its arguments, whether it asks for "
                    "confirmation, and where it comes from."
                )
                gr.Markdown(tools_markdown(page.registry.tools()), elem_id="cc-tools")
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
                    headers=AUDIT_COLUMNS, value=[], interactive=False, wrap=True, elem_id="cc-audit",
                )
                audit_file = gr.File(label="Download", visible=False, interactive=False)

        view = gr.State(None)
        pending = gr.Textbox(visible=False)  # the message being sent (a box, not a state, so the API can send one)
        chat_outputs = [chatbot, cards, view]
        # After every stream, its final view is shown again as plain values (see _Frame).
        settle: dict[str, Any] = {
            "fn": page.show_view, "inputs": [view],
            "outputs": [chatbot, retry_button, textbox, conversation_id, conversation_list, title_box],
            "show_progress": "hidden", "api_visibility": "private", "js": _IDLE_JS,
        }
        wiring = CardWiring(
            conversation_id=conversation_id, cards=cards, outputs=chat_outputs,
            confirm=page.confirm, reject=page.reject, settle=settle,
        )
        with card_area:
            @gr.render(inputs=[cards], show_progress="hidden")
            def _cards(current: list[dict[str, Any]]) -> None:
                for card in current:
                    render_card(card, wiring)

        open_outputs = [
            chatbot, cards, conversation_id, conversation_list, title_box, system_box, temperature, max_tokens,
            retry_button, export_file,
        ]
        demo.load(page.on_load, [conversation_id], [*open_outputs, who, audit_user, audit_note])
        demo.load(page.status, None, [status], show_progress="hidden")
        gr.Timer(60).tick(page.status, None, [status], show_progress="hidden")

        send_options: dict[str, Any] = {
            "inputs": [pending, conversation_id, cards], "outputs": chat_outputs, "show_progress": "hidden",
        }
        # The message moves to a hidden box and the textbox goes off at once; then the stream, then the final view.
        take: dict[str, Any] = {
            "fn": page.take_message, "inputs": [textbox], "outputs": [pending, textbox, retry_button], "queue": False,
            "show_progress": "hidden", "api_visibility": "private",
        }
        textbox.submit(**take).then(page.send, api_name="send", **send_options).then(**settle)
        send_button.click(**take).then(page.send, api_visibility="private", **send_options).then(**settle)
        retry_button.click(
            page.lock, None, [textbox, retry_button], queue=False, show_progress="hidden", api_visibility="private",
        ).then(
            page.retry, [conversation_id, cards], chat_outputs, show_progress="hidden", api_visibility="private",
        ).then(**settle)

        private: dict[str, Any] = {"api_visibility": "private", "show_progress": "hidden"}
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
            trigger(page.audit, audit_inputs, [audit_table], **private)
        audit_export.click(page.audit_export, audit_inputs, [audit_file], **private)

    demo.queue(default_concurrency_limit=concurrency_limit)
    return demo


def launch(
    demo: gr.Blocks,
    *,
    people: People | None = None,
    health: Callable[[], Awaitable[HealthReport]] | None = None,
    **options: Any,
) -> Any:
    """Serve `demo` with Callcard's theme and CSS, password logins when `people` has accounts, and `/healthz`."""
    people = people or People.open()
    login = people.login
    if login is not None:
        options.setdefault("auth", login)
        options.setdefault("auth_message", "Sign in to Callcard.")
    # Gradio runs at most `max_threads` (default 40) queued jobs at once, whatever the concurrency limit: without
    # this, the 41st of 50 chats waited for the first to finish (bench_app_concurrency).
    options.setdefault("max_threads", DEFAULT_CONCURRENCY)
    keep_thread = options.pop("prevent_thread_lock", False)
    served = demo.launch(theme=gr.themes.Soft(primary_hue="indigo"), css=CSS, prevent_thread_lock=True, **options)
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


class _Page:
    """The handlers behind the page; every one works out the acting user from its request, never from state."""

    def __init__(self, *, engine: Engine, registry: ToolRegistry, people: People, backend_info: ModelInfo | None) -> None:
        self.engine = engine
        self.registry = registry
        self.people = people
        self.backend_info = backend_info
        self.export_dir = Path(tempfile.mkdtemp(prefix="callcard-exports-"))
        self._streams = 0  # answers streaming right now, across all sessions
        # Removed when the page goes away or the process exits; files older than an hour go at each export.
        weakref.finalize(self, shutil.rmtree, self.export_dir, ignore_errors=True)

    # -- who ------------------------------------------------------------------------------------------------------

    def _user(self, request: gr.Request | None, profile: gr.OAuthProfile | None) -> str | None:
        return self.people.user(request, profile)

    def _who(self, user: str | None) -> str:
        mode = self.people.mode
        if user is None:
            return "Sign in with Hugging Face to chat." if mode == "oauth" else "Not signed in."
        role = " (support lead)" if self.people.is_lead(user) else ""
        if mode == "open":
            return f"👤 {md_text(user)}{role} · logins are off"
        signout = " · [Sign out](logout)" if mode == "password" else ""
        return f"👤 {md_text(user)}{role}{signout}"

    # -- opening conversations -----------------------------------------------------------------------------------

    def _open(self, user: str | None, conversation_id: str | None, *, newest: bool) -> list[Any]:
        """Values for the outputs that show one conversation (or an empty chat when there is none)."""
        if user is None:
            return [[], [], None, gr.update(choices=[], value=None), "", "", self.engine.params.temperature,
                    self.engine.params.max_new_tokens, gr.update(visible=False), gr.update(value=None, visible=False)]
        conversations = self.engine.list_conversations(user)
        current = next((c for c in conversations if c.id == conversation_id), None)
        if current is None and newest and conversations:
            current = conversations[0]
        listing = gr.update(choices=conversation_choices(conversations), value=current.id if current else None)
        if current is None:
            return [[], [], None, listing, "", self.engine.system_prompt or "", self.engine.params.temperature,
                    self.engine.params.max_new_tokens, gr.update(visible=False), gr.update(value=None, visible=False)]
        calls = self.engine.calls(current.id, user)
        messages = self.engine.messages(current.id, user)
        chat = history_chat(messages, calls)
        ends_in_retryable_error = bool(messages) and messages[-1].role == MessageRole.ERROR and bool(
            (messages[-1].extra or {}).get("retryable")
        )
        return [
            chat, open_cards(calls), current.id, listing, current.title, current.system_prompt or "",
            current.temperature if current.temperature is not None else self.engine.params.temperature,
            current.max_new_tokens if current.max_new_tokens is not None else self.engine.params.max_new_tokens,
            gr.update(visible=ends_in_retryable_error),
            gr.update(value=None, visible=False),
        ]

    def on_load(
        self, conversation_id: str | None, request: gr.Request, profile: gr.OAuthProfile | None,
    ) -> list[Any]:
        user = self._user(request, profile)
        lead = self.people.is_lead(user)
        note = (
            "All calls by everyone (you are a support lead). Filter by status, function or user; export as CSV."
            if lead else "Your calls: when, which function, the arguments as proposed and as confirmed, and the outcome."
        )
        return [*self._open(user, conversation_id, newest=True), self._who(user), gr.update(visible=lead), note]

    def on_switch(self, selected: str | None, request: gr.Request, profile: gr.OAuthProfile | None) -> list[Any]:
        return self._open(self._user(request, profile), selected, newest=False)

    def on_new(self, request: gr.Request, profile: gr.OAuthProfile | None) -> list[Any]:
        return self._open(self._user(request, profile), None, newest=False)

    def on_rename(
        self, conversation_id: str | None, title: str, request: gr.Request, profile: gr.OAuthProfile | None,
    ) -> tuple[Any, Any]:
        user = self._user(request, profile)
        if user is None or not conversation_id:
            return gr.skip(), gr.skip()
        try:
            conversation = self.engine.rename_conversation(conversation_id, user, title or "")
        except CallcardError as error:
            _warn(error_text(error))
            return gr.skip(), gr.skip()
        return self._listing(user, conversation.id), conversation.title

    def on_delete(
        self, conversation_id: str | None, request: gr.Request, profile: gr.OAuthProfile | None,
    ) -> list[Any]:
        user = self._user(request, profile)
        if user is not None and conversation_id:
            try:
                self.engine.delete_conversation(conversation_id, user)
            except CallcardError as error:
                _warn(error_text(error))
        return [*self._open(user, None, newest=True), gr.Row(visible=False)]

    def on_export(self, conversation_id: str | None, request: gr.Request, profile: gr.OAuthProfile | None) -> Any:
        user = self._user(request, profile)
        if user is None or not conversation_id:
            _warn("Open a conversation first.")
            return gr.skip()
        try:
            data = self.engine.export_conversation(conversation_id, user)
        except CallcardError as error:
            _warn(error_text(error))
            return gr.skip()
        slug = re.sub(r"[^A-Za-z0-9]+", "-", data["conversation"].get("title") or "conversation").strip("-")[:40]
        path = self._export_path(f"callcard-{slug or 'conversation'}-{conversation_id[:8]}.json")
        path.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
        return gr.update(value=str(path), visible=True)

    def on_import(self, file: str | None, request: gr.Request, profile: gr.OAuthProfile | None) -> list[Any]:
        user = self._user(request, profile)
        if user is None or not file:
            return [gr.skip()] * 10
        try:
            path = Path(file)
            if path.stat().st_size > _MAX_IMPORT_BYTES:
                raise ValueError(f"the file is larger than {_MAX_IMPORT_BYTES // (1024 * 1024)} MB")
            data = json.loads(path.read_text(encoding="utf-8"))
            conversation = self.engine.import_conversation(data, user)
        except (OSError, ValueError, CallcardError) as error:
            _warn(error_text(error) if isinstance(error, CallcardError) else f"This file cannot be imported: {error}.")
            return [gr.skip()] * 10
        return self._open(user, conversation.id, newest=False)

    def on_save_settings(
        self, conversation_id: str | None, system_prompt: str, temperature: float | None, max_new_tokens: float | None,
        request: gr.Request, profile: gr.OAuthProfile | None,
    ) -> tuple[Any, Any]:
        user = self._user(request, profile)
        if user is None:
            return gr.skip(), gr.skip()
        try:
            if not conversation_id:
                conversation_id = self.engine.create_conversation(user).id
            self.engine.update_settings(
                conversation_id, user, system_prompt=system_prompt,
                temperature=float(temperature) if temperature is not None else None,
                max_new_tokens=int(max_new_tokens) if max_new_tokens is not None else None,
            )
        except CallcardError as error:
            _warn(error_text(error))
            return gr.skip(), gr.skip()
        gr.Info("Settings saved for this conversation.")
        return conversation_id, self._listing(user, conversation_id)

    def _listing(self, user: str, current: str | None) -> Any:
        return gr.update(choices=conversation_choices(self.engine.list_conversations(user)), value=current)

    # -- the chat -------------------------------------------------------------------------------------------------

    async def send(
        self, text: str, conversation_id: str | None, cards: list[dict[str, Any]], request: gr.Request,
        profile: gr.OAuthProfile | None,
    ) -> AsyncIterator[tuple[Any, ...]]:
        """Send the textbox's message and stream the reply; the text goes back to the textbox if it was not stored."""
        user = self._user(request, profile)
        if user is None:
            _warn("Sign in first.")
            yield _unchanged(text)
            return
        text = text or ""
        if not text.strip():
            yield _unchanged(text)
            return
        try:
            conversation = self._conversation_for(user, conversation_id)
            stream = self._history(user, conversation.id) if conversation.id == conversation_id else ChatStream([])
        except CallcardError as error:
            _warn(error_text(error))
            yield _unchanged(text)
            return
        stream.add_user(text)
        # The new message settles the open cards; the cards shown next are those its reply proposes.
        frame = _Frame(stream=stream, cards=[], sent_text=text)
        yield frame.update()
        async for update in self._drive(self.engine.send(conversation.id, user, text), frame):
            yield update
        if not frame.stream.stored:
            frame.cards = cards
        yield self._last(frame, user, conversation.id)

    async def retry(
        self, conversation_id: str | None, cards: list[dict[str, Any]], request: gr.Request,
        profile: gr.OAuthProfile | None,
    ) -> AsyncIterator[tuple[Any, ...]]:
        """Ask the model again after a failed reply."""
        async for update in self._follow_up(conversation_id, cards, request, profile, self.engine.retry):
            yield update

    async def confirm(
        self, call_id: str, arguments: dict[str, Any], conversation_id: str | None, cards: list[dict[str, Any]],
        request: gr.Request, profile: gr.OAuthProfile | None,
    ) -> AsyncIterator[tuple[Any, ...]]:
        """Run a call with the card's arguments, then stream what follows."""
        async for update in self._follow_up(
            conversation_id, cards, request, profile, lambda _, user: self.engine.confirm(call_id, arguments, user),
        ):
            yield update

    async def reject(
        self, call_id: str, reason: str | None, conversation_id: str | None, cards: list[dict[str, Any]],
        request: gr.Request, profile: gr.OAuthProfile | None,
    ) -> AsyncIterator[tuple[Any, ...]]:
        """Decline a call (the model is told the reason), then stream what follows."""
        async for update in self._follow_up(
            conversation_id, cards, request, profile, lambda _, user: self.engine.reject(call_id, user, reason),
        ):
            yield update

    async def _follow_up(
        self, conversation_id: str | None, cards: list[dict[str, Any]], request: gr.Request,
        profile: gr.OAuthProfile | None, events: Callable[[str, str], AsyncIterator[EngineEvent]],
    ) -> AsyncIterator[tuple[Any, ...]]:
        """Stream what the engine does next in the open conversation (Retry, Confirm, Reject): `events(id, user)`."""
        user = self._user(request, profile)
        stream = self._stream(user, conversation_id)
        if user is None or conversation_id is None or stream is None:
            yield _unchanged()
            return
        frame = _Frame(stream=stream, cards=cards)
        async for update in self._drive(events(conversation_id, user), frame):
            yield update
        yield self._last(frame, user, conversation_id)

    def _last(self, frame: _Frame, user: str, conversation_id: str) -> tuple[Any, ...]:
        """The stream's last update: complete, with the list and title as they are now (a first message names it)."""
        conversations = self.engine.list_conversations(user)
        current = next((c for c in conversations if c.id == conversation_id), None)
        return frame.last(
            conversation_id=conversation_id, choices=conversation_choices(conversations),
            title=current.title if current else None,
        )

    def _conversation_for(self, user: str, conversation_id: str | None) -> Conversation:
        """The open conversation, or a new one when there is none (or it is gone)."""
        if conversation_id:
            try:
                return self.engine.conversation(conversation_id, user)
            except CallcardError:
                log.info("conversation %s is gone; starting a new one", conversation_id)
        return self.engine.create_conversation(user)

    def _stream(self, user: str | None, conversation_id: str | None) -> ChatStream | None:
        if user is None or not conversation_id:
            return None
        try:
            return self._history(user, conversation_id)
        except CallcardError as error:
            _warn(error_text(error))
            return None

    def _history(self, user: str, conversation_id: str) -> ChatStream:
        return ChatStream(history_chat(self.engine.messages(conversation_id, user), self.engine.calls(conversation_id, user)))

    async def _drive(self, events: AsyncIterator[EngineEvent], frame: _Frame) -> AsyncIterator[tuple[Any, ...]]:
        """Fold engine events into the frame's chat and cards, yielding updates as often as people can see them.

        Every update costs Gradio a pass over all outputs and a message to the browser; one per token made 50
        streams at once queue behind each other (bench_app_concurrency). So tokens are shown at most every
        `frame_interval`; the first token, and every event that is not a token, are shown at once, and the frame's
        last update shows whatever is left.
        """
        shown_at: float | None = None
        self._streams += 1  # every handler runs on the event loop: no lock needed
        try:
            async for event in events:
                frame.stream.apply(event)
                frame.cards = update_cards(frame.cards, event)
                now = time.monotonic()
                if isinstance(event, Token) and shown_at is not None and now - shown_at < frame_interval(self._streams):
                    continue
                shown_at = now
                yield frame.update()
        except Exception as error:  # a bug or a lost conversation must end as a message, not a stuck spinner
            if not isinstance(error, CallcardError):
                log.exception("the engine failed")
            frame.stream.apply(ErrorEvent(message=error_text(error), retryable=False))
        finally:
            self._streams -= 1


    def show_view(self, view: dict[str, Any] | None) -> tuple[Any, ...]:
        """What the last stream left, as plain values: chat, Retry, textbox, conversation id, list and title."""
        view = view or {}
        text = view.get("text")
        textbox = gr.update(interactive=True) if text is None else gr.update(value=text, interactive=True)
        chosen = view.get("conversation_id")
        return (
            view["chat"] if view.get("chat") is not None else gr.skip(),
            gr.update(visible=bool(view["retry"])) if "retry" in view else gr.skip(),
            textbox,
            chosen or gr.skip(),
            gr.update(choices=view["choices"], value=chosen) if "choices" in view else gr.skip(),
            view["title"] if view.get("title") is not None else gr.skip(),
        )

    @staticmethod
    def lock() -> tuple[Any, Any]:
        """Textbox off and Retry hidden while a stream runs (one reply at a time); see _Frame."""
        return gr.update(interactive=False), gr.update(visible=False)

    @staticmethod
    def take_message(text: str | None) -> tuple[Any, Any, Any]:
        """The message to the hidden box the send reads it from, and the textbox emptied and off."""
        return text or "", gr.update(value="", interactive=False), gr.update(visible=False)

    # -- status and audit ------------------------------------------------------------------------------------------

    async def status(self) -> str:
        """The status line: what the backend serves and whether it answers."""
        info, healthy, problem = self.backend_info, None, None
        backend = self.engine.backend
        try:
            if info is None:
                info = await asyncio.wait_for(backend.info(), _STATUS_TIMEOUT_S)
            healthy = await asyncio.wait_for(backend.health(), _STATUS_TIMEOUT_S)
        except TimeoutError:
            problem, healthy = "the model server did not answer within 5 seconds.", False
        except CallcardError as error:
            problem, healthy = str(error), False
        except Exception:
            log.exception("status check failed")
            problem, healthy = "the status check failed; see the server log.", False
        return status_markdown(info, healthy, problem=problem)

    def audit(
        self, status: str | None, function: str | None, user_filter: str | None, request: gr.Request,
        profile: gr.OAuthProfile | None,
    ) -> list[list[Any]]:
        """Calls the acting user may see: a lead sees everyone's, anyone else only their own."""
        user = self._user(request, profile)
        if user is None:
            return []
        store = self.engine.store
        if self.people.is_lead(user):
            records = store.audit(status=status or None, function=function or None, user_name=(user_filter or "").strip() or None)
        else:
            records = store.audit(status=status or None, function=function or None, owner=store.user(user))
        return audit_rows(records)

    def audit_export(
        self, status: str | None, function: str | None, user_filter: str | None, request: gr.Request,
        profile: gr.OAuthProfile | None,
    ) -> Any:
        rows = self.audit(status, function, user_filter, request, profile)
        path = self._export_path(f"callcard-audit-{datetime.now(UTC):%Y%m%d-%H%M%S}.csv")
        path.write_text(audit_csv(rows), encoding="utf-8")
        return gr.update(value=str(path), visible=True)

    def _export_path(self, name: str) -> Path:
        # One directory per file: two people exporting at the same second never overwrite each other's file.
        # Gradio keeps its own copy of a file it serves, so an hour-old one here is not needed any more.
        stale = time.time() - _EXPORT_TTL_S
        for folder in self.export_dir.iterdir():
            if folder.stat().st_mtime < stale:
                shutil.rmtree(folder, ignore_errors=True)
        return Path(tempfile.mkdtemp(dir=self.export_dir)) / name


class _Frame:
    """What a streaming chat handler shows, update after update: the chat, then the cards and the final view.

    Measured with Gradio 6 (bench_app_concurrency under py-spy): Gradio rebuilds a whole component for every output
    given as an update dict, and for every gr.skip() too (about 0.5 ms each); with one update per token for the eight
    outputs a chat used to have, 50 chats streaming at once saturated the server. So a stream's outputs are the chat
    and two states (a skip of a state costs nothing): the textbox and Retry button are switched off by a quick event
    chained before a send or a retry (`_Page.take_message`, `_Page.lock`), and the stream's last update goes to the
    `view` state, which the follow-up event shows as plain values (chat, Retry, textbox, conversation id, list,
    title). Card buttons cannot chain such an event (Gradio then fails to find the card's follow-up events), so the
    textbox stays on while a confirmed call's answer streams. The cards change once, in the
    last update, when the chat has stopped: a card re-render mid-stream could leave the chat showing stale messages.
    """

    def __init__(self, *, stream: ChatStream, cards: list[dict[str, Any]], sent_text: str | None = None) -> None:
        self.stream = stream
        self.cards = cards
        self.sent_text = sent_text

    def update(self) -> tuple[Any, ...]:
        return self.stream.chat, gr.skip(), gr.skip()

    def last(self, *, conversation_id: str, choices: list[Any], title: str | None) -> tuple[Any, ...]:
        text: str | None = None
        if self.sent_text is not None:
            if not self.stream.stored:
                # The engine refused the message before storing it: it goes back where it was typed.
                self.stream.withdraw_user()
            text = "" if self.stream.stored else self.sent_text
        view = {
            "chat": self.stream.chat, "retry": self.stream.retryable, "text": text,
            "conversation_id": conversation_id, "choices": choices, "title": title,
        }
        return self.stream.chat, self.cards, view


def frame_interval(streams: int) -> float:
    """Seconds between redraws of one streaming answer while `streams` answers stream at once."""
    return max(_FRAME_S, streams / _FRAMES_PER_S)


def _unchanged(text: str | None = None) -> tuple[Any, ...]:
    """A stream that showed nothing: the follow-up event only gives the textbox back (with `text`, if given)."""
    return gr.skip(), gr.skip(), {"text": text}


def _warn(message: str) -> None:
    # Toasts render HTML: escape whatever the message quotes.
    gr.Warning(html.escape(message))
