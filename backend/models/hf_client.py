"""huggingface_hub plumbing shared by the TGI and OpenAI-compatible backends: clients, plain GETs, errors, retries.

This is the one module that touches `huggingface_hub` and its HTTP transport `httpx2` directly; the backends get
clients from it and every library exception leaves it as a `backend.errors.ModelError` with a readable message.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.metadata
import itertools
import json
import logging
import re
import ssl
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing, asynccontextmanager
from typing import Any, TypeVar

import httpx2
from huggingface_hub import AsyncInferenceClient
from huggingface_hub import errors as hub

from backend.errors import (
    ConfigError,
    GenerationError,
    ModelError,
    ModelInputError,
    ModelOverloadedError,
    ModelTimeoutError,
    ModelUnavailableError,
)

__all__ = [
    "HUB_WRITTEN_FOR",
    "Connection",
    "IncompleteReplyError",
    "check_hub_internals",
    "cut_off",
    "retrying",
    "translate_error",
    "with_retries",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

_DETAIL_LIMIT = 300
_URL = re.compile(r"\b(?:https?|wss?)://\S+")
_UNREACHABLE = "The model server cannot be reached right now. Try again in a moment."
_OVERLOADED = "The model server is overloaded — try again in a moment."
_TELL_ADMIN = "Tell the person who runs this Callcard."
# TGI's validation messages: "`inputs` must have less than 4000 tokens. Given: 4500" and "`inputs` tokens +
# `max_new_tokens` must be <= 4096. Given: 4000 `inputs` tokens and 200 `max_new_tokens`".
_TGI_INPUT_LIMIT = re.compile(r"`inputs` must have less than (\d+) tokens\. Given: (\d+)")
_TGI_TOTAL_LIMIT = re.compile(r"must be <= (\d+)\. Given: (\d+) `inputs` tokens and (\d+) `max_new_tokens`")
# vLLM: "maximum context length is 4096 tokens"; llama.cpp: "exceeds the available context size"; others: "too long".
_CONTEXT_WORDS = re.compile(r"context length|context size|context window|too long|too many tokens", re.IGNORECASE)

# The huggingface_hub release whose AsyncInferenceClient internals `_share_http_client` was written for (requirements.txt
# pins it), and those internals: the slot for its HTTP client, and the method that fills it only when it is empty.
HUB_WRITTEN_FOR = "2.4.0"
_HUB_INTERNALS = ("_async_client", "_get_async_client")


class IncompleteReplyError(Exception):
    """The server closed a stream without its final event."""


class Connection:
    """Where a model server is and how to talk to it: base URL, credentials and timeouts."""

    def __init__(self, endpoint: str, *, token: str | None, timeout: float, connect_timeout: float) -> None:
        _check_installed_hub()  # at start-up, where a missing internal is a clear error rather than a failed reply
        self.endpoint = endpoint.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.connect_timeout = min(connect_timeout, timeout)

    def _timeout(self) -> httpx2.Timeout:
        return httpx2.Timeout(self.timeout, connect=self.connect_timeout)

    @asynccontextmanager
    async def client(self) -> AsyncIterator[AsyncInferenceClient]:
        """A fresh client for one request; leaving the context ends the request, which is how a stream is cancelled."""
        # Without a token of ours, huggingface_hub would send the machine's own Hugging Face token (HF_TOKEN or the
        # saved login) to whatever server the endpoint names; a None header value makes it send no Authorization.
        headers: Any = None if self.token else {"authorization": None}
        async with (
            _http_client(self._timeout()) as http,
            AsyncInferenceClient(
                base_url=self.endpoint,
                token=self.token,
                timeout=self._timeout(),  # type: ignore[arg-type]  # httpx2 takes a Timeout where a float goes
                headers=headers,
            ) as client,
        ):
            _share_http_client(client, http)
            yield client

    async def get_json(self, path: str) -> Any:
        """GET `path` under the endpoint and return its JSON body; failures raise `ModelError`s."""
        response = await self._get(path)
        try:
            return response.json()
        except ValueError as error:
            log.warning(
                "%s%s answered with something that is not JSON; check the endpoint address and backend kind",
                self.endpoint, path,
            )
            raise ModelUnavailableError(
                "The model server gave an answer Callcard cannot read. " + _TELL_ADMIN
            ) from error

    async def probe(self, path: str) -> ModelError | None:
        """None when GET `path` answers with a success status, else the error (logged quietly: health polls repeat)."""
        try:
            await self._get(path, level=logging.DEBUG)
        except ModelError as error:
            return error
        return None

    async def _get(self, path: str, *, level: int = logging.WARNING) -> httpx2.Response:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            async with _http_client(self._timeout()) as client:
                response = await client.get(f"{self.endpoint}{path}", headers=headers)
                response.raise_for_status()
                return response
        except Exception as error:
            translated = translate_error(error, self, level=level)
            if translated is None:
                raise
            raise translated from error


def check_hub_internals(client: object, *, version: str | None = None) -> None:
    """ConfigError if `client` (an AsyncInferenceClient) lacks the internals `_share_http_client` relies on.

    `version` is the installed huggingface_hub's (read from its metadata unless given). Another release that still
    has them only logs a warning.
    """
    installed = version or _installed_hub_version()
    missing = [f"AsyncInferenceClient.{name}" for name in _HUB_INTERNALS if not hasattr(client, name)]
    if missing:
        raise ConfigError(
            f"The installed huggingface_hub {installed} lacks internals Callcard's model client needs "
            f"({', '.join(missing)}); Callcard was written for huggingface_hub {HUB_WRITTEN_FOR}: install that "
            f"version (pip install huggingface_hub=={HUB_WRITTEN_FOR})."
        )
    if installed != HUB_WRITTEN_FOR:
        log.warning(
            "huggingface_hub %s is installed; Callcard's model client was written for %s. The internals it uses are "
            "present, so it goes on; if requests fail oddly, install %s.",
            installed, HUB_WRITTEN_FOR, HUB_WRITTEN_FOR,
        )


def _installed_hub_version() -> str:
    try:
        return importlib.metadata.version("huggingface_hub")
    except importlib.metadata.PackageNotFoundError:  # imported from a source tree rather than installed
        return "unknown"


@functools.cache
def _check_installed_hub() -> None:
    """Check the installed huggingface_hub once per process, on a client that is made and dropped (no I/O)."""
    check_hub_internals(AsyncInferenceClient(base_url="http://127.0.0.1"))


def _share_http_client(client: AsyncInferenceClient, http: httpx2.AsyncClient) -> None:
    """Have `client` send its requests through `http`, the one place that sets huggingface_hub's private state.

    huggingface_hub makes a new httpx client, and with it a new SSL context (40-80 ms), for every
    AsyncInferenceClient, unless its `_async_client` slot is already filled; one built on a shared context takes that
    off every request. `check_hub_internals` checked the slot when the Connection was made.
    """
    client._async_client = http


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    return httpx2.create_ssl_context()


def _http_client(timeout: httpx2.Timeout) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(
        verify=_ssl_context(), timeout=timeout, follow_redirects=True, event_hooks={"response": [_read_error_body]}
    )


async def _read_error_body(response: httpx2.Response) -> None:
    """Read an error response's (small) body, so the error raised from a stream can say what the server said."""
    length = response.headers.get("content-length", "0")
    if response.status_code >= 400 and length.isdigit() and int(length) < 1_000_000:
        await response.aread()


def translate_error(
    error: BaseException, connection: Connection, *, level: int = logging.WARNING
) -> ModelError | None:
    """The `ModelError` a person should see for a library exception, or None for exceptions that are bugs.

    The message is for the person chatting: it never names the server's address or Callcard's settings. What an
    operator needs (the address, the server's own words) is logged at `level` instead.
    """
    if isinstance(error, ModelError):
        return error
    translated, detail = _translate(error, connection)
    if translated is not None:
        log.log(level, "model server %s: %s (%s)", connection.endpoint, detail, type(error).__name__)
    return translated


def _translate(error: BaseException, connection: Connection) -> tuple[ModelError | None, str]:
    """(the plain error, the operator's detail) for a library exception."""
    if isinstance(error, hub.TextGenerationError):
        return _from_tgi_error(error)
    if isinstance(error, hub.OfflineModeIsEnabled):
        offline = ModelUnavailableError("The model server cannot be used with this Callcard's setup. " + _TELL_ADMIN)
        offline.retryable = False
        return offline, "HF_HUB_OFFLINE is set, and huggingface_hub then refuses every request: unset it"
    if isinstance(error, IncompleteReplyError):
        ended = GenerationError("The model server ended the reply without finishing it — try again.")
        return ended, "the stream ended without its final event"
    if isinstance(error, httpx2.ConnectTimeout) or isinstance(error.__cause__, httpx2.ConnectTimeout):
        return ModelUnavailableError(_UNREACHABLE), f"no connection within {connection.connect_timeout:g} s"
    if isinstance(error, (hub.InferenceTimeoutError, httpx2.TimeoutException)):
        slow = ModelTimeoutError(f"The model server did not answer within {connection.timeout:g} seconds — try again.")
        return slow, f"no answer within {connection.timeout:g} s (the timeout setting)"
    if isinstance(error, httpx2.ConnectError):
        return ModelUnavailableError(_UNREACHABLE), f"cannot connect: {error}"
    if isinstance(error, httpx2.TransportError):
        return ModelUnavailableError("The connection to the model server broke — try again."), f"transport: {error}"
    if isinstance(error, (hub.HfHubHTTPError, httpx2.HTTPStatusError)) and error.response is not None:
        status, detail = error.response.status_code, _server_detail(error.response)
        return _from_status(status, detail), f"HTTP {status}: {detail or 'no details'}"
    if isinstance(error, json.JSONDecodeError):
        unreadable = GenerationError("The model server sent a reply Callcard cannot read (not valid JSON) — try again.")
        return unreadable, f"invalid JSON: {error}"
    return None, ""


def cut_off(error: ModelError) -> GenerationError:
    """The error for a failure after part of the reply was streamed: the text so far stays, the reply is incomplete."""
    return GenerationError(f"The reply was cut off part-way. {error}", status=error.status)


async def with_retries(
    attempt: Callable[[], AsyncGenerator[T, None]],
    connection: Connection,
    *,
    retries: int,
    backoff: float,
) -> AsyncGenerator[T, None]:
    """Stream `attempt()`, starting it again (with exponential backoff) on a passing failure before its first item.

    Once an item has been yielded a failure is final: it is raised as `GenerationError`, so no text is duplicated.
    Timeouts are not retried: the person has already waited the whole timeout once.
    """
    for number in itertools.count():
        started = False
        try:
            async with aclosing(attempt()) as items:
                async for item in items:
                    started = True
                    yield item
            return
        except Exception as raw:
            error = translate_error(raw, connection)
            if error is None:
                raise
            if started:
                raise cut_off(error) from raw
            if number >= retries or not _worth_retrying(error):
                if error is raw:
                    raise
                raise error from raw
            await _pause(error, number, retries, backoff)


async def retrying(call: Callable[[], Awaitable[T]], *, retries: int, backoff: float) -> T:
    """Await `call()` (which raises `ModelError`s), again with exponential backoff after a passing failure."""
    number = 0
    while True:
        try:
            return await call()
        except ModelError as error:
            if number >= retries or not _worth_retrying(error):
                raise
            await _pause(error, number, retries, backoff)
        number += 1


def _worth_retrying(error: ModelError) -> bool:
    return error.retryable and not isinstance(error, ModelTimeoutError)


async def _pause(error: ModelError, number: int, retries: int, backoff: float) -> None:
    delay = backoff * 2**number
    log.info("model request failed (%s); retry %d of %d in %.1f s", error, number + 1, retries, delay)
    await asyncio.sleep(delay)


def _from_tgi_error(error: hub.TextGenerationError) -> tuple[ModelError, str]:
    detail = _clip(_message_of(error.args[0] if error.args else None) or "")
    status = error.__cause__.response.status_code if isinstance(error.__cause__, hub.HfHubHTTPError) else None
    said = f"{type(error).__name__}: {detail or 'no details'}"
    if status in (401, 403, 404, 413):  # a proxy's answer in TGI's error shape: the status says more than the type
        return _from_status(status, detail), said
    if isinstance(error, hub.ValidationError):
        return _too_long(detail, status=status or 422) or ModelInputError(
            f"The model server rejected the request: {detail or 'invalid input'}.", status=status or 422
        ), said
    if isinstance(error, hub.OverloadedError):
        return ModelOverloadedError(_OVERLOADED, status=status or 429), said
    if isinstance(error, hub.IncompleteGenerationError):
        stopped = GenerationError("The model server stopped before the reply was complete — try again.", status=status)
        return stopped, said
    if isinstance(error, hub.GenerationError):
        return GenerationError("The model failed while writing its answer — try again.", status=status), said
    if status is not None:
        return _from_status(status, detail), said
    return GenerationError("The model server reported an error — try again.", status=status), said


def _from_status(status: int, detail: str | None) -> ModelError:
    error: ModelError
    if status in (401, 403):
        error = ModelUnavailableError("The model server refused Callcard's credentials. " + _TELL_ADMIN, status=status)
        error.retryable = False
    elif status == 404:
        error = ModelUnavailableError(
            "The model server does not offer what Callcard asks for. " + _TELL_ADMIN, status=status
        )
        error.retryable = False
    elif status == 429:
        error = ModelOverloadedError(_OVERLOADED, status=status)
    elif status in (408, 504):
        error = ModelTimeoutError("The model server timed out — try again in a moment.", status=status)
    elif status == 413:
        error = _too_long_error("the request was larger than the server accepts", status)
    elif 400 <= status < 500:
        said = f": {detail}" if detail else ""
        error = _too_long(detail or "", status=status) or ModelInputError(
            f"The model server rejected the request{said}.", status=status
        )
    elif status in (502, 503):
        error = ModelUnavailableError(
            "The model server is not available right now; it may still be starting — try again in a moment.",
            status=status,
        )
    else:
        error = GenerationError("The model server failed — try again.", status=status)
    return error


def _too_long(detail: str, *, status: int | None = None) -> ModelInputError | None:
    """The plain error for a server's "input too long" message (TGI's, vLLM's, llama.cpp's), or None for others."""
    if found := _TGI_INPUT_LIMIT.search(detail):
        limit, given = int(found[1]), int(found[2])
        return _too_long_error(f"about {given:,} tokens; it reads at most {limit:,}", status)
    if found := _TGI_TOTAL_LIMIT.search(detail):
        limit, given, new = (int(n) for n in found.groups())
        reason = f"about {given:,} tokens and room for a {new:,}-token answer; it holds {limit:,}"
        return _too_long_error(reason, status)
    if _CONTEXT_WORDS.search(detail):
        return _too_long_error(detail.rstrip("."), status)
    return None


def _too_long_error(reason: str, status: int | None) -> ModelInputError:
    return ModelInputError(
        f"This message is too long for the model ({reason}). Shorten it, or start a new conversation.", status=status
    )


def _server_detail(response: httpx2.Response) -> str | None:
    """The error message in a JSON error body (TGI's or OpenAI's shape); None for HTML pages and unread streams."""
    try:
        payload = response.json()
    except (ValueError, httpx2.ResponseNotRead):  # an HTML page from a proxy, an empty body, an unread stream
        return None
    if not isinstance(payload, dict):
        return None
    for key in ("error", "message", "detail"):
        message = _message_of(payload.get(key))
        if message:
            return _clip(message)
    return None


def _message_of(value: Any) -> str | None:
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, dict):
        return _message_of(value.get("message"))
    return None


def _clip(text: str) -> str:
    """One line of at most _DETAIL_LIMIT characters, without addresses (a server's message may name internal ones)."""
    text = _URL.sub("…", " ".join(text.split()))
    return text if len(text) <= _DETAIL_LIMIT else text[: _DETAIL_LIMIT - 1] + "…"
