"""The audit through the engine: a real SQLite file, the fake TGI server, the support desk's tools.

Who sees whose calls is the engine's rule: a support lead everyone's (and may narrow them to one user), anyone else
only their own; a row opens its conversation only for the person who had it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backend.engine import Engine
from backend.engine.audit import AuditEntry, AuditFilters
from backend.engine.events import CallProposed
from backend.models.protocol import GenerationParams
from backend.models.tgi import TGIBackend
from backend.storage.store import Store
from backend.storage.tables import CallStatus
from backend.tools import SupportDesk, ToolRegistry, support_desk_tools
from tests.fake_tgi import FakeTGI


def collect(events: Any) -> list[Any]:
    async def run() -> list[Any]:
        return [event async for event in events]

    return asyncio.run(run())


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(f"sqlite:///{tmp_path / 'callcard.db'}")
    yield store
    store.close()


@pytest.fixture
def engine(store: Store, tmp_path: Path, fake_tgi: FakeTGI) -> Iterator[Engine]:
    desk = SupportDesk(tmp_path / "desk")
    backend = TGIBackend(fake_tgi.url, call_mode="parse", retries=0, timeout=5)
    yield Engine(
        store=store, backend=backend, registry=ToolRegistry(support_desk_tools(desk)),
        params=GenerationParams(max_new_tokens=200),
    )
    desk.close()


def propose(engine: Engine, fake_tgi: FakeTGI, user: str, text: str, function: str, arguments: dict[str, Any]) -> str:
    """`user` asks in a conversation of their own and the model proposes one call; returns the call's id."""
    fake_tgi.reply(json.dumps({"function": function, "arguments": arguments}))
    conversation = engine.create_conversation(user)
    (proposed,) = [e for e in collect(engine.send(conversation.id, user, text)) if isinstance(e, CallProposed)]
    return proposed.call.id


@pytest.fixture
def calls(engine: Engine, fake_tgi: FakeTGI) -> dict[str, str]:
    """ann's lookup, run with an edited order number; bob's cancellation, rejected; carol's (a lead's) lookup, waiting."""
    ann = propose(engine, fake_tgi, "ann", "Where is A1002?", "lookup_order", {"order_number": "A1002"})
    fake_tgi.reply("A1001 has been delivered.")
    collect(engine.confirm(ann, {"order_number": "A1001"}, "ann"))
    bob = propose(engine, fake_tgi, "bob", "Cancel A1001", "cancel_order", {"order_number": "A1001", "reason": "late"})
    fake_tgi.reply("I left the order as it is.")
    collect(engine.reject(bob, "bob", "changed my mind"))
    carol = propose(engine, fake_tgi, "carol", "Where is A1003?", "lookup_order", {"order_number": "A1003"})
    return {"ann": ann, "bob": bob, "carol": carol}


def by_call(entries: list[AuditEntry]) -> dict[str, AuditEntry]:
    return {entry.call_id: entry for entry in entries}


def test_a_lead_sees_everyones_calls_and_opens_only_their_own(engine: Engine, calls: dict[str, str]) -> None:
    entries = by_call(engine.audit("carol", sees_everyone=True))

    assert set(entries) == set(calls.values())
    assert {entry.user for entry in entries.values()} == {"ann", "bob", "carol"}
    assert [call for call, entry in entries.items() if entry.can_open] == [calls["carol"]]


def test_a_lead_narrows_the_audit_to_one_user_status_or_function(engine: Engine, calls: dict[str, str]) -> None:
    def audited(**filters: Any) -> set[str]:
        return {entry.call_id for entry in engine.audit("carol", AuditFilters(**filters), sees_everyone=True)}

    assert audited(user="ann") == {calls["ann"]}
    assert audited(user="  bob ") == {calls["bob"]}
    assert audited(user="nobody") == set()
    assert audited(status="rejected") == {calls["bob"]}
    assert audited(function="lookup_order") == {calls["ann"], calls["carol"]}
    assert audited(status="", function="", user="") == set(calls.values()), "blank filters mean any"


def test_anyone_else_sees_only_their_own_calls_whatever_user_they_ask_for(engine: Engine, calls: dict[str, str]) -> None:
    assert [e.call_id for e in engine.audit("bob")] == [calls["bob"]]
    assert [e.call_id for e in engine.audit("bob", AuditFilters(user="ann"))] == [calls["bob"]]
    assert engine.audit("bob", AuditFilters(function="lookup_order")) == []
    assert engine.audit("dave") == [], "someone with no conversations sees nothing"


def test_an_entry_tells_what_ran_what_was_proposed_and_what_came_back(
    engine: Engine, store: Store, calls: dict[str, str],
) -> None:
    entries = by_call(engine.audit("ann") + engine.audit("bob") + engine.audit("carol"))

    ann = entries[calls["ann"]]
    conversation = engine.list_conversations("ann")[0]
    assert (ann.conversation_id, ann.conversation_title) == (conversation.id, "Where is A1002?")
    assert ann.can_open and ann.user == "ann" and ann.function == "lookup_order"
    assert ann.status == CallStatus.SUCCEEDED and ann.edited and not ann.auto
    assert ann.proposed_arguments == {"order_number": "A1002"} and ann.arguments == {"order_number": "A1001"}
    assert ann.result["order_number"] == "A1001"
    record = store.call(calls["ann"])
    assert record.finished_at is not None and record.duration_ms is not None
    assert (ann.decided_at, ann.duration_ms) == (record.finished_at, record.duration_ms)

    bob = entries[calls["bob"]]
    assert bob.status == CallStatus.REJECTED and bob.reject_reason == "changed my mind"
    assert bob.arguments is None and bob.result is None and not bob.edited

    carol = entries[calls["carol"]]
    assert carol.status == CallStatus.PROPOSED and carol.decided_at is None and carol.duration_ms is None
