"""MCP tools through the engine: real servers started from a configuration file, a real SQLite file, the fake TGI.

The reference server `mcp-server-time` (from PyPI) runs a call a person edited; the test server (tests/mcp_server.py)
crashes in the middle of one, which settles the call interrupted, never failed, and sent once.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backend.engine import Engine
from backend.engine.events import CallProposed, CallUpdated, Done, Token
from backend.models.protocol import GenerationParams
from backend.models.tgi import TGIBackend
from backend.storage.store import Store
from backend.storage.tables import CallStatus, MessageRole
from backend.tools import build_registry
from backend.tools.mcp_servers import McpServers
from tests.fake_tgi import FakeTGI

ROOT = Path(__file__).resolve().parents[3]
TIME_SERVER = {"command": sys.executable, "args": ["-m", "mcp_server_time", "--local-timezone", "UTC"]}
TEST_SERVER = {"command": sys.executable, "args": ["-m", "tests.mcp_server"], "cwd": str(ROOT)}


def collect(events: Any) -> list[Any]:
    async def run() -> list[Any]:
        return [event async for event in events]

    return asyncio.run(run())


def of(kind: type, events: list[Any]) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


@pytest.fixture
def engine(tmp_path: Path, fake_tgi: FakeTGI) -> Iterator[Engine]:
    """An engine whose only tools are those of the two servers, started from an mcpServers file."""
    config = tmp_path / "mcp.json"
    # A long backoff: a crashed server stays down, so nothing can quietly run a call again.
    servers_file = {"mcpServers": {"time": TIME_SERVER, "test": {**TEST_SERVER, "timeout": 30}}}
    config.write_text(json.dumps(servers_file), encoding="utf-8")
    servers = McpServers.from_file(config, backoff=(600, 600))
    store = Store(f"sqlite:///{tmp_path / 'callcard.db'}")
    try:
        registry = build_registry(examples=False, mcp_servers=servers)
        backend = TGIBackend(fake_tgi.url, call_mode="parse", retries=0, timeout=30)
        yield Engine(store=store, backend=backend, registry=registry, params=GenerationParams(max_new_tokens=200))
    finally:
        servers.close()
        store.close()


def test_a_time_call_edited_by_a_person_runs_on_the_server_and_the_model_answers(
    engine: Engine, fake_tgi: FakeTGI,
) -> None:
    fake_tgi.reply(json.dumps({"function": "get_current_time", "arguments": {"timezone": "UTC"}}))
    conversation = engine.create_conversation("ann")

    events = collect(engine.send(conversation.id, "ann", "What time is it in Paris?"))

    (proposed,) = of(CallProposed, events)
    card = proposed.call
    assert (card.function, card.status) == ("get_current_time", CallStatus.PROPOSED)
    assert card.arguments == {"timezone": "UTC"}
    assert card.server == "time" and card.warning is None  # the card says where it runs; read-only: no warning
    assert [a.name for a in card.spec.arguments] == ["timezone"]
    assert events[-1] == Done(awaiting_confirmation=True)

    fake_tgi.reply("It is a quarter past ten in Paris.")
    events = collect(engine.confirm(card.id, {"timezone": "Europe/Paris"}, "ann"))

    updates = of(CallUpdated, events)
    assert [u.call.status for u in updates] == [CallStatus.RUNNING, CallStatus.SUCCEEDED]
    result = updates[-1].call.result
    assert result["timezone"] == "Europe/Paris" and updates[-1].call.edited
    assert "".join(t.text for t in of(Token, events)) == "It is a quarter past ten in Paris."
    assert events[-1] == Done()
    # The server's result reached the model, as the result of the call as the person confirmed it.
    prompt = fake_tgi.generations[-1].prompt
    assert '"timezone": "Europe/Paris"' in prompt and result["datetime"] in prompt


def test_a_server_that_crashes_mid_call_leaves_the_call_interrupted_with_its_result(
    engine: Engine, fake_tgi: FakeTGI, tmp_path: Path,
) -> None:
    marker = tmp_path / "crashes.txt"
    fake_tgi.reply(json.dumps({"function": "crash", "arguments": {"marker": str(marker)}}))
    conversation = engine.create_conversation("ann")
    (proposed,) = of(CallProposed, collect(engine.send(conversation.id, "ann", "Run the crash tool")))

    fake_tgi.reply("The server stopped during that call, so I cannot say whether it ran.")
    events = collect(engine.confirm(proposed.call.id, None, "ann"))

    updates = of(CallUpdated, events)
    assert [u.call.status for u in updates] == [CallStatus.RUNNING, CallStatus.INTERRUPTED]
    assert "may or may not have taken effect" in (updates[-1].call.error or "")
    record = engine.store.call(proposed.call.id)
    assert record.status == CallStatus.INTERRUPTED and record.finished_at is not None
    # Settled with the result the model reads, and the model was told and answered.
    results = [m for m in engine.store.messages(conversation.id) if m.role == MessageRole.FUNCTION_RESULT]
    assert [m.call_id for m in results] == [record.id]
    assert "may or may not have taken effect" in json.loads(results[0].content)["error"]
    assert "may or may not have taken effect" in fake_tgi.generations[-1].prompt
    assert "".join(t.text for t in of(Token, events)).startswith("The server stopped")
    assert marker.read_text(encoding="utf-8") == "crashed\n"  # sent exactly once
