"""Each call step writes its status and its result message in one transaction: when the message cannot be stored,
the status does not change either. A trigger in the database refuses the message, as a crash between the two would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from backend.core.calls import FunctionCall
from backend.engine.steps import CallSteps
from backend.storage.store import Store
from backend.storage.tables import CallStatus, FunctionCallRecord, MessageRole
from backend.tools import ToolRegistry, tool_from_function

# Whatever the database, one trigger refuses every function_result message.
_REFUSE_RESULTS = {
    "sqlite": [
        (
            "CREATE TRIGGER refuse_results BEFORE INSERT ON messages WHEN NEW.role = 'function_result' "
            "BEGIN SELECT RAISE(ABORT, 'results refused'); END"
        ),
    ],
    "postgresql": [
        (
            "CREATE FUNCTION refuse_results() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF NEW.role = 'function_result' THEN RAISE EXCEPTION 'results refused'; END IF; RETURN NEW; END $$"
        ),
        "CREATE TRIGGER refuse_results BEFORE INSERT ON messages FOR EACH ROW EXECUTE FUNCTION refuse_results()",
    ],
}


def lookup_order(order_number: str) -> dict[str, str]:
    """Look up an order."""
    return {"order_number": order_number, "status": "delivered"}


def explode(order_number: str) -> str:
    """A tool that always fails."""
    raise RuntimeError("warehouse database is down")


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    store = Store(database_url)
    yield store
    store.close()


@pytest.fixture
def steps(store: Store) -> CallSteps:
    registry = ToolRegistry([tool_from_function(lookup_order, source="test"), tool_from_function(explode, source="test")])
    return CallSteps(store=store, registry=registry)


def refuse_results(store: Store) -> None:
    with store.engine.begin() as connection:
        for statement in _REFUSE_RESULTS[store.engine.dialect.name]:
            connection.execute(text(statement))


def propose(steps: CallSteps, function: str) -> FunctionCallRecord:
    conversation = steps.store.create_conversation(owner=steps.store.user("ann"))
    call = FunctionCall(name=function, arguments={"order_number": "A1001"})
    record, _ = steps.propose(conversation.id, call, "reply", "turn", steps.registry.specs())
    return record


def confirmed(steps: CallSteps, function: str) -> FunctionCallRecord:
    record = propose(steps, function)
    owner = steps.store.user("ann")
    return steps.confirm(record, owner=owner, arguments={"order_number": "A1001"}, normalised={"order_number": "A1001"})


def roles(store: Store, record: FunctionCallRecord) -> list[str]:
    return [m.role for m in store.messages(record.conversation_id)]


def collect(events: Any) -> list[Any]:
    async def run() -> list[Any]:
        return [event async for event in events]

    return asyncio.run(run())


@pytest.mark.parametrize("function", ["lookup_order", "explode"])
def test_a_call_whose_result_cannot_be_stored_is_not_settled(steps: CallSteps, store: Store, function: str) -> None:
    record = confirmed(steps, function)
    refuse_results(store)

    with pytest.raises(DBAPIError, match="results refused"):
        collect(steps.execute(record))

    assert store.call(record.id).status == CallStatus.RUNNING, "still unsettled: a restart marks it interrupted"
    assert roles(store, record) == [MessageRole.FUNCTION_CALL]


def test_a_stop_whose_result_cannot_be_stored_does_not_interrupt_the_call(steps: CallSteps, store: Store) -> None:
    record = confirmed(steps, "lookup_order")

    async def stop_before_the_tool_starts() -> None:
        events = steps.execute(record)
        await anext(events)  # the call is running now
        refuse_results(store)
        await events.aclose()

    with pytest.raises(DBAPIError, match="results refused"):
        asyncio.run(stop_before_the_tool_starts())

    assert store.call(record.id).status == CallStatus.RUNNING
    assert roles(store, record) == [MessageRole.FUNCTION_CALL]


def test_a_rejection_whose_result_cannot_be_stored_leaves_the_call_proposed(steps: CallSteps, store: Store) -> None:
    record = propose(steps, "lookup_order")
    refuse_results(store)

    with pytest.raises(DBAPIError, match="results refused"):
        steps.reject(record.id, owner=store.user("ann"), reason="changed my mind")

    assert store.call(record.id).status == CallStatus.PROPOSED
    assert roles(store, record) == [MessageRole.FUNCTION_CALL]


def test_an_unknown_function_is_stored_failed_with_its_result_or_not_at_all(steps: CallSteps, store: Store) -> None:
    stored = propose(steps, "no_such_function")
    assert store.call(stored.id).status == CallStatus.FAILED
    assert roles(store, stored) == [MessageRole.FUNCTION_CALL, MessageRole.FUNCTION_RESULT]

    refuse_results(store)
    conversation = store.create_conversation(owner=store.user("ann"))
    call = FunctionCall(name="no_such_function", arguments={})
    with pytest.raises(DBAPIError, match="results refused"):
        steps.propose(conversation.id, call, "reply", "turn", steps.registry.specs())

    assert store.calls(conversation_id=conversation.id) == [] and store.messages(conversation.id) == []
