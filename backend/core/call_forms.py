"""The forms a function call takes once read: the JSON objects of each model family, pythonic calls, cut-off calls.

Pure functions of values already read (by `lenient_json` or `ast`); `parsing.py` finds where in a reply they are.
"""

from __future__ import annotations

import ast
import re
from typing import Any

from backend.core.calls import FunctionCall
from backend.core.lenient_json import MAX_DEPTH, WORDS, CutScalar, PartialDict, PartialList, lenient_loads
from backend.core.openers import MAX_NAME, NAME_KEYS

__all__ = [
    "calls_in",
    "collect",
    "cut_message",
    "dotted_name",
    "partial_names",
    "pythonic_call",
    "shallow",
]

_NAME_RE = re.compile(rf"[^\W\d][\w.\-:/]{{0,{MAX_NAME - 1}}}")
# Keys that make a cut-off object look like a call, not data.
_CALL_KEYS = (*NAME_KEYS, "function_call", "arguments", "parameters")
_ARGUMENT_KEYS = ("arguments", "parameters")


def _clean_name(name: Any) -> str | None:
    """The function name a call object gives, when it looks like one."""
    if not isinstance(name, str):
        return None
    name = name.strip()
    return name if _NAME_RE.fullmatch(name) else None


def _call_from(obj: dict[str, Any], lenient: bool, nested: bool = False) -> FunctionCall | str | None:
    """The call an object describes, a problem when it is a call that cannot be taken, or None when it is data.

    A call needs a name ("function" or "name") and its arguments ("arguments" or "parameters") as an object or a
    JSON string holding one. `lenient` (after a call marker, or inside tool_calls) also accepts missing arguments.
    """
    function = obj.get("function")
    if isinstance(function, dict):
        # OpenAI's {"type": "function", "function": {"name": ..., "arguments": "..."}}
        return None if nested else _call_from(function, lenient=True, nested=True)
    name = _clean_name(function if isinstance(function, str) else obj.get("name"))
    if name is None:
        return None
    lenient = lenient or obj.get("type") == "function"
    for key in _ARGUMENT_KEYS:
        if key in obj:
            arguments = obj[key]
            break
    else:
        return FunctionCall(name=name) if lenient else None
    if isinstance(arguments, str):
        arguments = {} if lenient and not arguments.strip() else lenient_loads(arguments)
    if isinstance(arguments, dict):
        if shallow(arguments):
            return FunctionCall(name=name, arguments=arguments)
        return f"The arguments of the call to {name} are nested too deeply to be taken." if lenient else None
    if lenient:
        return f"The arguments of the call to {name} are not a JSON object, so the call was not taken."
    return None


def shallow(value: Any, depth: int = 1) -> bool:
    """Whether a value nests no deeper than a call may (the C decoder reads far deeper than that)."""
    if depth > MAX_DEPTH:
        return False
    if isinstance(value, dict):
        return all(shallow(item, depth + 1) for item in value.values())
    if isinstance(value, list):
        return all(shallow(item, depth + 1) for item in value)
    return True


def calls_in(value: Any, lenient: bool) -> tuple[tuple[FunctionCall, ...], tuple[str, ...]] | None:
    """The calls a complete value holds and the problems met; None when the value is data."""
    items = value if isinstance(value, list) else [value]
    if not items:
        return None
    calls: list[FunctionCall] = []
    problems: list[str] = []
    for item in items:
        if not isinstance(item, dict):
            return None
        tool_calls = item.get("tool_calls")
        if isinstance(tool_calls, list):
            for entry in tool_calls:
                found = _call_from(entry, lenient=True) if isinstance(entry, dict) else None
                collect(found or "An entry in tool_calls is not a function call.", calls, problems)
            continue
        legacy = item.get("function_call")
        found = _call_from(legacy if isinstance(legacy, dict) else item, lenient or isinstance(legacy, dict))
        if found is None:
            return None
        collect(found, calls, problems)
    return tuple(calls), tuple(problems)


def collect(found: FunctionCall | str, calls: list[FunctionCall], problems: list[str]) -> None:
    """Add a call to `calls`, or a problem (a call that cannot be taken) to `problems`."""
    if isinstance(found, FunctionCall):
        calls.append(found)
    else:
        problems.append(found)


def partial_names(partial: Any, lenient: bool) -> list[str] | None:
    """Names of the calls in a value the reply ended inside; None when that value looks like data, not a call."""
    if isinstance(partial, PartialList):
        names: list[str] = []
        callish = lenient
        for item in partial:
            item_names = partial_names(item, lenient) if _is_partial(item) else _complete_names(item)
            if item_names is not None:
                callish = True
                names += item_names
        return names if callish else None
    if not isinstance(partial, PartialDict):
        return None
    callish = lenient or any(key in _CALL_KEYS for key in partial)
    if partial.pending is not None and (partial.pending or not partial):
        callish = callish or any(key.startswith(partial.pending) for key in _CALL_KEYS)
    names = []
    tool_calls = partial.get("tool_calls")
    if isinstance(tool_calls, list):
        names += (partial_names(tool_calls, True) if _is_partial(tool_calls) else _complete_names(tool_calls)) or []
    function = partial.get("function")
    if isinstance(function, dict):
        function = function.get("name")
    name = _clean_name(function if isinstance(function, str) else partial.get("name"))
    if name is not None:
        names.append(name)
    return names if callish else None


def _is_partial(value: Any) -> bool:
    return isinstance(value, (PartialDict, PartialList, CutScalar))


def _complete_names(value: Any) -> list[str] | None:
    found = calls_in(value, lenient=True)
    return None if found is None else [call.name for call in found[0]]


def cut_message(names: list[str]) -> str:
    """What to tell the user about a reply cut off inside the calls named."""
    if not names:
        return "The model's reply was cut off in the middle of a function call."
    if len(names) == 1:
        return f"The model's reply was cut off in the middle of a function call ({names[0]})."
    return f"The model's reply was cut off in the middle of its function calls ({', '.join(names)}); none was taken."


def _literal(node: ast.expr, depth: int = 0) -> Any:
    """The plain value an expression spells (JSON-like literals only); raises ValueError for anything else."""
    if depth > MAX_DEPTH:
        raise ValueError("too deep")
    if isinstance(node, ast.Constant) and (node.value is None or type(node.value) in (str, int, float, bool)):
        return node.value
    if (
        isinstance(node, ast.UnaryOp)
        and isinstance(node.op, (ast.USub, ast.UAdd))
        and isinstance(node.operand, ast.Constant)
        and type(node.operand.value) in (int, float)
    ):
        return -node.operand.value if isinstance(node.op, ast.USub) else node.operand.value
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_literal(item, depth + 1) for item in node.elts]
    if isinstance(node, ast.Dict):
        result = {}
        for key, item in zip(node.keys, node.values):
            if not (isinstance(key, ast.Constant) and isinstance(key.value, str)):
                raise ValueError("a key is not a string")
            result[key.value] = _literal(item, depth + 1)
        return result
    if isinstance(node, ast.Name) and node.id in WORDS:  # models write JSON's true/false/null here too
        return WORDS[node.id]
    raise ValueError("not a plain value")


def dotted_name(node: ast.expr) -> str | None:
    """`name` or `owner.name` as written, or None for any other expression."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        owner = dotted_name(node.value)
        return None if owner is None else f"{owner}.{node.attr}"
    return None


def pythonic_call(node: ast.Call, name: str) -> FunctionCall | str:
    """The call `name(key=value, ...)` spells, or a problem when its arguments are not plain keyword values."""
    if node.args:
        return f"The call to {name} passes arguments by position, so they cannot be matched to parameter names."
    arguments: dict[str, Any] = {}
    for keyword in node.keywords:
        if keyword.arg is None:
            return f"The call to {name} unpacks arguments (**), which cannot be read without running code."
        try:
            arguments[keyword.arg] = _literal(keyword.value)
        except ValueError:
            return f"The call to {name} could not be taken: {keyword.arg} is not a plain value."
    return FunctionCall(name=name, arguments=arguments)
