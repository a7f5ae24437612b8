"""An audit nobody can forge or erase: deleting keeps what ran, an import is history that never runs here."""

from __future__ import annotations

from datetime import timedelta

import pytest

from backend.engine import Engine
from backend.engine.audit import AuditFilters
from backend.engine.events import ErrorEvent
from backend.errors import NotFoundError
from backend.storage.store import Store
from backend.storage.tables import CallStatus, utcnow
from tests.backend.engine.test_audit import collect, engine, propose, store  # noqa: F401  (fixtures)
from tests.fake_tgi import FakeTGI


def test_deleting_a_conversation_keeps_its_calls_in_the_audit(engine: Engine, store: Store, fake_tgi: FakeTGI) -> None:
    ran = propose(engine, fake_tgi, "ann", "Where is A1005?", "lookup_order", {"order_number": "A1005"})
    fake_tgi.reply("It has shipped.")
    collect(engine.confirm(ran, None, "ann"))
    conversation_id = store.call(ran).conversation_id
    fake_tgi.reply('{"function": "cancel_order", "arguments": {"order_number": "A1005", "reason": "late"}}')
    collect(engine.send(conversation_id, "ann", "Cancel A1005, it is late"))
    waiting = next(c for c in engine.calls(conversation_id, "ann") if c.status == CallStatus.PROPOSED)

    engine.delete_conversation(conversation_id, "ann")

    assert engine.list_conversations("ann") == []
    with pytest.raises(NotFoundError):
        engine.messages(conversation_id, "ann")
    assert store.messages(conversation_id) == []  # gone from prompts and from view
    entries = {e.call_id: e for e in engine.audit("ann")}
    assert entries[ran].status == CallStatus.SUCCEEDED and entries[ran].arguments == {"order_number": "A1005"}
    assert entries[ran].conversation_deleted and not entries[ran].can_open
    # The call that waited can never run now.
    assert entries[waiting.id].status == CallStatus.SKIPPED
    with pytest.raises(NotFoundError):
        collect(engine.confirm(waiting.id, None, "ann"))
    lead_view = engine.audit("lead", AuditFilters(user="ann"), sees_everyone=True)
    assert {e.call_id for e in lead_view} == {ran, waiting.id}


def test_an_imported_call_is_history_marked_with_its_source_and_never_runs(
    engine: Engine, store: Store, fake_tgi: FakeTGI,
) -> None:
    proposed = propose(engine, fake_tgi, "ann", "Where is A1001?", "lookup_order", {"order_number": "A1001"})
    exported = engine.export_conversation(store.call(proposed).conversation_id, "ann")
    # A hand-written export: a cancellation that never ran here, claiming success, confirmation and a runner.
    forged = {
        **exported["calls"][0], "id": "f" * 32, "function_name": "cancel_order", "status": "succeeded",
        "result": {"value": {"cancelled": True}}, "final_arguments": {"order_number": "A1001", "reason": "x"},
        "runner": store.instance, "confirmed_by": 1, "auto": True,
    }
    exported["calls"].append(forged)

    imported = engine.import_conversation(exported, "bob")

    calls = {c.function: c for c in engine.calls(imported.id, "bob")}
    assert calls["lookup_order"].status == CallStatus.SKIPPED  # imported as proposed: settled, not runnable
    events = collect(engine.confirm(calls["lookup_order"].id, None, "bob"))
    assert any(isinstance(e, ErrorEvent) for e in events) and fake_tgi.generations[1:] == []
    entries = {e.function: e for e in engine.audit("bob")}
    for entry in entries.values():
        assert entry.imported_from is not None and exported["conversation"]["id"] in entry.imported_from
        assert not entry.auto
    assert entries["cancel_order"].status == CallStatus.SUCCEEDED  # what the file says, marked as not run here
    for call_id in (calls["lookup_order"].id, calls["cancel_order"].id):
        record = store.call(call_id)
        assert record.runner is None and record.confirmed_by is None


def test_retention_purges_old_conversations_with_their_audit_rows(engine: Engine, store: Store, fake_tgi: FakeTGI) -> None:
    old = propose(engine, fake_tgi, "ann", "Where is A1001?", "lookup_order", {"order_number": "A1001"})
    kept = propose(engine, fake_tgi, "ann", "Where is A1002?", "lookup_order", {"order_number": "A1002"})
    old_conversation = store.call(old).conversation_id
    store.update_conversation(old_conversation, user=store.user("ann"), title="old")  # updated now...
    with store.engine.begin() as connection:  # ...then aged past the limit
        from backend.storage.tables import Conversation
        table = Conversation.__table__  # type: ignore[attr-defined]
        connection.execute(table.update().where(table.c.id == old_conversation).values(
            updated_at=utcnow() - timedelta(days=40)))

    assert store.purge_older_than(utcnow() - timedelta(days=30)) == 1

    assert [e.call_id for e in engine.audit("ann")] == [kept]
    assert store.messages(old_conversation) == []
