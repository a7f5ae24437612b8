"""ToolRegistry: policies, failures as data, timeouts, result size and JSON conversion."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from backend.core.specs import ArgumentSpec, FunctionSpec
from backend.errors import ToolConfigError
from backend.tools import Tool, ToolFailure, ToolPolicy, ToolRegistry, ToolResult, tool_from_function


def _run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def _echo_tool(name: str = "echo", **options: Any) -> Tool:
    async def handler(arguments: dict[str, Any]) -> Any:
        return arguments

    spec = FunctionSpec(name=name, description="Echo.", arguments=[ArgumentSpec(name="text", type="string")])
    return Tool(spec=spec, handler=handler, source="test", **options)


def lookup_order(order_number: str) -> dict[str, Any]:
    """Raise a KeyError as a buggy tool would."""
    return {}[order_number]


def test_default_policy_is_confirm_and_specs_leave_out_disabled_tools() -> None:
    registry = ToolRegistry([_echo_tool("a"), _echo_tool("b", policy="disabled"), _echo_tool("c", read_only=True)])
    assert registry.get("a").policy is ToolPolicy.CONFIRM
    assert [spec.name for spec in registry.specs()] == ["a", "c"]
    assert [tool.name for tool in registry.tools()] == ["a", "b", "c"]
    result = _run(registry.execute("b", {"text": "x"}))
    assert not result.ok and result.error == "b is disabled."


def test_auto_is_refused_for_tools_that_are_not_read_only() -> None:
    with pytest.raises(ToolConfigError, match="not read-only"):
        _echo_tool(policy="auto")
    registry = ToolRegistry([_echo_tool("write"), _echo_tool("read", read_only=True)])
    with pytest.raises(ToolConfigError, match="write .*not read-only"):
        registry.set_policy("write", "auto")
    registry.set_policy("read", "auto")
    assert registry.get("read").policy is ToolPolicy.AUTO
    with pytest.raises(ToolConfigError, match="unknown tool 'nope'"):
        registry.set_policy("nope", "confirm")
    with pytest.raises(ToolConfigError, match="unknown policy"):
        registry.set_policy("read", "sometimes")


def test_duplicate_names_are_a_configuration_error() -> None:
    registry = ToolRegistry([_echo_tool("same")])
    with pytest.raises(ToolConfigError, match="defined twice"):
        registry.add(_echo_tool("same"))


def test_success_carries_value_and_duration() -> None:
    result = _run(ToolRegistry([_echo_tool()]).execute("echo", {"text": "hi"}))
    assert result == ToolResult(ok=True, value={"text": "hi"}, duration_ms=result.duration_ms)
    assert result.duration_ms >= 0
    assert result.to_model_text() == '{"text": "hi"}'


def test_exception_becomes_a_failed_result_without_traceback(caplog: pytest.LogCaptureFixture) -> None:
    registry = ToolRegistry([tool_from_function(lookup_order)])
    with caplog.at_level(logging.ERROR):
        result = _run(registry.execute("lookup_order", {"order_number": "x"}))
    assert not result.ok
    assert result.error == "lookup_order failed: KeyError 'x'"
    assert "Traceback" not in result.to_model_text()
    assert any(record.exc_info for record in caplog.records)  # the traceback goes to the log


def test_tool_failure_message_goes_to_the_model_as_is() -> None:
    def refuse(text: str) -> str:
        """Refuse."""
        raise ToolFailure("Order A1 has shipped; it cannot be cancelled.")

    result = _run(ToolRegistry([tool_from_function(refuse)]).execute("refuse", {"text": "x"}))
    assert result.error == "Order A1 has shipped; it cannot be cancelled."
    assert result.to_model_text() == "Error: Order A1 has shipped; it cannot be cancelled."


def test_timeouts_for_async_and_sync_tools() -> None:
    async def slow_async(text: str) -> str:
        """Sleep."""
        await asyncio.sleep(5)
        return text

    def slow_sync(text: str) -> str:
        """Sleep in a thread."""
        time.sleep(0.5)
        return text

    registry = ToolRegistry([
        tool_from_function(slow_async, timeout_s=0.1),
        tool_from_function(slow_sync, timeout_s=0.1),
    ])
    started = time.perf_counter()
    for name in ("slow_async", "slow_sync"):
        result = _run(registry.execute(name, {"text": "x"}))
        assert not result.ok
        assert result.error == f"{name} timed out after 0.1 s."
    assert time.perf_counter() - started < 2


def test_large_results_are_truncated_and_marked() -> None:
    def big_text(text: str) -> str:
        """Return a lot of text."""
        return "é" * 50_000

    def big_list(text: str) -> list[dict[str, Any]]:
        """Return many rows."""
        return [{"row": i, "text": "x" * 50} for i in range(2000)]

    def big_object(text: str) -> dict[str, Any]:
        """Return one large object."""
        return {f"key{i}": "y" * 100 for i in range(500)}

    registry = ToolRegistry([tool_from_function(f) for f in (big_text, big_list, big_object)], max_result_bytes=4096)
    for name in ("big_text", "big_list", "big_object"):
        result = _run(registry.execute(name, {"text": "x"}))
        assert result.ok and result.truncated, name
        encoded = json.dumps(result.value, ensure_ascii=False).encode("utf-8")
        assert len(encoded) <= 4096, name
        assert "truncated" in json.dumps(result.value, ensure_ascii=False)
    rows = _run(registry.execute("big_list", {"text": "x"})).value
    assert rows[0] == {"row": 0, "text": "x" * 50} and "truncated" in rows[-1]
    small = _run(ToolRegistry([_echo_tool()]).execute("echo", {"text": "x"}))
    assert not small.truncated


# JSON has no infinities; the registry turns them into null, which test_results_are_converted_to_json covers.
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=300),
    lambda inner: st.lists(inner, max_size=20) | st.dictionaries(st.text(max_size=10), inner, max_size=20),
    max_leaves=80,
)


@settings(max_examples=40, deadline=None)
@given(value=_JSON)
def test_every_result_fits_the_limit(value: Any) -> None:
    def give(text: str) -> Any:
        """Return the generated value."""
        return value

    result = _run(ToolRegistry([tool_from_function(give)], max_result_bytes=512).execute("give", {"text": "x"}))
    assert result.ok
    size = len(json.dumps(value, ensure_ascii=False).encode("utf-8"))
    assert len(json.dumps(result.value, ensure_ascii=False).encode("utf-8")) <= 512
    assert result.truncated == (size > 512)
    if not result.truncated:
        assert result.value == value


class _Point(BaseModel):
    x: int
    y: int


@dataclasses.dataclass
class _Pair:
    left: str
    right: datetime.date


class _Opaque:
    pass


def test_results_are_converted_to_json() -> None:
    def shapes(text: str) -> dict[str, Any]:
        """Return values JSON has no direct form for."""
        return {
            "model": _Point(x=1, y=2),
            "dataclass": _Pair("a", datetime.date(2026, 1, 2)),
            "set": {3},
            "path": Path("/tmp/x"),
            "nan": float("nan"),
            "opaque": _Opaque(),
            1: "int key",
        }

    result = _run(ToolRegistry([tool_from_function(shapes)]).execute("shapes", {"text": "x"}))
    assert result.ok
    assert result.value == {
        "model": {"x": 1, "y": 2},
        "dataclass": {"left": "a", "right": "2026-01-02"},
        "set": [3],
        "path": "/tmp/x",
        "nan": None,
        "opaque": "<_Opaque>",
        "1": "int key",
    }
    json.dumps(result.value, allow_nan=False)


def test_unserialisable_result_is_a_failed_result() -> None:
    def circular(text: str) -> list[Any]:
        """Return a list that contains itself."""
        items: list[Any] = []
        items.append(items)
        return items

    result = _run(ToolRegistry([tool_from_function(circular)]).execute("circular", {"text": "x"}))
    assert not result.ok
    assert "cannot be converted to JSON" in result.error


def test_arguments_are_validated_before_the_handler_runs() -> None:
    calls: list[dict[str, Any]] = []

    def count(n: int) -> int:
        """Count."""
        calls.append({"n": n})
        return n

    registry = ToolRegistry([tool_from_function(count)])
    bad = _run(registry.execute("count", {"n": "many"}))
    assert not bad.ok and bad.error.startswith("Invalid arguments for count: n:")
    unknown = _run(registry.execute("count", {"n": 1, "shell": "rm -rf /"}))
    assert not unknown.ok and "shell" in unknown.error
    assert calls == []
    assert _run(registry.execute("count", {"n": "3"})).value == 3


def test_unknown_tool_and_missing_handler_are_failed_results() -> None:
    spec = FunctionSpec(name="remote", description="Runs elsewhere.")
    registry = ToolRegistry([Tool(spec=spec, handler=None, source="functionList: f.json")])
    assert _run(registry.execute("remote", {})).error == "No handler is configured for remote."
    assert not _run(registry.execute("ghost", {})).ok
    assert [s.name for s in registry.specs()] == ["remote"]  # still offered: the person sees the card and the failure
