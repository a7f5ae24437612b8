"""One reply at a time per conversation, across replicas: two engines (two stores, two database engines) on one
database, the first reply provably in flight (its stream held open at the fake model server) while the second tries.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from backend.engine import Engine
from backend.engine.events import Done, ErrorEvent, Token
from backend.models.protocol import GenerationParams
from backend.models.tgi import TGIBackend
from backend.storage.store import Store
from backend.storage.tables import ConversationLease, utcnow
from backend.tools import ToolRegistry
from tests.fake_tgi import FakeTGI, StreamHold

STILL_ANSWERING = "The model is still answering in this conversation: wait for its answer, then send again."


def replica(database_url: str, fake_tgi: FakeTGI, name: str, **options: Any) -> Engine:
    """An engine as one replica runs it: its own Store, hence its own SQLAlchemy engine and connections."""
    return Engine(
        store=Store(database_url, instance=name), backend=TGIBackend(fake_tgi.url, call_mode="parse", retries=0),
        registry=ToolRegistry([]), params=GenerationParams(max_new_tokens=100), **options,
    )


@pytest.fixture
def replicas(database_url: str, fake_tgi: FakeTGI) -> Iterator[tuple[Engine, Engine]]:
    first, second = replica(database_url, fake_tgi, "replica-a"), replica(database_url, fake_tgi, "replica-b")
    yield first, second
    first.store.close()
    second.store.close()


def text_of(events: list[Any]) -> str:
    return "".join(e.text for e in events if isinstance(e, Token))


def collect(events: AsyncIterator[Any]) -> list[Any]:
    async def run() -> list[Any]:
        return [event async for event in events]

    return asyncio.run(run())


async def held(hold: StreamHold) -> None:
    """Wait (off the event loop, which streams the reply) until the reply's stream is held at the model server."""
    assert await asyncio.to_thread(hold.wait_until_held), hold.describe()


def lease_expiry(store: Store, conversation_id: str) -> datetime | None:
    with store.engine.connect() as connection:
        return connection.execute(
            select(ConversationLease.expires_at).where(ConversationLease.conversation_id == conversation_id)
        ).scalar()


def test_a_second_replica_cannot_start_a_reply_while_the_first_streams(
    replicas: tuple[Engine, Engine], fake_tgi: FakeTGI,
) -> None:
    first, second = replicas
    conversation = first.create_conversation("ann")
    fake_tgi.reply("The first answer.")

    async def run() -> tuple[list[Any], list[Any], list[Any]]:
        with fake_tgi.hold_streams(1, after_tokens=1, until_released=True) as hold:
            answering = asyncio.create_task(_all(first.send(conversation.id, "ann", "First question")))
            await held(hold)  # the first reply is in flight now, on replica a
            sent = [e async for e in second.send(conversation.id, "ann", "Second question")]
            retried = [e async for e in second.retry(conversation.id, "ann")]  # straight to a reply, past send's check
            assert len(fake_tgi.generations) == 1, "replica b never asked the model"
            hold.release()
            return await answering, sent, retried

    answered, sent, retried = asyncio.run(run())

    assert sent == [ErrorEvent(message=STILL_ANSWERING)]
    assert retried == [ErrorEvent(message=STILL_ANSWERING, retryable=True), Done()]
    assert text_of(answered) == "The first answer." and not [e for e in answered if isinstance(e, ErrorEvent)]
    assert "Second question" not in [m.content for m in second.messages(conversation.id, "ann")]
    # The answer is in: the lease is given back, and the other replica's message goes through.
    assert second.store.lease_holder(conversation.id) is None
    fake_tgi.reply("The second answer.")
    assert text_of(collect(second.send(conversation.id, "ann", "Second question"))) == "The second answer."


def test_a_crashed_replicas_lease_expires_and_is_taken_over(
    replicas: tuple[Engine, Engine], fake_tgi: FakeTGI,
) -> None:
    first, second = replicas
    conversation = first.create_conversation("ann")
    # Replica a took the lease for a reply and died: nothing renews or releases it.
    assert first.store.take_lease(conversation.id, holder="replica-a/crashed", ttl=timedelta(minutes=5))
    assert of_errors(collect(second.send(conversation.id, "ann", "Hello?"))) == [STILL_ANSWERING]

    with first.store.engine.begin() as connection:  # time passes: its expiry is behind us
        connection.execute(ConversationLease.__table__.update().values(expires_at=utcnow() - timedelta(seconds=1)))
    fake_tgi.reply("Hello again.")
    events = collect(second.send(conversation.id, "ann", "Hello?"))

    assert of_errors(events) == [] and text_of(events) == "Hello again."
    assert second.store.lease_holder(conversation.id) is None


@pytest.mark.parametrize("how", ["cancel", "close"])
def test_a_stopped_reply_gives_its_lease_back_at_once(
    replicas: tuple[Engine, Engine], fake_tgi: FakeTGI, how: str,
) -> None:
    first, second = replicas
    conversation = first.create_conversation("ann")
    fake_tgi.reply("A long story that nobody will hear the end of.")

    async def stop_while_held() -> None:
        with fake_tgi.hold_streams(1, after_tokens=1, until_released=True) as hold:
            events = first.send(conversation.id, "ann", "Tell me a story")
            task = asyncio.create_task(anext(events))  # the first token arrives, then the stream is held
            await held(hold)
            await task
            assert second.store.lease_holder(conversation.id) is not None
            if how == "cancel":  # Stop cancels the task iterating the reply
                waiting = asyncio.create_task(anext(events))
                await asyncio.sleep(0)
                waiting.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await waiting
            else:  # or closes the iterator between two events
                await events.aclose()

    asyncio.run(stop_while_held())

    assert second.store.lease_holder(conversation.id) is None
    fake_tgi.reply("Once upon a time.")
    assert text_of(collect(second.send(conversation.id, "ann", "A short one then"))) == "Once upon a time."


def test_a_long_reply_renews_its_lease_while_it_streams(database_url: str, fake_tgi: FakeTGI) -> None:
    engine = replica(database_url, fake_tgi, "replica-a", reply_lease=timedelta(seconds=0.3))
    conversation = engine.create_conversation("ann")
    fake_tgi.reply("Slow going.")

    async def run() -> list[Any]:
        with fake_tgi.hold_streams(1, after_tokens=1, until_released=True) as hold:
            answering = asyncio.create_task(_all(engine.send(conversation.id, "ann", "Take your time")))
            await held(hold)
            expiries = {lease_expiry(engine.store, conversation.id)}
            for _ in range(600):  # until renewed twice while the stream is held (a bound, not a duration asserted)
                if len(expiries) >= 3:
                    break
                await asyncio.sleep(0.05)
                expiries.add(lease_expiry(engine.store, conversation.id))
            hold.release()
            assert len(expiries) >= 3 and None not in expiries, "the lease was renewed, never lost"
            return await answering

    assert text_of(asyncio.run(run())) == "Slow going."
    assert lease_expiry(engine.store, conversation.id) is None, "released once the reply is in"
    engine.store.close()


async def _all(events: AsyncIterator[Any]) -> list[Any]:
    return [event async for event in events]


def of_errors(events: list[Any]) -> list[str]:
    return [e.message for e in events if isinstance(e, ErrorEvent)]
