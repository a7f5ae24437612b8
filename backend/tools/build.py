"""The registry app.py starts with: the built-in tools, then the operator's Python, HTTP and functionList tools."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from backend.errors import ToolConfigError
from backend.settings import split_names
from backend.tools.function_list import function_list_tools, load_function_list
from backend.tools.http_tools import load_http_tools
from backend.tools.python_tools import load_python_tools
from backend.tools.registry import DEFAULT_MAX_RESULT_BYTES, ToolPolicy, ToolRegistry
from backend.tools.search import ARXIV_API_URL, BING_API_URL, search_tools
from backend.tools.support_desk import SupportDesk, support_desk_tools

__all__ = ["build_registry"]


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
) -> ToolRegistry:
    """Every configured tool in one registry; any problem is a ToolConfigError naming its file, line or tool.

    `auto_tools` / `disabled_tools` take names (or comma-separated text, as in CALLCARD_AUTO_TOOLS); only
    read-only tools may be auto. `environ` (default os.environ) supplies secrets at request time.
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
    for name in disabled:
        registry.set_policy(name, ToolPolicy.DISABLED)
    for name in auto:
        registry.set_policy(name, ToolPolicy.AUTO)
    return registry
