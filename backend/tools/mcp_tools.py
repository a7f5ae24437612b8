"""MCP tools as registry tools: the names the model sees, their specs, their policy and the card's warning."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Container
from typing import Any

from backend.core.specs import FunctionSpec
from backend.tools.mcp_config import McpServerConfig
from backend.tools.mcp_content import RemoteTool
from backend.tools.registry import Handler, Tool, ToolPolicy

__all__ = ["DESTRUCTIVE_WARNING", "callcard_name", "mcp_tool", "source_of"]

logger = logging.getLogger(__name__)

DESTRUCTIVE_WARNING = "The server says this tool may delete or overwrite data."
_MAX_NAME = 64  # OpenAI's limit for function names, the strictest of our backends
_NOT_NAME = re.compile(r"[^A-Za-z0-9_]")
_MAX_REF_DEPTH = 8


def source_of(server: str) -> str:
    """A tool's `source` for an MCP server: "MCP: time"."""
    return f"MCP: {server}"


def callcard_name(server: str, tool: str, taken: Callable[[str], bool]) -> str:
    """The name the model sees: the tool's own name, or `server__tool` when another tool has that name already.

    Only letters, digits and '_' (others become '_'), at most 64: names every prompt format, grammar and
    OpenAI-compatible server accepts (OpenAI rejects dots, so not `server.tool`).
    """
    plain = _identifier(tool)
    if not taken(plain):
        return plain
    qualified = _identifier(f"{_identifier(server)}__{_identifier(tool)}")
    candidate, number = qualified, 2
    while taken(candidate):
        suffix = f"_{number}"
        candidate, number = qualified[: _MAX_NAME - len(suffix)] + suffix, number + 1
    return candidate


def mcp_tool(
    remote: RemoteTool,
    *,
    name: str,
    config: McpServerConfig,
    handler: Handler,
    timeout_s: float,
    auto: Container[str] = (),
    disabled: Container[str] = (),
    policy: ToolPolicy | None = None,
) -> Tool:
    """A registry tool for `remote`; SpecError when its input schema is one Callcard cannot turn into card fields.

    Always `confirm` unless the operator asks otherwise: `auto` only when the server is trusted and says the tool
    is read-only. `policy` keeps a policy set at run time across a refresh of the server's tool list.
    """
    spec = FunctionSpec.from_any(
        {"name": name, "description": remote.description, "parameters": _inline_refs(remote.input_schema)}
    )
    # The spec says annotations from an untrusted server are only hints: they never relax anything.
    read_only = config.trusted and remote.read_only_hint is True
    if config.disabled or name in disabled:
        wanted = ToolPolicy.DISABLED
    elif policy is not None:
        wanted = policy
    elif name in auto:
        wanted = ToolPolicy.AUTO
    else:
        wanted = ToolPolicy.CONFIRM
    if wanted is ToolPolicy.AUTO and not read_only:
        why = "the server is not trusted" if not config.trusted else "the server does not say it is read-only"
        logger.warning("MCP tool %s (%s) stays 'confirm': it cannot be 'auto' because %s", name, config.name, why)
        wanted = ToolPolicy.CONFIRM
    destructive = remote.destructive_hint is True and remote.read_only_hint is not True
    return Tool(
        spec=spec, handler=handler, source=source_of(config.name), policy=wanted, timeout_s=timeout_s,
        read_only=read_only, server=config.name, warning=DESTRUCTIVE_WARNING if destructive else None,
    )


def _identifier(text: str) -> str:
    name = _NOT_NAME.sub("_", text) or "_"
    if name[0].isdigit():
        name = "_" + name
    return name[:_MAX_NAME]


def _inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` with local `#/$defs/...` references replaced by what they point to (servers built on pydantic
    use them for nested models); a reference that cannot be resolved is left for the converter to reject."""
    definitions = {**schema.get("definitions", {}), **schema.get("$defs", {})}

    def resolve(node: Any, depth: int) -> Any:
        if isinstance(node, list):
            return [resolve(item, depth) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and depth < _MAX_REF_DEPTH:
            target = definitions.get(ref.rsplit("/", 1)[-1]) if ref.startswith("#/") else None
            if isinstance(target, dict):
                rest = {key: value for key, value in node.items() if key != "$ref"}
                return resolve({**target, **rest}, depth + 1)
        return {key: resolve(value, depth) for key, value in node.items() if key not in ("$defs", "definitions")}

    if not definitions:
        return schema
    return resolve(schema, 0)

