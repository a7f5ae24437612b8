"""A process killed while a confirmed call runs: after a restart the call is `interrupted`, never re-run silently."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from backend.engine import Engine
from backend.engine.events import CallProposed, ErrorEvent
from backend.models.tgi import TGIBackend
from backend.storage.store import Store
from backend.storage.tables import CallStatus
from backend.tools import ToolRegistry, tool_from_function
from tests.fake_tgi import FakeTGI

ROOT = Path(__file__).resolve().parents[3]


def _refund_spec_tool():
    def slow_refund(order_number: str, amount: float) -> str:
        """Refund an amount on an order."""
        raise AssertionError("the parent process never runs the tool")

    return tool_from_function(slow_refund, source="test")


def _collect(events):
    async def run():
        return [event async for event in events]

    return asyncio.run(run())


def test_a_call_running_when_the_process_died_is_interrupted_after_restart(tmp_path: Path, fake_tgi: FakeTGI) -> None:
    database = f"sqlite:///{tmp_path / 'callcard.db'}"
    engine = Engine(
        store=Store(database),
        backend=TGIBackend(fake_tgi.url, call_mode="parse", retries=0),
        registry=ToolRegistry([_refund_spec_tool()]),
    )
    fake_tgi.reply(json.dumps({"function": "slow_refund", "arguments": {"order_number": "A1001", "amount": 5}}))
    conversation = engine.create_conversation("ann")
    (proposed,) = [e for e in _collect(engine.send(conversation.id, "ann", "Refund 5")) if isinstance(e, CallProposed)]
    engine.store.close()

    marker = tmp_path / "runs.txt"
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.backend.engine.crash_worker", database, fake_tgi.url, proposed.call.id, str(marker)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert child.poll() is None, "the worker died before running the tool"
            assert time.monotonic() < deadline, "the worker never started the tool"
            time.sleep(0.05)
        assert Store(database).call(proposed.call.id).status == CallStatus.RUNNING
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()

    restarted = Store(database)  # what app.py does at start-up
    interrupted = restarted.interrupt_unfinished_calls()

    assert [r.id for r in interrupted] == [proposed.call.id]
    record = restarted.call(proposed.call.id)
    assert record.status == CallStatus.INTERRUPTED
    assert "not re-run" in record.error
    engine = Engine(
        store=restarted, backend=TGIBackend(fake_tgi.url, call_mode="parse"), registry=ToolRegistry([_refund_spec_tool()])
    )
    events = _collect(engine.confirm(proposed.call.id, None, "ann"))
    assert isinstance(events[0], ErrorEvent) and "interrupted" in events[0].message
    assert marker.read_text().count("started") == 1, "the tool ran once and was never re-run"
    assert engine.calls(conversation.id, "ann")[0].status == CallStatus.INTERRUPTED
