"""Callcard's tools: the registry the engine executes through, and the ways tools get into it."""

from __future__ import annotations

from backend.tools.build import build_registry
from backend.tools.function_list import function_list_tools, load_function_list
from backend.tools.http_tools import load_http_tools
from backend.tools.python_tools import Format, load_python_tools, tool, tool_from_function
from backend.tools.registry import (
    DEFAULT_MAX_RESULT_BYTES,
    DEFAULT_TIMEOUT_S,
    Tool,
    ToolFailure,
    ToolPolicy,
    ToolRegistry,
    ToolResult,
)
from backend.tools.search import search_tools
from backend.tools.support_desk import SupportDesk, TicketView, support_desk_tools

__all__ = [
    "DEFAULT_MAX_RESULT_BYTES",
    "DEFAULT_TIMEOUT_S",
    "Format",
    "SupportDesk",
    "TicketView",
    "Tool",
    "ToolFailure",
    "ToolPolicy",
    "ToolRegistry",
    "ToolResult",
    "build_registry",
    "function_list_tools",
    "load_function_list",
    "load_http_tools",
    "load_python_tools",
    "search_tools",
    "support_desk_tools",
    "tool",
    "tool_from_function",
]
