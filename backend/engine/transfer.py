"""Export and import: a whole conversation (messages, calls, results, edits) as JSON-ready data and back."""

from __future__ import annotations

from typing import Any

from backend.errors import InvalidInputError
from backend.storage.store import Store
from backend.storage.tables import (
    MAX_TITLE_CHARS,
    SETTLED_STATUSES,
    CallStatus,
    Conversation,
    FunctionCallRecord,
    Message,
    MessageRole,
    User,
)

__all__ = ["EXPORT_FORMAT", "check_export", "export_conversation", "import_conversation"]

EXPORT_FORMAT = "callcard.conversation.v1"
_IMPORTED = " (imported)"
# What a file cannot claim: the ids are fresh, and who confirmed a call and where it ran are facts of this instance.
_NOT_IMPORTED = ("id", "conversation_id", "confirmed_by", "runner", "imported_from")


def export_conversation(store: Store, conversation: Conversation) -> dict[str, Any]:
    """The whole conversation as JSON-ready data: messages, calls, results and edits."""
    messages = store.messages(conversation.id)
    calls = store.calls(conversation_id=conversation.id)
    return {
        "format": EXPORT_FORMAT,
        "conversation": conversation.model_dump(mode="json", exclude={"owner_id"}),
        "messages": [m.model_dump(mode="json", exclude={"id", "conversation_id"}) for m in messages],
        "calls": [c.model_dump(mode="json", exclude={"conversation_id", "confirmed_by"}) for c in calls],
    }


def check_export(data: Any) -> None:
    """InvalidInputError unless `data` says it is a Callcard conversation export."""
    if not isinstance(data, dict) or data.get("format") != EXPORT_FORMAT:
        raise InvalidInputError(f"This is not a Callcard conversation export (expected format {EXPORT_FORMAT}).")


def import_conversation(store: Store, data: dict[str, Any], *, owner: User) -> Conversation:
    """A new conversation owned by `owner` from an export; ids are fresh, so importing twice makes two copies.

    Everything is read before anything is stored, and stored in one transaction: a damaged export leaves nothing.
    """
    check_export(data)
    try:
        source = data["conversation"]
        conversation = Conversation(
            owner_id=owner.id, title=_imported_title(str(source.get("title") or "")),
            model_id=source.get("model_id"), prompt_style=source.get("prompt_style"),
            system_prompt=source.get("system_prompt"), temperature=source.get("temperature"),
            max_new_tokens=source.get("max_new_tokens"),
        )
        call_ids: dict[str, str] = {}
        calls = []
        for call in data.get("calls", []):
            record = _as_history(FunctionCallRecord.model_validate({
                **{k: v for k, v in call.items() if k not in _NOT_IMPORTED},
                "conversation_id": conversation.id,
            }), source=_source(source, call))
            call_ids[call["id"]] = record.id
            calls.append(record)
        messages = [
            Message(
                conversation_id=conversation.id, position=position, role=MessageRole(message["role"]),
                content=str(message["content"]), call_id=call_ids.get(message.get("call_id") or ""),
                extra=message.get("extra"),
            )
            for position, message in enumerate(sorted(data.get("messages", []), key=lambda m: m["position"]))
        ]
    except (KeyError, TypeError, ValueError) as error:
        raise InvalidInputError(f"This conversation export is damaged and was not imported: {error}.") from None
    store.add_conversation(conversation, calls=calls, messages=messages)
    return store.conversation(conversation.id, user=owner)


def _as_history(record: FunctionCallRecord, *, source: str) -> FunctionCallRecord:
    """An imported call as history: marked with its source, and settled if it was not, so it can never run here."""
    record.imported_from = source[:300]
    record.auto = False
    if record.status not in SETTLED_STATUSES:
        record.reject_reason = f"Imported as {record.status}; it was not run here."
        record.status = CallStatus.SKIPPED
    return record


def _source(conversation: dict[str, Any], call: dict[str, Any]) -> str:
    """Where an imported call says it ran: its conversation's id and title in the export, and its runner."""
    title = " ".join(str(conversation.get("title") or "untitled").split())[:80]
    ran = f", ran on {call['runner']}" if call.get("runner") else ""
    return f"export of conversation {conversation.get('id', '?')} ({title}){ran}"


def _imported_title(original: str) -> str:
    """"<original> (imported)", the original shortened to keep within the title limit."""
    original = " ".join(original.split())
    if not original:
        return "Imported conversation"
    room = MAX_TITLE_CHARS - len(_IMPORTED)
    if len(original) > room:
        original = original[: room - 1] + "…"
    return original + _IMPORTED
