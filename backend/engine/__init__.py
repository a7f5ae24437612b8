"""The conversation engine: user text -> model -> proposed calls -> a person's confirmation -> tool -> result -> model.

Use it as `from backend.engine import Engine, ...`: the events and views it reports come from here too.
"""

from __future__ import annotations

from backend.engine.engine import Engine, Limits
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
from backend.engine.turns import unanswered_message_ids

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
