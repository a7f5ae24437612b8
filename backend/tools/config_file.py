"""Tool config files in YAML or JSON, read with the line of every key, so each error names its file, line and field."""

from __future__ import annotations

import difflib
import json
import re
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import BaseModel

from backend.errors import ToolConfigError

__all__ = ["FieldPath", "Locator", "read_document"]

FieldPath = tuple[str | int, ...]


def read_document(path: Path) -> tuple[Any, dict[FieldPath, int]]:
    """The file's data and the line of every key and list item; syntax errors name their line."""
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ToolConfigError(f"{path.name} line {exc.lineno}: invalid JSON: {exc.msg}") from None
        try:
            return data, _lines_of(yaml.compose(text, Loader=yaml.SafeLoader))
        except yaml.YAMLError:  # JSON that YAML reads differently (tabs): data without line numbers
            return data, {}
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = " ".join(part for part in (exc.context, exc.problem) if part)
        raise ToolConfigError(f"{path.name}{where}: invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise ToolConfigError(f"{path.name}: invalid YAML: {exc}") from None
    finally:
        loader.dispose()
    return data, _lines_of(node)


def _lines_of(node: yaml.Node | None) -> dict[FieldPath, int]:
    lines: dict[FieldPath, int] = {}

    def visit(current: yaml.Node, path: FieldPath) -> None:
        lines.setdefault(path, current.start_mark.line + 1)
        if isinstance(current, yaml.MappingNode):
            for key, value in current.value:
                child = (*path, str(key.value))
                lines[child] = key.start_mark.line + 1
                visit(value, child)
        elif isinstance(current, yaml.SequenceNode):
            for index, item in enumerate(current.value):
                visit(item, (*path, index))

    if node is not None:
        visit(node, ())
    return lines


class Locator:
    """Turns a field path into "tools.yaml line 7: tools[0].request.method: ..." using the recorded lines."""

    def __init__(self, file_name: str, lines: dict[FieldPath, int], schema: type[BaseModel]) -> None:
        self.file_name = file_name
        self.lines = lines
        self.schema = schema  # the model the whole file is validated with, to suggest field names from

    def message(self, path: FieldPath, text: str) -> str:
        """`text` about the field at `path`, prefixed with the file name and the line it is on."""
        line = next((self.lines[path[:n]] for n in range(len(path), -1, -1) if path[:n] in self.lines), None)
        prefix = f"{self.file_name} line {line}" if line is not None else self.file_name
        return f"{prefix}: {_dotted(path)}: {text}" if path else f"{prefix}: {text}"

    def pydantic_error(self, error: Any) -> str:
        """One of pydantic's validation errors, as `message` words it."""
        path: FieldPath = tuple(error["loc"])
        kind = error["type"]
        if kind == "missing":
            text = "is required"
        elif kind == "extra_forbidden":
            text = _unknown_field(self.schema, path)
        elif kind in ("literal_error", "enum"):
            choices = re.findall(r"'([^']*)'", str(error.get("ctx", {}).get("expected", "")))
            text = f"must be one of {', '.join(choices)}"
        else:
            message = str(error["msg"]).removeprefix("Value error, ")
            text = message[:1].lower() + message[1:]
        return self.message(path, text)


def _unknown_field(schema: type[BaseModel], path: FieldPath) -> str:
    model: Any = schema
    for part in path[:-1]:
        if isinstance(part, int) or model is None:
            continue
        field = model.model_fields.get(part)
        annotation = field.annotation if field else None
        candidates = (annotation, *get_args(annotation))
        model = next((a for a in candidates if isinstance(a, type) and issubclass(a, BaseModel)), None)
    if model is None:
        return "unknown field"
    known = list(model.model_fields)
    close = difflib.get_close_matches(str(path[-1]), known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else f" (known fields: {', '.join(known)})"
    return "unknown field" + hint


def _dotted(path: FieldPath) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text
