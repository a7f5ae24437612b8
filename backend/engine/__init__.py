"""The conversation engine: user text -> model -> proposed calls -> a person's confirmation -> tool -> result -> model."""

from __future__ import annotations

from backend.engine.engine import (
    AssistantNote,
    CallProposed,
    CallUpdated,
    CallView,
    Done,
    Engine,
    EngineEvent,
    ErrorEvent,
    Limits,
    PreparingCall,
    ReplyText,
    Token,
    unanswered_message_ids,
)

__all__ = [
    "AssistantNote",
    "CallProposed",
    "CallUpdated",
    "CallView",
    "Done",
    "Engine",
    "EngineEvent",
    "ErrorEvent",
    "Limits",
    "PreparingCall",
    "ReplyText",
    "Token",
    "unanswered_message_ids",
]
