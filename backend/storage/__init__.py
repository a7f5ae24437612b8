"""Storage: the tables, their ordered migrations, and the Store that reads and writes them."""

from __future__ import annotations

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
    new_id,
    utcnow,
)

__all__ = [
    "MAX_TITLE_CHARS",
    "SETTLED_STATUSES",
    "CallStatus",
    "Conversation",
    "FunctionCallRecord",
    "Message",
    "MessageRole",
    "Store",
    "User",
    "new_id",
    "utcnow",
]
