"""Functions whose execution lives elsewhere: a Trelis functionList or OpenAI tools file, run through HTTP mappings."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from pathlib import Path

from backend.core.specs import FunctionSpec, load_functions
from backend.errors import SpecError, ToolConfigError
from backend.tools.registry import Tool

__all__ = ["load_function_list", "function_list_tools"]

logger = logging.getLogger(__name__)


def load_function_list(path: str | Path) -> list[FunctionSpec]:
    """The functions in a Trelis functionList or OpenAI tools JSON file; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise ToolConfigError(f"{path}: there is no such function list file.")
    try:
        specs = load_functions(path.read_text(encoding="utf-8"))
    except SpecError as exc:
        raise ToolConfigError(f"{path.name}: {exc}") from None
    if not specs:
        raise ToolConfigError(f"{path.name}: the file lists no functions.")
    return specs


def function_list_tools(specs: list[FunctionSpec], *, source: str, handlers: Mapping[str, Tool]) -> list[Tool]:
    """A tool per function: run by the HTTP tool of the same name in `handlers`, or without a handler."""
    tools = []
    for spec in specs:
        mapped = handlers.get(spec.name)
        if mapped is None:
            logger.info("%s: %s has no handler; calls to it will fail until one is configured", source, spec.name)
            tools.append(Tool(spec=spec, handler=None, source=source))
            continue
        if mapped.spec != spec:
            logger.info("%s: %s uses the arguments of %s", source, spec.name, mapped.source)
        tools.append(dataclasses.replace(mapped, source=f"{source} + {mapped.source}"))
    return tools
