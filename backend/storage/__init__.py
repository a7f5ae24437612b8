"""Storage: the tables, their ordered migrations, and the Store that reads and writes them."""

from __future__ import annotations

from backend.storage.store import (
    SETTLED_STATUSES,
    CallStatus,
    Conversation,
    FunctionCallRecord,
    Message,
    MessageRole,
    Store,
    User,
    new_id,
    utcnow,
)

__all__ = [
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
