"""What MCP servers send, as plain data: a tool listing as `RemoteTool`, a call's result as the JSON the model reads."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import mcp_types as types

from backend.tools.registry import ToolFailure

__all__ = ["RemoteTool", "remote_tool", "result_value"]

_MAX_ERROR_CHARS = 500


@dataclass(frozen=True)
class RemoteTool:
    """A tool as the server lists it; the hints are the server's claims, trusted only for trusted servers."""

    name: str
    description: str
    input_schema: dict[str, Any]
    read_only_hint: bool | None = None
    destructive_hint: bool | None = None


def remote_tool(tool: types.Tool) -> RemoteTool:
    """The SDK's tool listing as plain data."""
    hints = tool.annotations
    return RemoteTool(
        name=tool.name,
        description=tool.description or tool.title or (hints.title if hints else None) or "",
        input_schema=dict(tool.input_schema),
        read_only_hint=hints.read_only_hint if hints else None,
        destructive_hint=hints.destructive_hint if hints else None,
    )


def result_value(result: types.CallToolResult, server: str) -> Any:
    """What the model reads: structured content when there is some, else the text; other content described."""
    blocks = [_block(block) for block in result.content]
    if result.is_error:
        text = " ".join(block for block in blocks if isinstance(block, str)).strip()
        raise ToolFailure(_clip(text) or f"The MCP server {server} reported an error without a message.")
    if result.structured_content is not None:
        return result.structured_content
    if len(blocks) == 1 and isinstance(blocks[0], str):
        return _maybe_json(blocks[0])
    return blocks or None


def _block(block: types.ContentBlock) -> Any:
    """A content block as JSON: text as it is; images, audio and resources as inert descriptions, never fetched."""
    if isinstance(block, types.TextContent):
        return block.text
    if isinstance(block, types.ImageContent | types.AudioContent):
        return {"type": block.type, "mime_type": block.mime_type, "bytes": _decoded_size(block.data)}
    if isinstance(block, types.ResourceLink):
        return {"type": "resource_link", "uri": block.uri, "name": block.name, "mime_type": block.mime_type}
    if isinstance(block, types.EmbeddedResource):
        resource = block.resource
        described: dict[str, Any] = {"type": "resource", "uri": resource.uri, "mime_type": resource.mime_type}
        if isinstance(resource, types.TextResourceContents):
            described["text"] = resource.text
        else:
            described["bytes"] = _decoded_size(resource.blob)
        return described
    return {"type": getattr(block, "type", "unknown")}


def _maybe_json(text: str) -> Any:
    """A JSON object or array written as text becomes the value itself; anything else stays text."""
    if text.lstrip()[:1] in ("{", "["):
        try:
            return json.loads(text)
        except ValueError:
            pass
    return text


def _decoded_size(data: str) -> int:
    return max(len(data) * 3 // 4 - data.count("=", max(len(data) - 2, 0)), 0)


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_ERROR_CHARS else text[: _MAX_ERROR_CHARS - 1] + "…"
