"""How the page folds an engine stream into chat updates, and how Stop ends it wherever it waits (no browser)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

from backend.engine.events import Done, EngineEvent, Token
from ui.auth import People
from ui.page import Page
from ui.present import ChatStream

REQUEST = SimpleNamespace(session_hash="s1")


def page() -> Page:
    return Page(engine=None, registry=None, people=People.open(), backend_info=None)  # type: ignore[arg-type]


async def consume(handlers: Page, events: AsyncIterator[EngineEvent], stream: ChatStream, run: str) -> list[Any]:
    drive = handlers._drive(events, stream, REQUEST, run, user="ann", conversation_id="c1")  # type: ignore[arg-type]
    return [update async for update in drive]


def test_a_stop_that_comes_before_the_stream_starts_ends_it_at_once() -> None:
    started = []

    async def engine() -> AsyncIterator[EngineEvent]:
        started.append(True)
        yield Token(text="never shown")

    async def scenario() -> tuple[list[Any], ChatStream]:
        handlers = page()
        assert handlers._runs.stop("s1:run1") is False  # the stop is early: nothing streams yet
        stream = ChatStream()
        updates = await asyncio.wait_for(consume(handlers, engine(), stream, "run1"), 5)
        return updates, stream

    updates, stream = asyncio.run(scenario())
    assert started == [] and stream.stopped and updates == []


def test_stop_cancels_the_engine_where_it_waits_and_keeps_what_was_shown() -> None:
    closed = []

    async def engine(waiting: asyncio.Event) -> AsyncIterator[EngineEvent]:
        try:
            yield Token(text="Your order left")
            waiting.set()
            await asyncio.Event().wait()  # the model server, never answering
            yield Done()
        finally:
            closed.append(True)

    async def scenario() -> ChatStream:
        handlers = page()
        stream = ChatStream()
        waiting = asyncio.Event()
        run = asyncio.create_task(consume(handlers, engine(waiting), stream, "run2"))
        await asyncio.wait_for(waiting.wait(), 5)
        assert handlers._runs.stop("s1:run2") is True
        await asyncio.wait_for(run, 5)
        return stream

    stream = asyncio.run(scenario())
    assert closed == [True]
    assert stream.chat[-1]["content"] == "Your order left\n\n⏹️ *Stopped.*"


def test_tokens_held_back_for_their_frame_are_drawn_when_it_is_due() -> None:
    async def engine(release: asyncio.Event) -> AsyncIterator[EngineEvent]:
        yield Token(text="Your")
        yield Token(text=" order left")  # within the first frame: held back
        await release.wait()  # no further token comes for a while
        yield Done()

    async def scenario() -> list[str]:
        handlers = page()
        stream = ChatStream()
        release = asyncio.Event()
        shown: list[str] = []

        async def watch() -> None:
            drive = handlers._drive(
                engine(release), stream, REQUEST, "run3", user="ann", conversation_id="c1",  # type: ignore[arg-type]
            )
            async for chat, _view, _deck in drive:
                shown.append(chat[-1]["content"] if chat else "")
                if shown[-1] == "Your order left":
                    release.set()

        await asyncio.wait_for(watch(), 5)
        return shown

    shown = asyncio.run(scenario())
    assert shown[:2] == ["Your", "Your order left"], "the second token is drawn without waiting for a third"
