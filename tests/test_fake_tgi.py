"""The fake TGI server itself: its wire format is what TGI sends, so the backend tests mean something."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

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


def _stream_events(url: str, body: dict[str, Any], path: str = "/generate_stream") -> list[Any]:
    """The events of one streamed request, decoded (the chat stream's `[DONE]` stays a string)."""
    with httpx.stream("POST", f"{url}{path}", json=body, timeout=30) as response:
        lines = [line.removeprefix("data:") for line in response.iter_lines() if line.startswith("data:")]
    return [line.strip() if line.strip() == "[DONE]" else json.loads(line) for line in lines]


def _first_event(url: str, body: dict[str, Any]) -> tuple[Any, httpx.Response, httpx.Client]:
    """Open a stream and read its first event; the caller closes the response and the client."""
    client = httpx.Client(timeout=30)
    response = client.send(client.build_request("POST", f"{url}/generate_stream", json=body), stream=True)
    line = next(line for line in response.iter_lines() if line.startswith("data:"))
    return json.loads(line.removeprefix("data:")), response, client


def test_held_streams_go_on_once_enough_are_held_at_once(fake_tgi: FakeTGI) -> None:
    fake_tgi.reply("one two")
    fake_tgi.reply("three four")
    fake_tgi.reply("five six")
    chat = {"messages": [{"role": "user", "content": "hi"}], "stream": True}
    with fake_tgi.hold_streams(3, after_tokens=1) as hold, ThreadPoolExecutor(3) as pool:
        first = pool.submit(_stream_events, fake_tgi.url, {"inputs": "a"})
        second = pool.submit(_stream_events, fake_tgi.url, {"inputs": "b"})
        # Two are held after their first token: the third request, a chat stream, is what lets all three go on.
        assert hold.wait_until_held(2), hold.describe()
        assert not hold.opened and not first.done() and not second.done()
        third = pool.submit(_stream_events, fake_tgi.url, chat, "/v1/chat/completions")
        texts = [first.result()[-1]["generated_text"], second.result()[-1]["generated_text"]]
        chunks = third.result()
    assert sorted(texts) == ["one two", "three four"]
    assert chunks[-1] == "[DONE]" and "".join(c["choices"][0]["delta"]["content"] for c in chunks[:-1]) == "five six"
    assert hold.opened and hold.most_held == 3, hold.describe()


def test_a_held_stream_has_sent_its_first_tokens_but_never_its_last_event(fake_tgi: FakeTGI) -> None:
    fake_tgi.reply("Hi")  # one token and the end-of-sequence event: asking for more keeps the end back all the same
    with fake_tgi.hold_streams(2, after_tokens=5) as hold:
        event, response, client = _first_event(fake_tgi.url, {"inputs": "x"})
        try:
            assert event["token"]["text"] == "Hi" and event["generated_text"] is None
            assert hold.wait_until_held(1) and not hold.opened
        finally:
            response.close()
            client.close()


def test_a_hold_that_never_fills_fails_its_streams_loudly(fake_tgi: FakeTGI) -> None:
    fake_tgi.reply("never finished")
    fake_tgi.reply("too late")
    with fake_tgi.hold_streams(2, timeout_s=0.2) as hold:
        (event,) = _stream_events(fake_tgi.url, {"inputs": "alone"})
        (later,) = _stream_events(fake_tgi.url, {"inputs": "after it broke"})
    assert event["error_type"] == "generation"
    assert event["error"] == (
        "FakeTGI hold_streams: timed out after 0.2 s with at most 1 of 2 generation streams held open at once"
    )
    assert later == event, "a broken hold fails the streams that come after it at once"
    assert not hold.opened and hold.failure is not None


def test_until_released_holds_every_stream_until_the_test_lets_them_go(fake_tgi: FakeTGI) -> None:
    fake_tgi.reply("first reply")
    fake_tgi.reply("second reply")
    with fake_tgi.hold_streams(2, after_tokens=1, until_released=True) as hold, ThreadPoolExecutor(2) as pool:
        streams = [pool.submit(_stream_events, fake_tgi.url, {"inputs": str(i)}) for i in range(2)]
        assert hold.wait_until_held(2), hold.describe()
        assert not hold.opened and not any(stream.done() for stream in streams)
        hold.release()
        assert sorted(stream.result()[-1]["generated_text"] for stream in streams) == ["first reply", "second reply"]
    assert hold.most_held == 2


def test_a_client_that_hangs_up_while_held_no_longer_counts(fake_tgi: FakeTGI) -> None:
    fake_tgi.add(*(Reply(text=f"reply {i}") for i in range(3)))
    with fake_tgi.hold_streams(2, after_tokens=1) as hold:
        _, response, client = _first_event(fake_tgi.url, {"inputs": "leaves"})
        assert hold.wait_until_held(1)
        response.close()
        client.close()
        deadline = time.monotonic() + 10
        while not fake_tgi.generations[0].disconnected and time.monotonic() < deadline:
            time.sleep(0.01)
        assert fake_tgi.generations[0].disconnected and hold.held == 0 and not hold.opened
        with ThreadPoolExecutor(2) as pool:
            texts = list(pool.map(lambda i: _stream_events(fake_tgi.url, {"inputs": i})[-1]["generated_text"], "ab"))
    assert sorted(texts) == ["reply 1", "reply 2"] and hold.opened


def test_closing_a_hold_fails_the_streams_still_held_and_stops_holding(fake_tgi: FakeTGI) -> None:
    fake_tgi.reply("held")
    fake_tgi.reply("not held")
    hold = fake_tgi.hold_streams(2)
    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(_stream_events, fake_tgi.url, {"inputs": "x"})
        assert hold.wait_until_held(1)
        hold.close()
        (event,) = held.result()
    assert event["error"].startswith("FakeTGI hold_streams: the hold was closed with at most 1 of 2")
    assert _stream_events(fake_tgi.url, {"inputs": "y"})[-1]["generated_text"] == "not held"
