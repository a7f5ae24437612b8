"""Run by test_engine_crash.py in a child process: confirm a call whose tool hangs, until the test kills us."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from backend.engine import Engine
from backend.models.tgi import TGIBackend
from backend.storage.store import Store
from backend.tools import ToolRegistry, tool_from_function


def main(database: str, model_url: str, call_id: str, marker: str) -> None:
    def slow_refund(order_number: str, amount: float) -> str:
        """Refund an amount on an order."""
        with Path(marker).open("a") as runs:
            runs.write("started\n")
        time.sleep(60)
        return "refunded"

    engine = Engine(
        store=Store(database),
        backend=TGIBackend(model_url, call_mode="parse", retries=0),
        registry=ToolRegistry([tool_from_function(slow_refund, source="test")]),
    )

    async def confirm() -> None:
        async for _ in engine.confirm(call_id, None, "ann"):
            pass

    asyncio.run(confirm())


if __name__ == "__main__":
    main(*sys.argv[1:])
