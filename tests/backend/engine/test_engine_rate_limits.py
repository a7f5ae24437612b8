"""Rate limits through the engine: one visitor who floods is refused with nothing lost, and nobody else waits."""

from __future__ import annotations

import asyncio
from pathlib import Path

from backend.engine import Engine
from backend.engine.events import ErrorEvent, Token
from backend.engine.rate_limits import RateLimits
from backend.models.protocol import GenerationParams
from backend.models.tgi import TGIBackend
from backend.storage.store import Store
from backend.storage.tables import MessageRole
from backend.tools import ToolRegistry
from tests.backend.engine.test_engine_turns import collect, of
from tests.fake_tgi import FakeTGI


def _engine(tmp_path: Path, fake: FakeTGI, limits: RateLimits) -> tuple[Engine, Store]:
    store = Store(f"sqlite:///{tmp_path / 'callcard.db'}")
    backend = TGIBackend(fake.url, call_mode="parse", retries=0, timeout=10)
    engine = Engine(store=store, backend=backend, registry=ToolRegistry(), params=GenerationParams(max_new_tokens=50),
                    rate_limits=limits)
    return engine, store


def test_messages_over_the_limit_are_refused_unstored_and_others_go_on(tmp_path: Path, fake_tgi: FakeTGI) -> None:
    engine, store = _engine(tmp_path, fake_tgi, RateLimits(messages_per_minute=2))
    mine, theirs = engine.create_conversation("ann"), engine.create_conversation("bob")
    for n in range(2):
        fake_tgi.reply(f"Answer {n}.")
        assert not of(ErrorEvent, collect(engine.send(mine.id, "ann", f"message {n}")))

    refused = collect(engine.send(mine.id, "ann", "message 2"))

    (error,) = of(ErrorEvent, refused)
    assert "2 messages in the last minute" in error.message and "kept" in error.message
    assert [m.content for m in store.messages(mine.id) if m.role == MessageRole.USER] == ["message 0", "message 1"]
    fake_tgi.reply("Hello Bob.")
    assert "".join(t.text for t in of(Token, collect(engine.send(theirs.id, "bob", "hi")))) == "Hello Bob."
    # A browser session is counted on its own when everyone shares one user (logins off).
    fake_tgi.reply("Hello again.")
    assert not of(ErrorEvent, collect(engine.send(mine.id, "ann", "from another tab", client="session-2")))
    store.close()


def test_one_visitor_at_their_limit_of_replies_does_not_hold_anyone_else_up(tmp_path: Path, fake_tgi: FakeTGI) -> None:
    engine, store = _engine(tmp_path, fake_tgi, RateLimits(concurrent_replies=1))
    first, second = engine.create_conversation("ann"), engine.create_conversation("ann")
    theirs = engine.create_conversation("bob")
    fake_tgi.reply("Ann's answer.")
    fake_tgi.reply("Bob's answer.")

    async def scenario() -> tuple[list, list, list]:
        # Ann's reply is held open at the server until a second stream is in flight at the same time: only Bob's
        # can be that one, so Bob is answered while Ann is at her limit, by construction.
        with fake_tgi.hold_streams(2, after_tokens=1, timeout_s=30) as hold:
            anns = asyncio.create_task(_collect(engine.send(first.id, "ann", "first")))
            while not hold.held:
                await asyncio.sleep(0.01)
            refused = await _collect(engine.send(second.id, "ann", "second, at once"))
            bobs = await _collect(engine.send(theirs.id, "bob", "hi"))
            return await anns, refused, bobs

    anns, refused, bobs = asyncio.run(scenario())

    assert "".join(t.text for t in of(Token, anns)) == "Ann's answer."
    assert "1 reply on the way" in of(ErrorEvent, refused)[0].message
    assert store.messages(second.id) == []
    assert "".join(t.text for t in of(Token, bobs)) == "Bob's answer."
    store.close()


async def _collect(events) -> list:  # type: ignore[no-untyped-def]
    return [event async for event in events]
