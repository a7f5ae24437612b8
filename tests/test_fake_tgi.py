"""The fake TGI server itself: its wire format is what TGI sends, so the backend tests mean something."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.fake_tgi import FakeTGI, Reply, tokenize, unused_port


def _events(response: httpx.Response) -> list[str]:
    return [line for line in response.text.split("\n\n") if line]


def test_tokens_join_back_to_the_text() -> None:
    text = 'Hello, world! {"function": "f", "arguments": {"n": 12345}}\n  done'
    assert "".join(tokenize(text)) == text
    assert max(len(t.strip()) for t in tokenize(text)) <= 4


def test_stream_is_tgi_server_sent_events(fake_tgi: FakeTGI) -> None:
    fake_tgi.reply("Hi there")
    response = httpx.post(f"{fake_tgi.url}/generate_stream", json={"inputs": "Say hi", "parameters": {"details": True}})
    assert response.headers["content-type"] == "text/event-stream"
    assert response.headers["transfer-encoding"] == "chunked"
    events = _events(response)
    assert all(event.startswith("data:{") for event in events)
    payloads = [json.loads(event.removeprefix("data:")) for event in events]
    assert [p["token"]["text"] for p in payloads] == ["Hi", " ther", "e", "</s>"]
    assert [p["index"] for p in payloads] == [1, 2, 3, 4]
    assert payloads[-1]["token"]["special"] is True
    assert all(p["generated_text"] is None and p["details"] is None for p in payloads[:-1])
    assert payloads[-1]["generated_text"] == "Hi there"
    assert payloads[-1]["details"] == {
        "finish_reason": "eos_token",
        "generated_tokens": 4,
        "input_length": 2,
        "seed": None,
    }


def test_generate_returns_one_json_answer(fake_tgi: FakeTGI) -> None:
    fake_tgi.reply("Hi there")
    answer = httpx.post(f"{fake_tgi.url}/generate", json={"inputs": "Say hi"}).json()
    assert answer["generated_text"] == "Hi there"
    assert answer["details"]["finish_reason"] == "eos_token"


def test_validation_is_a_422_without_streaming_and_an_event_with_it(fake_tgi: FakeTGI) -> None:
    too_many = {"inputs": "x", "parameters": {"stop": ["a", "b", "c", "d", "e"]}}
    refused = httpx.post(f"{fake_tgi.url}/generate", json=too_many)
    assert refused.status_code == 422
    assert refused.json() == {
        "error": "Input validation error: `stop` supports up to 4 stop sequences. Given: 5",
        "error_type": "validation",
    }
    streamed = httpx.post(f"{fake_tgi.url}/generate_stream", json=too_many)
    assert streamed.status_code == 200
    assert json.loads(_events(streamed)[0].removeprefix("data:"))["error_type"] == "validation"


def test_grammar_requests_get_their_own_replies(fake_tgi: FakeTGI) -> None:
    fake_tgi.reply("free", when_grammar='{"a": 1}')
    grammar = {"type": "json", "value": {"type": "object"}}
    constrained = httpx.post(f"{fake_tgi.url}/generate", json={"inputs": "x", "parameters": {"grammar": grammar}})
    free = httpx.post(f"{fake_tgi.url}/generate", json={"inputs": "x"})
    assert constrained.json()["generated_text"] == '{"a": 1}'
    assert free.json()["generated_text"] == "free"
    assert [r.grammar for r in fake_tgi.generations] == [grammar, None]


def test_unscripted_request_is_an_error(fake_tgi: FakeTGI) -> None:
    assert httpx.post(f"{fake_tgi.url}/generate", json={"inputs": "x"}).status_code == 500


def test_info_tokenize_and_health(fake_tgi: FakeTGI) -> None:
    info = httpx.get(f"{fake_tgi.url}/info").json()
    assert (info["model_id"], info["max_input_tokens"], info["max_total_tokens"]) == (fake_tgi.model_id, 4000, 4096)
    tokens = httpx.post(f"{fake_tgi.url}/tokenize", json={"inputs": "Hello world"}).json()
    assert [t["text"] for t in tokens] == ["Hell", "o", " worl", "d"]
    assert httpx.get(f"{fake_tgi.url}/health").status_code == 200
    fake_tgi.healthy = False
    assert httpx.get(f"{fake_tgi.url}/health").status_code == 503


def test_chat_stream_ends_with_done(fake_tgi: FakeTGI) -> None:
    fake_tgi.reply("Hi")
    body = {"messages": [{"role": "user", "content": "hi"}], "stream": True, "stream_options": {"include_usage": True}}
    events = _events(httpx.post(f"{fake_tgi.url}/v1/chat/completions", json=body))
    assert events[-1] == "data: [DONE]"
    usage = json.loads(events[-2].removeprefix("data:"))
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 1


def test_stopped_server_refuses_connections() -> None:
    fake = FakeTGI().start()
    url = fake.url
    fake.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/health")
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{unused_port()}/health")


def test_proxy_error_is_html(fake_tgi: FakeTGI) -> None:
    fake_tgi.proxy_error(502)
    response = httpx.post(f"{fake_tgi.url}/generate_stream", json={"inputs": "x"})
    assert response.status_code == 502 and response.headers["content-type"] == "text/html"


def test_dropped_stream_is_an_incomplete_body(fake_tgi: FakeTGI) -> None:
    fake_tgi.add(Reply(text="one two three", drop_after=1))
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.post(f"{fake_tgi.url}/generate_stream", json={"inputs": "x"})


def test_clear_forgets_the_script_and_the_requests(fake_tgi: FakeTGI) -> None:
    fake_tgi.reply("never sent")
    httpx.get(f"{fake_tgi.url}/health")
    fake_tgi.clear()
    assert fake_tgi.pending == 0 and fake_tgi.requests == []
