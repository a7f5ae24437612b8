"""OpenAIBackend against the fake server's `/v1/chat/completions`: text, assembled tool calls, messages, failures."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx
import pytest

from backend.core.calls import FunctionCall
from backend.core.history import Turn
from backend.core.prompts import FUNCTION_RESULT_TEMPLATE
from backend.core.specs import FunctionSpec, load_functions
from backend.errors import GenerationError, ModelError, ModelOverloadedError, ModelTimeoutError, ModelUnavailableError
from backend.models.openai_compat import OpenAIBackend, chat_messages
from backend.models.protocol import GenerationParams, ModelBackend, ReplyDone, TextDelta
from tests.fake_tgi import FakeTGI, Reply, ToolCall, tokenize, unused_port

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
PARIS = {"city": "Paris", "unit": "celsius"}


@dataclass
class Outcome:
    """Everything one `stream()` produced."""

    deltas: list[str] = field(default_factory=list)
    done: ReplyDone | None = None
    error: ModelError | None = None
    elapsed: float = 0.0

    @property
    def text(self) -> str:
        return "".join(self.deltas)


def run(
    backend: OpenAIBackend,
    conversation: Sequence[Turn] = CONVERSATION,
    functions: Sequence[FunctionSpec] = WEATHER,
    **options: object,
) -> Outcome:
    """Stream one reply to the end (or to its error) and record what came out."""

    async def consume() -> Outcome:
        outcome = Outcome()
        start = time.perf_counter()
        try:
            async for event in backend.stream(conversation, list(functions), **options):  # type: ignore[arg-type]
                if isinstance(event, TextDelta):
                    outcome.deltas.append(event.text)
                else:
                    assert outcome.done is None, "only one ReplyDone"
                    outcome.done = event
        except ModelError as error:
            outcome.error = error
        outcome.elapsed = time.perf_counter() - start
        return outcome

    return asyncio.run(consume())


def backend_for(fake: FakeTGI, **options: object) -> OpenAIBackend:
    options.setdefault("retry_backoff", 0.01)
    options.setdefault("timeout", 5.0)
    return OpenAIBackend(fake.url, **options)  # type: ignore[arg-type]


# -- replies -----------------------------------------------------------------------------------------------------


def test_is_a_model_backend(fake_tgi: FakeTGI) -> None:
    assert isinstance(backend_for(fake_tgi), ModelBackend)


def test_streams_text_then_usage(fake_tgi: FakeTGI) -> None:
    fake_tgi.reply("Paris is mild today, 18 degrees.")
    outcome = run(backend_for(fake_tgi))
    assert outcome.error is None
    assert outcome.deltas == tokenize("Paris is mild today, 18 degrees.")
    assert outcome.done is not None
    assert outcome.done.finish_reason == "stop"
    assert outcome.done.calls == []
    assert outcome.done.prompt_tokens == len(tokenize(CONVERSATION[0].text))
    assert outcome.done.generated_tokens == len(outcome.deltas)


def test_tool_call_fragments_are_assembled(fake_tgi: FakeTGI) -> None:
    fake_tgi.call("get_weather", PARIS)
    outcome = run(backend_for(fake_tgi))
    assert outcome.error is None
    assert outcome.text == ""
    assert outcome.done is not None
    assert outcome.done.finish_reason == "tool_calls"
    assert outcome.done.calls == [FunctionCall(name="get_weather", arguments=PARIS)]


def test_tool_call_arguments_sent_as_an_object(fake_tgi: FakeTGI) -> None:
    fake_tgi.add(Reply(tool_calls=[ToolCall("get_weather", PARIS)], arguments_as_object=True))
    outcome = run(backend_for(fake_tgi))
    assert outcome.done is not None
    assert outcome.done.calls == [FunctionCall(name="get_weather", arguments=PARIS)]


def test_text_before_a_call(fake_tgi: FakeTGI) -> None:
    fake_tgi.call("get_weather", PARIS, text="Let me check.")
    outcome = run(backend_for(fake_tgi))
    assert outcome.text == "Let me check."
    assert outcome.done is not None and [c.name for c in outcome.done.calls] == ["get_weather"]


def test_several_calls_keep_their_order(fake_tgi: FakeTGI) -> None:
    fake_tgi.add(Reply(tool_calls=[ToolCall("get_weather", PARIS), ToolCall("get_weather", {"city": "Rome"})]))
    outcome = run(backend_for(fake_tgi))
    assert outcome.done is not None
    assert [c.arguments["city"] for c in outcome.done.calls] == ["Paris", "Rome"]


def test_unreadable_arguments_are_passed_on_as_text(fake_tgi: FakeTGI) -> None:
    fake_tgi.add(Reply(tool_calls=[ToolCall("get_weather", '{"city": "Par')], finish_reason="length"))
    outcome = run(backend_for(fake_tgi))
    assert outcome.done is not None and outcome.done.calls == []
    assert outcome.done.finish_reason == "length"
    assert outcome.text.startswith('{"function": "get_weather", "arguments": {"city": "Par')


def test_talking_instead_of_calling_is_text(fake_tgi: FakeTGI) -> None:
    fake_tgi.call("no_tool", {"content": "Which city do you mean?"})
    outcome = run(backend_for(fake_tgi))
    assert outcome.text == "Which city do you mean?"
    assert outcome.done is not None and outcome.done.calls == []


def test_end_marker_without_a_space(fake_tgi: FakeTGI) -> None:
    fake_tgi.add(Reply(text="All good.", done_marker="[DONE]"))
    outcome = run(backend_for(fake_tgi))
    assert outcome.error is None and outcome.text == "All good."


# -- the request -------------------------------------------------------------------------------------------------


def test_request_carries_tools_model_and_parameters(fake_tgi: FakeTGI) -> None:
    fake_tgi.reply("Fine.")
    params = GenerationParams(max_new_tokens=300, temperature=0.5, top_p=0.8, seed=3, stop=["END"])
    run(backend_for(fake_tgi), params=params, system="Be brief.")
    body = fake_tgi.generations[0].body
    assert fake_tgi.generations[0].path == "/v1/chat/completions"
    assert body["model"] == fake_tgi.model_id
    assert body["tools"] == [WEATHER[0].to_openai_tool()]
    assert body["tool_choice"] == "auto"
    assert body["stream"] is True
    assert (body["max_tokens"], body["temperature"], body["top_p"], body["seed"], body["stop"]) == (
        300,
        0.5,
        0.8,
        3,
        ["END"],
    )
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}


def test_no_tools_without_functions(fake_tgi: FakeTGI) -> None:
    fake_tgi.reply("Fine.")
    run(backend_for(fake_tgi), functions=())
    body = fake_tgi.generations[0].body
    assert "tools" not in body and "tool_choice" not in body


PARIS_CALL = Turn.function_call(FunctionCall(id="c0ffee01", name="get_weather", arguments=PARIS))
ROME_CALL = Turn.function_call(FunctionCall(id="c0ffee02", name="get_weather", arguments={"city": "Rome"}))


def test_conversation_maps_to_chat_messages_with_the_calls_own_ids(fake_tgi: FakeTGI) -> None:
    conversation = [
        Turn.user("Weather in Paris and Rome?"),
        Turn.assistant("Checking both."),
        PARIS_CALL,
        ROME_CALL,
        # The results come back in the order the calls finished, and each names its call.
        Turn.function_result("c0ffee02", '{"temperature": 24}'),
        Turn.function_result("c0ffee01", '{"temperature": 18}'),
        Turn.assistant("Paris 18, Rome 24."),
        Turn.user("Thanks!"),
    ]
    fake_tgi.reply("You're welcome.")
    run(backend_for(fake_tgi), conversation)
    messages = fake_tgi.generations[0].body["messages"]
    assert messages == [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": "Checking both.",
            "tool_calls": [
                {
                    "id": "c0ffee01",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": json.dumps(PARIS)},
                },
                {
                    "id": "c0ffee02",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "c0ffee02", "content": '{"temperature": 24}'},
        {"role": "tool", "tool_call_id": "c0ffee01", "content": '{"temperature": 18}'},
        {"role": "assistant", "content": "Paris 18, Rome 24."},
        {"role": "user", "content": "Thanks!"},
    ]


def test_call_without_prose_gets_its_own_assistant_message() -> None:
    messages = chat_messages([Turn.user("Paris?"), PARIS_CALL, Turn.function_result("c0ffee01", "18")])
    assert messages[1]["role"] == "assistant" and messages[1]["content"] == ""
    assert messages[1]["tool_calls"][0]["id"] == messages[2]["tool_call_id"] == "c0ffee01"


def test_unanswered_call_is_closed_before_the_conversation_goes_on() -> None:
    messages = chat_messages([Turn.user("Paris?"), PARIS_CALL, ROME_CALL, Turn.function_result("c0ffee02", "24"),
                              Turn.user("Never mind.")])
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "tool", "user"]
    assert [messages[2]["tool_call_id"], messages[3]["tool_call_id"]] == ["c0ffee02", "c0ffee01"]
    assert messages[3]["content"] == "(no result: the call was not run)"


def test_result_without_its_call_becomes_a_user_turn() -> None:
    # The history was cut before the call: a `tool` message naming an absent call would be refused by the server.
    messages = chat_messages([Turn.function_result("gone", "18")])
    assert messages == [{"role": "user", "content": FUNCTION_RESULT_TEMPLATE.format(result="18")}]


# -- server facts ------------------------------------------------------------------------------------------------


def test_model_comes_from_the_models_list(fake_tgi: FakeTGI) -> None:
    info = asyncio.run(backend_for(fake_tgi).info())
    assert info.backend == "openai" and info.model_id == fake_tgi.model_id and info.call_mode == "parse"
    assert [r.path for r in fake_tgi.requests] == ["/v1/models"]


def test_a_server_that_names_no_model_is_not_shown_by_its_address() -> None:
    with FakeTGI(model_id="") as fake:
        fake.reply("Fine.")
        backend = backend_for(fake)
        assert run(backend).text == "Fine."
        assert asyncio.run(backend.info()).model_id == "unnamed model"


def test_configured_model_is_used(fake_tgi: FakeTGI) -> None:
    fake_tgi.reply("Fine.")
    run(backend_for(fake_tgi, model="my-model"))
    assert fake_tgi.generations[0].body["model"] == "my-model"


def test_endpoint_ending_in_v1(fake_tgi: FakeTGI) -> None:
    fake_tgi.reply("Fine.")
    backend = OpenAIBackend(fake_tgi.url + "/v1", retry_backoff=0.01)
    assert run(backend).text == "Fine."
    assert asyncio.run(backend.health()) is True
    assert {r.path for r in fake_tgi.requests} == {"/v1/models", "/v1/chat/completions"}


def test_api_key_is_sent_as_bearer() -> None:
    with FakeTGI(token="sk-test") as fake:
        fake.reply("Fine.")
        assert run(backend_for(fake, api_key="sk-test")).text == "Fine."
        assert {r.headers.get("authorization") for r in fake.requests} == {"Bearer sk-test"}


def test_wrong_api_key_is_reported(fake_tgi: FakeTGI) -> None:
    fake_tgi.token = "sk-right"
    outcome = run(backend_for(fake_tgi, api_key="sk-wrong"))
    assert isinstance(outcome.error, ModelUnavailableError) and "credentials" in str(outcome.error)
    assert len(fake_tgi.requests) == 1


# -- failures ----------------------------------------------------------------------------------------------------


def test_overload_is_retried_then_reported(fake_tgi: FakeTGI) -> None:
    for _ in range(3):
        fake_tgi.fail(429, "Model is overloaded", "overloaded")
    outcome = run(backend_for(fake_tgi, retries=2))
    assert isinstance(outcome.error, ModelOverloadedError)
    assert "overloaded — try again in a moment" in str(outcome.error)
    assert len(fake_tgi.generations) == 3


def test_retry_before_the_first_chunk_succeeds(fake_tgi: FakeTGI) -> None:
    fake_tgi.proxy_error(502)
    fake_tgi.call("get_weather", PARIS)
    outcome = run(backend_for(fake_tgi))
    assert outcome.error is None and outcome.done is not None and len(outcome.done.calls) == 1
    assert len(fake_tgi.generations) == 2


def test_openai_style_error_body_is_read(fake_tgi: FakeTGI) -> None:
    body = json.dumps({"error": {"message": "tools are not supported", "type": "invalid_request_error"}})
    fake_tgi.add(Reply(status=400, body=body, content_type="application/json"))
    outcome = run(backend_for(fake_tgi))
    assert "tools are not supported" in str(outcome.error)
    assert outcome.error is not None and outcome.error.retryable is False


def test_error_in_the_middle_keeps_the_text(fake_tgi: FakeTGI) -> None:
    fake_tgi.fail_in_stream(3, "Request failed during generation: CUDA out of memory", text="The weather in Paris is")
    outcome = run(backend_for(fake_tgi))
    assert isinstance(outcome.error, GenerationError) and "cut off part-way" in str(outcome.error)
    assert outcome.text == "".join(tokenize("The weather in Paris is")[:3])
    assert len(fake_tgi.generations) == 1


def test_a_context_overflow_says_what_to_do_and_keeps_the_address_to_the_log(
    fake_tgi: FakeTGI, caplog: pytest.LogCaptureFixture
) -> None:
    detail = "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens."
    fake_tgi.add(Reply(status=400, body=json.dumps({"error": {"message": detail}}), content_type="application/json"))
    backend = backend_for(fake_tgi)
    with caplog.at_level(logging.WARNING, logger="backend.models.hf_client"):
        outcome = run(backend)
    assert str(outcome.error) == (
        f"This message is too long for the model ({detail.rstrip('.')}). Shorten it, or start a new conversation."
    )
    assert any(fake_tgi.url in r.getMessage() for r in caplog.records)
    assert backend.last_failure is None, "input that is too long is not a server failure"


def test_last_failure_follows_the_latest_request(fake_tgi: FakeTGI) -> None:
    backend = backend_for(fake_tgi, retries=0)
    fake_tgi.fail(429, "Model is overloaded", "overloaded")
    failed = run(backend)
    assert backend.last_failure is not None and backend.last_failure.reason == str(failed.error)
    fake_tgi.call("get_weather", PARIS)
    assert run(backend).error is None and backend.last_failure is None


def test_connection_refused() -> None:
    outcome = run(OpenAIBackend(f"http://127.0.0.1:{unused_port()}", retry_backoff=0.01))
    assert isinstance(outcome.error, ModelUnavailableError) and "cannot be reached right now" in str(outcome.error)


def test_timeout(fake_tgi: FakeTGI) -> None:
    asyncio.run(backend_for(fake_tgi).info())
    fake_tgi.add(Reply(text="Too slow.", headers_delay=1.5))
    outcome = run(backend_for(fake_tgi, timeout=0.3))
    assert isinstance(outcome.error, ModelTimeoutError)
    assert len(fake_tgi.generations) == 1


def test_non_streamed_fake_reply_matches_the_stream(fake_tgi: FakeTGI) -> None:
    """The fake's non-streamed answer carries the same text and calls as its stream (for other helpers' tests)."""
    fake_tgi.call("get_weather", PARIS, text="Checking.")
    response = httpx.post(f"{fake_tgi.url}/v1/chat/completions", json={"messages": chat_messages(CONVERSATION), "stream": False})
    message = response.json()["choices"][0]["message"]
    assert message["content"] == "Checking."
    assert json.loads(message["tool_calls"][0]["function"]["arguments"]) == PARIS
