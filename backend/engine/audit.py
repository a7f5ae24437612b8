"""The audit: which calls a person may see (their own, or everyone's for a support lead) and what each row tells.

Who counts as a support lead is decided where people sign in (backend/auth.py and the UI's People); the engine is
told the answer as `sees_everyone` and decides here what that lets a person see and open.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

from backend.core.provenance import describe_source
from backend.storage.store import Store
from backend.storage.tables import CallStatus, Conversation, FunctionCallRecord, User

__all__ = ["AuditEntry", "AuditFilters", "audit_entries"]


class AuditFilters(BaseModel):
    """What the audit narrows its rows to; a blank or missing filter means any."""

    model_config = ConfigDict(frozen=True)

    status: CallStatus | None = None
    function: str | None = None
    user: str | None = None  # a user's name; only someone who sees everyone's calls can narrow by it

    @field_validator("status", "function", "user", mode="before")
    @classmethod
    def _blank_is_any(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip()
        return value or None


class AuditEntry(BaseModel):
    """One call as the audit shows it: when it was decided, whose it was, what ran and what came back."""

    call_id: str
    decided_at: datetime | None  # when it finished, or was confirmed; None while it waits for a person
    user: str
    conversation_id: str
    conversation_title: str
    conversation_deleted: bool = False  # deleted by its owner: the call stays here, the conversation cannot be opened
    can_open: bool  # the conversation is the viewer's own: only its owner may open it, lead or not
    function: str
    status: CallStatus
    auto: bool
    edited: bool
    result: Any = None  # the tool's value, for a succeeded call
    error: str | None = None
    reject_reason: str | None = None
    arguments: dict[str, Any] | None = None  # as run: None when it never ran
    proposed_arguments: dict[str, Any]
    duration_ms: float | None = None
    imported_from: str | None = None  # history from an export: it did not run here, whatever its status says
    tool_source: str | None = None  # where the tool came from when the call was proposed ("MCP: time")
    sources: dict[str, str] = {}  # argument -> where its value came from, in words (backend.core.provenance)


def audit_entries(
    store: Store, viewer: User, filters: AuditFilters, *, sees_everyone: bool, limit: int = 1000,
) -> list[AuditEntry]:
    """The calls `viewer` may see, newest first: everyone's when `sees_everyone`, else only their own.

    Someone who sees only their own calls gets them whatever user the filters name: the filter is not theirs to use.
    """
    if sees_everyone:
        records = store.audit(status=filters.status, function=filters.function, user_name=filters.user, limit=limit)
    else:
        records = store.audit(status=filters.status, function=filters.function, owner=viewer, limit=limit)
    return [_entry(record, conversation, owner, viewer) for record, conversation, owner in records]


def _entry(record: FunctionCallRecord, conversation: Conversation, owner: User, viewer: User) -> AuditEntry:
    return AuditEntry(
        call_id=record.id,
        decided_at=record.finished_at or record.confirmed_at,
        user=owner.name,
        conversation_id=conversation.id,
        conversation_title=conversation.title,
        conversation_deleted=conversation.deleted_at is not None,
        can_open=conversation.owner_id == viewer.id and conversation.deleted_at is None,
        function=record.function_name,
        status=CallStatus(record.status),
        auto=record.auto,
        edited=record.edited_arguments is not None,
        result=(record.result or {}).get("value"),
        error=record.error,
        reject_reason=record.reject_reason,
        arguments=dict(record.final_arguments) if record.final_arguments is not None else None,
        proposed_arguments=dict(record.proposed_arguments or {}),
        duration_ms=record.duration_ms,
        imported_from=record.imported_from,
        tool_source=record.tool_source,
        sources={key: describe_source(value) for key, value in (record.provenance or {}).items()},
    )
