"""The elicitation broker: a server's question waits for a person's answer, checked against the form, or declines."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from backend.errors import InvalidInputError, NotFoundError
from backend.tools.mcp_elicitation import ElicitationAnswer, ElicitationBroker

FORM = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}, "required": ["name"]}


async def _first_pending(broker: ElicitationBroker) -> Any:
    for _ in range(2000):
        if broker.pending():
            return broker.pending()[0]
        await asyncio.sleep(0.01)
    raise AssertionError("nothing was asked")


def test_a_form_answer_is_checked_against_its_fields_and_normalised() -> None:
    broker = ElicitationBroker()
    seen: list[tuple[str, str | None]] = []
    broker.subscribe(lambda e, answer: seen.append((e.server, answer.action if answer else None)))

    async def scenario() -> ElicitationAnswer:
        asking = asyncio.create_task(broker.ask(server="crm", message="Who?", mode="form", schema=FORM, tool="add"))
        pending = await _first_pending(broker)
        assert (pending.server, pending.message, pending.mode, pending.tool) == ("crm", "Who?", "form", "add")
        assert [f.name for f in pending.spec.arguments] == ["name", "age"] and pending.warning is None
        with pytest.raises(InvalidInputError, match="name: "):
            broker.answer(pending.id, "accept", {"age": 3})
        # Answered from another thread, as Gradio's workers would.
        worker = threading.Thread(target=broker.answer, args=(pending.id, "accept", {"name": "Ada", "age": "36"}))
        worker.start()
        worker.join()
        return await asking

    assert asyncio.run(scenario()) == ElicitationAnswer(action="accept", content={"name": "Ada", "age": 36})
    assert seen == [("crm", None), ("crm", "accept")] and broker.pending() == []


def _attended(broker: ElicitationBroker) -> ElicitationBroker:
    broker.subscribe(lambda elicitation, answer: None)
    return broker


def test_nobody_answering_declines_and_late_answers_are_refused() -> None:
    broker = _attended(ElicitationBroker(timeout_s=0.2))

    async def scenario() -> tuple[ElicitationAnswer, str]:
        asking = asyncio.create_task(broker.ask(server="crm", message="Who?", mode="form", schema=FORM))
        pending = await _first_pending(broker)
        return await asking, pending.id

    answer, elicitation_id = asyncio.run(scenario())
    assert answer == ElicitationAnswer(action="decline")
    with pytest.raises(NotFoundError):
        broker.answer(elicitation_id, "accept", {"name": "late"})


def test_a_call_that_ends_first_cancels_its_question() -> None:
    broker = ElicitationBroker()
    settled: list[str] = []
    broker.subscribe(lambda e, answer: settled.append(answer.action) if answer else None)

    async def scenario() -> None:
        asking = asyncio.create_task(broker.ask(server="crm", message="Open this", mode="url", url="https://a.example"))
        pending = await _first_pending(broker)
        assert (pending.mode, pending.url, pending.spec) == ("url", "https://a.example", None)
        asking.cancel()
        await asyncio.gather(asking, return_exceptions=True)

    asyncio.run(scenario())
    assert settled == ["cancel"] and broker.pending() == []


def test_a_url_request_is_accepted_without_content_and_a_password_form_warns() -> None:
    broker = _attended(ElicitationBroker())

    async def scenario() -> ElicitationAnswer:
        secret = asyncio.create_task(broker.ask(
            server="bank", message="Log in", mode="form",
            schema={"type": "object", "properties": {"password": {"type": "string"}}},
        ))
        pending = await _first_pending(broker)
        assert pending.warning and "password" in pending.warning
        broker.answer(pending.id, "decline")
        assert (await secret).action == "decline"
        link = asyncio.create_task(broker.ask(server="bank", message="Pay", mode="url", url="https://pay.example"))
        broker.answer((await _first_pending(broker)).id, "accept", {"ignored": True})
        return await link

    assert asyncio.run(scenario()) == ElicitationAnswer(action="accept", content=None)


def test_with_nobody_to_ask_or_a_form_callcard_cannot_show_the_answer_is_decline_at_once() -> None:
    broker = ElicitationBroker()
    assert asyncio.run(broker.ask(server="s", message="?", mode="form", schema=FORM)).action == "decline"
    _attended(broker)
    nested = {"type": "object", "properties": {"x": {"anyOf": [{"type": "string"}, {"type": "integer"}]}}}
    answer = asyncio.run(broker.ask(server="s", message="?", mode="form", schema=nested))
    assert answer.action == "decline" and broker.pending() == []
