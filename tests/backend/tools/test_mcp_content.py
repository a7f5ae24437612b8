"""What MCP servers send, as plain data: structured content first, text as the model reads it, the rest inert."""

from __future__ import annotations

import mcp_types as types
import pytest

from backend.tools.mcp_content import remote_tool, result_value
from backend.tools.registry import ToolFailure

PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="


def test_structured_content_wins_over_its_text_copy() -> None:
    result = types.CallToolResult(content=[types.TextContent(text='{"sum": 3}')], structured_content={"sum": 3})
    assert result_value(result, "calc") == {"sum": 3}


def test_text_is_kept_as_text_and_json_text_becomes_its_value() -> None:
    assert result_value(types.CallToolResult(content=[types.TextContent(text="12")]), "s") == "12"
    assert result_value(types.CallToolResult(content=[types.TextContent(text='{"a": [1]}')]), "s") == {"a": [1]}
    assert result_value(types.CallToolResult(content=[]), "s") is None


def test_images_audio_and_resources_are_described_never_fetched() -> None:
    result = types.CallToolResult(content=[
        types.TextContent(text="Here:"),
        types.ImageContent(data=PIXEL, mime_type="image/png"),
        types.ResourceLink(uri="https://example.com/report.pdf", name="report", mime_type="application/pdf"),
        types.EmbeddedResource(resource=types.TextResourceContents(uri="file:///notes.txt", text="hi")),
        types.EmbeddedResource(resource=types.BlobResourceContents(uri="file:///a.bin", blob="AAAA")),
    ])
    assert result_value(result, "s") == [
        "Here:",
        {"type": "image", "mime_type": "image/png", "bytes": 70},
        {"type": "resource_link", "uri": "https://example.com/report.pdf", "name": "report",
         "mime_type": "application/pdf"},
        {"type": "resource", "uri": "file:///notes.txt", "mime_type": None, "text": "hi"},
        {"type": "resource", "uri": "file:///a.bin", "mime_type": None, "bytes": 3},
    ]


def test_is_error_is_a_failed_call_with_the_servers_words() -> None:
    with pytest.raises(ToolFailure, match="^Order 7 does not exist$"):
        result_value(types.CallToolResult(content=[types.TextContent(text="Order 7 does not exist")], is_error=True), "s")
    with pytest.raises(ToolFailure, match="reported an error without a message"):
        result_value(types.CallToolResult(content=[], is_error=True), "orders")


def test_a_listing_keeps_its_hints_and_falls_back_to_the_title_for_a_description() -> None:
    tool = types.Tool(name="t", title="Tell the time", input_schema={"type": "object"},
                      annotations=types.ToolAnnotations(read_only_hint=True))
    remote = remote_tool(tool)
    assert (remote.description, remote.read_only_hint, remote.destructive_hint) == ("Tell the time", True, None)
