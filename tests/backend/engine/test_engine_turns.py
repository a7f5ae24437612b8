"""Turns the model never answered, and cards a new message skips: what each prompt style gets, what can be taken back.

Real SQLite (and PostgreSQL) databases, the fake TGI server on a real socket, every prompt style.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from backend.core.prompts import native_messages
from backend.core.specs import FunctionSpec
from backend.engine import Engine
from backend.engine.events import CallProposed, CallUpdated, ErrorEvent, Token
from backend.engine.turns import unanswered_message_ids
from backend.errors import InvalidStateError, NotFoundError
from backend.models.openai_compat import OpenAIBackend
from backend.models.protocol import GenerationParams, ModelBackend, ModelFailure, ModelInfo, ReplyEvent
from backend.models.tgi import TGIBackend
from backend.storage.store import Store
from backend.storage.tables import CallStatus, Message, MessageRole
from backend.tools import SupportDesk, ToolRegistry, support_desk_tools
from tests.fake_tgi import FakeTGI

TOO_LONG = "Input validation error: `inputs` must have less than 4000 tokens. Given: 4500"
LOOKUP = {"function": "lookup_order", "arguments": {"order_number": "A1002"}}
CALL_TEXT = json.dumps(LOOKUP)


def collect(events: Any) -> list[Any]:
    async def run() -> list[Any]:
        return [event async for event in events]

    return asyncio.run(run())


def of(kind: type, events: list[Any]) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


class Recording:
    """A real backend that also keeps each conversation the engine hands it (to render it in the native style)."""

    def __init__(self, backend: TGIBackend) -> None:
        self.backend = backend
        self.conversations: list[list[dict[str, str]]] = []

    async def info(self) -> ModelInfo:
        return await self.backend.info()

    async def health(self) -> bool:
        return await self.backend.health()

    @property
    def last_failure(self) -> ModelFailure | None:
        return self.backend.last_failure

    def stream(
        self, conversation: Sequence[dict[str, str]], functions: Sequence[FunctionSpec], *, system: str | None = None,
        params: GenerationParams | None = None,
    ) -> AsyncGenerator[ReplyEvent, None]:
        self.conversations.append(list(conversation))
        return self.backend.stream(conversation, functions, system=system, params=params)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[ToolRegistry]:
    desk = SupportDesk(tmp_path / "desk")
    yield ToolRegistry(support_desk_tools(desk))
    desk.close()


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    store = Store(database_url)
    yield store
    store.close()


def make_engine(store: Store, registry: ToolRegistry, fake: FakeTGI, style: str) -> tuple[Engine, ModelBackend]:
    """An engine on the fake server speaking `style`: llama2, mistral, openai, or native (what a chat template gets)."""
    backend: Any
    if style == "openai":
        backend = OpenAIBackend(fake.url, retries=0, timeout=5)
    elif style == "native":
        backend = Recording(TGIBackend(fake.url, call_mode="parse", retries=0, timeout=5))
    else:
        backend = TGIBackend(fake.url, style=style, call_mode="parse", retries=0, timeout=5)  # type: ignore[arg-type]
    engine = Engine(store=store, backend=backend, registry=registry, params=GenerationParams(max_new_tokens=100))
    return engine, backend


STYLES = ["llama2", "mistral", "openai", "native"]


def _prompt_tail(fake: FakeTGI, backend: ModelBackend, registry: ToolRegistry, style: str) -> Any:
    """What the model was last given, in the style's own shape: the prompt text, or its chat messages."""
    if style == "openai":
        return fake.generations[-1].body["messages"]
    if style == "native":
        assert isinstance(backend, Recording)
        return native_messages(backend.conversations[-1], registry.specs())[1:]  # without the system message
    return fake.generations[-1].prompt


def _reply_with_call(fake: FakeTGI, style: str) -> None:
    if style == "openai":
        fake.call("lookup_order", LOOKUP["arguments"])
    else:
        fake.reply(CALL_TEXT)


# -- the rule ------------------------------------------------------------------------------------------------------


def _messages(*roles: str) -> list[Message]:
    return [
        Message(id=10 + i, conversation_id="c", position=i, role=role, content=f"{role} {i}")
        for i, role in enumerate(roles)
    ]


def test_a_turn_is_unanswered_when_it_holds_only_its_message_and_errors() -> None:
    messages = _messages(
        "user", "error",  # failed: unanswered
        "user", "assistant",  # answered
        "user",  # failed without an error message (stopped before any text): unanswered
        "user", "function_call", "error",  # a call is an answer, even if the model failed afterwards
        "user", "error", "error",  # the newest turn, failed twice
    )

    assert unanswered_message_ids(messages) == {10, 14, 18}
    assert unanswered_message_ids(messages, include_last=False) == {10, 14}
    assert unanswered_message_ids([]) == set()
    assert unanswered_message_ids(_messages("assistant", "error")) == set(), "no user message, no turn"


# -- a failed message never poisons the conversation ---------------------------------------------------------------


@pytest.mark.parametrize("style", STYLES)
def test_a_failed_message_is_left_out_of_the_next_prompt(
    store: Store, registry: ToolRegistry, fake_tgi: FakeTGI, style: str
) -> None:
    engine, backend = make_engine(store, registry, fake_tgi, style)
    conversation = engine.create_conversation("ann")
    fake_tgi.fail(422, TOO_LONG, "validation")

    failed = collect(engine.send(conversation.id, "ann", "First message"))
    assert of(ErrorEvent, failed)[0].message == (
        "This message is too long for the model (about 4,500 tokens; it reads at most 4,000). "
        "Shorten it, or start a new conversation."
    )
    fake_tgi.reply("Hello!")
    answered = collect(engine.send(conversation.id, "ann", "Second message"))

    assert not of(ErrorEvent, answered) and "".join(t.text for t in of(Token, answered)) == "Hello!"
    sent = _prompt_tail(fake_tgi, backend, registry, style)
    assert "First message" not in json.dumps(sent)
    if style == "openai" or style == "native":
        assert sent == [{"role": "user", "content": "Second message"}]
    else:
        assert sent.endswith("</FUNCTIONS>\n\n[INST] Second message [/INST]\n\n")
    messages = store.messages(conversation.id)
    assert [m.role for m in messages] == ["user", "error", "user", "assistant"]
    assert unanswered_message_ids(messages) == {messages[0].id}


def test_a_retry_sends_the_failed_message_again(store: Store, registry: ToolRegistry, fake_tgi: FakeTGI) -> None:
    engine, _ = make_engine(store, registry, fake_tgi, "llama2")
    conversation = engine.create_conversation("ann")
    fake_tgi.fail(422, TOO_LONG, "validation")
    collect(engine.send(conversation.id, "ann", "First message"))
    fake_tgi.fail(503, "starting", "unavailable")
    collect(engine.send(conversation.id, "ann", "Second message"))

    fake_tgi.reply("Now it works.")
    collect(engine.retry(conversation.id, "ann"))

    prompt = fake_tgi.generations[-1].prompt
    assert prompt.endswith("[INST] Second message [/INST]\n\n") and "First message" not in prompt
    assert unanswered_message_ids(store.messages(conversation.id)) == {store.messages(conversation.id)[0].id}


# -- taking a message back -----------------------------------------------------------------------------------------


def test_an_unanswered_message_is_withdrawn_with_its_errors(
    store: Store, registry: ToolRegistry, fake_tgi: FakeTGI
) -> None:
    engine, _ = make_engine(store, registry, fake_tgi, "llama2")
    conversation = engine.create_conversation("ann")
    fake_tgi.reply("Hi!")
    collect(engine.send(conversation.id, "ann", "Hello"))
    fake_tgi.fail(422, TOO_LONG, "validation")
    collect(engine.send(conversation.id, "ann", "A very long message"))

    with pytest.raises(NotFoundError):
        engine.withdraw_unanswered(conversation.id, "bob")
    assert engine.withdraw_unanswered(conversation.id, "ann") == "A very long message"

    assert [(m.position, m.role) for m in store.messages(conversation.id)] == [(0, "user"), (1, "assistant")]
    fake_tgi.reply("Shorter is fine.")
    collect(engine.send(conversation.id, "ann", "A short one"))
    assert [m.position for m in store.messages(conversation.id)] == [0, 1, 2, 3], "positions stay gap-free"
    with pytest.raises(InvalidStateError, match="has an answer"):
        engine.withdraw_unanswered(conversation.id, "ann")


def test_nothing_is_withdrawn_from_an_empty_conversation_or_while_the_model_answers(
    store: Store, registry: ToolRegistry, fake_tgi: FakeTGI
) -> None:
    engine, _ = make_engine(store, registry, fake_tgi, "llama2")
    conversation = engine.create_conversation("ann")
    with pytest.raises(InvalidStateError):
        engine.withdraw_unanswered(conversation.id, "ann")
    fake_tgi.reply("A slow and careful answer, word after word.", token_delay=0.05)

    async def withdraw_while_streaming() -> None:
        events = engine.send(conversation.id, "ann", "Question")
        await anext(events)  # the first token: the reply is streaming, its turn holds only the message so far
        with pytest.raises(InvalidStateError, match="still answering"):
            engine.withdraw_unanswered(conversation.id, "ann")
        async for _ in events:
            pass

    asyncio.run(withdraw_while_streaming())
    assert [m.role for m in store.messages(conversation.id)] == [MessageRole.USER, MessageRole.ASSISTANT]


def test_the_store_refuses_to_delete_a_tail_that_grew(store: Store) -> None:
    conversation = store.create_conversation(owner=store.user("ann"))
    for text in ("one", "two", "three"):
        store.add_message(conversation_id=conversation.id, role=MessageRole.USER, content=text)

    with pytest.raises(InvalidStateError):
        store.delete_tail(conversation.id, from_position=1, count=1)
    store.delete_tail(conversation.id, from_position=1, count=2)

    assert [m.content for m in store.messages(conversation.id)] == ["one"]


# -- typing while a card is open -----------------------------------------------------------------------------------


@pytest.mark.parametrize("style", STYLES)
def test_a_skipped_call_leaves_the_new_message_its_own_turn(
    store: Store, registry: ToolRegistry, fake_tgi: FakeTGI, style: str
) -> None:
    engine, backend = make_engine(store, registry, fake_tgi, style)
    conversation = engine.create_conversation("ann")
    _reply_with_call(fake_tgi, style)
    (proposed,) = of(CallProposed, collect(engine.send(conversation.id, "ann", "Where is A1002?")))
    fake_tgi.reply("It is 10:00.")

    events = collect(engine.send(conversation.id, "ann", "What time is it?"))

    assert [e.call.status for e in of(CallUpdated, events)] == [CallStatus.SKIPPED]
    assert store.call(proposed.call.id).reject_reason == "The user wrote a new message instead of confirming."
    sent = _prompt_tail(fake_tgi, backend, registry, style)
    if style == "llama2":
        assert sent.endswith(
            f"[INST] Where is A1002? [/INST]\n\n{CALL_TEXT} </s><s>[INST] What time is it? [/INST]\n\n"
        )
    elif style == "mistral":
        assert sent.endswith(f"[INST] Where is A1002? [/INST]\n\n{CALL_TEXT}</s>[INST] What time is it? [/INST]\n\n")
    elif style == "native":
        assert sent == [
            {"role": "user", "content": "Where is A1002?"},
            {"role": "assistant", "content": '<tool_call>[\n{"name": "lookup_order", "arguments": '
             '{"order_number": "A1002"}}\n]</tool_call>'},
            {"role": "user", "content": "What time is it?"},
        ]
    else:
        # OpenAI's protocol wants every tool call answered before the conversation goes on: the skipped one gets a
        # "not run" tool message, and the user's text stays a message of its own.
        assert [m["role"] for m in sent] == ["user", "assistant", "tool", "user"]
        assert sent[1]["tool_calls"][0]["id"] == sent[2]["tool_call_id"]
        assert "not run" in sent[2]["content"]
        assert sent[3] == {"role": "user", "content": "What time is it?"}


# -- a call keeps its id ---------------------------------------------------------------------------------------------


def test_the_openai_server_gets_the_stored_calls_id_with_its_call_and_its_result(
    store: Store, registry: ToolRegistry, fake_tgi: FakeTGI
) -> None:
    engine, backend = make_engine(store, registry, fake_tgi, "openai")
    conversation = engine.create_conversation("ann")
    _reply_with_call(fake_tgi, "openai")
    (proposed,) = of(CallProposed, collect(engine.send(conversation.id, "ann", "Where is A1002?")))
    fake_tgi.reply("It has shipped.")

    collect(engine.confirm(proposed.call.id, None, "ann"))

    sent = _prompt_tail(fake_tgi, backend, registry, "openai")
    assert [m["role"] for m in sent] == ["user", "assistant", "tool"]
    assert sent[1]["tool_calls"][0]["id"] == sent[2]["tool_call_id"] == proposed.call.id
    assert json.loads(sent[1]["tool_calls"][0]["function"]["arguments"]) == LOOKUP["arguments"]
    assert json.loads(sent[2]["content"]) == json.loads(store.messages(conversation.id)[-2].content)
