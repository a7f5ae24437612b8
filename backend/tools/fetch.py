"""One HTTP request for a tool, read into memory with a size limit; every failure is a ToolFailure a person can read."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from backend.tools.registry import ToolFailure

__all__ = ["Fetched", "fetch", "redact"]

logger = logging.getLogger(__name__)

_MAX_RESPONSE_BYTES = 4 * 1024 * 1024
_EXCERPT_CHARS = 200
_REDACTED = "[redacted]"


@dataclasses.dataclass(frozen=True)
class Fetched:
    """A successful (status < 300) HTTP answer, read into memory."""

    status: int
    content: bytes
    content_type: str
    encoding: str

    @property
    def text(self) -> str:
        """The body decoded as text."""
        return self.content.decode(self.encoding, errors="replace")

    def json(self) -> Any:
        """The body parsed as JSON (ValueError when it is not)."""
        return json.loads(self.text)


async def fetch(
    name: str,
    method: str,
    url: str,
    *,
    timeout_s: float,
    params: Mapping[str, Any] | None = None,
    json_body: Any = None,
    headers: Mapping[str, str] | None = None,
    secrets: Sequence[str] = (),
    follow_redirects: bool = False,
) -> Fetched:
    """Make one request for tool `name`; every failure becomes a ToolFailure whose text has `secrets` redacted."""
    host = httpx.URL(url).host
    logger.info("Tool %s: %s %s", name, method, url)
    try:
        async with httpx.AsyncClient(timeout=timeout_s, follow_redirects=follow_redirects) as client:
            stream = client.stream(method, url, params=params, json=json_body, headers=dict(headers or {}))
            async with stream as response:
                content = await _read_limited(response, name)
    except httpx.TimeoutException:
        raise ToolFailure(f"{name} timed out after {timeout_s:g} s waiting for {host}.") from None
    except httpx.HTTPError as exc:
        raise ToolFailure(redact(f"{name} could not reach {host} ({type(exc).__name__}).", secrets)) from None
    fetched = Fetched(
        status=response.status_code,
        content=content,
        content_type=response.headers.get("content-type", ""),
        encoding=response.charset_encoding or "utf-8",
    )
    if response.status_code >= 300:
        excerpt = " ".join(fetched.text.split())[:_EXCERPT_CHARS]
        reason = f"HTTP {response.status_code} {response.reason_phrase}".strip()
        detail = f": {excerpt}" if excerpt else "."
        raise ToolFailure(redact(f"{name} failed: {host} answered {reason}{detail}", secrets))
    return fetched


async def _read_limited(response: httpx.Response, name: str) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > _MAX_RESPONSE_BYTES:
            raise ToolFailure(f"{name} failed: the answer is larger than {_MAX_RESPONSE_BYTES // (1024 * 1024)} MiB.")
        chunks.append(chunk)
    return b"".join(chunks)


def redact(text: str, secrets: Sequence[str]) -> str:
    """`text` with every secret (of four characters or more) replaced by [redacted]."""
    for secret in secrets:
        if len(secret) >= 4:  # very short values would blank out ordinary text
            text = text.replace(secret, _REDACTED)
    return text
