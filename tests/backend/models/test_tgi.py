"""TGIBackend against the fake TGI server on a real socket: streaming, prompts, grammar re-requests, every failure."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pytest

from backend.core.history import Turn
from backend.core.prompts import format_prompt
from backend.core.specs import FunctionSpec, calls_schema, load_functions
from backend.errors import (
    GenerationError,
    ModelError,
    ModelInputError,
    ModelOverloadedError,
    ModelTimeoutError,
    ModelUnavailableError,
    PromptTooLongError,
)
from backend.models.protocol import GenerationParams, ModelBackend, ReplyDone, TextDelta
from backend.models.tgi import TGIBackend
from tests.fake_tgi import FakeTGI, Reply, tokenize, unused_port

CONVERSATION = [Turn.user("What is the weather like in Paris?")]
WEATHER = load_functions(
    {
        "function": "get_weather",
        "description": "Current weather in a city.",
        "arguments": [
            {"name": "city", "type": "string", "description": "City name"},
            {"name": "unit", "type": "string", "description": "celsius or fahrenheit"},
        ],
    }
)
CALL = '{"function": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}'
GUIDED_CALL = '{"function": "get_weather", "arguments": {"city": "Paris", "unit": "fahrenheit"}}'


@dataclass
class Outcome:
    """Everything one `stream()` produced."""

    deltas: list[str] = field(default_factory=list)
    done: ReplyDone | None = None
    error: ModelError | None = None
    first_delta_at: float | None = None
    elapsed: float = 0.0

    @property
    def text(self) -> str:
        return "".join(self.deltas)


def run(
    backend: TGIBackend,
    conversation: Sequence[Turn] = CONVERSATION,
    functions: Sequence[FunctionSpec] = (),
    **options: object,
) -> Outcome:
    """Stream one reply to the end (or to its error) and record what came out."""

    async def consume() -> Outcome:
        outcome = Outcome()
        start = time.perf_counter()
        try:
            async for event in backend.stream(conversation, list(functions), **options):  # type: ignore[arg-type]
                if isinstance(event, TextDelta):
                    if outcome.first_delta_at is None:
                        outcome.first_delta_at = time.perf_counter() - start
                    outcome.deltas.append(event.text)
                else:
                    assert outcome.done is None, "only one ReplyDone"
                    outcome.done = event
        except ModelError as error:
            outcome.error = error
        outcome.elapsed = time.perf_counter() - start
        return outcome

    return asyncio.run(consume())


def backend_for(fake: FakeTGI, **options: object) -> TGIBackend:
    options.setdefault("retry_backoff", 0.01)
    options.setdefault("timeout", 5.0)
    return TGIBackend(fake.url, **options)  # type: ignore[arg-type]


def wait_for(condition: Callable[[], bool], timeout: float = 3.0) -> bool:
    """Poll `condition` until it holds (the fake server notices hang-ups in its own thread)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


# -- streaming ---------------------------------------------------------------------------------------------------


def test_is_a_model_backend(fake_tgi: FakeTGI) -> None:
    assert isinstance(backend_for(fake_tgi), ModelBackend)


def test_streams_tokens_in_order_then_reports_counts(fake_tgi: FakeTGI) -> None:
    answer = "Paris is mild today: 18 degrees and a light breeze."
    fake_tgi.reply(answer)
    outcome = run(backend_for(fake_tgi))
    assert outcome.error is None
    assert outcome.text == answer
    assert outcome.deltas == tokenize(answer)
    assert outcome.done is not None
    assert outcome.done.finish_reason == "eos_token"
    assert outcome.done.generated_tokens == len(tokenize(answer)) + 1  # the end-of-sequence token counts
    assert outcome.done.prompt_tokens == len(tokenize(fake_tgi.generations[0].prompt))
    assert outcome.done.calls == []


def test_tokens_arrive_as_they_are_generated(fake_tgi: FakeTGI) -> None:
    fake_tgi.reply("one two three four five six seven eight", token_delay=0.05)
    outcome = run(backend_for(fake_tgi))
    assert outcome.first_delta_at is not None
    assert outcome.first_delta_at < outcome.elapsed / 2


def test_prompt_is_the_trelis_prompt(fake_tgi: FakeTGI) -> None:
    fake_tgi.reply("Sure.")
    conversation = [
        Turn.user("Hi"),
        Turn.assistant("Hello! How can I help?"),
        Turn.user("Weather in Paris?"),
    ]
    run(backend_for(fake_tgi, style="mistral", call_mode="parse"), conversation, WEATHER, system="Be brief.")
    expected = format_prompt(conversation, WEATHER, system="Be brief.", style="mistral")
    assert fake_tgi.generations[0].prompt == expected


def test_parameters_reach_the_server(fake_tgi: FakeTGI) -> None:
    fake_tgi.reply("Fine.")
    params = GenerationParams(
        max_new_tokens=200, temperature=0.7, top_p=0.9, top_k=40, repetition_penalty=1.1, stop=["END"], seed=7
    )
    run(backend_for(fake_tgi), params=params)
    sent = fake_tgi.generations[0]
    assert sent.body["stream"] is True
    assert sent.parameters == {
        "details": True,
        "do_sample": True,
        "max_new_tokens": 200,
        "repetition_penalty": 1.1,
        "seed": 7,
        "stop": ["</s>", "[INST]", "END"],
        "temperature": 0.7,
        "top_k": 40,
        "top_p": 0.9,
    }


def test_default_parameters_are_trelis_settings(fake_tgi: FakeTGI) -> None:
    fake_tgi.reply("Fine.")
    run(backend_for(fake_tgi))
    sent = fake_tgi.generations[0].parameters
    assert (sent["temperature"], sent["top_p"], sent["top_k"], sent["repetition_penalty"]) == (0.2, 0.95, 50, 1.2)
    assert sent["max_new_tokens"] == 1024


def test_temperature_zero_is_greedy(fake_tgi: FakeTGI) -> None:
    fake_tgi.reply("Fine.")
    run(backend_for(fake_tgi), params=GenerationParams(temperature=0, top_p=1.0))
    sent = fake_tgi.generations[0].parameters
    assert sent["do_sample"] is False
    assert "temperature" not in sent and "top_p" not in sent and "top_k" not in sent


def test_top_p_of_one_is_left_out(fake_tgi: FakeTGI) -> None:
    fake_tgi.reply("Fine.")
    run(backend_for(fake_tgi), params=GenerationParams(top_p=1.0))
    assert "top_p" not in fake_tgi.generations[0].parameters  # TGI refuses top_p >= 1


def test_stop_sequence_is_not_part_of_the_answer(fake_tgi: FakeTGI) -> None:
    fake_tgi.reply("It is sunny. [INST] and more the user never sees")
    outcome = run(backend_for(fake_tgi))
    assert outcome.done is not None and outcome.done.finish_reason == "stop_sequence"
    assert outcome.text == "It is sunny. "


def test_text_that_only_looks_like_a_stop_sequence_is_shown(fake_tgi: FakeTGI) -> None:
    fake_tgi.reply("Use [brackets] and </b> tags.")
    assert run(backend_for(fake_tgi)).text == "Use [brackets] and </b> tags."


def test_stop_sequences_fit_the_server_limit() -> None:
    with FakeTGI(max_stop_sequences=2) as fake:
        fake.reply("Fine.")
        outcome = run(backend_for(fake), params=GenerationParams(stop=["END", "STOP"]))
        assert outcome.error is None
        assert fake.generations[0].parameters["stop"] == ["</s>", "[INST]"]


def test_long_reply_ends_on_length(fake_tgi: FakeTGI) -> None:
    fake_tgi.reply("word " * 50)
    outcome = run(backend_for(fake_tgi), params=GenerationParams(max_new_tokens=5))
    assert outcome.done is not None and outcome.done.finish_reason == "length"
    assert len(outcome.deltas) == 5


# -- server facts ------------------------------------------------------------------------------------------------


def test_info_is_read_once(fake_tgi: FakeTGI) -> None:
    backend = backend_for(fake_tgi)

    async def twice() -> None:
        first = await backend.info()
        assert first.model_id == fake_tgi.model_id
        assert (first.max_input_tokens, first.max_total_tokens) == (4000, 4096)
        assert first.backend == "tgi" and first.call_mode == "grammar" and not first.demo
        await backend.info()

    asyncio.run(twice())
    assert [r.path for r in fake_tgi.requests] == ["/info"]


def test_oldest_turns_are_dropped_to_leave_room_for_the_reply() -> None:
    # 1100 total - 1024 new tokens leaves about 76 prompt tokens (about 230 characters by the estimate).
    with FakeTGI(max_input_tokens=4000, max_total_tokens=1100) as fake:
        fake.reply("Fine.")
        conversation = [
            Turn.user("First a question about the weather in Rome, " + "which matters a lot to me. " * 3),
            Turn.assistant("Rome is warm and sunny, with a light wind from the sea, " + "as usual. " * 5),
            Turn.user("And Paris?"),
        ]
        outcome = run(backend_for(fake), conversation)
        assert outcome.error is None
        prompt = fake.generations[0].prompt
        assert "And Paris?" in prompt and "Rome" not in prompt


def test_prompt_too_long_is_refused_before_sending() -> None:
    with FakeTGI(max_input_tokens=50, max_total_tokens=2048) as fake:
        with pytest.raises(PromptTooLongError):
            run(backend_for(fake), [Turn.user("Tell me a long story. " * 40)])
        assert fake.generations == []


def test_max_new_tokens_larger_than_the_context_is_refused(fake_tgi: FakeTGI) -> None:
    outcome = run(backend_for(fake_tgi), params=GenerationParams(max_new_tokens=5000))
    assert isinstance(outcome.error, ModelInputError)
    assert "Max new tokens (5,000)" in str(outcome.error)
    assert fake_tgi.generations == []


def test_server_validation_message_is_passed_on(fake_tgi: FakeTGI) -> None:
    fake_tgi.max_input_tokens = 5
    outcome = run(backend_for(fake_tgi, count_tokens=lambda text: 1))  # a tokenizer that undercounts
    assert isinstance(outcome.error, ModelInputError)
    assert str(outcome.error) == (
        "This message is too long for the model (about 18 tokens; it reads at most 5). "
        "Shorten it, or start a new conversation."
    )
    assert len(fake_tgi.generations) == 1  # input errors are not retried


def test_server_without_info_route_still_generates(fake_tgi: FakeTGI) -> None:
    fake_tgi.info_status = 404
    fake_tgi.reply("Fine.")
    backend = backend_for(fake_tgi)
    assert run(backend).text == "Fine."
    info = asyncio.run(backend.info())
    assert info.model_id == "unnamed TGI model" and info.max_input_tokens is None  # never the server's address


def test_health(fake_tgi: FakeTGI) -> None:
    backend = backend_for(fake_tgi)
    assert asyncio.run(backend.health()) is True
    fake_tgi.healthy = False
    assert asyncio.run(backend.health()) is False
    fake_tgi.stop()
    assert asyncio.run(backend.health()) is False


def test_token_is_sent_as_bearer() -> None:
    with FakeTGI(token="s3cret") as fake:
        fake.reply("Fine.")
        assert run(backend_for(fake, token="s3cret")).text == "Fine."
        assert {r.headers.get("authorization") for r in fake.requests} == {"Bearer s3cret"}


def test_wrong_token_is_reported_and_not_retried() -> None:
    with FakeTGI(token="s3cret") as fake:
        fake.info_status = 404
        fake.reply("Fine.")
        outcome = run(backend_for(fake, token="wrong"))
        assert isinstance(outcome.error, ModelUnavailableError)
        assert "credentials" in str(outcome.error) and outcome.error.status == 401
        assert outcome.error.retryable is False
        assert len(fake.requests) == 1


def test_the_machines_own_hugging_face_token_is_never_sent(fake_tgi: FakeTGI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_machine_token_that_must_not_leak")
    fake_tgi.reply("Fine.")
    backend = backend_for(fake_tgi)
    assert run(backend).text == "Fine."
    asyncio.run(backend.health())
    assert all("authorization" not in r.headers for r in fake_tgi.requests)


# -- calls valid by construction ---------------------------------------------------------------------------------


def test_free_text_stays_free(fake_tgi: FakeTGI) -> None:
    fake_tgi.reply("Hello! Which city would you like the weather for?")
    outcome = run(backend_for(fake_tgi), functions=WEATHER)
    assert outcome.text == "Hello! Which city would you like the weather for?"
    assert len(fake_tgi.generations) == 1
    assert fake_tgi.generations[0].grammar is None


def test_a_call_is_asked_again_under_the_calls_grammar(fake_tgi: FakeTGI) -> None:
    fake_tgi.reply(CALL, when_grammar=GUIDED_CALL, token_delay=0.02)
    outcome = run(backend_for(fake_tgi), functions=WEATHER)
    assert outcome.error is None
    probe, guided = fake_tgi.generations
    assert probe.grammar is None
    assert guided.grammar == {"type": "json", "value": calls_schema(WEATHER)}
    assert guided.prompt == probe.prompt
    assert outcome.text == GUIDED_CALL  # nothing of the free attempt's call leaks into the reply
    assert json.loads(outcome.text)["arguments"]["unit"] == "fahrenheit"
    assert outcome.done is not None and outcome.done.finish_reason == "eos_token"
    assert wait_for(lambda: probe.disconnected), "the free attempt was not cancelled"


def test_prose_before_a_call_is_kept_and_continued(fake_tgi: FakeTGI) -> None:
    fake_tgi.reply("Let me look that up for you.\n" + CALL, when_grammar=GUIDED_CALL)
    outcome = run(backend_for(fake_tgi), functions=WEATHER)
    probe, guided = fake_tgi.generations
    assert outcome.text.endswith(GUIDED_CALL)
    prose = outcome.text[: -len(GUIDED_CALL)]
    assert prose.startswith("Let me look that up for you.")
    assert guided.prompt == probe.prompt + prose
    assert guided.grammar is not None


def test_grammar_refused_falls_back_to_parsing_and_is_remembered() -> None:
    with FakeTGI(supports_grammar=False) as fake:
        fake.reply(CALL)
        fake.reply(CALL)
        backend = backend_for(fake)
        outcome = run(backend, functions=WEATHER)
        assert outcome.error is None
        assert outcome.text == CALL
        assert [r.grammar is not None for r in fake.generations] == [False, True, False]
        assert asyncio.run(backend.info()).call_mode == "parse"

        fake.reply(CALL)
        assert run(backend, functions=WEATHER).text == CALL
        assert len(fake.generations) == 4 and fake.generations[3].grammar is None


def test_parse_mode_never_sends_a_grammar(fake_tgi: FakeTGI) -> None:
    fake_tgi.reply(CALL)
    outcome = run(backend_for(fake_tgi, call_mode="parse"), functions=WEATHER)
    assert outcome.text == CALL
    assert len(fake_tgi.generations) == 1 and fake_tgi.generations[0].grammar is None


def test_without_functions_there_is_no_grammar(fake_tgi: FakeTGI) -> None:
    fake_tgi.reply(CALL)
    assert run(backend_for(fake_tgi)).text == CALL
    assert len(fake_tgi.generations) == 1 and fake_tgi.generations[0].grammar is None


# -- failures ----------------------------------------------------------------------------------------------------

FAILURES = [
    pytest.param(
        lambda f: f.fail(422, "Input validation error: `temperature` must be strictly positive", "validation"),
        ModelInputError,
        "must be strictly positive",
        1,
        id="422-validation",
    ),
    pytest.param(
        lambda f: f.fail(429, "Model is overloaded", "overloaded"),
        ModelOverloadedError,
        "overloaded — try again in a moment",
        3,
        id="429-overloaded",
    ),
    pytest.param(
        lambda f: f.fail(424, "Request failed during generation: CUDA out of memory", "generation"),
        GenerationError,
        "The model failed while writing its answer — try again.",
        3,
        id="424-generation",
    ),
    pytest.param(
        lambda f: f.fail(500, "Incomplete generation", "incomplete_generation"),
        GenerationError,
        "stopped before the reply was complete",
        3,
        id="500-incomplete",
    ),
    pytest.param(lambda f: f.proxy_error(502), ModelUnavailableError, "not available right now", 3, id="502-proxy-html"),
    pytest.param(lambda f: f.proxy_error(503), ModelUnavailableError, "may still be starting", 3, id="503-proxy-html"),
    pytest.param(lambda f: f.proxy_error(504), ModelTimeoutError, "timed out — try again", 1, id="504-proxy-html"),
    pytest.param(
        lambda f: f.fail_in_stream(0, "Model is overloaded", "overloaded"),
        ModelOverloadedError,
        "overloaded",
        3,
        id="overloaded-event",
    ),
    pytest.param(
        lambda f: f.fail_in_stream(0, "Input validation error: `stop` supports up to 4", "validation"),
        ModelInputError,
        "`stop` supports up to 4",
        1,
        id="validation-event",
    ),
]


FAILURES += [
    pytest.param(
        lambda f: f.fail(401, "Authorization header is missing or invalid", "authentication"),
        ModelUnavailableError,
        "refused Callcard's credentials. Tell the person who runs this Callcard.",
        1,
        id="401-credentials",
    ),
    pytest.param(
        lambda f: f.fail(404, "No route /generate_stream", "not_found"),
        ModelUnavailableError,
        "does not offer what Callcard asks for",
        1,
        id="404-no-route",
    ),
    pytest.param(
        lambda f: f.fail(413, "Payload too large", "validation"),
        ModelInputError,
        "This message is too long for the model (the request was larger than the server accepts). Shorten it, "
        "or start a new conversation.",
        1,
        id="413-too-large",
    ),
    pytest.param(
        lambda f: f.fail(
            422,
            "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096. "
            "Given: 4000 `inputs` tokens and 200 `max_new_tokens`",
            "validation",
        ),
        ModelInputError,
        "This message is too long for the model (about 4,000 tokens and room for a 200-token answer; it holds "
        "4,096). Shorten it, or start a new conversation.",
        1,
        id="422-total-too-long",
    ),
    pytest.param(
        lambda f: f.fail(500, "upstream http://10.0.0.7:8080/generate failed", "unknown"),
        GenerationError,
        "The model server failed — try again.",
        3,
        id="500-with-an-internal-address",
    ),
]


@pytest.mark.parametrize(("script", "error_type", "message", "requests"), FAILURES)
def test_failures_become_readable_errors(
    fake_tgi: FakeTGI, script: Callable[[FakeTGI], None], error_type: type[ModelError], message: str, requests: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    for _ in range(3):
        script(fake_tgi)
    with caplog.at_level(logging.WARNING, logger="backend.models.hf_client"):
        outcome = run(backend_for(fake_tgi, retries=2))
    assert type(outcome.error) is error_type
    assert message in str(outcome.error)
    assert "<html" not in str(outcome.error).lower()
    assert outcome.deltas == []
    assert len(fake_tgi.generations) == requests
    # People see plain words; the operator finds the address and the server's own words in the log.
    assert "http" not in str(outcome.error) and "127.0.0.1" not in str(outcome.error)
    assert any(fake_tgi.url in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


def test_last_failure_is_set_by_a_failed_request_and_cleared_by_the_next_success(fake_tgi: FakeTGI) -> None:
    backend = backend_for(fake_tgi, retries=0)
    assert backend.last_failure is None
    fake_tgi.proxy_error(503)

    failed = run(backend)

    failure = backend.last_failure
    assert failure is not None and failure.reason == str(failed.error) and failure.at.tzinfo is not None
    fake_tgi.fail(422, "Input validation error: `inputs` must have less than 4000 tokens. Given: 4500", "validation")
    assert isinstance(run(backend).error, ModelInputError)
    assert backend.last_failure == failure, "a message that is too long says nothing about the server"
    fake_tgi.reply("Fine.")
    assert run(backend).text == "Fine."
    assert backend.last_failure is None
    fake_tgi.stop()
    assert asyncio.run(backend.health()) is False
    assert backend.last_failure is not None and "cannot be reached" in backend.last_failure.reason
    fake_tgi.start()
    assert asyncio.run(backend.health()) is True and backend.last_failure is None


def test_passing_failures_are_retried_before_the_first_token(fake_tgi: FakeTGI) -> None:
    fake_tgi.fail(429, "Model is overloaded", "overloaded")
    fake_tgi.proxy_error(503)
    fake_tgi.reply("Third time lucky.")
    outcome = run(backend_for(fake_tgi, retries=2))
    assert outcome.error is None
    assert outcome.text == "Third time lucky."
    assert len(fake_tgi.generations) == 3


def test_retries_can_be_turned_off(fake_tgi: FakeTGI) -> None:
    fake_tgi.fail(429, "Model is overloaded", "overloaded")
    fake_tgi.reply("Too late.")
    outcome = run(backend_for(fake_tgi, retries=0))
    assert isinstance(outcome.error, ModelOverloadedError)
    assert len(fake_tgi.generations) == 1


def test_error_in_the_middle_keeps_the_partial_text_and_is_not_retried(fake_tgi: FakeTGI) -> None:
    fake_tgi.fail_in_stream(4, "Request failed during generation: CUDA out of memory", text="The weather in Paris is")
    fake_tgi.reply("A retry would duplicate this.")
    outcome = run(backend_for(fake_tgi, retries=2))
    assert isinstance(outcome.error, GenerationError)
    assert "cut off part-way" in str(outcome.error) and "failed while writing its answer" in str(outcome.error)
    assert outcome.text == "".join(tokenize("The weather in Paris is")[:4])
    assert outcome.done is None
    assert len(fake_tgi.generations) == 1


def test_dropped_connection_in_the_middle_is_a_generation_error(fake_tgi: FakeTGI) -> None:
    fake_tgi.add(Reply(text="The weather in Paris is mild", drop_after=3))
    outcome = run(backend_for(fake_tgi))
    assert isinstance(outcome.error, GenerationError)
    assert "cut off part-way" in str(outcome.error) and "connection" in str(outcome.error)
    assert outcome.text == "".join(tokenize("The weather in Paris is mild")[:3])
    assert len(fake_tgi.generations) == 1


def test_connection_refused() -> None:
    backend = TGIBackend(f"http://127.0.0.1:{unused_port()}", retries=2, retry_backoff=0.01)
    outcome = run(backend)
    assert isinstance(outcome.error, ModelUnavailableError)
    assert str(outcome.error) == "The model server cannot be reached right now. Try again in a moment."
    assert asyncio.run(backend.health()) is False


def test_server_gone_after_start(fake_tgi: FakeTGI) -> None:
    fake_tgi.reply("First answer.")
    backend = backend_for(fake_tgi)
    assert run(backend).text == "First answer."
    fake_tgi.stop()
    outcome = run(backend)
    assert isinstance(outcome.error, ModelUnavailableError)
    assert "cannot be reached right now" in str(outcome.error)


@pytest.mark.parametrize("info_read_before", [True, False])
def test_server_back_within_the_retries(fake_tgi: FakeTGI, info_read_before: bool) -> None:
    backend = backend_for(fake_tgi, retries=3, retry_backoff=0.2)
    if info_read_before:
        asyncio.run(backend.info())
    fake_tgi.stop()
    fake_tgi.reply("Back again.")

    async def restart_soon() -> None:
        await asyncio.sleep(0.1)
        await asyncio.to_thread(fake_tgi.start)

    async def both() -> Outcome:
        restarting = asyncio.create_task(restart_soon())
        outcome = await asyncio.to_thread(run, backend)
        await restarting
        return outcome

    outcome = asyncio.run(both())
    assert outcome.error is None and outcome.text == "Back again."


def test_slow_first_byte_times_out_without_retrying(fake_tgi: FakeTGI) -> None:
    fake_tgi.add(Reply(text="Too slow.", headers_delay=1.5))
    outcome = run(backend_for(fake_tgi, timeout=0.3, retries=2))
    assert isinstance(outcome.error, ModelTimeoutError)
    assert "did not answer within 0.3 seconds" in str(outcome.error)
    assert outcome.elapsed < 1.2
    assert len(fake_tgi.generations) == 1


def test_slow_first_token_times_out(fake_tgi: FakeTGI) -> None:
    fake_tgi.add(Reply(text="Too slow.", first_token_delay=1.5))
    outcome = run(backend_for(fake_tgi, timeout=0.3))
    assert isinstance(outcome.error, ModelTimeoutError)
    assert outcome.deltas == []


def test_stalling_in_the_middle_times_out_and_keeps_the_text(fake_tgi: FakeTGI) -> None:
    fake_tgi.add(Reply(tokens=["The", " weather", " is", " fine"], token_delay=1.0))
    outcome = run(backend_for(fake_tgi, timeout=0.3))
    assert isinstance(outcome.error, GenerationError)
    assert "did not answer within 0.3 seconds" in str(outcome.error)
    assert outcome.text == "The"


def test_failure_of_the_grammar_request_is_retried_without_duplicating_prose(fake_tgi: FakeTGI) -> None:
    fake_tgi.add(Reply(text="Checking.\n" + CALL, grammar=False))
    fake_tgi.add(Reply(status=429, error="Model is overloaded", error_type="overloaded", grammar=True))
    fake_tgi.add(Reply(text=GUIDED_CALL, grammar=True))
    outcome = run(backend_for(fake_tgi), functions=WEATHER)
    assert outcome.error is None
    assert outcome.text.count("Checking.") == 1
    assert outcome.text.endswith(GUIDED_CALL)
    assert [r.grammar is not None for r in fake_tgi.generations] == [False, True, True]


def test_hub_offline_mode_does_not_block_the_model_server(fake_tgi: FakeTGI, monkeypatch: pytest.MonkeyPatch) -> None:
    # HF_HUB_OFFLINE is about the Hub; huggingface_hub's own HTTP client would refuse even a local TGI server.
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    fake_tgi.reply("Fine.")
    assert run(backend_for(fake_tgi)).text == "Fine."
