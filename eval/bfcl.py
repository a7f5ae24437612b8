"""The Berkeley Function Calling Leaderboard data (package `bfcl-eval`): test cases as Callcard specs, and a checker."""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from backend.core.history import Turn
from backend.core.specs import FunctionSpec
from backend.errors import SpecError

__all__ = ["CATEGORIES", "TestCase", "check_calls", "load_cases", "normalise_text", "to_json_schema"]

# Categories this evaluation understands: single-turn, Python-typed. Irrelevance cases have no answers: any call fails.
CATEGORIES = ("simple_python", "multiple", "parallel", "parallel_multiple", "live_simple", "live_multiple", "irrelevance")

# BFCL's Python-flavoured type names mapped to JSON Schema. "any" has no JSON Schema type Callcard accepts:
# it becomes a string (the model may still pass text), which costs at most the 13 "any" arguments in the data.
_TYPES = {
    "dict": "object", "object": "object", "float": "number", "number": "number", "integer": "integer", "int": "integer",
    "string": "string", "str": "string", "boolean": "boolean", "bool": "boolean", "array": "array", "list": "array",
    "tuple": "array", "any": "string",
}
# BFCL's own loose string comparison ignores case, spaces and this punctuation ("April 1, 2024" == "april 1 2024").
_IGNORED_IN_TEXT = re.compile(r"[\s,./\-_*^'\"]")

_log = logging.getLogger(__name__)


@dataclass
class TestCase:
    """One test prompt: the conversation, the offered functions, and the acceptable calls (None: must not call)."""

    id: str
    category: str
    messages: list[Turn]
    system: str | None
    functions: list[FunctionSpec]
    raw_functions: list[dict[str, Any]]
    answers: list[dict[str, dict[str, list[Any]]]] | None = field(default=None)


def _data_dir() -> Path:
    try:
        return Path(str(resources.files("bfcl_eval") / "data"))
    except ModuleNotFoundError:
        raise SystemExit("The evaluation needs the BFCL data: pip install --no-deps bfcl-eval") from None


def load_cases(category: str, limit: int | None = None) -> list[TestCase]:
    """The first `limit` cases of a BFCL category, with their possible answers."""
    if category not in CATEGORIES:
        raise ValueError(f"Unknown category {category!r}; use one of {', '.join(CATEGORIES)}.")
    data = _data_dir()
    questions = _read_lines(data / f"BFCL_v4_{category}.json", limit)
    answers_file = data / "possible_answer" / f"BFCL_v4_{category}.json"
    answers = {a["id"]: a["ground_truth"] for a in _read_lines(answers_file, None)} if answers_file.exists() else {}
    cases = []
    for question in questions:
        turn = question["question"][0]  # the categories above are single-turn
        system = "\n\n".join(m["content"] for m in turn if m["role"] == "system") or None
        raw = question["function"]
        try:
            functions = [_to_spec(f) for f in raw]
        except SpecError as error:
            _log.warning("Skipping %s: %s", question["id"], error)
            continue
        cases.append(
            TestCase(
                id=question["id"],
                category=category,
                messages=[Turn(role=m["role"], text=m["content"]) for m in turn if m["role"] != "system"],
                system=system,
                functions=functions,
                raw_functions=raw,
                answers=answers.get(question["id"]),
            )
        )
    return cases


def to_json_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A BFCL parameter schema (dict/float/tuple/any types) as standard JSON Schema."""
    converted: dict[str, Any] = {}
    kind = schema.get("type")
    if isinstance(kind, str):
        converted["type"] = _TYPES.get(kind.lower(), "string")
    for key in ("description", "enum", "default"):
        if key in schema:
            converted[key] = schema[key]
    if isinstance(schema.get("items"), dict):
        converted["items"] = to_json_schema(schema["items"])
    if isinstance(schema.get("properties"), dict):
        converted["properties"] = {k: to_json_schema(v) for k, v in schema["properties"].items()}
        # Without a list nothing is required (JSON Schema's meaning), which FunctionSpec needs spelled out.
        converted["required"] = [k for k in schema.get("required", []) if k in schema["properties"]]
    if converted.get("type") == "object" and "properties" not in converted:
        converted.update(properties={}, required=[])
    return converted


def _to_spec(function: dict[str, Any]) -> FunctionSpec:
    parameters = to_json_schema(function.get("parameters") or {"type": "dict", "properties": {}})
    return FunctionSpec.from_any(
        {"name": function["name"], "description": function.get("description", ""), "parameters": parameters}
    )


def _read_lines(path: Path, limit: int | None) -> list[dict[str, Any]]:
    rows = []
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if limit is not None and len(rows) >= limit:
                break
            if line.strip():
                rows.append(json.loads(line))
    return rows


def normalise_text(text: str) -> str:
    """A string as BFCL compares it: lower case, without spaces and common punctuation."""
    return _IGNORED_IN_TEXT.sub("", text).lower()


def check_calls(
    calls: list[tuple[str, dict[str, Any]]], answers: list[dict[str, dict[str, list[Any]]]]
) -> tuple[str, str]:
    """("ok", "") or (failure kind, detail) for the calls made against BFCL's possible answers (any order)."""
    if len(calls) != len(answers):
        return "wrong_count", f"made {len(calls)} call(s), expected {len(answers)}"
    unmatched = list(range(len(calls)))
    for answer in answers:
        (name, expected), = answer.items()
        problems = []
        for index in unmatched:
            call_name, arguments = calls[index]
            if call_name != name:
                problems.append(("wrong_function", f"called {call_name}, expected {name}"))
                continue
            problem = _argument_problem(arguments, expected)
            if problem is None:
                unmatched.remove(index)
                break
            problems.append(("wrong_arguments", f"{name}: {problem}"))
        else:
            # Report the closest miss: a right function with wrong arguments beats a wrong function.
            problems.sort(key=lambda p: p[0] != "wrong_arguments")
            return problems[0] if problems else ("wrong_count", f"no call left for {name}")
    return "ok", ""


def _argument_problem(arguments: dict[str, Any], expected: dict[str, list[Any]]) -> str | None:
    for key, value in arguments.items():
        if key not in expected:
            return f"unexpected argument {key!r}"
        if not any(_same(value, option) for option in expected[key] if option != ""):
            return f"{key}={json.dumps(value, ensure_ascii=False)}, expected one of {expected[key]}"
    for key, options in expected.items():
        if key not in arguments and "" not in options:
            return f"missing {key!r}"
    return None


def _same(value: Any, expected: Any) -> bool:
    """Value equality as BFCL judges it: loose for text, numeric for numbers, element-wise for lists and dicts."""
    if isinstance(expected, str):
        return isinstance(value, str) and normalise_text(value) == normalise_text(expected)
    if isinstance(expected, bool) or isinstance(value, bool):
        return value is expected
    if isinstance(expected, (int, float)):
        return isinstance(value, (int, float)) and math.isclose(value, expected, rel_tol=0, abs_tol=1e-9)
    if isinstance(expected, list):
        return isinstance(value, list) and len(value) == len(expected) and all(map(_same, value, expected))
    if isinstance(expected, dict):
        return isinstance(value, dict) and _argument_problem(value, _as_options(expected)) is None
    return value == expected


def _as_options(expected: dict[str, Any]) -> dict[str, list[Any]]:
    # Nested dict answers list options per key like the top level does; a bare value is its own only option.
    return {k: v if isinstance(v, list) else [v] for k, v in expected.items()}

