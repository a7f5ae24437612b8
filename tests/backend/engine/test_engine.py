"""The engine end to end: a real SQLite file, the fake TGI server on a real socket, real tools."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backend.core.prompts import FUNCTION_RESULT_TEMPLATE
from backend.engine import Engine, Limits
from backend.engine.events import (
    AssistantNote,
    CallProposed,
    CallUpdated,
    Done,
    ErrorEvent,
    PreparingCall,
    ReplyText,
    Token,
)
from backend.errors import InvalidInputError, NotFoundError
from backend.models.protocol import GenerationParams
from backend.models.tgi import TGIBackend
from backend.storage.store import Store
from backend.storage.tables import CallStatus, MessageRole
from backend.tools import SupportDesk, ToolPolicy, ToolRegistry, support_desk_tools, tool_from_function
from tests.fake_tgi import FakeTGI

LOOKUP = {"function": "lookup_order", "arguments": {"order_number": "A1002"}}


def collect(events: Any) -> list[Any]:
    async def run() -> list[Any]:
        return [event async for event in events]

    return asyncio.run(run())


def of(kind: type, events: list[Any]) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


class Counter:
    """A test tool that records each run."""

    def __init__(self) -> None:
        self.runs: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def slow_refund(self, order_number: str, amount: float) -> dict[str, Any]:
        """Refund an amount on an order."""
        with self.lock:
            self.runs.append({"order_number": order_number, "amount": amount})
        time.sleep(0.3)
        return {"refunded": amount, "order_number": order_number}

    def explode(self, order_number: str) -> str:
        """A tool that always fails."""
        raise RuntimeError("warehouse database is down")


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[SupportDesk]:
    desk = SupportDesk(tmp_path / "desk")
    yield desk
    desk.close()


@pytest.fixture
def counter() -> Counter:
    return Counter()


@pytest.fixture
def registry(desk: SupportDesk, counter: Counter) -> ToolRegistry:
    registry = ToolRegistry(support_desk_tools(desk))
    registry.add(tool_from_function(counter.slow_refund, source="test"))
    registry.add(tool_from_function(counter.explode, source="test"))
    return registry


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    store = Store(database_url)
    yield store
    store.close()


@pytest.fixture
def engine(store: Store, registry: ToolRegistry, fake_tgi: FakeTGI) -> Engine:
    backend = TGIBackend(fake_tgi.url, call_mode="parse", retries=0, timeout=5)
    return Engine(store=store, backend=backend, registry=registry, params=GenerationParams(max_new_tokens=200))


def test_full_turn_with_an_edited_and_confirmed_call(engine: Engine, fake_tgi: FakeTGI, store: Store) -> None:
    fake_tgi.reply(json.dumps(LOOKUP))
    conversation = engine.create_conversation("ann")

    events = collect(engine.send(conversation.id, "ann", "Where is my order A1002?"))

    assert of(PreparingCall, events), "the UI must be told a call is being prepared"
    assert "".join(t.text for t in of(Token, events)) == "", "the call's JSON is never streamed as text"
    (proposed,) = of(CallProposed, events)
    assert proposed.call.function == "lookup_order"
    assert proposed.call.status == CallStatus.PROPOSED
    assert proposed.call.arguments == {"order_number": "A1002"}
    assert events[-1] == Done(awaiting_confirmation=True)
    assert len(fake_tgi.generations) == 1, "nothing runs and the model is not asked again before confirmation"

    fake_tgi.reply("Order A1001 has been delivered.")
    events = collect(engine.confirm(proposed.call.id, {"order_number": "a1001"}, "ann"))

    statuses = [e.call.status for e in of(CallUpdated, events)]
    assert statuses == [CallStatus.RUNNING, CallStatus.SUCCEEDED]
    finished = of(CallUpdated, events)[-1].call
    assert finished.result["order_number"] == "A1001"
    assert finished.edited
    assert "".join(t.text for t in of(Token, events)) == "Order A1001 has been delivered."
    assert events[-1] == Done()

    record = store.calls(conversation_id=conversation.id)[0]
    assert record.proposed_arguments == {"order_number": "A1002"}
    assert record.edited_arguments == {"order_number": "a1001"}
    assert record.final_arguments == {"order_number": "a1001"}
    assert record.confirmed_by == store.user("ann").id
    assert record.duration_ms is not None and record.duration_ms >= 0
    roles = [m.role for m in store.messages(conversation.id)]
    assert roles == ["user", "function_call", "function_result", "assistant"]

    second_prompt = fake_tgi.generations[-1].prompt
    assert '{"function": "lookup_order", "arguments": {"order_number": "a1001"}}' in second_prompt
    assert FUNCTION_RESULT_TEMPLATE.split("{result}")[0] in second_prompt
    assert '"A1001"' in second_prompt.split(FUNCTION_RESULT_TEMPLATE.split("{result}")[0])[1]


def test_a_second_message_while_the_model_answers_is_refused_and_not_stored(
    engine: Engine, fake_tgi: FakeTGI, store: Store,
) -> None:
    conversation = engine.create_conversation("ann")
    fake_tgi.reply("A slow and careful answer, word after word after word.", token_delay=0.05)

    async def run() -> tuple[list[Any], list[Any]]:
        first = engine.send(conversation.id, "ann", "First question")
        started = [await anext(first)]  # the first token: the reply is streaming now
        second = [event async for event in engine.send(conversation.id, "ann", "Second question")]
        return started + [event async for event in first], second

    first, second = asyncio.run(run())
    assert [e.message for e in of(ErrorEvent, second)] == [
        "The model is still answering in this conversation: wait for its answer, then send again."
    ]
    assert not of(ErrorEvent, first) and "".join(e.text for e in of(Token, first)).startswith("A slow")
    contents = [m.content for m in store.messages(conversation.id)]
    assert contents[0] == "First question" and "Second question" not in contents
    # Once the answer is in, the conversation takes messages again.
    fake_tgi.reply("Now the second.")
    assert "".join(e.text for e in of(Token, collect(engine.send(conversation.id, "ann", "Second question")))) == "Now the second."


def test_rejection_is_told_to_the_model_with_the_reason(engine: Engine, fake_tgi: FakeTGI, store: Store) -> None:
    fake_tgi.reply(json.dumps({"function": "cancel_order", "arguments": {"order_number": "A1001", "reason": "late"}}))
    conversation = engine.create_conversation("ann")
    (proposed,) = of(CallProposed, collect(engine.send(conversation.id, "ann", "Cancel A1001, it is late")))

    fake_tgi.reply("Understood, I did not cancel the order.")
    events = collect(engine.reject(proposed.call.id, "ann", "I changed my mind"))

    assert of(CallUpdated, events)[0].call.status == CallStatus.REJECTED
    assert "".join(t.text for t in of(Token, events)) == "Understood, I did not cancel the order."
    prompt = fake_tgi.generations[-1].prompt
    assert "The user declined this call." in prompt and "I changed my mind" in prompt
    assert store.calls(conversation_id=conversation.id)[0].reject_reason == "I changed my mind"
    assert store.calls(conversation_id=conversation.id)[0].final_arguments is None


def test_missing_arguments_are_asked_for_and_nothing_runs(engine: Engine, fake_tgi: FakeTGI, store: Store) -> None:
    fake_tgi.reply(json.dumps({"function": "lookup_order", "arguments": {}}))
    conversation = engine.create_conversation("ann")

    events = collect(engine.send(conversation.id, "ann", "Where is my order?"))

    (proposed,) = of(CallProposed, events)
    assert proposed.call.missing == ["order_number"]
    assert "order_number" in proposed.call.errors
    (note,) = of(AssistantNote, events)
    assert "order number" in note.text
    assert events[-1] == Done(awaiting_confirmation=True)

    events = collect(engine.confirm(proposed.call.id, {}, "ann"))
    assert of(ErrorEvent, events) and "order_number" in of(ErrorEvent, events)[0].message
    assert store.call(proposed.call.id).status == CallStatus.PROPOSED, "an invalid confirmation changes nothing"

    fake_tgi.reply("It is on its way.")
    events = collect(engine.confirm(proposed.call.id, {"order_number": "A1002"}, "ann"))
    assert store.call(proposed.call.id).status == CallStatus.SUCCEEDED
    assert events[-1] == Done()


def test_a_failing_tool_becomes_a_failed_result_the_model_hears_about(
    engine: Engine, fake_tgi: FakeTGI, store: Store
) -> None:
    fake_tgi.reply(json.dumps({"function": "explode", "arguments": {"order_number": "A1001"}}))
    conversation = engine.create_conversation("ann")
    (proposed,) = of(CallProposed, collect(engine.send(conversation.id, "ann", "Try the broken tool")))

    fake_tgi.reply("Sorry, the warehouse system is down.")
    events = collect(engine.confirm(proposed.call.id, None, "ann"))

    failed = of(CallUpdated, events)[-1].call
    assert failed.status == CallStatus.FAILED
    assert "warehouse database is down" in failed.error
    assert "warehouse database is down" in fake_tgi.generations[-1].prompt
    assert "".join(t.text for t in of(Token, events)) == "Sorry, the warehouse system is down."


def test_a_model_failing_mid_stream_keeps_the_message_and_can_be_retried(
    engine: Engine, fake_tgi: FakeTGI, store: Store
) -> None:
    fake_tgi.fail_in_stream(3, "CUDA out of memory")
    conversation = engine.create_conversation("ann")

    events = collect(engine.send(conversation.id, "ann", "Hello there"))

    (error,) = of(ErrorEvent, events)
    assert error.retryable
    messages = store.messages(conversation.id)
    assert [m.role for m in messages] == ["user", "error"]
    assert messages[0].content == "Hello there"

    fake_tgi.reply("Hello! How can I help?")
    events = collect(engine.retry(conversation.id, "ann"))
    assert "".join(t.text for t in of(Token, events)) == "Hello! How can I help?"
    assert [m.role for m in store.messages(conversation.id)] == ["user", "error", "assistant"]
    assert "Hello there" in fake_tgi.generations[-1].prompt
    assert "CUDA" not in fake_tgi.generations[-1].prompt, "errors never go into the prompt"


def test_a_refused_connection_is_a_clear_error_and_nothing_is_lost(store: Store, registry: ToolRegistry) -> None:
    from tests.fake_tgi import unused_port

    backend = TGIBackend(f"http://127.0.0.1:{unused_port()}", call_mode="parse", retries=0, timeout=2)
    engine = Engine(store=store, backend=backend, registry=registry)
    conversation = engine.create_conversation("ann")

    events = collect(engine.send(conversation.id, "ann", "Anyone there?"))

    (error,) = of(ErrorEvent, events)
    assert error.retryable and "reach" in error.message.lower()
    assert store.messages(conversation.id)[0].content == "Anyone there?"


def test_two_confirms_at_once_run_the_call_exactly_once(
    engine: Engine, fake_tgi: FakeTGI, store: Store, counter: Counter
) -> None:
    fake_tgi.reply(json.dumps({"function": "slow_refund", "arguments": {"order_number": "A1001", "amount": 5}}))
    conversation = engine.create_conversation("ann")
    (proposed,) = of(CallProposed, collect(engine.send(conversation.id, "ann", "Refund 5 on A1001")))
    fake_tgi.reply("Refunded.")
    fake_tgi.reply("Refunded.")

    results: list[list[Any]] = []
    barrier = threading.Barrier(2)

    def click() -> None:
        barrier.wait()
        results.append(collect(engine.confirm(proposed.call.id, None, "ann")))

    threads = [threading.Thread(target=click) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(counter.runs) == 1
    refused = [r for r in results if of(ErrorEvent, r)]
    assert len(refused) == 1 and "already" in of(ErrorEvent, refused[0])[0].message
    assert store.call(proposed.call.id).status == CallStatus.SUCCEEDED


def test_another_users_conversation_and_calls_are_out_of_reach(engine: Engine, fake_tgi: FakeTGI) -> None:
    fake_tgi.reply(json.dumps(LOOKUP))
    conversation = engine.create_conversation("ann")
    (proposed,) = of(CallProposed, collect(engine.send(conversation.id, "ann", "Where is A1002?")))

    with pytest.raises(NotFoundError):
        engine.messages(conversation.id, "bob")
    with pytest.raises(NotFoundError):
        collect(engine.confirm(proposed.call.id, None, "bob"))
    with pytest.raises(NotFoundError):
        collect(engine.reject(proposed.call.id, "bob"))
    with pytest.raises(NotFoundError):
        collect(engine.send(conversation.id, "bob", "hi"))
    with pytest.raises(NotFoundError):
        engine.delete_conversation(conversation.id, "bob")
    with pytest.raises(NotFoundError):
        engine.rename_conversation(conversation.id, "bob", "Mine now")
    with pytest.raises(NotFoundError):
        engine.update_settings(conversation.id, "bob", temperature=1.5)
    assert engine.list_conversations("bob") == []
    assert engine.conversation(conversation.id, "ann").title == "Where is A1002?"
    assert engine.conversation(conversation.id, "ann").temperature is None
    assert [c.id for c in engine.list_conversations("ann")] == [conversation.id]


def test_limits_give_clear_errors_and_lose_nothing(store: Store, registry: ToolRegistry, fake_tgi: FakeTGI) -> None:
    backend = TGIBackend(fake_tgi.url, call_mode="parse", retries=0)
    engine = Engine(store=store, backend=backend, registry=registry, limits=Limits(max_message_chars=20, max_calls_per_reply=2))
    conversation = engine.create_conversation("ann")

    events = collect(engine.send(conversation.id, "ann", "x" * 21))
    assert "limit is 20" in of(ErrorEvent, events)[0].message
    assert store.messages(conversation.id) == [], "a refused message is not half-stored; the UI keeps the text"

    calls = [{"function": "lookup_order", "arguments": {"order_number": f"A100{i}"}} for i in range(1, 5)]
    fake_tgi.reply("\n".join(json.dumps(c) for c in calls))
    events = collect(engine.send(conversation.id, "ann", "All of them"))
    assert len(of(CallProposed, events)) == 2
    assert any("4 calls" in e.message for e in of(ErrorEvent, events))


def test_several_calls_settle_one_by_one_and_the_model_goes_on_after_the_last(
    engine: Engine, fake_tgi: FakeTGI, store: Store
) -> None:
    calls = [{"function": "lookup_order", "arguments": {"order_number": n}} for n in ("A1001", "A1002")]
    fake_tgi.reply(json.dumps(calls))
    conversation = engine.create_conversation("ann")
    first, second = of(CallProposed, collect(engine.send(conversation.id, "ann", "Check A1001 and A1002")))

    events = collect(engine.confirm(first.call.id, None, "ann"))
    assert events[-1] == Done(awaiting_confirmation=True)
    assert len(fake_tgi.generations) == 1

    fake_tgi.reply("A1001 is delivered; you chose not to check A1002.")
    events = collect(engine.reject(second.call.id, "ann"))
    assert events[-1] == Done()
    assert len(fake_tgi.generations) == 2
    prompt = fake_tgi.generations[-1].prompt
    assert prompt.count('{"function": "lookup_order", "arguments"') == 2


def test_the_same_call_again_after_its_result_stops_the_loop(
    store: Store, registry: ToolRegistry, fake_tgi: FakeTGI
) -> None:
    registry.set_policy("lookup_order", ToolPolicy.AUTO)
    backend = TGIBackend(fake_tgi.url, call_mode="parse", retries=0)
    engine = Engine(store=store, backend=backend, registry=registry)
    fake_tgi.reply(json.dumps(LOOKUP))
    fake_tgi.reply(json.dumps(LOOKUP))
    conversation = engine.create_conversation("ann")

    events = collect(engine.send(conversation.id, "ann", "Where is A1002?"))

    updates = [e.call.status for e in of(CallUpdated, events)]
    assert updates == [CallStatus.RUNNING, CallStatus.SUCCEEDED], "the read-only auto tool ran once, without a card"
    (error,) = of(ErrorEvent, events)
    assert "again with the same arguments" in error.message
    assert len(store.calls(conversation_id=conversation.id)) == 1


def test_an_unknown_function_fails_without_running_and_the_model_is_told(
    engine: Engine, fake_tgi: FakeTGI, store: Store
) -> None:
    fake_tgi.reply(json.dumps({"function": "lookup_ordr", "arguments": {"order_number": "A1001"}}))
    fake_tgi.reply("Let me try that differently.")
    conversation = engine.create_conversation("ann")

    events = collect(engine.send(conversation.id, "ann", "Where is A1001?"))

    failed = of(CallUpdated, events)[0].call
    assert failed.status == CallStatus.FAILED and "lookup_order" in failed.error
    assert "Did you mean 'lookup_order'" in fake_tgi.generations[-1].prompt


def test_a_new_message_skips_the_cards_still_waiting_and_is_its_own_turn(
    engine: Engine, fake_tgi: FakeTGI, store: Store
) -> None:
    fake_tgi.reply(json.dumps(LOOKUP))
    conversation = engine.create_conversation("ann")
    (proposed,) = of(CallProposed, collect(engine.send(conversation.id, "ann", "Where is A1002?")))

    fake_tgi.reply("It is 10:00.")
    events = collect(engine.send(conversation.id, "ann", "Never mind, what time is it?"))

    (skipped,) = of(CallUpdated, events)
    assert skipped.call.status == CallStatus.SKIPPED
    assert skipped.call.reject_reason == "The user wrote a new message instead of confirming."
    record = store.call(proposed.call.id)
    assert record.status == CallStatus.SKIPPED and record.finished_at is not None and record.final_arguments is None
    assert [m.role for m in store.messages(conversation.id)] == ["user", "function_call", "user", "assistant"], (
        "a skipped call has no result message"
    )
    # The call stays the assistant's turn, and the new message follows as a turn of its own.
    assert fake_tgi.generations[-1].prompt.endswith(
        '[INST] Where is A1002? [/INST]\n\n{"function": "lookup_order", "arguments": {"order_number": "A1002"}} '
        "</s><s>[INST] Never mind, what time is it? [/INST]\n\n"
    )
    assert "declined" not in fake_tgi.generations[-1].prompt
    assert of(ErrorEvent, collect(engine.confirm(proposed.call.id, None, "ann")))[0].message.startswith(
        "This call is already skipped"
    )


def test_export_and_import_round_trip(engine: Engine, fake_tgi: FakeTGI) -> None:
    fake_tgi.reply(json.dumps(LOOKUP))
    conversation = engine.create_conversation("ann")
    (proposed,) = of(CallProposed, collect(engine.send(conversation.id, "ann", "Where is A1002?")))
    fake_tgi.reply("Shipped.")
    collect(engine.confirm(proposed.call.id, {"order_number": "A1003"}, "ann"))

    exported = json.loads(json.dumps(engine.export_conversation(conversation.id, "ann")))
    copy = engine.import_conversation(exported, "bob")

    assert copy.id != conversation.id
    assert engine.conversation(conversation.id, "ann").title == "Where is A1002?"
    assert copy.title == "Where is A1002? (imported)"
    assert copy.model_id == "Trelis/Llama-2-7b-chat-hf-function-calling-v2"
    assert copy.prompt_style == "llama2"
    original = [(m.role, m.content) for m in engine.messages(conversation.id, "ann")]
    assert [(m.role, m.content) for m in engine.messages(copy.id, "bob")] == original
    (call,) = engine.calls(copy.id, "bob")
    assert call.proposed_arguments == {"order_number": "A1002"}
    assert call.arguments == {"order_number": "A1003"} and call.edited
    assert call.status == CallStatus.SUCCEEDED
    with pytest.raises(InvalidInputError):
        engine.import_conversation({"format": "something else"}, "bob")


def test_a_damaged_export_leaves_nothing_behind(engine: Engine, fake_tgi: FakeTGI) -> None:
    fake_tgi.reply(json.dumps(LOOKUP))
    conversation = engine.create_conversation("ann")
    collect(engine.send(conversation.id, "ann", "Where is A1002?"))
    exported = json.loads(json.dumps(engine.export_conversation(conversation.id, "ann")))
    exported["messages"][-1]["role"] = "narrator"  # the last thing an import would store

    with pytest.raises(InvalidInputError, match="damaged"):
        engine.import_conversation(exported, "bob")

    assert engine.list_conversations("bob") == [], "not even the conversation, nor its calls"


def test_an_imported_title_keeps_within_the_limit(engine: Engine) -> None:
    exported = engine.export_conversation(engine.create_conversation("ann", title="x" * 200).id, "ann")

    title = engine.import_conversation(exported, "bob").title

    assert len(title) == 200 and title.endswith("… (imported)") and title.startswith("x" * 180)
    exported["conversation"]["title"] = ""
    assert engine.import_conversation(exported, "bob").title == "Imported conversation"


def test_conversations_are_listed_newest_first_renamed_and_deleted(engine: Engine, store: Store) -> None:
    first = engine.create_conversation("ann")
    second = engine.create_conversation("ann")
    engine.rename_conversation(first.id, "ann", "  Refund   for Ann ")

    listed = engine.list_conversations("ann")
    assert [c.id for c in listed] == [first.id, second.id], "renaming counts as an update"
    assert listed[0].title == "Refund for Ann"
    engine.delete_conversation(first.id, "ann")
    assert [c.id for c in engine.list_conversations("ann")] == [second.id]
    assert store.messages(first.id) == []


def test_grammar_mode_re_asks_with_the_calls_schema(store: Store, registry: ToolRegistry, fake_tgi: FakeTGI) -> None:
    backend = TGIBackend(fake_tgi.url, call_mode="grammar", retries=0)
    engine = Engine(store=store, backend=backend, registry=registry)
    fake_tgi.reply('{"function": "lookup_order", "argu', when_grammar=json.dumps(LOOKUP))
    conversation = engine.create_conversation("ann")

    events = collect(engine.send(conversation.id, "ann", "Where is A1002?"))

    (proposed,) = of(CallProposed, events)
    assert proposed.call.arguments == {"order_number": "A1002"}
    assert fake_tgi.generations[-1].grammar["type"] == "json"
    assert of(ReplyText, events)[0].text == ""


def test_prompt_keeps_stored_roles_in_order(engine: Engine, fake_tgi: FakeTGI, store: Store) -> None:
    fake_tgi.reply("Hi! I can look up orders.")
    conversation = engine.create_conversation("ann")
    collect(engine.send(conversation.id, "ann", "Hello"))
    fake_tgi.reply("Sure.")
    collect(engine.send(conversation.id, "ann", "Thanks"))

    prompt = fake_tgi.generations[-1].prompt
    assert prompt.index("Hello") < prompt.index("Hi! I can look up orders.") < prompt.index("Thanks")
    assert [m.role for m in store.messages(conversation.id)] == [
        MessageRole.USER, MessageRole.ASSISTANT, MessageRole.USER, MessageRole.ASSISTANT,
    ]
    assert engine.conversation(conversation.id, "ann").title == "Hello"
