"""The registry app.py starts with: the built-in tools, the operator's Python, HTTP and functionList tools, then MCP."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from backend.errors import ToolConfigError
from backend.settings import split_names
from backend.tools.function_list import function_list_tools, load_function_list
from backend.tools.http_tools import load_http_tools
from backend.tools.python_tools import load_python_tools
from backend.tools.registry import DEFAULT_MAX_RESULT_BYTES, ToolPolicy, ToolRegistry
from backend.tools.search import ARXIV_API_URL, BING_API_URL, search_tools
from backend.tools.support_desk import SupportDesk, support_desk_tools

if TYPE_CHECKING:  # the MCP SDK loads only when servers are configured (app.py builds McpServers then)
    from backend.tools.mcp_servers import McpServers

__all__ = ["build_registry"]

logger = logging.getLogger(__name__)


def build_registry(
    *,
    support_desk: SupportDesk | None = None,
    examples: bool = True,
    python_tools: str | Path | None = None,
    http_tools: str | Path | None = None,
    function_list: str | Path | None = None,
    auto_tools: str | Iterable[str] = (),
    disabled_tools: str | Iterable[str] = (),
    environ: Mapping[str, str] | None = None,
    arxiv_url: str = ARXIV_API_URL,
    bing_url: str = BING_API_URL,
    max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES,
    mcp_servers: McpServers | None = None,
) -> ToolRegistry:
    """Every configured tool in one registry; any problem is a ToolConfigError naming its file, line or tool.

    `auto_tools` / `disabled_tools` take names (or comma-separated text, as in CALLCARD_AUTO_TOOLS); only
    read-only tools may be auto. `environ` (default os.environ) supplies secrets at request time.
    `mcp_servers` are started here, after every other tool, so a built-in name stays with the built-in tool
    and the server's tool becomes `server__tool`; the caller closes them. An MCP server that is down does not
    stop anything: its tools join when it connects.
    """
    registry = ToolRegistry(max_result_bytes=max_result_bytes)
    if support_desk is not None:
        for tool in support_desk_tools(support_desk):
            registry.add(tool)
    if examples:
        for tool in search_tools(arxiv_url=arxiv_url, bing_url=bing_url, environ=environ):
            registry.add(tool)
    if python_tools is not None:
        for tool in load_python_tools(python_tools):
            registry.add(tool)
    listed = load_function_list(function_list) if function_list is not None else []
    mapped = (
        load_http_tools(http_tools, known_specs={spec.name: spec for spec in listed}, environ=environ)
        if http_tools is not None
        else []
    )
    handlers = {tool.name: tool for tool in mapped}
    if function_list is not None:
        for tool in function_list_tools(listed, source=f"functionList: {Path(function_list).name}", handlers=handlers):
            registry.add(tool)
    listed_names = {spec.name for spec in listed}
    for tool in mapped:
        if tool.name not in listed_names:
            registry.add(tool)
    auto, disabled = split_names(auto_tools), split_names(disabled_tools)
    both = sorted(set(auto) & set(disabled))
    if both:
        raise ToolConfigError(f"{', '.join(both)} cannot be both auto and disabled.")
    if mcp_servers is not None:
        mcp_servers.start(registry, auto=auto, disabled=disabled)
    for name in disabled:
        _set_policy(registry, name, ToolPolicy.DISABLED, mcp_servers)
    for name in auto:
        _set_policy(registry, name, ToolPolicy.AUTO, mcp_servers)
    return registry


def _set_policy(registry: ToolRegistry, name: str, policy: ToolPolicy, mcp_servers: McpServers | None) -> None:
    tool = registry.get(name)
    if tool is not None and tool.server is not None:
        return  # McpServers applied it, by the MCP rules (auto only for a trusted server's read-only tools)
    if tool is None and mcp_servers is not None and not mcp_servers.all_connected():
        logger.warning("%s is not a known tool yet; if an MCP server offers it when it connects, it will be %s",
                       name, policy.value)
        return
    registry.set_policy(name, policy)
