"""A fake text-generation-inference server on a real loopback socket, with scripted replies and injectable failures.

It speaks the parts of TGI's HTTP API that Callcard uses: `POST /`, `/generate`, `/generate_stream` (server-sent
events), `GET /info`, `/health`, `POST /tokenize`, and the OpenAI-compatible `/v1/chat/completions` and `/v1/models`.
Like TGI it validates requests (input length, stop sequences, grammar support), honours `stop` and `max_new_tokens`,
and reports validation and overload errors inside a 200 event stream. Every request is recorded for assertions.

`hold_streams(n)` makes concurrency provable without a clock: every reply stream stops (after its first
`after_tokens` events) until `n` streams are held open at once, then all of them go on.
"""

from __future__ import annotations

import json
import re
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

__all__ = ["FakeTGI", "Recorded", "Reply", "StreamHold", "ToolCall", "tokenize", "unused_port"]

_TOKEN_PATTERN = re.compile(r"\s*(?:[A-Za-z]{1,4}|[0-9]{1,3}|[^\sA-Za-z0-9])|\s+")
_GENERATE_PATHS = ("/", "/generate", "/generate_stream")
_CHAT_PATHS = ("/v1/chat/completions", "/chat/completions")
_EOS = {"id": 2, "text": "</s>", "logprob": -0.01, "special": True}


def tokenize(text: str) -> list[str]:
    """Split `text` into small tokens (at most four letters, leading whitespace attached) that join back to it."""
    return _TOKEN_PATTERN.findall(text)


def unused_port() -> int:
    """A loopback port that nothing listens on (connections to it are refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ToolCall:
    """A tool call a scripted chat completion makes; `arguments` is a dict, or a string sent as is."""

    name: str
    arguments: dict[str, Any] | str = field(default_factory=dict)
    id: str | None = None


@dataclass
class Reply:
    """What the server does for one generation request.

    `grammar` picks the requests it answers: True only constrained ones (with `parameters.grammar`, or
    `response_format` for chat), False only free ones, None either. Failures: `status` with `error`/`error_type`
    (TGI's JSON error body) or `body` (a raw body, e.g. a proxy's HTML page); `error_after` sends TGI's error event
    after that many tokens of a 200 stream; `drop_after` closes the connection after that many tokens.
    Timing: `headers_delay` before the status line, `first_token_delay` after the headers, `token_delay` between tokens.
    """

    text: str = ""
    tokens: list[str] | None = None
    tool_calls: list[ToolCall] | None = None
    arguments_as_object: bool = False
    finish_reason: str | None = None
    grammar: bool | None = None
    status: int = 200
    error: str | None = None
    error_type: str | None = None
    body: str | None = None
    content_type: str = "text/html"
    error_after: int | None = None
    drop_after: int | None = None
    headers_delay: float = 0.0
    first_token_delay: float = 0.0
    token_delay: float = 0.0
    done_marker: str = " [DONE]"  # how a chat stream ends: TGI, OpenAI and vLLM send `data: [DONE]`

    def token_texts(self) -> list[str]:
        """The tokens this reply streams."""
        return list(self.tokens) if self.tokens is not None else tokenize(self.text)


@dataclass
class Recorded:
    """One request the server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    disconnected: bool = False  # the client hung up before the reply was fully sent

    @property
    def prompt(self) -> str:
        """The `inputs` of a TGI generation request."""
        return self.body["inputs"]

    @property
    def parameters(self) -> dict[str, Any]:
        """The `parameters` of a TGI generation request."""
        return self.body.get("parameters") or {}

    @property
    def grammar(self) -> Any:
        """The grammar a request asked for, if any (`parameters.grammar`, or `response_format` for chat)."""
        if not isinstance(self.body, dict):
            return None
        if self.path in _CHAT_PATHS:
            return self.body.get("response_format")
        return self.parameters.get("grammar")

    @property
    def is_generation(self) -> bool:
        """Whether this request asked for generated text."""
        return self.method == "POST" and (self.path in _GENERATE_PATHS or self.path in _CHAT_PATHS)

_HUNG_UP = "the client hung up"  # StreamHold.wait's answer for a stream whose client left while it was held


class StreamHold:
    """Reply streams held open until `peers` of them are held at once (or, with `until_released`, until `release()`).

    A held stream has sent its headers and its first `after_tokens` events and is still open, so once `peers` are
    held, that many generation requests were provably in flight together, none of them finished. Streams that
    arrive after the hold opened go straight on; answers that are not streamed are never held. `timeout_s` after the first stream arrived, a hold that has not
    opened breaks: every held stream, and every later one, ends with TGI's error event saying so.
    """

    def __init__(
        self,
        peers: int,
        *,
        after_tokens: int = 0,
        timeout_s: float = 60.0,
        until_released: bool = False,
        on_close: Callable[[StreamHold], None] | None = None,
    ) -> None:
        if peers < 1 or after_tokens < 0 or timeout_s <= 0:
            raise ValueError("hold_streams needs peers >= 1, after_tokens >= 0 and timeout_s > 0.")
        self.peers = peers
        self.after_tokens = after_tokens
        self.timeout_s = timeout_s
        self.until_released = until_released
        self.held = 0  # streams waiting now
        self.most_held = 0  # the most streams waiting at once
        self.opened = False
        self.failure: str | None = None
        self._deadline: float | None = None
        self._condition = threading.Condition()
        self._on_close = on_close

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def release(self) -> None:
        """Let every held stream go on, and later ones pass."""
        with self._condition:
            if self.failure is None:
                self.opened = True
            self._condition.notify_all()

    def close(self) -> None:
        """Stop holding new streams; streams still held fail (the hold never opened for them)."""
        with self._condition:
            if not self.opened and self.failure is None:
                self.failure = f"the hold was closed with {self._progress()}"
            self._condition.notify_all()
        if self._on_close is not None:
            self._on_close(self)

    def wait_until_held(self, count: int | None = None, *, timeout_s: float = 30.0) -> bool:
        """Block until `count` streams (default `peers`) are held now, or the hold opened; False if it did not."""
        wanted = self.peers if count is None else count
        with self._condition:
            reached = self._condition.wait_for(
                lambda: self.held >= wanted or self.opened or self.failure is not None, timeout_s
            )
            return reached and self.failure is None

    def describe(self) -> str:
        """The hold's state in words, for assertion messages."""
        with self._condition:
            state = "open" if self.opened else f"broken: {self.failure}" if self.failure else "holding"
            return f"{state}; {self._progress()}"

    def wait(self, connection: socket.socket) -> str | None:
        """Hold the calling stream: None to go on, _HUNG_UP if its client left, else why the stream fails."""
        with self._condition:
            if self.opened or self.failure is not None:
                return self.failure
            if self._deadline is None:
                self._deadline = time.monotonic() + self.timeout_s
            self.held += 1
            self.most_held = max(self.most_held, self.held)
            try:
                if self.held >= self.peers and not self.until_released:
                    self.opened = True
                self._condition.notify_all()
                while not self.opened and self.failure is None:
                    remaining = self._deadline - time.monotonic()
                    if remaining <= 0:
                        self.failure = f"timed out after {self.timeout_s:g} s with {self._progress()}"
                        self._condition.notify_all()
                        break
                    self._condition.wait(min(remaining, 0.05))
                    # A client that hung up is no longer in flight: it must not count towards `peers`.
                    if not self.opened and _hung_up(connection):
                        return _HUNG_UP
            finally:
                self.held -= 1
            return self.failure

    def _progress(self) -> str:
        return f"at most {self.most_held} of {self.peers} generation streams held open at once"


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # the default backlog of 5 resets connections when 50 chats start at once
    daemon_threads = True


class FakeTGI:
    """A scripted TGI server on 127.0.0.1; use as a context manager (or `start()` / `stop()`)."""

    def __init__(
        self,
        *,
        model_id: str = "Trelis/Llama-2-7b-chat-hf-function-calling-v2",
        max_input_tokens: int = 4000,
        max_total_tokens: int = 4096,
        max_stop_sequences: int = 4,
        supports_grammar: bool = True,
        token: str | None = None,
        healthy: bool = True,
        info_status: int = 200,
    ) -> None:
        self.model_id = model_id
        self.max_input_tokens = max_input_tokens
        self.max_total_tokens = max_total_tokens
        self.max_stop_sequences = max_stop_sequences
        self.supports_grammar = supports_grammar
        self.token = token
        self.healthy = healthy
        self.info_status = info_status
        self.requests: list[Recorded] = []
        self._script: list[Reply] = []
        self._hold: StreamHold | None = None
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def start(self) -> Self:
        """Listen on a free loopback port (the same one again after `stop()`) and serve in a daemon thread."""
        handler = type("_BoundHandler", (_Handler,), {"fake": self})
        self._server = _Server(("127.0.0.1", self._port or 0), handler)
        self._port = self._server.server_address[1]
        # A short poll interval keeps stop() (which waits for the serving loop to notice) fast.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-tgi", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening: new connections are refused until `start()` is called again."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The server's base URL."""
        if self._port is None:
            raise RuntimeError("FakeTGI has not been started.")
        return f"http://127.0.0.1:{self._port}"

    # -- scripting ---------------------------------------------------------------------------------------------

    def add(self, *replies: Reply) -> None:
        """Queue replies; each generation request takes the first one that matches its grammar-ness."""
        with self._lock:
            self._script.extend(replies)

    def reply(self, text: str = "", *, when_grammar: str | None = None, **options: Any) -> None:
        """Queue a streamed text reply; with `when_grammar`, also the text the grammar-constrained re-request gets."""
        if when_grammar is None:
            self.add(Reply(text=text, **options))
        else:
            self.add(Reply(text=text, grammar=False, **options), Reply(text=when_grammar, grammar=True))

    def call(self, name: str, arguments: dict[str, Any] | str, *, text: str = "", **options: Any) -> None:
        """Queue a chat completion that calls one tool (after `text`, if any)."""
        self.add(Reply(text=text, tool_calls=[ToolCall(name, arguments)], **options))

    def fail(self, status: int, error: str, error_type: str, **options: Any) -> None:
        """Queue an HTTP error with TGI's JSON error body."""
        self.add(Reply(status=status, error=error, error_type=error_type, **options))

    def fail_in_stream(self, after: int, error: str, error_type: str = "generation", **options: Any) -> None:
        """Queue a 200 stream that sends TGI's error event after `after` tokens (0: before any token)."""
        options.setdefault("text", "Partial answer that breaks off somewhere in the middle")
        self.add(Reply(error_after=after, error=error, error_type=error_type, **options))

    def proxy_error(self, status: int = 502, **options: Any) -> None:
        """Queue a non-JSON error page, as a reverse proxy in front of TGI sends it."""
        title = f"{status} {HTTPStatus(status).phrase}"
        page = f"<html><head><title>{title}</title></head><body><center><h1>{title}</h1></center><hr>nginx</body></html>"
        self.add(Reply(status=status, body=page, content_type="text/html", **options))

    def hold_streams(
        self, peers: int, *, after_tokens: int = 0, timeout_s: float = 60.0, until_released: bool = False
    ) -> StreamHold:
        """Hold every reply stream that starts from now on until `peers` are held open at once (see StreamHold).

        Use it as a context manager (leaving it stops the holding). Each held stream first sends its headers and
        `after_tokens` events, never its last one. With `until_released=True` only `release()` opens the hold,
        so a test can look at what the app shows while every reply is still open.
        """
        hold = StreamHold(
            peers, after_tokens=after_tokens, timeout_s=timeout_s, until_released=until_released,
            on_close=self._stop_holding,
        )
        with self._lock:
            if self._hold is not None:
                raise RuntimeError("FakeTGI already holds streams; close that hold first.")
            self._hold = hold
        return hold

    def _stop_holding(self, hold: StreamHold) -> None:
        with self._lock:
            if self._hold is hold:
                self._hold = None

    def clear(self) -> None:
        """Drop every queued reply and every recorded request."""
        with self._lock:
            self._script.clear()
            self.requests.clear()

    @property
    def pending(self) -> int:
        """How many scripted replies are still queued."""
        with self._lock:
            return len(self._script)

    @property
    def generations(self) -> list[Recorded]:
        """The generation requests received so far (retries included), oldest first."""
        return [r for r in list(self.requests) if r.is_generation]

    def _take(self, grammar: bool) -> Reply | None:
        with self._lock:
            for index, reply in enumerate(self._script):
                if reply.grammar is None or reply.grammar == grammar:
                    return self._script.pop(index)
        return None

    def _record(self, recorded: Recorded) -> None:
        with self._lock:
            self.requests.append(recorded)


class _Disconnected(Exception):
    """The client closed the connection while we were writing."""


class _Handler(BaseHTTPRequestHandler):
    """Serves one connection for the FakeTGI bound as `fake`."""

    fake: FakeTGI
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet; tests read `fake.requests` instead."""

    def handle(self) -> None:
        """Serve the connection; a client hanging up (as a cancelled stream does) is normal, not an error."""
        try:
            super().handle()
        except (ConnectionResetError, BrokenPipeError):
            self.close_connection = True

    # -- routing -----------------------------------------------------------------------------------------------

    def do_GET(self) -> None:
        """Serve `/info`, `/health`, `/v1/models`."""
        self._begin(None)
        if not self._authorized():
            return
        fake = self.fake
        if self.path == "/info":
            if fake.info_status != 200:
                self._send_json(fake.info_status, {"error": "Not Found", "error_type": "not_found"})
                return
            self._send_json(200, _info(fake))
        elif self.path == "/health":
            if fake.healthy:
                self._send_bytes(200, b"", "text/plain")
            else:
                self._send_json(503, {"error": "unhealthy", "error_type": "healthcheck"})
        elif self.path in ("/v1/models", "/models"):
            model = {"id": fake.model_id, "object": "model", "created": 0, "owned_by": "fake-tgi"}
            self._send_json(200, {"object": "list", "data": [model]})
        else:
            self._send_json(404, {"error": f"No route {self.path}", "error_type": "not_found"})

    def do_POST(self) -> None:
        """Serve the generation routes, `/tokenize` and the chat completions route."""
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            body = None
        if not isinstance(body, dict):  # unreadable, or cut off by a client that died mid-request
            self._begin(raw.decode("utf-8", "replace"))
            self._send_json(422, {"error": "Failed to deserialize the JSON body", "error_type": "validation"})
            return
        record = self._begin(body)
        if not self._authorized():
            return
        if self.path == "/tokenize":
            self._tokenize(body)
        elif self.path in _GENERATE_PATHS:
            self._generate(record, body)
        elif self.path in _CHAT_PATHS:
            self._chat(record, body)
        else:
            self._send_json(404, {"error": f"No route {self.path}", "error_type": "not_found"})

    def _begin(self, body: Any) -> Recorded:
        record = Recorded(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        self.fake._record(record)
        return record

    def _authorized(self) -> bool:
        if self.fake.token is None or self.headers.get("Authorization") == f"Bearer {self.fake.token}":
            return True
        self._send_json(401, {"error": "Authorization header is missing or invalid", "error_type": "authentication"})
        return False

    # -- TGI generation ----------------------------------------------------------------------------------------

    def _generate(self, record: Recorded, body: Any) -> None:
        params = body.get("parameters") or {}
        streaming = self.path == "/generate_stream" or (self.path == "/" and bool(body.get("stream")))
        problem = _validate(self.fake, body.get("inputs", ""), params)
        if problem is not None:
            self._refuse(streaming, problem)
            return
        reply = self.fake._take(grammar=params.get("grammar") is not None)
        if reply is None:
            self._refuse(streaming, ("No scripted reply left for this request", "incomplete_generation"), status=500)
            return
        if self._sent_failure(reply):
            return
        events: list[dict[str, Any] | str] = list(_generate_events(reply, body.get("inputs", ""), params))
        if not streaming:
            final = events[-1]
            assert isinstance(final, dict)
            if "error" in final:
                self._send_json(424 if final["error_type"] == "generation" else 500, final)
                return
            self._send_json(200, [final] if self.path == "/" else final)
            return
        self._stream(record, reply, events)

    def _refuse(self, streaming: bool, problem: tuple[str, str], *, status: int = 422) -> None:
        message, error_type = problem
        if streaming:
            # TGI reports validation and overload errors as an event in a 200 stream, not as an HTTP status.
            self._start_stream()
            self._write_event({"error": message, "error_type": error_type})
            self._end_stream()
        else:
            self._send_json(status, {"error": message, "error_type": error_type})

    def _sent_failure(self, reply: Reply) -> bool:
        """Send the reply's HTTP-level failure, if it has one."""
        if reply.headers_delay:
            time.sleep(reply.headers_delay)
        if reply.body is not None:
            self._send_bytes(reply.status, reply.body.encode(), reply.content_type)
            return True
        if reply.status != 200:
            self._send_json(
                reply.status, {"error": reply.error or "error", "error_type": reply.error_type or "unknown"}
            )
            return True
        return False

    def _stream(self, record: Recorded, reply: Reply, events: list[dict[str, Any] | str]) -> None:
        hold = self.fake._hold
        # A held stream never sends its last event before the hold opens: it stays open, unfinished.
        hold_at = min(hold.after_tokens, len(events) - 1) if hold is not None else None
        try:
            self._start_stream()
            if reply.first_token_delay:
                time.sleep(reply.first_token_delay)
            for index, event in enumerate(events):
                if index == hold_at and hold is not None and not self._held(record, hold):
                    return
                if reply.drop_after is not None and index >= reply.drop_after:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if index and reply.token_delay:
                    time.sleep(reply.token_delay)
                self._write_event(event)
            self._end_stream()
        except _Disconnected:
            record.disconnected = True
            self.close_connection = True

    def _held(self, record: Recorded, hold: StreamHold) -> bool:
        """Wait at `hold`; False when the stream must end here (its client left, or the hold broke)."""
        outcome = hold.wait(self.connection)
        if outcome is None:
            return True
        self.close_connection = True
        if outcome == _HUNG_UP:
            record.disconnected = True
            return False
        self._write_event({"error": f"FakeTGI hold_streams: {outcome}", "error_type": "generation"})
        self._end_stream()
        return False

    # -- OpenAI-compatible chat --------------------------------------------------------------------------------

    def _chat(self, record: Recorded, body: Any) -> None:
        streaming = bool(body.get("stream"))
        reply = self.fake._take(grammar=body.get("response_format") is not None)
        if reply is None:
            self._send_json(
                500, {"error": "No scripted reply left for this request", "error_type": "incomplete_generation"}
            )
            return
        if self._sent_failure(reply):
            return
        chunks, final = _chat_chunks(reply, self.fake.model_id, body)
        if not streaming:
            self._send_json(200, final)
            return
        if (body.get("stream_options") or {}).get("include_usage"):
            chunks.append({**_chunk_base(self.fake.model_id), "choices": [], "usage": final["usage"]})
        if reply.error_after is not None:
            error = {"error": reply.error or "Request failed during generation", "error_type": reply.error_type}
            chunks = [*chunks[: reply.error_after], error]
        else:
            chunks.append(reply.done_marker)
        self._stream(record, reply, chunks)

    # -- misc --------------------------------------------------------------------------------------------------

    def _tokenize(self, body: Any) -> None:
        tokens, start = [], 0
        for index, text in enumerate(tokenize(body.get("inputs", ""))):
            tokens.append({"id": 100 + index, "text": text, "start": start, "stop": start + len(text)})
            start += len(text)
        self._send_json(200, tokens)

    # -- wire --------------------------------------------------------------------------------------------------

    def _send_json(self, status: int, payload: Any) -> None:
        self._send_bytes(status, json.dumps(payload).encode(), "application/json")

    def _send_bytes(self, status: int, data: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("X-Accel-Buffering", "no")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()

    def _write_event(self, event: dict[str, Any] | str) -> None:
        payload = event if isinstance(event, str) else json.dumps(event, separators=(",", ":"))
        self._write_chunk(f"data:{payload}\n\n".encode())

    def _end_stream(self) -> None:
        self._write_chunk(b"")

    def _write_chunk(self, data: bytes) -> None:
        try:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError) as error:
            raise _Disconnected from error


def _hung_up(connection: socket.socket) -> bool:
    """Whether the client closed its end (readable, with nothing left to read)."""
    try:
        readable, _, _ = select.select([connection], [], [], 0)
        return bool(readable) and connection.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


# -- protocol helpers --------------------------------------------------------------------------------------------


def _info(fake: FakeTGI) -> dict[str, Any]:
    return {
        "model_id": fake.model_id,
        "model_sha": None,
        "model_pipeline_tag": "text-generation",
        "max_concurrent_requests": 128,
        "max_best_of": 2,
        "max_stop_sequences": fake.max_stop_sequences,
        "max_input_tokens": fake.max_input_tokens,
        "max_total_tokens": fake.max_total_tokens,
        "validation_workers": 2,
        "max_client_batch_size": 4,
        "router": "text-generation-router",
        "version": "3.3.6",
        "sha": None,
        "docker_label": None,
    }


def _validate(fake: FakeTGI, inputs: str, params: dict[str, Any]) -> tuple[str, str] | None:
    """TGI's input validation, with its messages; None when the request is valid."""
    prefix = "Input validation error: "
    input_tokens = len(tokenize(inputs))
    max_new = params.get("max_new_tokens") or 100
    stop = params.get("stop") or []
    if params.get("grammar") is not None and not fake.supports_grammar:
        return prefix + "grammar is not supported", "validation"
    if len(stop) > fake.max_stop_sequences:
        return (
            prefix + f"`stop` supports up to {fake.max_stop_sequences} stop sequences. Given: {len(stop)}",
            "validation",
        )
    if input_tokens > fake.max_input_tokens:
        return (
            prefix + f"`inputs` must have less than {fake.max_input_tokens} tokens. Given: {input_tokens}",
            "validation",
        )
    if input_tokens + max_new > fake.max_total_tokens:
        return (
            prefix + f"`inputs` tokens + `max_new_tokens` must be <= {fake.max_total_tokens}. "
            f"Given: {input_tokens} `inputs` tokens and {max_new} `max_new_tokens`",
            "validation",
        )
    return None


def _generate_events(reply: Reply, inputs: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """The stream events TGI would send: one per token, the last with `generated_text` and `details`."""
    texts = reply.token_texts()
    max_new = params.get("max_new_tokens") or 100
    stops = params.get("stop") or []
    finish = reply.finish_reason or "eos_token"
    kept: list[str] = []
    for text in texts:
        kept.append(text)
        if any(stop in "".join(kept) for stop in stops):
            finish = "stop_sequence"
            break
        if len(kept) >= max_new:
            finish = "length"
            break
    tokens = [{"id": 1000 + i, "text": t, "logprob": -0.5, "special": False} for i, t in enumerate(kept)]
    if finish == "eos_token" or not tokens:
        tokens.append(dict(_EOS))
    if reply.error_after is not None:
        events: list[dict[str, Any]] = [_token_event(i, t) for i, t in enumerate(tokens[: reply.error_after])]
        events.append({"error": reply.error or "Request failed during generation", "error_type": reply.error_type})
        return events
    events = [_token_event(i, t) for i, t in enumerate(tokens)]
    events[-1]["generated_text"] = "".join(kept)
    events[-1]["details"] = {
        "finish_reason": finish,
        "generated_tokens": len(tokens),
        "input_length": len(tokenize(inputs)),
        "seed": params.get("seed"),
    }
    return events


def _token_event(index: int, token: dict[str, Any]) -> dict[str, Any]:
    return {"index": index + 1, "token": token, "top_tokens": None, "generated_text": None, "details": None}


def _chunk_base(model_id: str) -> dict[str, Any]:
    return {
        "object": "chat.completion.chunk",
        "id": "",
        "created": int(time.time()),
        "model": model_id,
        "system_fingerprint": "3.3.6-native",
    }


def _chat_chunks(
    reply: Reply, model_id: str, body: dict[str, Any]
) -> tuple[list[dict[str, Any] | str], dict[str, Any]]:
    """The streamed chunks and the non-streamed completion for a scripted chat reply."""
    texts = reply.token_texts()
    max_tokens = body.get("max_tokens")
    if max_tokens is not None:
        texts = texts[:max_tokens]
    calls = reply.tool_calls or []
    finish = reply.finish_reason or ("tool_calls" if calls else "stop")
    deltas: list[dict[str, Any]] = [{"role": "assistant", "content": text} for text in texts]
    message_calls = []
    for index, call in enumerate(calls):
        call_id = call.id or f"call_{index}"
        arguments = call.arguments if isinstance(call.arguments, str) else json.dumps(call.arguments)
        message_calls.append(
            {"id": call_id, "type": "function", "function": {"name": call.name, "arguments": arguments}}
        )
        head = {"index": index, "id": call_id, "type": "function"}
        if reply.arguments_as_object and not isinstance(call.arguments, str):
            deltas.append(
                {
                    "role": "assistant",
                    "tool_calls": [{**head, "function": {"name": call.name, "arguments": call.arguments}}],
                }
            )
            continue
        deltas.append({"role": "assistant", "tool_calls": [{**head, "function": {"name": call.name, "arguments": ""}}]})
        for fragment in _fragments(arguments):
            delta_call = {
                "index": index,
                "id": "",
                "type": "function",
                "function": {"name": None, "arguments": fragment},
            }
            deltas.append({"role": "assistant", "tool_calls": [delta_call]})
    chunks: list[dict[str, Any] | str] = [
        {
            **_chunk_base(model_id),
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}],
            "usage": None,
        }
        for delta in deltas
    ]
    if chunks:
        chunks[-1]["choices"][0]["finish_reason"] = finish  # type: ignore[index]
    else:
        chunks.append(
            {
                **_chunk_base(model_id),
                "choices": [
                    {
                        "index": 0,
                        "delta": {"role": "assistant", "content": ""},
                        "logprobs": None,
                        "finish_reason": finish,
                    }
                ],
                "usage": None,
            }
        )
    prompt_tokens = sum(len(tokenize(str(m.get("content") or ""))) for m in body.get("messages", []))
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": len(deltas),
        "total_tokens": prompt_tokens + len(deltas),
    }
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
    if message_calls:
        message["tool_calls"] = message_calls
    final = {
        **_chunk_base(model_id),
        "object": "chat.completion",
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": usage,
    }
    return chunks, final


def _fragments(text: str, size: int = 5) -> Iterator[str]:
    for start in range(0, len(text), size):
        yield text[start : start + size]
