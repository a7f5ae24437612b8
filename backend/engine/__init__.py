"""The conversation engine: user text -> model -> proposed calls -> a person's confirmation -> tool -> result -> model.

`from backend.engine import Engine`; what it reports (events, card views) comes from `backend.engine.events`, the
audit's filters and rows (`AuditFilters`, `AuditEntry`) from `backend.engine.audit`.
"""

from __future__ import annotations

from backend.engine.engine import Engine, Limits

__all__ = ["Engine", "Limits"]
