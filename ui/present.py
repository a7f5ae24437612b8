"""What the UI shows, as pure functions: engine events and stored history -> chat messages, calls -> card fields,
audit records -> rows, model info -> a status line. No gradio here: chat messages are plain `gr.ChatMessage` dicts.

Everything from the model, a tool or a user is treated as untrusted text: it is put in code blocks or code spans, or
escaped, before it reaches Markdown (the Chatbot and gr.Markdown sanitise too; this is the second line of defence).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from backend.engine import (
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
from backend.llm import ModelInfo
from backend.specs import ArgumentSpec
from backend.store import SETTLED_STATUSES, CallStatus, Conversation, FunctionCallRecord, Message, MessageRole, User
from backend.tools import Tool, ToolPolicy
from backend.validation import validate_arguments

__all__ = [
    "ChatDict",
    "ChatStream",
    "FieldView",
    "Widget",
    "AUDIT_COLUMNS",
    "NOT_SET",
    "md_text",
    "md_code",
    "md_fence",
    "status_label",
    "call_message",
    "history_chat",
    "error_text",
    "update_cards",
    "open_cards",
    "card_fields",
    "arguments_from_fields",
    "check_fields",
    "field_errors",
    "arguments_json",
    "arguments_from_json",
    "format_result",
    "conversation_choices",
    "status_markdown",
    "tools_markdown",
    "audit_rows",
    "audit_csv",
]

ChatDict = dict[str, Any]
Widget = Literal["text", "integer", "number", "checkbox", "tristate", "dropdown", "lines", "json"]

NOT_SET = "(not set)"  # the blank choice of an optional yes/no field
PREPARING_TITLE = "🛠️ Preparing a function call…"
_CHAT_RESULT_CHARS = 3000  # results longer than this are cut in the chat; the card and the export keep them whole
_FOLD_LINES = 25
_FOLD_CHARS = 2500
_MD_SPECIAL = re.compile(r"([!-/:-@\[-`{-~])")
_BACKTICKS = re.compile(r"`+")
_SPREADSHEET_FORMULA = ("=", "+", "-", "@", "\t", "\r")

_STATUS_LABELS: dict[CallStatus, str] = {
    CallStatus.PROPOSED: "⏸️ waiting for your confirmation",
    CallStatus.CONFIRMED: "⏳ confirmed",
    CallStatus.RUNNING: "⏳ running…",
    CallStatus.SUCCEEDED: "✅ done",
    CallStatus.FAILED: "❌ failed",
    CallStatus.REJECTED: "🚫 rejected",
    CallStatus.INTERRUPTED: "⚠️ interrupted",
}
_BACKEND_LABELS = {"embedded": "embedded (CPU)", "tgi": "TGI", "openai": "OpenAI-compatible"}
_POLICY_LABELS = {
    ToolPolicy.CONFIRM: "asks for confirmation",
    ToolPolicy.AUTO: "runs automatically (read-only)",
    ToolPolicy.DISABLED: "disabled (not offered to the model)",
}

AUDIT_COLUMNS = [
    "Time (UTC)", "User", "Conversation", "Function", "Proposed arguments", "Confirmed arguments", "Edited",
    "Status", "Duration (ms)", "Result or error",
]


# -- Markdown building blocks ------------------------------------------------------------------------------------


def md_text(text: Any) -> str:
    """`text` as literal Markdown on one line: every ASCII punctuation mark backslash-escaped, so no HTML or markup."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


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


def status_label(view: CallView) -> str:
    """A call's status in words (with an icon)."""
    label = _STATUS_LABELS.get(view.status, str(view.status))
    if view.auto and view.status in SETTLED_STATUSES:
        label += " (ran automatically)"
    return label


def call_message(view: CallView) -> ChatDict:
    """A call as a collapsible chat message: the function and status as its title, arguments and outcome inside."""
    parts: list[str] = []
    if view.edited and view.proposed_arguments != view.arguments:
        parts += ["**Proposed by the model**", md_fence(_pretty(view.proposed_arguments), "json"),
                  "**Edited and confirmed**", md_fence(_pretty(view.arguments), "json")]
    else:
        parts += ["**Arguments**", md_fence(_pretty(view.arguments), "json")]
    if view.status == CallStatus.SUCCEEDED:
        text = _pretty(view.result)
        if len(text) > _CHAT_RESULT_CHARS:
            text = text[:_CHAT_RESULT_CHARS] + f"\n… ({len(text) - _CHAT_RESULT_CHARS:,} more characters: see the card or export the conversation)"
        parts += ["**Result**", md_fence(text, "json")]
    elif view.error:
        parts.append(f"**Error:** {md_text(view.error)}")
    if view.status == CallStatus.REJECTED:
        parts.append(f"**Rejected.** Reason: {md_text(view.reject_reason) if view.reject_reason else 'none given'}")
    metadata: dict[str, Any] = {
        "title": f"🛠️ {md_code(view.function)} · {status_label(view)}",
        "id": view.id,
        "status": "done" if view.status in SETTLED_STATUSES else "pending",
    }
    if view.duration_ms is not None:
        metadata["duration"] = round(view.duration_ms / 1000, 3)
    return {"role": "assistant", "content": "\n\n".join(parts), "metadata": metadata}


def _error_message(text: str) -> ChatDict:
    return {"role": "assistant", "content": f"⚠️ **Error:** {md_text(text)}"}


def history_chat(messages: Sequence[Message], calls: Iterable[CallView]) -> list[ChatDict]:
    """The stored conversation as chat messages (results are shown inside their call's message)."""
    views = {view.id: view for view in calls}
    chat: list[ChatDict] = []
    for message in messages:
        role = MessageRole(message.role)
        if role == MessageRole.USER:
            chat.append({"role": "user", "content": message.content})
        elif role == MessageRole.ASSISTANT:
            chat.append({"role": "assistant", "content": message.content})
        elif role == MessageRole.FUNCTION_CALL and message.call_id in views:
            chat.append(call_message(views[message.call_id]))
        elif role == MessageRole.ERROR:
            chat.append(_error_message(message.content))
    return chat


def error_text(error: BaseException) -> str:
    """What a person reads about `error`: Callcard's own message, or a generic one for a bug."""
    if isinstance(error, CallcardError):
        return str(error)
    return f"Something went wrong inside Callcard ({type(error).__name__}). The details are in the server log."


@dataclass
class ChatStream:
    """The chat while the engine streams: the stored history, then this turn's live messages, event by event."""

    messages: list[ChatDict] = field(default_factory=list)
    error: str | None = None
    retryable: bool = False
    done: bool = False
    awaiting_confirmation: bool = False
    stored: bool = False  # the engine got far enough to store the user's message
    _text_at: int | None = None
    _preparing_at: int | None = None
    _user_at: int | None = None

    def add_user(self, text: str) -> None:
        """Show the user's message at once, before the engine answers."""
        self._user_at = self._append({"role": "user", "content": text})

    def withdraw_user(self) -> None:
        """Take back the message `add_user` showed (the engine did not store it; it goes back to the textbox)."""
        if self._user_at is not None:
            self.messages[self._user_at] = {"role": "user", "content": ""}
            self._user_at = None

    def apply(self, event: EngineEvent) -> None:
        """Fold one engine event into the chat."""
        if not isinstance(event, (ErrorEvent, Done)):
            self.stored = True
            self.retryable = False  # the engine went on after an error: nothing to retry
        if isinstance(event, Token):
            if self._text_at is None:
                self._text_at = self._append({"role": "assistant", "content": ""})
            self.messages[self._text_at]["content"] += event.text
        elif isinstance(event, PreparingCall):
            if self._preparing_at is None:
                self._preparing_at = self._append({
                    "role": "assistant", "content": "The model is writing a function call; it will appear as a card.",
                    "metadata": {"title": PREPARING_TITLE, "status": "pending"},
                })
        elif isinstance(event, ReplyText):
            if self._text_at is not None:
                self.messages[self._text_at]["content"] = event.text
            elif event.text:
                self._append({"role": "assistant", "content": event.text})
            self._text_at = None
            self._drop_preparing()
        elif isinstance(event, (CallProposed, CallUpdated)):
            self._drop_preparing()
            self._put_call(event.call)
        elif isinstance(event, AssistantNote):
            self._append({"role": "assistant", "content": event.text})
        elif isinstance(event, ErrorEvent):
            self._drop_preparing()
            self._text_at = None
            self.error, self.retryable = event.message, event.retryable
            self._append(_error_message(event.message))
        elif isinstance(event, Done):
            self._drop_preparing()
            self.stored = True
            self.done, self.awaiting_confirmation = True, event.awaiting_confirmation

    @property
    def chat(self) -> list[ChatDict]:
        """The messages to show (empty streamed replies left out)."""
        return [m for m in self.messages if m.get("content") or m.get("metadata")]

    def _append(self, message: ChatDict) -> int:
        self.messages.append(message)
        return len(self.messages) - 1

    def _drop_preparing(self) -> None:
        if self._preparing_at is not None:
            # Blank it rather than delete it, so the other remembered positions stay right.
            self.messages[self._preparing_at] = {"role": "assistant", "content": ""}
            self._preparing_at = None

    def _put_call(self, view: CallView) -> None:
        message = call_message(view)
        for index, existing in enumerate(self.messages):
            if (existing.get("metadata") or {}).get("id") == view.id:
                self.messages[index] = message
                return
        self._append(message)


# -- Cards -------------------------------------------------------------------------------------------------------


def update_cards(cards: list[dict[str, Any]], event: EngineEvent) -> list[dict[str, Any]]:
    """The cards after `event`: a new proposal clears settled cards of earlier replies; updates replace a card."""
    if isinstance(event, CallProposed):
        view = event.call
        kept = [c for c in cards if c["id"] != view.id and (c["reply_id"] == view.reply_id or c["status"] not in SETTLED_STATUSES)]
        return [*kept, _card(view)]
    if isinstance(event, CallUpdated):
        # `rev` is kept: fields are keyed by it, and an older key could bring back values typed long ago.
        return [{**_card(event.call), "rev": c.get("rev", 0)} if c["id"] == event.call.id else c for c in cards]
    return cards


def open_cards(views: Iterable[CallView]) -> list[dict[str, Any]]:
    """The cards to show for a conversation just opened: calls still waiting for a person, or running."""
    return [_card(v) for v in views if v.status not in SETTLED_STATUSES]


def _card(view: CallView) -> dict[str, Any]:
    # Cards live in gr.State as JSON-ready dicts; `rev` changes when fields must be rebuilt from the card's values.
    return {**view.model_dump(mode="json"), "rev": 0}


@dataclass(frozen=True)
class FieldView:
    """One argument as a card field: which widget, its value, help, and what is wrong with it."""

    name: str
    label: str
    widget: Widget
    value: Any
    help: str = ""
    required: bool = False
    missing: bool = False
    error: str = ""
    choices: list[tuple[str, Any]] = field(default_factory=list)


def card_fields(view: CallView) -> list[FieldView]:
    """The fields of a call's card, in the function's argument order (unknown arguments go to the JSON editor)."""
    if view.spec is None:
        return []
    errors = field_errors(view.errors)
    missing = {name.split(".")[0].split("[")[0] for name in view.missing}
    fields: list[FieldView] = []
    for argument in view.spec.arguments:
        widget = _widget(argument)
        value = view.arguments.get(argument.name, argument.default if argument.has_default else None)
        fields.append(FieldView(
            name=argument.name,
            label=argument.name.replace("_", " ") + (" *" if argument.required and not argument.has_default else ""),
            widget=widget,
            value=_widget_value(widget, argument, value),
            help=argument.description,
            required=argument.required and not argument.has_default,
            missing=argument.name in missing,
            # A missing field's only error is that it is missing, which the card already asks for.
            error="" if argument.name in missing else errors.get(argument.name, ""),
            choices=_choices(argument, widget),
        ))
    return fields


def _widget(argument: ArgumentSpec) -> Widget:
    if argument.enum:
        return "dropdown"
    if argument.type == "boolean":
        return "checkbox" if argument.required or argument.has_default else "tristate"
    if argument.type in ("integer", "number"):
        return argument.type
    if argument.type == "array":
        item = argument.items
        return "lines" if item is None or (item.type in ("string", "integer", "number") and not item.enum) else "json"
    if argument.type == "object":
        return "json"
    return "text"


def _choices(argument: ArgumentSpec, widget: Widget) -> list[tuple[str, Any]]:
    if widget == "dropdown":
        return [(o if isinstance(o, str) else json.dumps(o), _choice_value(o)) for o in argument.enum or []]
    if widget == "tristate":
        return [(NOT_SET, NOT_SET), ("yes", "true"), ("no", "false")]
    return []


def _choice_value(option: Any) -> Any:
    # Dropdowns carry text or numbers; anything else (true, null, a list) travels as its JSON.
    return option if isinstance(option, (str, int, float)) and not isinstance(option, bool) else json.dumps(option)


def _widget_value(widget: Widget, argument: ArgumentSpec, value: Any) -> Any:
    if widget == "text":
        return "" if value is None else value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    if widget in ("integer", "number"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return None
        return value
    if widget == "checkbox":
        return value is True
    if widget == "tristate":
        return NOT_SET if value is None else "true" if value is True else "false" if value is False else NOT_SET
    if widget == "dropdown":
        choices = [v for _, v in _choices(argument, widget)]
        candidate = _choice_value(value) if value is not None else None
        return candidate if candidate in choices else None
    if widget == "lines":
        if isinstance(value, list):
            return "\n".join(v if isinstance(v, str) else json.dumps(v, ensure_ascii=False) for v in value)
        return "" if value is None else str(value)
    return "" if value is None else json.dumps(value, indent=2, ensure_ascii=False)


def arguments_from_fields(view: CallView, values: Sequence[Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """(arguments, field -> problem) from the card's widget values; blank fields are left out."""
    fields = card_fields(view)
    arguments: dict[str, Any] = {}
    problems: dict[str, str] = {}
    for spec_field, value in zip(fields, values, strict=True):
        argument = view.spec.argument(spec_field.name) if view.spec else None
        if argument is None:
            continue
        parsed, problem = _parse_widget(spec_field.widget, argument, value)
        if problem:
            problems[spec_field.name] = problem
            continue
        if parsed is not None:
            arguments[spec_field.name] = parsed
    # Arguments the spec does not know are kept, so validation reports them rather than silently dropping them.
    known = {f.name for f in fields}
    for name, value in view.arguments.items():
        if name not in known and name not in arguments:
            arguments[name] = value
    return arguments, problems


def _parse_widget(widget: Widget, argument: ArgumentSpec, value: Any) -> tuple[Any, str | None]:
    if widget == "text":
        return (value if isinstance(value, str) and value.strip() else None), None
    if widget in ("integer", "number"):
        if value is None or value == "":
            return None, None
        if widget == "integer" and isinstance(value, float) and value.is_integer():
            return int(value), None
        return value, None
    if widget == "checkbox":
        return bool(value), None
    if widget == "tristate":
        return {"true": True, "false": False}.get(str(value)), None
    if widget == "dropdown":
        if value is None or value == "":
            return None, None
        for option in argument.enum or []:
            if _choice_value(option) == value:
                return option, None
        return value, None
    if widget == "lines":
        text = value if isinstance(value, str) else ""
        items = [line.strip() for line in text.splitlines() if line.strip()]
        if not items:
            return None, None
        item_type = argument.items.type if argument.items is not None else "string"
        return [_line_item(item, item_type) for item in items], None
    text = value if isinstance(value, str) else ""
    if not text.strip():
        return None, None
    try:
        return json.loads(text), None
    except ValueError as error:
        return None, f"This is not valid JSON: {error}."


def _line_item(text: str, item_type: str) -> Any:
    # Numbers are typed as text in a list editor; convert what is clearly a number, let validation judge the rest.
    if item_type in ("integer", "number"):
        try:
            number = float(text)
        except ValueError:
            return text
        return int(number) if item_type == "integer" and number.is_integer() else number
    return text


def check_fields(view: CallView, values: Sequence[Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """(normalised arguments, field -> error) for the card's current values, as Confirm would see them."""
    arguments, problems = arguments_from_fields(view, values)
    if view.spec is None:
        return arguments, problems
    normalised, errors, _missing = validate_arguments(view.spec, arguments)
    return normalised, {**errors, **problems}


def field_errors(errors: dict[str, str]) -> dict[str, str]:
    """Validation errors grouped by top-level field (`address.city` goes under `address`); "" holds the rest."""
    grouped: dict[str, list[str]] = {}
    for key, message in errors.items():
        top = key.split(".")[0].split("[")[0]
        prefix = f"{key}: " if key != top and top else ""
        grouped.setdefault(top, []).append(prefix + message)
    return {key: " ".join(messages) for key, messages in grouped.items()}


def arguments_json(view: CallView) -> str:
    """The card's arguments as pretty JSON, for "edit as JSON"."""
    return json.dumps(view.arguments, indent=2, ensure_ascii=False, default=str)


def arguments_from_json(text: str) -> tuple[dict[str, Any] | None, str | None]:
    """(arguments, None) from the JSON editor, or (None, why not)."""
    try:
        value = json.loads(text or "{}")
    except ValueError as error:
        return None, f"This is not valid JSON: {error}."
    if not isinstance(value, dict):
        return None, "The arguments must be a JSON object: {\"name\": value, ...}."
    return value, None


def format_result(value: Any) -> tuple[str, bool]:
    """(the result pretty-printed, whether it is long enough to be folded)."""
    text = _pretty(value)
    return text, text.count("\n") + 1 > _FOLD_LINES or len(text) > _FOLD_CHARS


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
        line += (
            "\n\n> ℹ️ This is a **tiny demo model** running on this machine's CPU: it chats, but it often picks the wrong "
            "function or none. For real use, point Callcard at a model server: "
            "`CALLCARD_ENDPOINT=http://host:8080` (TGI) or set `CALLCARD_BACKEND=openai` for an OpenAI-compatible one."
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


def audit_rows(records: Iterable[tuple[FunctionCallRecord, Conversation, User]]) -> list[list[Any]]:
    """One row per call, in AUDIT_COLUMNS order."""
    rows: list[list[Any]] = []
    for record, conversation, user in records:
        confirmed = record.final_arguments if record.final_arguments is not None else None
        if record.status == CallStatus.FAILED and record.error:
            outcome = record.error
        elif record.status == CallStatus.REJECTED:
            outcome = f"Rejected: {record.reject_reason or 'no reason given'}"
        elif record.result is not None:
            outcome = _compact(record.result.get("value"))
        else:
            outcome = record.error or ""
        rows.append([
            _time(record.created_at),
            user.name,
            conversation.title,
            record.function_name,
            _compact(record.proposed_arguments or {}),
            _compact(confirmed) if confirmed is not None else "",
            "yes" if record.edited_arguments is not None else "",
            record.status,
            round(record.duration_ms, 1) if record.duration_ms is not None else "",
            outcome,
        ])
    return rows


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
