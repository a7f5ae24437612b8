"""build_registry: the built-in set, a functionList with and without HTTP handlers, and operator policy overrides."""

from __future__ import annotations

import asyncio
import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from backend.errors import ToolConfigError
from backend.tools import SupportDesk, ToolPolicy, build_registry, load_function_list
from tests.backend.tools.conftest import FakeServer, Reply

DESK_TOOLS = ["lookup_order", "list_orders", "update_shipping_address", "cancel_order", "create_support_ticket"]

FUNCTION_LIST = """
{
    "function": "get_weather",
    "description": "Get the current weather for a city.",
    "arguments": [
        {"name": "city", "type": "string", "description": "The city"}
    ]
}

{
    "function": "refund_order",
    "description": "Refund an order.",
    "arguments": [
        {"name": "order_number", "type": "string", "description": "The order"},
        {"name": "amount", "type": "number", "description": "How much"}
    ]
}
"""


def _run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def test_default_set_is_the_support_desk_and_the_model_card_examples(desk: SupportDesk) -> None:
    registry = build_registry(support_desk=desk)
    assert [t.name for t in registry.tools()] == [*DESK_TOOLS, "search_bing", "search_arxiv"]
    assert all(t.policy is ToolPolicy.CONFIRM for t in registry.tools())
    read_only = {t.name for t in registry.tools() if t.read_only}
    assert read_only == {"lookup_order", "list_orders", "search_bing", "search_arxiv"}
    assert [s.name for s in build_registry(examples=False).specs()] == []


def test_auto_and_disabled_overrides(desk: SupportDesk) -> None:
    registry = build_registry(support_desk=desk, auto_tools="lookup_order, list_orders", disabled_tools=["search_bing"])
    assert registry.get("lookup_order").policy is ToolPolicy.AUTO
    assert registry.get("list_orders").policy is ToolPolicy.AUTO
    assert registry.get("search_bing").policy is ToolPolicy.DISABLED
    assert "search_bing" not in [s.name for s in registry.specs()]
    with pytest.raises(ToolConfigError, match="cancel_order .*not read-only"):
        build_registry(support_desk=desk, auto_tools="lookup_order,cancel_order")
    with pytest.raises(ToolConfigError, match="unknown tool 'lookup_ordr'"):
        build_registry(support_desk=desk, auto_tools="lookup_ordr")
    with pytest.raises(ToolConfigError, match="both auto and disabled"):
        build_registry(support_desk=desk, auto_tools="lookup_order", disabled_tools="lookup_order")


def test_function_list_without_handler_is_offered_but_fails_clearly(tmp_path: Path) -> None:
    functions = tmp_path / "functions.json"
    functions.write_text(FUNCTION_LIST)
    registry = build_registry(examples=False, function_list=functions)
    assert [s.name for s in registry.specs()] == ["get_weather", "refund_order"]
    weather = registry.get("get_weather")
    assert weather.handler is None and weather.source == "functionList: functions.json"
    assert weather.policy is ToolPolicy.CONFIRM
    result = _run(registry.execute("get_weather", {"city": "Oslo"}))
    assert not result.ok and result.error == "No handler is configured for get_weather."


def test_function_list_runs_through_an_http_mapping_of_the_same_name(tmp_path: Path, fake_server: FakeServer) -> None:
    fake_server.reply("/weather/Oslo", Reply(body={"city": "Oslo", "celsius": 3}))
    functions = tmp_path / "functions.json"
    functions.write_text(FUNCTION_LIST)
    http = tmp_path / "http_tools.yaml"
    http.write_text(textwrap.dedent(f"""
        tools:
          - name: get_weather
            read_only: true
            request:
              url: {fake_server.url}/weather/{{city}}
          - name: ping
            description: Is the service up?
            request:
              url: {fake_server.url}/ping
        """))
    registry = build_registry(examples=False, function_list=functions, http_tools=http, auto_tools=["get_weather"])
    weather = registry.get("get_weather")
    assert weather.spec.description == "Get the current weather for a city."  # from the functionList
    assert weather.source == "functionList: functions.json + http: http_tools.yaml"
    assert weather.policy is ToolPolicy.AUTO
    assert [t.name for t in registry.tools()] == ["get_weather", "refund_order", "ping"]
    result = _run(registry.execute("get_weather", {"city": "Oslo"}))
    assert result.ok and result.value == {"city": "Oslo", "celsius": 3}


def test_openai_tools_json_and_bad_files(tmp_path: Path) -> None:
    openai = tmp_path / "tools.json"
    openai.write_text(json.dumps([{"type": "function", "function": {
        "name": "f", "description": "F.", "parameters": {"type": "object", "properties": {"x": {"type": "integer"}}},
    }}]))
    assert [s.name for s in load_function_list(openai)] == ["f"]
    bad = tmp_path / "bad.json"
    bad.write_text('{"function": "f", "arguments": [\n{"name": "x", "type": "widget"}]}')
    with pytest.raises(ToolConfigError, match=r"^bad.json: .*unknown type 'widget'"):
        load_function_list(bad)
    with pytest.raises(ToolConfigError, match="no such function list"):
        load_function_list(tmp_path / "missing.json")


def test_python_tools_join_and_duplicates_are_refused(tmp_path: Path, desk: SupportDesk) -> None:
    module = tmp_path / "extra.py"
    module.write_text(textwrap.dedent('''
        from backend.tools import tool

        @tool
        def lookup_order(order_number: str) -> str:
            """Shadow the built-in."""
            return order_number
    '''))
    twice = "'lookup_order' is defined twice: by builtin: support desk and by python: extra.py"
    with pytest.raises(ToolConfigError, match=twice):
        build_registry(support_desk=desk, python_tools=module)
    registry = build_registry(examples=False, python_tools=module)
    assert registry.get("lookup_order").source == "python: extra.py"


def test_example_files_load(tmp_path: Path) -> None:
    examples = Path(__file__).resolve().parents[3] / "examples"
    registry = build_registry(
        examples=False,
        python_tools=examples / "my_tools.py",
        http_tools=examples / "http_tools.yaml",
        function_list=examples / "functions.json",
        environ={},
    )
    names = [t.name for t in registry.tools()]
    assert len(names) == len(set(names)) >= 4
    for tool in registry.tools():
        assert tool.spec.description, tool.name
