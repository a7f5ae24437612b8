"""The tables: users, conversations, messages, function calls and reply leases as SQLModel models, with their enums."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, Text, UniqueConstraint
from sqlalchemy.ext.mutable import MutableDict
from sqlmodel import Field, SQLModel

__all__ = [
    "MAX_TITLE_CHARS",
    "SETTLED_STATUSES",
    "CallStatus",
    "Conversation",
    "ConversationLease",
    "FunctionCallRecord",
    "Message",
    "MessageRole",
    "SchemaMigration",
    "User",
    "new_id",
    "utcnow",
]


def utcnow() -> datetime:
    """Now, as an aware datetime in UTC."""
    return datetime.now(UTC)


def new_id() -> str:
    """A fresh id: 32 hexadecimal characters."""
    return uuid.uuid4().hex


class CallStatus(StrEnum):
    PROPOSED = "proposed"
    CONFIRMED = "confirmed"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"
    INTERRUPTED = "interrupted"
    SKIPPED = "skipped"  # the user wrote a new message instead of confirming; the model gets no result for it


# The status column is plain text with no CHECK constraint, so a new status needs no migration.
SETTLED_STATUSES = frozenset({
    CallStatus.SUCCEEDED, CallStatus.FAILED, CallStatus.REJECTED, CallStatus.INTERRUPTED, CallStatus.SKIPPED,
})


MAX_TITLE_CHARS = 200  # the length of a conversation's title column


class MessageRole(StrEnum):
    USER = "user"
    ASSISTANT = "assistant"
    FUNCTION_CALL = "function_call"
    FUNCTION_RESULT = "function_result"
    ERROR = "error"


def _json_column(nullable: bool = True) -> Any:
    return Field(default=None, sa_column=Column(MutableDict.as_mutable(JSON(none_as_null=True)), nullable=nullable))


class User(SQLModel, table=True):
    __tablename__ = "users"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True, max_length=200)
    role: str = Field(default="user", max_length=20)
    created_at: datetime = Field(default_factory=utcnow)


class Conversation(SQLModel, table=True):
    __tablename__ = "conversations"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    owner_id: int = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    title: str = Field(default="New conversation", max_length=MAX_TITLE_CHARS)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow, index=True)
    model_id: str | None = Field(default=None, max_length=300)
    prompt_style: str | None = Field(default=None, max_length=40)
    system_prompt: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    temperature: float | None = None
    max_new_tokens: int | None = None
    # Deleted by its owner: gone from their list, its messages and from prompts; kept for its calls' audit rows.
    deleted_at: datetime | None = None


class Message(SQLModel, table=True):
    __tablename__ = "messages"
    __table_args__ = (UniqueConstraint("conversation_id", "position"),)

    id: int | None = Field(default=None, primary_key=True)
    conversation_id: str = Field(foreign_key="conversations.id", index=True, ondelete="CASCADE", max_length=32)
    position: int
    role: str = Field(max_length=20)
    content: str = Field(sa_column=Column(Text, nullable=False))
    call_id: str | None = Field(default=None, max_length=32)
    extra: dict[str, Any] | None = _json_column()
    created_at: datetime = Field(default_factory=utcnow)


class FunctionCallRecord(SQLModel, table=True):
    __tablename__ = "function_calls"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    conversation_id: str = Field(foreign_key="conversations.id", index=True, ondelete="CASCADE", max_length=32)
    reply_id: str = Field(index=True, max_length=32)
    turn_id: str = Field(max_length=32)
    function_name: str = Field(index=True, max_length=200)
    proposed_arguments: dict[str, Any] | None = _json_column()
    edited_arguments: dict[str, Any] | None = _json_column()
    final_arguments: dict[str, Any] | None = _json_column()
    validation_errors: dict[str, Any] | None = _json_column()
    status: str = Field(default=CallStatus.PROPOSED, index=True, max_length=20)
    auto: bool = False
    result: dict[str, Any] | None = _json_column()
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    reject_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    confirmed_by: int | None = Field(default=None, foreign_key="users.id", ondelete="SET NULL")
    runner: str | None = Field(default=None, max_length=200)  # the Callcard instance that confirmed it
    created_at: datetime = Field(default_factory=utcnow, index=True)
    confirmed_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_ms: float | None = None
    # Where an imported call came from; such a call is history, never counted as run here and never runnable.
    imported_from: str | None = Field(default=None, max_length=300)
    # Argument path -> where its value came from (backend.core.provenance.Provenance as JSON), as proposed and edited.
    provenance: dict[str, Any] | None = _json_column()
    tool_source: str | None = Field(default=None, max_length=200)  # the tool's source when proposed ("MCP: time")


class ConversationLease(SQLModel, table=True):
    """Which reply holds a conversation, until when: one reply at a time, across every replica."""

    __tablename__ = "conversation_leases"

    conversation_id: str = Field(primary_key=True, foreign_key="conversations.id", ondelete="CASCADE", max_length=32)
    holder: str = Field(max_length=200)  # the replica's instance name and the reply's own id
    expires_at: datetime  # a holder that crashed stops renewing, and its lease is free from then on


class SchemaMigration(SQLModel, table=True):
    __tablename__ = "schema_migrations"

    name: str = Field(primary_key=True, max_length=200)
    applied_at: datetime = Field(default_factory=utcnow)
