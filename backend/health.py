"""Health: is the app up, does the database answer, can the model backend be reached, which MCP servers are up."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from backend.errors import CallcardError
from backend.models.protocol import ModelBackend
from backend.storage.store import Store

if TYPE_CHECKING:
    from backend.tools.mcp_servers import McpServers

__all__ = ["HealthReport", "check_health"]

log = logging.getLogger(__name__)


class HealthReport(BaseModel):
    """What `/healthz` answers; `ok` only when the database and the model both answer.

    MCP servers are detail, not health: Callcard works without them, and one that is down only fails its own
    calls, so `mcp_servers` lists each one's state and reason without changing `ok`.
    """

    ok: bool
    database: bool
    model: bool
    backend: str | None = None
    model_id: str | None = None
    detail: str | None = None
    mcp_servers: list[dict[str, Any]] = []  # ServerStatus, as JSON


async def check_health(
    store: Store, backend: ModelBackend, *, timeout_s: float = 5.0, mcp_servers: McpServers | None = None
) -> HealthReport:
    """Ask the database and the model backend, each within `timeout_s`; report the MCP servers' states."""
    database = await asyncio.to_thread(store.ping)
    model = False
    backend_kind = model_id = detail = None
    try:
        async with asyncio.timeout(timeout_s):
            info = await backend.info()
            backend_kind, model_id = info.backend, info.model_id
            model = await backend.health()
    except (CallcardError, TimeoutError) as error:
        detail = str(error) or "The model backend did not answer in time."
    except Exception as error:  # a health probe must answer, whatever the backend does
        log.exception("health check of the model backend failed")
        detail = f"{type(error).__name__}: {error}"
    servers = [status.model_dump(mode="json") for status in mcp_servers.status()] if mcp_servers else []
    return HealthReport(
        ok=database and model, database=database, model=model, backend=backend_kind, model_id=model_id, detail=detail,
        mcp_servers=servers,
    )
