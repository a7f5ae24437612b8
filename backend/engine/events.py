"""What the engine reports: a card's view of one call, and the events a turn streams to the UI."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from backend.core.provenance import Provenance
from backend.core.specs import FunctionSpec
from backend.storage.tables import CallStatus

__all__ = [
    "AssistantNote",
    "CallProposed",
    "CallUpdated",
    "CallView",
    "Done",
    "EngineEvent",
    "ErrorEvent",
    "PreparingCall",
    "ReplyText",
    "Token",
]


class CallView(BaseModel):
    """What a card shows about one call."""

    id: str
    reply_id: str
    function: str
    description: str = ""
    status: CallStatus
    auto: bool = False
    proposed_arguments: dict[str, Any] = Field(default_factory=dict)
    arguments: dict[str, Any] = Field(default_factory=dict)
    edited: bool = False
    errors: dict[str, str] = Field(default_factory=dict)
    missing: list[str] = Field(default_factory=list)
    result: Any = None
    error: str | None = None
    reject_reason: str | None = None
    duration_ms: float | None = None
    spec: FunctionSpec | None = None
    server: str | None = None  # the MCP server that runs it, shown on the card
    warning: str | None = None  # what the card warns about before a person confirms (the server says it destroys data)
    sources: dict[str, Provenance] = Field(default_factory=dict)  # argument path -> where its value came from


class Token(BaseModel):
    """Visible text of the reply being streamed."""

    kind: Literal["token"] = "token"
    text: str


class PreparingCall(BaseModel):
    """The model has started writing a function call."""

    kind: Literal["preparing_call"] = "preparing_call"


class ReplyText(BaseModel):
    """The final prose of the reply just streamed (the calls removed); replaces the streamed text."""

    kind: Literal["reply_text"] = "reply_text"
    text: str


class CallProposed(BaseModel):
    kind: Literal["call_proposed"] = "call_proposed"
    call: CallView


class CallUpdated(BaseModel):
    kind: Literal["call_updated"] = "call_updated"
    call: CallView


class AssistantNote(BaseModel):
    """A message Callcard adds in the assistant's place, such as asking for missing information."""

    kind: Literal["assistant_note"] = "assistant_note"
    text: str


class ErrorEvent(BaseModel):
    kind: Literal["error"] = "error"
    message: str
    retryable: bool = False


class Done(BaseModel):
    """The engine has finished; `awaiting_confirmation` when cards wait for a person."""

    kind: Literal["done"] = "done"
    awaiting_confirmation: bool = False


EngineEvent = Token | PreparingCall | ReplyText | CallProposed | CallUpdated | AssistantNote | ErrorEvent | Done
