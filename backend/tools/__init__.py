"""Callcard's tools: the registry the engine executes through, and the ways tools get into it.

MCP servers live in `backend.tools.mcp_servers` (McpServers, ServerStatus), imported where they are configured so
that the MCP SDK loads only then; the pieces here (its config file and elicitation broker) do not load it.
"""

from __future__ import annotations

from backend.tools.build import build_registry
from backend.tools.function_list import function_list_tools, load_function_list
from backend.tools.http_tools import load_http_tools
from backend.tools.mcp_config import McpServerConfig, load_mcp_config
from backend.tools.mcp_elicitation import Elicitation, ElicitationAnswer, ElicitationBroker
from backend.tools.python_tools import Format, load_python_tools, tool, tool_from_function
from backend.tools.registry import (
    DEFAULT_MAX_RESULT_BYTES,
    DEFAULT_TIMEOUT_S,
    Tool,
    ToolFailure,
    ToolInterrupted,
    ToolPolicy,
    ToolRegistry,
    ToolResult,
)
from backend.tools.search import search_tools
from backend.tools.support_desk import SupportDesk, TicketView, support_desk_tools

__all__ = [
    "DEFAULT_MAX_RESULT_BYTES",
    "DEFAULT_TIMEOUT_S",
    "Elicitation",
    "ElicitationAnswer",
    "ElicitationBroker",
    "Format",
    "McpServerConfig",
    "SupportDesk",
    "TicketView",
    "Tool",
    "ToolFailure",
    "ToolInterrupted",
    "ToolPolicy",
    "ToolRegistry",
    "ToolResult",
    "build_registry",
    "function_list_tools",
    "load_function_list",
    "load_http_tools",
    "load_mcp_config",
    "load_python_tools",
    "search_tools",
    "support_desk_tools",
    "tool",
    "tool_from_function",
]
