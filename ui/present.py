"""What the UI shows, as pure functions: engine events and stored history -> chat messages, the audit's entries -> rows,
model info -> a status line, tools -> the Tools tab. No gradio here: chat messages are plain `gr.ChatMessage` dicts.

Everything from a model, a tool or a person is untrusted: people's text is shown literally, model and tool text as
inert Markdown (ui/safe_text.py), and everything else we put into Markdown is escaped or in code spans.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from backend.core.specs import ArgumentSpec
from backend.engine.audit import AuditEntry
from backend.engine.events import (
    AssistantNote,
    CallProposed,
    CallUpdated,
    CallView,
    Done,
    EngineEvent,
    ErrorEvent,
    PreparingCall,
    ReplyText,
    Token,
)
from backend.errors import CallcardError
from backend.models.protocol import ModelInfo
from backend.storage.tables import CallStatus, Conversation, Message, MessageRole
from backend.tools import Tool, ToolPolicy
from ui.deck import status_label
from ui.safe_text import inert_markdown, literal_line, literal_markdown

if TYPE_CHECKING:
    from backend.tools.mcp_servers import ServerStatus

__all__ = [
    "AUDIT_COLUMNS",
    "TICKET_COLUMNS",
    "ChatDict",
    "ChatStream",
    "audit_csv",
    "audit_rows",
    "call_message",
    "conversation_choices",
    "error_text",
    "history_chat",
    "md_code",
    "md_fence",
    "md_text",
    "servers_markdown",
    "status_markdown",
    "tickets_rows",
    "tools_markdown",
]

ChatDict = dict[str, Any]

PREPARING_TITLE = "🛠️ Preparing a function call…"
_CHAT_RESULT_CHARS = 3000  # results longer than this are cut in the chat; the card and the export keep them whole
_BACKTICKS = re.compile(r"`+")
_SPREADSHEET_FORMULA = ("=", "+", "-", "@", "\t", "\r")
_RUNNING = frozenset({CallStatus.CONFIRMED, CallStatus.RUNNING})
_STOPPED_NOTE = "⏹️ *Stopped.*"

_BACKEND_LABELS = {"embedded": "embedded (CPU)", "tgi": "TGI", "openai": "OpenAI-compatible"}
_POLICY_LABELS = {
    ToolPolicy.CONFIRM: "asks for confirmation",
    ToolPolicy.AUTO: "runs automatically (read-only)",
    ToolPolicy.DISABLED: "disabled (not offered to the model)",
}

AUDIT_COLUMNS = [
    "Decided (UTC)", "User", "Conversation", "Function", "Tool source", "Status", "Result or error", "Arguments run",
    "Where the values came from", "Model proposed", "ms",
]
_NO_TOOLS = {"connecting": "none yet", "unavailable": "none until it is back", "disabled": "none: it is disabled"}
_SERVER_STATES = {
    "connected": "🟢 connected", "connecting": "⏳ connecting", "unavailable": "🔴 unavailable",
    "disabled": "⚪ disabled", "stopped": "⚪ stopped",
}


# -- Markdown building blocks ------------------------------------------------------------------------------------


def md_text(text: Any) -> str:
    """`text` as literal Markdown on one line: every ASCII punctuation mark backslash-escaped, so no HTML or markup."""
    return literal_line(text)


def md_code(text: Any) -> str:
    """`text` as a Markdown code span (shown literally, whatever backticks it holds)."""
    flat = " ".join(str(text).split())
    ticks = "`" * (max((len(run) for run in _BACKTICKS.findall(flat)), default=0) + 1)
    pad = " " if flat.startswith("`") or flat.endswith("`") or not flat else ""
    return f"{ticks}{pad}{flat}{pad}{ticks}"


def md_fence(text: str, language: str = "") -> str:
    """`text` as a fenced code block whose fence is longer than any backtick run inside it."""
    fence = "`" * max(3, max((len(run) for run in _BACKTICKS.findall(text)), default=0) + 1)
    return f"{fence}{language}\n{text}\n{fence}"


def _pretty(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


# -- The chat ----------------------------------------------------------------------------------------------------


def call_message(view: CallView, *, on_card: bool = False) -> ChatDict:
    """A call as a collapsible chat message: the function and status as its title, what happened inside.

    A call whose card is on the deck below the chat says so instead of repeating its arguments and result.
    """
    if on_card:
        waiting = view.status == CallStatus.PROPOSED
        parts = ["Check the card below, then confirm or reject it." if waiting else "Shown on the card below."]
    else:
        parts = _call_details(view)
    metadata: dict[str, Any] = {
        "title": f"🛠️ {literal_line(view.function)} · {status_label(view)}",
        "id": view.id,
        # Only work in progress spins: a call waiting for a person is not busy.
        "status": "pending" if view.status in _RUNNING else "done",
    }
    if view.duration_ms is not None:
        metadata["duration"] = round(view.duration_ms / 1000, 3)
    return {"role": "assistant", "content": "\n\n".join(parts), "metadata": metadata}


def _call_details(view: CallView) -> list[str]:
    parts: list[str] = []
    if view.edited and view.proposed_arguments != view.arguments:
        parts += ["**Proposed by the model**", md_fence(_pretty(view.proposed_arguments), "json"),
                  "**Edited and confirmed**", md_fence(_pretty(view.arguments), "json")]
    else:
        parts += ["**Arguments**", md_fence(_pretty(view.arguments or view.proposed_arguments), "json")]
    if view.status == CallStatus.SUCCEEDED:
        text = _pretty(view.result)
        if len(text) > _CHAT_RESULT_CHARS:
            text = text[:_CHAT_RESULT_CHARS] + f"\n… ({len(text) - _CHAT_RESULT_CHARS:,} more characters: export the conversation to see them)"
        parts += ["**Result**", md_fence(text, "json")]
    elif view.error:
        parts.append(f"**Error:** {literal_line(view.error)}")
    if view.status == CallStatus.REJECTED:
        parts.append(f"**Rejected.** Reason: {literal_line(view.reject_reason) if view.reject_reason else 'none given'}")
    elif view.status == CallStatus.SKIPPED:
        parts.append("**Not run:** you wrote a new message instead.")
    return parts


def user_message(text: str) -> ChatDict:
    return {"role": "user", "content": literal_markdown(text)}


def assistant_message(text: str, *, stopped: bool = False) -> ChatDict:
    shown = inert_markdown(text)
    if stopped:
        shown = f"{shown}\n\n{_STOPPED_NOTE}" if shown.strip() else "⏹️ *Stopped before the model wrote anything.*"
    return {"role": "assistant", "content": shown}


def error_message(text: str, *, unanswered: bool = False, attempts: int = 1) -> ChatDict:
    label = "Not answered" if unanswered else "Error"
    tries = f" (tried {attempts} times)" if attempts > 1 else ""
    return {"role": "assistant", "content": f"⚠️ **{label}{tries}:** {literal_line(text)}"}


def history_chat(
    messages: Sequence[Message], calls: Iterable[CallView], *, on_card: Iterable[str] = (),
    unanswered: Iterable[str] = (),
) -> list[ChatDict]:
    """The stored conversation as chat messages.

    Results show inside their call's message; calls on the deck (`on_card`) point to their card; a run of errors
    (a reply that failed, then its retries) shows as one message; user messages in `unanswered` got no answer.
    """
    views = {view.id: view for view in calls}
    carded = set(on_card)
    not_answered = set(unanswered)
    chat: list[ChatDict] = []
    errors_in_a_row = 0
    last_user_id: str | None = None
    for message in messages:
        role = MessageRole(message.role)
        if role == MessageRole.ERROR:
            errors_in_a_row += 1
            shown = error_message(message.content, unanswered=last_user_id in not_answered, attempts=errors_in_a_row)
            if errors_in_a_row > 1:
                chat[-1] = shown
            else:
                chat.append(shown)
            continue
        errors_in_a_row = 0
        if role == MessageRole.USER:
            last_user_id = message.id
            chat.append(user_message(message.content))
        elif role == MessageRole.ASSISTANT:
            chat.append(assistant_message(message.content, stopped=bool((message.extra or {}).get("stopped"))))
        elif role == MessageRole.FUNCTION_CALL and message.call_id in views:
            chat.append(call_message(views[message.call_id], on_card=message.call_id in carded))
    return chat


def error_text(error: BaseException) -> str:
    """What a person reads about `error`: Callcard's own message, or a generic one for a bug."""
    if isinstance(error, CallcardError):
        return str(error)
    return f"Something went wrong inside Callcard ({type(error).__name__}). The details are in the server log."


@dataclass
class ChatStream:
    """The chat while the engine streams: the stored history, then this turn's live messages, event by event.

    The reply's raw text is kept apart and made inert when the chat is drawn, not at every token.
    """

    messages: list[ChatDict] = field(default_factory=list)
    error: str | None = None
    retryable: bool = False
    done: bool = False
    awaiting_confirmation: bool = False
    stopped: bool = False
    stored: bool = False  # the engine got far enough to store the user's message
    calls: bool = False  # the reply proposed or ran calls
    _text_at: int | None = None
    _text: str = ""
    _preparing_at: int | None = None

    def add_user(self, text: str) -> None:
        """Show the user's message at once, before the engine answers."""
        self._append(user_message(text))

    def apply(self, event: EngineEvent) -> None:
        """Fold one engine event into the chat."""
        if not isinstance(event, (ErrorEvent, Done)):
            self.stored = True
            self.retryable = False  # the engine went on after an error: nothing to retry
        if isinstance(event, Token):
            if self._text_at is None:
                self._text_at, self._text = self._append({"role": "assistant", "content": ""}), ""
            self._text += event.text
        elif isinstance(event, PreparingCall):
            if self._preparing_at is None:
                self._preparing_at = self._append({
                    "role": "assistant", "content": "The model is writing a function call; it will appear as a card.",
                    "metadata": {"title": PREPARING_TITLE, "status": "pending"},
                })
        elif isinstance(event, ReplyText):
            if self._text_at is not None:
                self._text = event.text
            elif event.text:
                self._append(assistant_message(event.text))
            self._close_text()
            self._drop_preparing()
        elif isinstance(event, (CallProposed, CallUpdated)):
            self.calls = True
            self._drop_preparing()
            self._put_call(event.call)
        elif isinstance(event, AssistantNote):
            self._append(assistant_message(event.text))
        elif isinstance(event, ErrorEvent):
            self._drop_preparing()
            self._close_text()
            self.error, self.retryable = event.message, event.retryable
            self._append(error_message(event.message, unanswered=event.retryable))
        elif isinstance(event, Done):
            self._drop_preparing()
            self.stored = True
            self.done, self.awaiting_confirmation = True, event.awaiting_confirmation

    def stop(self) -> None:
        """The person stopped the reply: what was written stays, marked stopped."""
        self._drop_preparing()
        if self._text_at is not None:
            self.messages[self._text_at] = assistant_message(self._text, stopped=True)
            self._text_at, self._text = None, ""
        else:
            self._append(assistant_message("", stopped=True))
        self.stopped = True

    @property
    def plain_answer(self) -> bool:
        """The reply was text alone, complete: what streamed is what the store holds, and no card came of it."""
        return self.done and self.stored and not (self.calls or self.error or self.stopped or self._preparing_at)

    @property
    def chat(self) -> list[ChatDict]:
        """The messages to show (empty streamed replies left out)."""
        if self._text_at is not None:
            self.messages[self._text_at] = assistant_message(self._text)
        return [m for m in self.messages if m.get("content") or m.get("metadata")]

    def _close_text(self) -> None:
        if self._text_at is not None:
            self.messages[self._text_at] = assistant_message(self._text)
        self._text_at, self._text = None, ""

    def _append(self, message: ChatDict) -> int:
        self.messages.append(message)
        return len(self.messages) - 1

    def _drop_preparing(self) -> None:
        if self._preparing_at is not None:
            # Blank it rather than delete it, so the other remembered positions stay right.
            self.messages[self._preparing_at] = {"role": "assistant", "content": ""}
            self._preparing_at = None

    def _put_call(self, view: CallView) -> None:
        # Calls proposed now are on the deck once the reply ends.
        message = call_message(view, on_card=view.status == CallStatus.PROPOSED or view.status in _RUNNING)
        for index, existing in enumerate(self.messages):
            if (existing.get("metadata") or {}).get("id") == view.id:
                self.messages[index] = message
                return
        self._append(message)


# -- Around the chat ---------------------------------------------------------------------------------------------


def conversation_choices(conversations: Iterable[Conversation]) -> list[tuple[str, str]]:
    """(label, id) pairs for the sidebar's list."""
    return [(" ".join(c.title.split()) or "Untitled", c.id) for c in conversations]


def status_markdown(info: ModelInfo | None, healthy: bool | None, *, problem: str | None = None) -> str:
    """The status line: backend, model, server health, and the demo model's caveat."""
    if info is None:
        return f"**Model:** unavailable · 🔴 {md_text(problem or 'the model server does not answer.')}"
    health = "🟢 ready" if healthy else "🔴 not answering" if healthy is False else "⚪ unknown"
    line = (
        f"**Backend:** {_BACKEND_LABELS.get(info.backend, md_text(info.backend))} · "
        f"**Model:** {md_code(info.model_id)} · **Server:** {health}"
    )
    if info.backend == "embedded" or info.demo:
        # For the people chatting; how to point Callcard at a real server is the operator's business (README).
        line += (
            "\n\n> ℹ️ This is a **tiny demo model** running on this machine's CPU: it chats, but it often picks the "
            "wrong function or none, and it is slow. Check every card before you confirm it."
        )
    return line


def tools_markdown(tools: Iterable[Tool]) -> str:
    """The Tools tab: every function with its description, arguments, policy and source."""
    sections: list[str] = []
    for tool in tools:
        spec = tool.spec
        lines = [
            f"### {md_code(spec.name)}",
            md_text(spec.description) if spec.description else "_No description._",
            f"**Policy:** {_POLICY_LABELS.get(tool.policy, md_text(tool.policy))} · **Source:** {md_text(tool.source)}",
        ]
        if tool.warning:
            lines += ["", f"⚠️ {md_text(tool.warning)}"]
        if spec.arguments:
            lines += ["", "| Argument | Type | Required | Description |", "|---|---|---|---|"]
            for argument in spec.arguments:
                lines.append(
                    f"| {md_code(argument.name)} | {md_text(_type_text(argument))} | "
                    f"{'yes' if argument.required and not argument.has_default else 'no'} | {md_text(argument.description)} |"
                )
        else:
            lines.append("No arguments.")
        sections.append("\n".join(lines))
    return "\n\n---\n\n".join(sections) if sections else "No functions are configured."


def servers_markdown(servers: Iterable[ServerStatus]) -> str:
    """The Tools tab's MCP servers: state (and why one is unavailable), where it runs, trust, and its tools now."""
    sections: list[str] = []
    for server in servers:
        state = _SERVER_STATES.get(server.state, md_text(server.state))
        heading = f"### {md_code(server.name)} · {state}"
        if server.reason:
            heading += f": {md_text(server.reason)}"
        kind = "command" if server.transport == "stdio" else "Streamable HTTP"
        lines = [
            heading,
            f"**Runs:** {kind} {md_code(_shown_where(server.transport, server.where))} · **Trusted:** "
            + ("yes" if server.trusted else "no"),
            "**Tools:** " + (", ".join(md_code(name) for name in server.tools) or _NO_TOOLS.get(server.state, "none")),
        ]
        for name, why in server.skipped.items():
            lines.append(f"Left out: {md_code(name)}: {md_text(why)}")
        sections.append("\n\n".join(lines))
    if not sections:
        return ""
    return "## MCP servers\n\n" + "\n\n".join(sections)


def _shown_where(transport: str, where: str) -> str:
    """A server's command or URL as the Tools tab shows it: a URL without its user, password, query or fragment."""
    if transport == "stdio":
        return where
    parts = urlsplit(where)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    hidden = "?…" if parts.query or parts.fragment else ""
    return urlunsplit((parts.scheme, netloc, parts.path, "", "")) + hidden


def _type_text(argument: ArgumentSpec) -> str:
    text = argument.type
    if argument.type == "array" and argument.items is not None:
        text = f"list of {argument.items.type}"
    if argument.enum:
        text += " (one of " + ", ".join(json.dumps(o, ensure_ascii=False) for o in argument.enum) + ")"
    if argument.has_default:
        text += f", default {json.dumps(argument.default, ensure_ascii=False, default=str)}"
    if argument.nullable:
        text += ", may be null"
    return text


def audit_rows(
    entries: Iterable[AuditEntry], tool_source: Callable[[str], str | None] | None = None,
) -> list[list[Any]]:
    """One row per call, in AUDIT_COLUMNS order: when it was decided, who, what ran and what came back.

    The conversation of a row the viewer may open ends with " ↗". A call's tool source is the one recorded when it
    was proposed ("MCP: time"); for a call recorded before sources were, `tool_source` names where the function
    comes from now, marked "(now)", while it exists.
    """
    rows: list[list[Any]] = []
    for entry in entries:
        if entry.status == CallStatus.FAILED and entry.error:
            outcome = entry.error
        elif entry.status == CallStatus.REJECTED:
            outcome = f"Rejected: {entry.reject_reason or 'no reason given'}"
        elif entry.status == CallStatus.SUCCEEDED:
            outcome = _compact(entry.result)
        else:
            outcome = entry.error or entry.reject_reason or ""
        rows.append([
            _time(entry.decided_at) if entry.decided_at else "(not decided)",
            entry.user,
            entry.conversation_title + (" (deleted)" if entry.conversation_deleted else "")
            + (" ↗" if entry.can_open else ""),
            entry.function,
            entry.tool_source or _source_now(entry.function, tool_source),
            str(entry.status) + (" · ran automatically" if entry.auto else "") + (" · edited" if entry.edited else "")
            + (f" · imported, not run here ({entry.imported_from})" if entry.imported_from else ""),
            outcome,
            _compact(entry.arguments) if entry.arguments is not None else "",
            "; ".join(f"{name}: {source}" for name, source in entry.sources.items()),
            _compact(entry.proposed_arguments),
            round(entry.duration_ms, 1) if entry.duration_ms is not None else "",
        ])
    return rows


def _source_now(function: str, tool_source: Callable[[str], str | None] | None) -> str:
    source = tool_source(function) if tool_source is not None else None
    return f"{source} (now)" if source else ""


TICKET_COLUMNS = ["Ticket", "Opened (UTC)", "Status", "Name", "E-mail", "Order", "Issue"]


def tickets_rows(tickets: Iterable[Any]) -> list[list[Any]]:
    """The support desk's tickets, newest first, in TICKET_COLUMNS order."""
    return [
        [t.ticket, _time(t.created_at), t.status, t.name, t.email, t.order_number or "", t.issue]
        for t in tickets
    ]


def audit_csv(rows: Iterable[Sequence[Any]]) -> str:
    """The audit rows as CSV; cells that a spreadsheet would run as a formula are quoted with a leading '."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(AUDIT_COLUMNS)
    for row in rows:
        writer.writerow([_spreadsheet_safe(cell) for cell in row])
    return buffer.getvalue()


def _spreadsheet_safe(cell: Any) -> Any:
    if isinstance(cell, str) and cell.startswith(_SPREADSHEET_FORMULA):
        return "'" + cell
    return cell


def _compact(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str, sort_keys=True)


def _time(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else ""
