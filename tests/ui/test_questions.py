"""An MCP server's question reaches the stream running its call, and only that one; the answer reaches the server.

The broker is the real one, asking on a loop of its own thread as the MCP servers' thread does; no browser.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import pytest

from backend.tools import ElicitationAnswer, ElicitationBroker
from ui.questions import Questions

WAIT_S = 30.0
NAME_FORM = {"type": "object", "properties": {"name": {"type": "string", "description": "Your name"}},
             "required": ["name"]}


class Woken:
    """A stream's wake-up call, counted."""

    def __init__(self) -> None:
        self.count = 0
        self.event = threading.Event()

    def __call__(self) -> None:
        self.count += 1
        self.event.set()

    def wait(self) -> None:
        assert self.event.wait(WAIT_S), "the stream was never woken"
        self.event.clear()


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """The servers' loop, on a thread of its own."""
    running = asyncio.new_event_loop()
    thread = threading.Thread(target=running.run_forever, daemon=True)
    thread.start()
    yield running
    running.call_soon_threadsafe(running.stop)
    thread.join(WAIT_S)
    running.close()


def ask(loop: asyncio.AbstractEventLoop, broker: ElicitationBroker, **question: Any) -> Future[ElicitationAnswer]:
    options = {"server": "test", "message": "What is your name?", "mode": "form", "schema": NAME_FORM, "tool": "greet"}
    return asyncio.run_coroutine_threadsafe(broker.ask(**{**options, **question}), loop)


def watch(questions: Questions, woken: Woken, *, call_id: str = "call1", user: str = "ann", function: str = "greet",
          conversation_id: str = "conv1") -> None:
    questions.watch(call_id=call_id, function=function, server="test", user=user, conversation_id=conversation_id,
                    wake=woken)


def test_a_question_wakes_the_stream_of_its_call_and_the_answer_goes_back(loop: asyncio.AbstractEventLoop) -> None:
    broker = ElicitationBroker()
    questions = Questions(broker)
    woken = Woken()
    watch(questions, woken)
    answer = ask(loop, broker)
    woken.wait()
    (question,) = questions.shown("ann", "conv1")
    assert (question.function, question.elicitation.message) == ("greet", "What is your name?")
    assert questions.shown("bob", "conv1") == [] and questions.shown("ann", "conv2") == []

    questions.answer(question.elicitation.id, "bob", "accept", {"name": "Mallory"})  # not bob's question
    questions.answer(question.elicitation.id, "ann", "accept", {"name": " "})  # blank: nothing is sent
    woken.wait()
    (refused,) = questions.shown("ann", "conv1")
    assert refused.notice == "Nothing was sent: check name first." and "name" in refused.errors
    assert not answer.done()

    questions.answer(question.elicitation.id, "ann", "accept", {"name": "Ada"})
    assert answer.result(WAIT_S) == ElicitationAnswer(action="accept", content={"name": "Ada"})
    woken.wait()  # settled: the stream redraws without the card
    assert questions.shown("ann", "conv1") == []
    questions.close()


@pytest.mark.parametrize("action", ["decline", "cancel"])
def test_decline_and_cancel_go_back_as_they_are(loop: asyncio.AbstractEventLoop, action: str) -> None:
    broker = ElicitationBroker()
    questions = Questions(broker)
    woken = Woken()
    watch(questions, woken)
    answer = ask(loop, broker)
    woken.wait()
    (question,) = questions.shown("ann", "conv1")
    questions.answer(question.elicitation.id, "ann", action, {"name": "ignored"})
    assert answer.result(WAIT_S) == ElicitationAnswer(action=action)
    questions.close()


def test_a_question_two_conversations_could_own_is_declined_at_once(loop: asyncio.AbstractEventLoop) -> None:
    broker = ElicitationBroker()
    questions = Questions(broker)
    ann, bob = Woken(), Woken()
    watch(questions, ann, call_id="a", user="ann")
    watch(questions, bob, call_id="b", user="bob", conversation_id="conv2")
    assert ask(loop, broker).result(WAIT_S) == ElicitationAnswer(action="decline")
    # Several tools running on the server at once: it does not say which asked.
    assert ask(loop, broker, tool=None).result(WAIT_S) == ElicitationAnswer(action="decline")
    assert (ann.count, bob.count) == (0, 0)
    assert questions.shown("ann", "conv1") == [] and questions.shown("bob", "conv2") == []
    questions.close()


def test_a_question_still_open_when_its_call_ends_is_cancelled(loop: asyncio.AbstractEventLoop) -> None:
    broker = ElicitationBroker()
    questions = Questions(broker)
    woken = Woken()
    watch(questions, woken)
    answer = ask(loop, broker)
    woken.wait()
    questions.unwatch("call1")  # the stream was stopped, or the page went away
    assert answer.result(WAIT_S) == ElicitationAnswer(action="cancel")
    assert broker.pending() == []
    questions.close()


def test_once_closed_nobody_is_there_to_ask(loop: asyncio.AbstractEventLoop) -> None:
    broker = ElicitationBroker()
    Questions(broker).close()
    assert ask(loop, broker).result(WAIT_S) == ElicitationAnswer(action="decline")
