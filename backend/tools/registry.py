"""The tool registry: what each tool is, who may run it, and how a call becomes a safe, bounded, JSON result."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from enum import StrEnum
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticSerializationError, to_jsonable_python

from backend.core.specs import FunctionSpec
from backend.core.validation import validate_arguments
from backend.errors import ToolConfigError

__all__ = [
    "DEFAULT_MAX_RESULT_BYTES",
    "DEFAULT_TIMEOUT_S",
    "Handler",
    "Tool",
    "ToolFailure",
    "ToolInterrupted",
    "ToolPolicy",
    "ToolRegistry",
    "ToolResult",
]

logger = logging.getLogger(__name__)

DEFAULT_MAX_RESULT_BYTES = 16 * 1024
DEFAULT_TIMEOUT_S = 30.0
_MAX_ERROR_CHARS = 500

Handler = Callable[[dict[str, Any]], Awaitable[Any]]


class ToolPolicy(StrEnum):
    """Whether a person confirms each call, calls run by themselves, or the tool is not offered at all."""

    CONFIRM = "confirm"
    AUTO = "auto"
    DISABLED = "disabled"


class ToolFailure(Exception):
    """Raised by a handler for an expected failure (a business rule, a 404): the message goes to the model as is."""


class ToolInterrupted(ToolFailure):
    """Raised by a handler whose call was cut off midway (its server stopped): it may or may not have taken effect."""


@dataclasses.dataclass(frozen=True)
class Tool:
    """A function the model may call, with the handler that runs it and the rules for running it."""

    spec: FunctionSpec
    handler: Handler | None
    source: str
    policy: ToolPolicy = ToolPolicy.CONFIRM
    timeout_s: float = DEFAULT_TIMEOUT_S
    read_only: bool = False
    server: str | None = None  # the MCP server that runs it, for the card, the Tools tab and the audit
    warning: str | None = None  # what the card should warn about before a person confirms (data it may destroy)

    def __post_init__(self) -> None:
        object.__setattr__(self, "policy", _policy(self.policy, self.spec.name))
        if self.policy is ToolPolicy.AUTO and not self.read_only:
            raise ToolConfigError(
                f"{self.spec.name} ({self.source}) is not read-only, so it cannot run without confirmation "
                "(policy 'auto'); only tools that declare themselves read-only may be 'auto'."
            )
        if not (isinstance(self.timeout_s, (int, float)) and 0 < self.timeout_s <= 3600):
            raise ToolConfigError(f"{self.spec.name} ({self.source}): timeout_s must be between 0 and 3600 seconds.")

    @property
    def name(self) -> str:
        """The function name the model calls."""
        return self.spec.name

    @property
    def enabled(self) -> bool:
        """True when the tool is offered to the model."""
        return self.policy is not ToolPolicy.DISABLED


class ToolResult(BaseModel):
    """What running a tool produced: a JSON-serialisable value, or a readable error for the model."""

    ok: bool
    value: Any = None
    error: str | None = None
    duration_ms: float = 0.0
    truncated: bool = False
    interrupted: bool = False  # cut off midway: it may or may not have taken effect, and is never re-run

    def to_model_text(self) -> str:
        """The result as the text the model reads back."""
        if not self.ok:
            return f"Error: {self.error}"
        if isinstance(self.value, str):
            return self.value
        return json.dumps(self.value, ensure_ascii=False)


class ToolRegistry:
    """The tools of one Callcard instance, and the only place where a tool's handler is called."""

    def __init__(self, tools: Iterable[Tool] = (), *, max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES) -> None:
        if max_result_bytes < 256:
            raise ToolConfigError("max_result_bytes must be at least 256.")
        self.max_result_bytes = max_result_bytes
        self._tools: dict[str, Tool] = {}
        # MCP servers add and remove tools from their own thread while the app reads the list.
        self._lock = threading.RLock()
        for tool in tools:
            self.add(tool)

    def __contains__(self, name: object) -> bool:
        with self._lock:
            return name in self._tools

    def __len__(self) -> int:
        with self._lock:
            return len(self._tools)

    def add(self, tool: Tool) -> None:
        """Register `tool`; a second tool with the same name is a configuration error."""
        with self._lock:
            existing = self._tools.get(tool.name)
            if existing is not None:
                raise ToolConfigError(
                    f"Tool {tool.name!r} is defined twice: by {existing.source} and by {tool.source}."
                )
            self._tools[tool.name] = tool

    def replace(self, tool: Tool) -> None:
        """Register `tool`, or swap it in for the tool of the same name (a server changed its description)."""
        with self._lock:
            self._tools[tool.name] = tool

    def remove(self, name: str) -> Tool | None:
        """Unregister the tool called `name` (its server withdrew it); the removed tool, or None."""
        with self._lock:
            return self._tools.pop(name, None)

    def get(self, name: str) -> Tool | None:
        """The tool called `name`, enabled or not."""
        with self._lock:
            return self._tools.get(name)

    def tools(self) -> list[Tool]:
        """Every tool, disabled ones included, in registration order."""
        with self._lock:
            return list(self._tools.values())

    def specs(self) -> list[FunctionSpec]:
        """The specs of the tools offered to the model (all but the disabled ones)."""
        return [tool.spec for tool in self.tools() if tool.enabled]

    def set_policy(self, name: str, policy: ToolPolicy | str) -> None:
        """Change one tool's policy; 'auto' is refused for tools that are not read-only."""
        with self._lock:
            tool = self._tools.get(name)
            if tool is None:
                known = ", ".join(self._tools) or "none"
                raise ToolConfigError(f"Cannot set a policy for unknown tool {name!r}; known tools: {known}.")
            self._tools[name] = dataclasses.replace(tool, policy=_policy(policy, name))

    async def execute(self, name: str, arguments: Mapping[str, Any]) -> ToolResult:
        """Run tool `name`; every failure of the tool itself comes back as a failed result, never an exception."""
        started = time.perf_counter()
        tool = self.get(name)
        if tool is None:
            return _failed(f"There is no tool {name!r}.", started)
        if not tool.enabled:
            return _failed(f"{name} is disabled.", started)
        if tool.handler is None:
            return _failed(f"No handler is configured for {name}.", started)
        # Defence in depth: the engine validates too, but nothing reaches a handler unchecked.
        checked, errors, _missing = validate_arguments(tool.spec, arguments)
        if errors:
            problems = "; ".join(f"{field or name}: {message}" for field, message in errors.items())
            return _failed(f"Invalid arguments for {name}: {problems}", started)
        logger.info("Running tool %s (%s) with arguments %s", name, tool.source, sorted(checked))
        try:
            value = await asyncio.wait_for(tool.handler(checked), timeout=tool.timeout_s)
        except TimeoutError:
            return _failed(f"{name} timed out after {tool.timeout_s:g} s.", started)
        except ToolInterrupted as failure:
            return _failed(_clip(str(failure)) or f"{name} was interrupted.", started, interrupted=True)
        except ToolFailure as failure:
            return _failed(_clip(str(failure)) or f"{name} failed.", started)
        except Exception as exc:  # a tool's bug is the model's news, not the app's crash
            logger.exception("Tool %s raised an exception", name)
            return _failed(_failure_message(name, exc), started)
        return self._finish(name, value, started)

    def _finish(self, name: str, value: Any, started: float) -> ToolResult:
        try:
            jsonable = _to_json_value(value)
            text = json.dumps(jsonable, ensure_ascii=False, allow_nan=False)
        except (PydanticSerializationError, TypeError, ValueError, RecursionError) as exc:
            logger.warning("Tool %s returned a value that is not JSON-serialisable: %s", name, exc)
            kind = type(value).__name__
            return _failed(f"{name} returned a value that cannot be converted to JSON ({kind}).", started)
        truncated = len(text.encode("utf-8")) > self.max_result_bytes
        if truncated:
            jsonable = _truncate(jsonable, text, self.max_result_bytes)
            logger.info("Tool %s returned %d bytes of JSON; truncated to %d", name, len(text), self.max_result_bytes)
        duration = _elapsed_ms(started)
        logger.info("Tool %s finished in %.0f ms", name, duration)
        return ToolResult(ok=True, value=jsonable, duration_ms=duration, truncated=truncated)


def _failure_message(name: str, exc: BaseException) -> str:
    """A one-line account of an unexpected exception for the model: "lookup_order failed: KeyError 'x'"."""
    detail = _clip(str(exc))
    if not detail:
        return f"{name} failed: {type(exc).__name__}"
    # KeyError's text is already the quoted key; a colon before it reads oddly.
    separator = " " if detail[0] in "'\"" else ": "
    return f"{name} failed: {type(exc).__name__}{separator}{detail}"


def _policy(value: ToolPolicy | str, name: str) -> ToolPolicy:
    try:
        return ToolPolicy(str(value).strip().lower())
    except ValueError:
        choices = ", ".join(p.value for p in ToolPolicy)
        raise ToolConfigError(f"Tool {name!r}: unknown policy {value!r}; use one of {choices}.") from None


def _failed(error: str, started: float, *, interrupted: bool = False) -> ToolResult:
    logger.info("Tool call failed: %s", error)
    return ToolResult(ok=False, error=error, duration_ms=_elapsed_ms(started), interrupted=interrupted)


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_ERROR_CHARS else text[: _MAX_ERROR_CHARS - 1] + "…"


def _to_json_value(value: Any) -> Any:
    """Plain JSON data from what a tool returned: models, dataclasses, dates, sets; NaN/inf become null."""
    return to_jsonable_python(value, inf_nan_mode="null", bytes_mode="base64", fallback=_fallback)


def _fallback(value: Any) -> Any:
    # Objects that define their own text (paths, decimals, custom types) keep it; others only show their type.
    if type(value).__str__ is not object.__str__:
        return str(value)
    return f"<{type(value).__name__}>"


def _truncate(value: Any, text: str, limit: int) -> Any:
    """A value within `limit` bytes of JSON: a long string or list is cut; anything else becomes cut JSON text."""
    marker = f" … [truncated: {len(text.encode('utf-8'))} bytes of JSON in all]"
    budget = limit - len(marker.encode("utf-8")) - 4  # room for the quotes and separators around the marker
    if isinstance(value, list):
        kept: list[Any] = []
        size = 2
        for item in value:
            size += len(json.dumps(item, ensure_ascii=False).encode("utf-8")) + 2
            if size > budget:
                break
            kept.append(item)
        if kept:
            return [*kept, marker.strip()]
    source = value if isinstance(value, str) else text
    source = source[:budget]
    # Escapes and multi-byte characters make JSON longer than the text: shrink by the measured excess until it fits.
    while (excess := len(json.dumps(source, ensure_ascii=False).encode("utf-8")) - budget) > 0:
        source = source[: len(source) - max(excess // 2, 1)]
    return source + marker
