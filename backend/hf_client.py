"""huggingface_hub plumbing shared by the TGI and OpenAI-compatible backends: clients, plain GETs, errors, retries.

This is the one module that touches `huggingface_hub` and its HTTP transport `httpx2` directly; the backends get
clients from it and every library exception leaves it as a `backend.errors.ModelError` with a readable message.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import logging
import ssl
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing, asynccontextmanager
from typing import Any, TypeVar

import httpx2
from huggingface_hub import AsyncInferenceClient
from huggingface_hub import errors as hub

from backend.errors import (
    GenerationError,
    ModelError,
    ModelInputError,
    ModelOverloadedError,
    ModelTimeoutError,
    ModelUnavailableError,
)

__all__ = ["Connection", "IncompleteReplyError", "translate_error", "cut_off", "with_retries", "retrying"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_DETAIL_LIMIT = 300


class IncompleteReplyError(Exception):
    """The server closed a stream without its final event."""


class Connection:
    """Where a model server is and how to talk to it: base URL, credentials and timeouts."""

    def __init__(self, endpoint: str, *, token: str | None, timeout: float, connect_timeout: float) -> None:
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
            # huggingface_hub makes a new httpx client, and with it a new SSL context (40-80 ms), for every
            # AsyncInferenceClient. Handing it one built on a shared context takes that off every request; a
            # huggingface_hub that no longer reads this attribute just makes its own client again.
            client._async_client = http
            yield client

    async def get_json(self, path: str) -> Any:
        """GET `path` under the endpoint and return its JSON body; failures raise `ModelError`s."""
        response = await self._get(path)
        try:
            return response.json()
        except ValueError as error:
            raise ModelUnavailableError(
                f"The server at {self.endpoint} answered {path} with something that is not JSON. "
                "Check the endpoint address and backend kind."
            ) from error

    async def is_up(self, path: str) -> bool:
        """Whether GET `path` answers with a success status."""
        try:
            await self._get(path)
        except ModelError:
            return False
        return True

    async def _get(self, path: str) -> httpx2.Response:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            async with _http_client(self._timeout()) as client:
                response = await client.get(f"{self.endpoint}{path}", headers=headers)
                response.raise_for_status()
                return response
        except Exception as error:
            translated = translate_error(error, self)
            if translated is None:
                raise
            raise translated from error


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


def translate_error(error: BaseException, connection: Connection) -> ModelError | None:
    """The `ModelError` a person should see for a library exception, or None for exceptions that are bugs."""
    endpoint = connection.endpoint
    if isinstance(error, ModelError):
        return error
    if isinstance(error, hub.TextGenerationError):
        return _from_tgi_error(error)
    if isinstance(error, hub.OfflineModeIsEnabled):
        offline = ModelUnavailableError(
            f"HF_HUB_OFFLINE is set, and huggingface_hub then refuses every request, even to the model server at "
            f"{endpoint}. Unset HF_HUB_OFFLINE to use it."
        )
        offline.retryable = False
        return offline
    if isinstance(error, IncompleteReplyError):
        return GenerationError("The model server ended the reply without finishing it — try again.")
    if isinstance(error, httpx2.ConnectTimeout) or isinstance(error.__cause__, httpx2.ConnectTimeout):
        return ModelUnavailableError(
            f"Cannot reach the model server at {endpoint}: no answer within {connection.connect_timeout:g} seconds. "
            "Check that it is running and that the address is right."
        )
    if isinstance(error, (hub.InferenceTimeoutError, httpx2.TimeoutException)):
        return ModelTimeoutError(
            f"The model server at {endpoint} did not answer within {connection.timeout:g} seconds — "
            "try again, or raise the timeout."
        )
    if isinstance(error, httpx2.ConnectError):
        return ModelUnavailableError(
            f"Cannot reach the model server at {endpoint}. Check that it is running and that the address is right."
        )
    if isinstance(error, httpx2.TransportError):
        return ModelUnavailableError(f"The connection to the model server at {endpoint} broke — try again.")
    if isinstance(error, (hub.HfHubHTTPError, httpx2.HTTPStatusError)) and error.response is not None:
        return _from_status(error.response.status_code, _server_detail(error.response), endpoint)
    if isinstance(error, json.JSONDecodeError):
        return GenerationError("The model server sent a reply Callcard cannot read (not valid JSON) — try again.")
    return None


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
    log.warning("model request failed (%s); retry %d of %d in %.1f s", error, number + 1, retries, delay)
    await asyncio.sleep(delay)


def _from_tgi_error(error: hub.TextGenerationError) -> ModelError:
    detail = _clip(_message_of(error.args[0] if error.args else None) or "")
    status = error.__cause__.response.status_code if isinstance(error.__cause__, hub.HfHubHTTPError) else None
    if isinstance(error, hub.ValidationError):
        return ModelInputError(
            f"The model server rejected the request: {detail or 'invalid input'}.", status=status or 422
        )
    if isinstance(error, hub.OverloadedError):
        return ModelOverloadedError("The model server is overloaded — try again in a moment.", status=status or 429)
    if isinstance(error, hub.IncompleteGenerationError):
        return GenerationError("The model server stopped before the reply was complete — try again.", status=status)
    if isinstance(error, hub.GenerationError):
        return GenerationError(
            f"The model failed while generating ({detail or 'no details'}) — try again.", status=status
        )
    return GenerationError(f"The model server reported an error ({detail or 'no details'}) — try again.", status=status)


def _from_status(status: int, detail: str | None, endpoint: str) -> ModelError:
    said = f": {detail}" if detail else ""
    error: ModelError
    if status in (401, 403):
        error = ModelUnavailableError(
            f"The model server at {endpoint} refused the credentials (HTTP {status}){said}. "
            "Check the access token or API key.",
            status=status,
        )
        error.retryable = False
    elif status == 404:
        error = ModelUnavailableError(
            f"The model server at {endpoint} has no such API (HTTP 404). Check the endpoint address and backend kind.",
            status=status,
        )
        error.retryable = False
    elif status == 429:
        error = ModelOverloadedError(f"The model server is overloaded — try again in a moment{said}.", status=status)
    elif status in (408, 504):
        error = ModelTimeoutError(
            f"The model server at {endpoint} timed out (HTTP {status}) — try again.", status=status
        )
    elif status == 413:
        error = ModelInputError(
            "The request is too large for the model server (HTTP 413) — shorten the conversation.", status=status
        )
    elif 400 <= status < 500:
        error = ModelInputError(f"The model server rejected the request (HTTP {status}){said}.", status=status)
    elif status in (502, 503):
        error = ModelUnavailableError(
            f"The model server at {endpoint} is not available right now (HTTP {status}); "
            "it may still be starting — try again in a moment.",
            status=status,
        )
    else:
        error = GenerationError(f"The model server failed (HTTP {status}){said} — try again.", status=status)
    return error


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
    text = " ".join(text.split())
    return text if len(text) <= _DETAIL_LIMIT else text[: _DETAIL_LIMIT - 1] + "…"
