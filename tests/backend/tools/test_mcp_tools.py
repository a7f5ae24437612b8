"""MCP tools as registry tools: names the model can write, specs from the input schema, policy, the card's warning."""

from __future__ import annotations

from typing import Any

import pytest

from backend.errors import SpecError
from backend.tools.mcp_config import McpServerConfig
from backend.tools.mcp_content import RemoteTool
from backend.tools.mcp_tools import DESTRUCTIVE_WARNING, callcard_name, mcp_tool
from backend.tools.registry import ToolPolicy

SCHEMA = {"type": "object", "properties": {"timezone": {"type": "string", "description": "IANA name"}},
          "required": ["timezone"]}


async def _handler(arguments: dict[str, Any]) -> Any:
    return arguments


def _tool(remote: RemoteTool, *, trusted: bool = False, server_disabled: bool = False, **options: Any) -> Any:
    config = McpServerConfig(name="time", command="x", trusted=trusted, disabled=server_disabled)
    return mcp_tool(remote, name=remote.name, config=config, handler=_handler, timeout_s=60, **options)


def test_a_tool_keeps_its_name_unless_taken_then_gets_its_servers() -> None:
    taken = {"get_time", "time__get_time"}.__contains__
    assert callcard_name("time", "convert", taken) == "convert"
    assert callcard_name("time", "get_time", {"get_time"}.__contains__) == "time__get_time"
    assert callcard_name("time", "get_time", taken) == "time__get_time_2"


@pytest.mark.parametrize(
    ("server", "tool", "expected"),
    [("git", "git.log", "git_log"), ("my-server", "list-files", "list_files"), ("s", "2fa", "_2fa")],
)
def test_names_use_only_letters_digits_and_underscores(server: str, tool: str, expected: str) -> None:
    assert callcard_name(server, tool, lambda name: False) == expected
    assert callcard_name(server, tool, lambda name: name == expected).replace("_", "").isalnum()
    assert len(callcard_name(server, "x" * 200, lambda name: False)) == 64


def test_the_input_schema_becomes_the_spec_and_every_tool_starts_as_confirm() -> None:
    tool = _tool(RemoteTool(name="get_current_time", description="Now.", input_schema=SCHEMA, read_only_hint=True))
    assert tool.spec.name == "get_current_time" and tool.spec.description == "Now."
    [argument] = tool.spec.arguments
    assert (argument.name, argument.type, argument.required, argument.description) == (
        "timezone", "string", True, "IANA name")
    assert tool.policy is ToolPolicy.CONFIRM and tool.server == "time" and tool.source == "MCP: time"
    assert not tool.read_only  # an untrusted server's readOnlyHint is only a hint


def test_auto_only_for_a_trusted_servers_read_only_tool_the_operator_lists() -> None:
    reader = RemoteTool(name="read", description="", input_schema=SCHEMA, read_only_hint=True)
    writer = RemoteTool(name="write", description="", input_schema=SCHEMA, read_only_hint=False)
    assert _tool(reader, trusted=True, auto={"read"}).policy is ToolPolicy.AUTO
    assert _tool(reader, trusted=True).policy is ToolPolicy.CONFIRM  # eligible, but not asked for
    assert _tool(reader, trusted=False, auto={"read"}).policy is ToolPolicy.CONFIRM
    assert _tool(writer, trusted=True, auto={"write"}).policy is ToolPolicy.CONFIRM
    assert _tool(reader, trusted=True, auto={"read"}, disabled={"read"}).policy is ToolPolicy.DISABLED
    assert _tool(reader, server_disabled=True).policy is ToolPolicy.DISABLED


def test_a_destructive_tool_carries_a_warning_for_the_card() -> None:
    def warning(**hints: Any) -> str | None:
        return _tool(RemoteTool(name="t", description="", input_schema=SCHEMA, **hints)).warning

    assert warning(destructive_hint=True) == DESTRUCTIVE_WARNING
    assert warning(read_only_hint=False, destructive_hint=True) == DESTRUCTIVE_WARNING
    assert warning(read_only_hint=True, destructive_hint=True) is None  # destructiveHint means nothing when read-only
    assert warning(destructive_hint=False) is None
    assert warning() is None  # no claim either way: confirm, without crying wolf


def test_local_references_are_inlined_and_unsupported_schemas_raise() -> None:
    nested = {
        "type": "object",
        "properties": {"address": {"$ref": "#/$defs/Address"}},
        "required": ["address"],
        "$defs": {"Address": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
    }
    tool = _tool(RemoteTool(name="ship", description="", input_schema=nested))
    [address] = tool.spec.arguments
    assert address.type == "object" and [p.name for p in address.properties or []] == ["city"]
    choice = {"type": "object", "properties": {"x": {"anyOf": [{"type": "string"}, {"type": "integer"}]}}}
    with pytest.raises(SpecError):
        _tool(RemoteTool(name="pick", description="", input_schema=choice))
