"""Python functions as tools: the `@tool` decorator, schemas from type hints and docstrings, loading a tools file.

A text argument can name what kind of text it holds (JSON Schema's `format`, checked before the tool runs):

    @tool
    def create_ticket(email: Annotated[str, Format("email")], due: datetime.date) -> dict: ...

`datetime.date`, `datetime.datetime`, `datetime.time`, `uuid.UUID`, `ipaddress.IPv4Address` / `IPv6Address` and
pydantic's URL types get their format ("date", "date-time", "time", "uuid", "ipv4" / "ipv6", "uri") by themselves;
`Format(...)` works on plain `str` arguments, in pydantic models, TypedDicts and dataclasses, and in list items.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import decimal
import enum
import hashlib
import importlib.util
import inspect
import ipaddress
import logging
import re
import sys
import traceback
import types
import typing
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path, PurePath
from typing import Annotated, Any, Literal, NotRequired, Required, Union

from pydantic import AnyUrl, BaseModel, PydanticUserError, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined, to_jsonable_python

from backend.core.specs import ArgType, ArgumentSpec, FunctionSpec, common_type
from backend.errors import ToolConfigError
from backend.tools.registry import DEFAULT_TIMEOUT_S, Handler, Tool, ToolFailure, ToolPolicy

__all__ = ["Format", "tool", "tool_from_function", "load_python_tools", "parse_docstring"]

logger = logging.getLogger(__name__)

_TOOL_ATTRIBUTE = "__callcard_tool__"
_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_SCALARS: dict[type, ArgType] = {str: "string", bool: "boolean", int: "integer", float: "number"}
# Types pydantic reads from text: the hint tells the model which text to write, the format lets the validator check it.
_TEXT_TYPES: dict[type, tuple[str, str | None]] = {
    datetime.datetime: ("a date and time, ISO 8601", "date-time"),
    datetime.date: ("a date, YYYY-MM-DD", "date"),
    datetime.time: ("a time, HH:MM[:SS]", "time"),
    uuid.UUID: ("a UUID", "uuid"),
    ipaddress.IPv4Address: ("an IPv4 address", "ipv4"),
    ipaddress.IPv6Address: ("an IPv6 address", "ipv6"),
}
_ARRAY_ORIGINS = {list, set, frozenset, tuple, Sequence, typing.Sequence}
_OBJECT_ORIGINS = {dict, Mapping, typing.Mapping}
_ARGUMENT_SECTIONS = {"args", "arguments", "parameters", "params", "keyword args", "keyword arguments"}
_OTHER_SECTIONS = {
    "returns", "return", "yields", "raises", "examples", "example", "notes", "note", "see also", "attributes",
    "warnings", "warning", "references", "todo", "other parameters",
}
_SPHINX_FIELD = re.compile(r"^:(?:param|parameter|arg|argument|key|keyword)\s+(?:[^:]*\s)?\*{0,2}(\w+)\s*:\s*(.*)$")
_GOOGLE_ENTRY = re.compile(r"^\*{0,2}(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_NUMPY_ENTRY = re.compile(r"^\*{0,2}(\w+)\s*(?::.*)?$")


@dataclasses.dataclass(frozen=True)
class Format:
    """The JSON Schema `format` of a text argument, e.g. `Annotated[str, Format("email")]`."""

    name: str

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ToolConfigError(f"Format needs a name such as \"email\" or \"date\", got {self.name!r}.")
        object.__setattr__(self, "name", self.name.strip().lower())


def tool(
    func: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    policy: ToolPolicy | str = ToolPolicy.CONFIRM,
    read_only: bool | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> Any:
    """Mark a typed function as a tool: `@tool` or `@tool(policy="auto", timeout_s=5)`; the function stays callable.

    `policy="auto"` declares the tool safe and read-only; `read_only=True` alone lets an operator make it auto later.
    """

    def mark(function: Callable[..., Any]) -> Callable[..., Any]:
        built = tool_from_function(
            function, name=name, description=description, policy=policy, read_only=read_only, timeout_s=timeout_s
        )
        setattr(function, _TOOL_ATTRIBUTE, built)
        return function

    return mark(func) if func is not None else mark


def tool_from_function(
    func: Callable[..., Any],
    *,
    name: str | None = None,
    description: str | None = None,
    policy: ToolPolicy | str = ToolPolicy.CONFIRM,
    read_only: bool | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    source: str | None = None,
) -> Tool:
    """A Tool from a typed function or bound method (sync ones run in a worker thread)."""
    tool_name = name or getattr(func, "__name__", "")
    if not _NAME_PATTERN.match(tool_name):
        raise ToolConfigError(f"Tool name {tool_name!r} is invalid: use letters, digits and '_' (at most 64).")
    summary, argument_docs = parse_docstring(inspect.getdoc(func) or "")
    try:
        hints = typing.get_type_hints(func, include_extras=True)
    except Exception as exc:  # unresolvable forward references and the like
        raise ToolConfigError(f"Tool {tool_name}: cannot read its type hints ({exc}).") from exc
    arguments: list[ArgumentSpec] = []
    adapters: dict[str, TypeAdapter[Any] | None] = {}
    for parameter in inspect.signature(func).parameters.values():
        where = f"Tool {tool_name}, argument {parameter.name!r}"
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD, parameter.POSITIONAL_ONLY):
            raise ToolConfigError(f"{where}: tools take named arguments only (no *args, **kwargs or '/').")
        annotation = hints.get(parameter.name, str)
        argument = _argument(
            parameter.name, annotation, description=argument_docs.get(parameter.name, ""), where=where, seen=()
        )
        arguments.append(_with_default(argument, parameter.default, where=where))
        adapters[parameter.name] = _adapter(annotation)
    spec = FunctionSpec(name=tool_name, description=description or summary, arguments=arguments)
    if not spec.description:
        logger.warning("Tool %s has no description: give it a docstring so the model knows when to call it.", tool_name)
    declared_auto = str(policy).strip().lower() == ToolPolicy.AUTO
    return Tool(
        spec=spec,
        handler=_handler(func, tool_name, adapters),
        source=source or f"python: {getattr(func, '__module__', '?')}",
        policy=policy,
        timeout_s=timeout_s,
        read_only=declared_auto if read_only is None else read_only,
    )


def load_python_tools(path: str | Path) -> list[Tool]:
    """Import a Python file by path and return the tools its `@tool` functions define."""
    path = Path(path)
    if not path.is_file():
        raise ToolConfigError(f"{path}: there is no such Python tools file.")
    # A name unique to the file's location, so two files called tools.py do not replace each other in sys.modules.
    module_name = "callcard_tools_" + hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ToolConfigError(f"{path.name}: cannot be imported as a Python module.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # type hints and pydantic models resolve names through sys.modules
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        logger.error("Importing tools file %s failed", path, exc_info=True)
        raise ToolConfigError(f"{path.name}{_line_of(exc, path)}: {_describe_error(exc)}") from exc
    found: dict[str, Tool] = {}
    for value in vars(module).values():
        built = getattr(value, _TOOL_ATTRIBUTE, None)
        if isinstance(built, Tool):
            if built.name in found and found[built.name] is not built:
                raise ToolConfigError(f"{path.name}: two tools are called {built.name!r}.")
            found[built.name] = built
    if not found:
        raise ToolConfigError(
            f"{path.name} defines no tools: decorate functions with @tool (from backend.tools import tool)."
        )
    return [dataclasses.replace(t, source=f"python: {path.name}") for t in found.values()]


def parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """(description, argument name -> description) from a Google, NumPy or Sphinx style docstring."""
    lines = inspect.cleandoc(doc).splitlines() if doc.strip() else []
    described: list[str] = []
    arguments: dict[str, str] = {}
    index = 0
    in_description = True
    while index < len(lines):
        line = lines[index]
        stripped = line.strip()
        heading = stripped.rstrip(":").strip().lower()
        underlined = index + 1 < len(lines) and re.fullmatch(r"\s*-{3,}\s*", lines[index + 1]) is not None
        if stripped.endswith(":") and heading in _ARGUMENT_SECTIONS | _OTHER_SECTIONS and not underlined:
            in_description = False
            index = _google_section(lines, index, arguments if heading in _ARGUMENT_SECTIONS else {})
            continue
        if underlined and heading in _ARGUMENT_SECTIONS | _OTHER_SECTIONS:
            in_description = False
            index = _numpy_section(lines, index + 2, arguments if heading in _ARGUMENT_SECTIONS else {})
            continue
        if stripped.startswith(":"):
            in_description = False
            index = _sphinx_field(lines, index, arguments)
            continue
        if in_description:
            described.append(stripped)
        index += 1
    return " ".join(" ".join(described).split()), arguments


def _google_section(lines: list[str], start: int, into: dict[str, str]) -> int:
    """Read an `Args:` block; returns the index of the first line after it."""
    base = _indent(lines[start])
    index = start + 1
    entry_indent: int | None = None
    current: str | None = None
    while index < len(lines):
        line = lines[index]
        if line.strip() and _indent(line) <= base:
            break
        if line.strip():
            if entry_indent is None:
                entry_indent = _indent(line)
            match = _GOOGLE_ENTRY.match(line.strip()) if _indent(line) == entry_indent else None
            if match:
                current = match.group(1)
                into[current] = match.group(2).strip()
            elif current is not None:
                into[current] = f"{into[current]} {line.strip()}".strip()
        index += 1
    return index


def _numpy_section(lines: list[str], start: int, into: dict[str, str]) -> int:
    """Read a NumPy `Parameters` block (after its underline); returns the index after it."""
    index = start
    current: str | None = None
    while index < len(lines):
        line = lines[index]
        if index + 1 < len(lines) and re.fullmatch(r"\s*-{3,}\s*", lines[index + 1]) and line.strip():
            break  # the next section's heading
        if line.strip() and _indent(line) == 0:
            match = _NUMPY_ENTRY.match(line.strip())
            current = match.group(1) if match else None
            if current is not None:
                into[current] = ""
        elif line.strip() and current is not None:
            into[current] = f"{into[current]} {line.strip()}".strip()
        index += 1
    return index


def _sphinx_field(lines: list[str], start: int, into: dict[str, str]) -> int:
    """Read one `:param name: text` field with its continuation lines; returns the index after it."""
    match = _SPHINX_FIELD.match(lines[start].strip())
    text = match.group(2).strip() if match else ""
    index = start + 1
    while index < len(lines) and lines[index].strip() and _indent(lines[index]) > 0:
        text = f"{text} {lines[index].strip()}".strip()
        index += 1
    if match:
        into[match.group(1)] = text
    return index


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _argument(
    name: str, annotation: Any, *, description: str, where: str, seen: tuple[type, ...], required: bool = True
) -> ArgumentSpec:
    """The ArgumentSpec for one annotated parameter or field."""
    annotation, description, text_format = _unwrap_annotated(annotation, description, None)
    nullable = False
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        options = typing.get_args(annotation)
        non_null = [option for option in options if option is not type(None)]
        nullable = len(non_null) < len(options)
        if len(non_null) != 1:
            raise ToolConfigError(f"{where}: a choice between several types is not supported; use one type.")
        annotation, description, text_format = _unwrap_annotated(non_null[0], description, text_format)
        origin = typing.get_origin(annotation)
    fields: dict[str, Any] = {
        "name": name, "description": description, "required": required, "nullable": nullable, "format": text_format,
    }
    if origin is Literal:
        values = [v.value if isinstance(v, enum.Enum) else v for v in typing.get_args(annotation)]
        if None in values:
            values = [v for v in values if v is not None]
            fields["nullable"] = True
        return ArgumentSpec(**fields, type=_enum_type(values, where=where), enum=values)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        values = [member.value for member in annotation]
        return ArgumentSpec(**fields, type=_enum_type(values, where=where), enum=values)
    if annotation in _SCALARS:
        return ArgumentSpec(**fields, type=_SCALARS[annotation])
    if annotation is decimal.Decimal:
        return ArgumentSpec(**fields, type="number")
    if annotation in _TEXT_TYPES or (isinstance(annotation, type) and issubclass(annotation, (PurePath, AnyUrl))):
        hint, implied = _TEXT_TYPES.get(annotation) or (
            ("a URL", "uri") if issubclass(annotation, AnyUrl) else ("a file path", None)
        )
        fields["description"] = f"{description} ({hint})".strip() if hint not in description else description
        fields["format"] = text_format or implied
        return ArgumentSpec(**fields, type="string")
    if annotation is Any or annotation is object:
        return ArgumentSpec(**fields, type="string")
    if annotation in _ARRAY_ORIGINS or origin in _ARRAY_ORIGINS:
        return ArgumentSpec(**fields, type="array", items=_items(annotation, where=where, seen=seen))
    if annotation in _OBJECT_ORIGINS or origin in _OBJECT_ORIGINS:
        return ArgumentSpec(**fields, type="object")
    if isinstance(annotation, type):
        if annotation in seen:
            raise ToolConfigError(f"{where}: recursive type {annotation.__name__} is not supported.")
        properties = _object_fields(annotation, where=where, seen=(*seen, annotation))
        if properties is not None:
            return ArgumentSpec(**fields, type="object", properties=properties)
    raise ToolConfigError(f"{where}: unsupported type {_type_name(annotation)}; use str, int, float, bool, list, "
                          "dict, Literal, an Enum, a pydantic model or a TypedDict.")


def _unwrap_annotated(annotation: Any, description: str, text_format: str | None) -> tuple[Any, str, str | None]:
    """Strip Annotated/Required/NotRequired; a string or Field inside gives the description, a Format the format."""
    while typing.get_origin(annotation) in (Annotated, Required, NotRequired):
        if typing.get_origin(annotation) is Annotated:
            for extra in annotation.__metadata__:
                if isinstance(extra, str):
                    description = extra.strip()
                elif isinstance(extra, Format):
                    text_format = extra.name
                elif isinstance(extra, FieldInfo):
                    description = extra.description or description
                    text_format = _field_format(extra) or text_format
        annotation = typing.get_args(annotation)[0]
    return annotation, description, text_format


def _field_format(info: FieldInfo) -> str | None:
    """The format a pydantic Field names in `json_schema_extra`, or a Format among its metadata."""
    named = next((extra.name for extra in info.metadata if isinstance(extra, Format)), None)
    extra_schema = info.json_schema_extra
    if named is None and isinstance(extra_schema, dict) and isinstance(extra_schema.get("format"), str):
        named = Format(extra_schema["format"]).name
    return named


def _items(annotation: Any, *, where: str, seen: tuple[type, ...]) -> ArgumentSpec | None:
    parameters = typing.get_args(annotation)
    if not parameters:
        return None
    if typing.get_origin(annotation) is tuple:
        if len(parameters) == 2 and parameters[1] is Ellipsis:
            parameters = parameters[:1]
        elif len(set(parameters)) != 1:
            raise ToolConfigError(f"{where}: fixed-length tuples of mixed types are not supported; use list[X].")
    return _argument("", parameters[0], description="", where=f"{where} items", seen=seen)


def _object_fields(cls: type, *, where: str, seen: tuple[type, ...]) -> list[ArgumentSpec] | None:
    """Fields of a pydantic model, TypedDict or dataclass; None when `cls` is none of those."""
    if issubclass(cls, BaseModel):
        result = []
        for field_name, info in cls.model_fields.items():
            key = info.alias or field_name
            argument = _argument(
                key, info.annotation, description=info.description or "", where=f"{where}.{key}", seen=seen,
                required=info.is_required(),
            )
            named = _field_format(info)  # pydantic keeps a field's Annotated extras apart from its annotation
            if named is not None:
                argument = argument.model_copy(update={"format": named})
            default = info.default if info.default is not PydanticUndefined and info.default_factory is None else (
                inspect.Parameter.empty
            )
            result.append(_with_default(argument, default, where=where))
        return result
    if typing.is_typeddict(cls):
        hints = typing.get_type_hints(cls, include_extras=True)
        required_keys = cls.__required_keys__  # type: ignore[attr-defined]
        return [
            _argument(key, hint, description="", where=f"{where}.{key}", seen=seen,
                      required=_typed_dict_key_required(hint, key in required_keys))
            for key, hint in hints.items()
        ]
    if dataclasses.is_dataclass(cls):
        hints = typing.get_type_hints(cls, include_extras=True)
        result = []
        for field in dataclasses.fields(cls):
            has_default = field.default is not dataclasses.MISSING or field.default_factory is not dataclasses.MISSING
            argument = _argument(
                field.name, hints.get(field.name, str), description="", where=f"{where}.{field.name}", seen=seen,
                required=not has_default,
            )
            default = field.default if field.default is not dataclasses.MISSING else inspect.Parameter.empty
            result.append(_with_default(argument, default, where=where))
        return result
    return None


def _typed_dict_key_required(hint: Any, listed_required: bool) -> bool:
    # Python 3.11 lists NotRequired keys as required when annotations are strings (PEP 563); the hint knows better.
    origin = typing.get_origin(hint)
    if origin is NotRequired:
        return False
    return origin is Required or listed_required


def _with_default(argument: ArgumentSpec, default: Any, *, where: str) -> ArgumentSpec:
    """The argument with its Python default: optional, and the default shown when it is plain JSON."""
    if default is inspect.Parameter.empty:
        return argument
    update: dict[str, Any] = {"required": False}
    if default is None:
        update["nullable"] = True
    try:
        update.update(has_default=True, default=to_jsonable_python(default))
    except Exception:  # an object default stays Python's business: the handler simply leaves the argument out
        logger.debug("%s: default %r is not JSON; not shown to the model", where, default)
    return argument.model_copy(update=update)


def _enum_type(values: list[Any], *, where: str) -> ArgType:
    if not values:
        raise ToolConfigError(f"{where}: a Literal or Enum needs at least one value.")
    found = common_type(values)
    if found is None:
        raise ToolConfigError(f"{where}: the choices {values!r} mix types; use values of one type.")
    return found


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or repr(annotation)


def _adapter(annotation: Any) -> TypeAdapter[Any] | None:
    """Pydantic's converter for the annotation; None where pydantic cannot build one (typing.TypedDict on 3.11)."""
    try:
        return TypeAdapter(annotation)
    except PydanticUserError as exc:
        # The validator has already checked the value against the schema; it is passed on as plain JSON data.
        logger.debug("No pydantic converter for %r (%s); passing values as they are", annotation, exc.code)
        return None


def _handler(func: Callable[..., Any], name: str, adapters: dict[str, TypeAdapter[Any] | None]) -> Handler:
    is_async = inspect.iscoroutinefunction(func)

    async def run(arguments: dict[str, Any]) -> Any:
        kwargs: dict[str, Any] = {}
        for key, value in arguments.items():
            if key not in adapters:
                raise ToolFailure(f"{name} has no argument {key!r}.")
            adapter = adapters[key]
            if adapter is None:
                kwargs[key] = value
                continue
            try:
                kwargs[key] = adapter.validate_python(value)
            except ValidationError as exc:
                problem = exc.errors()[0]
                raise ToolFailure(f"Invalid argument {key!r} for {name}: {problem['msg']}.") from None
        if is_async:
            return await func(**kwargs)
        return await asyncio.to_thread(func, **kwargs)

    return run


def _line_of(exc: BaseException, path: Path) -> str:
    """' line N' for the deepest frame of `exc` inside `path` (or a syntax error's line)."""
    if isinstance(exc, SyntaxError) and exc.lineno:
        return f" line {exc.lineno}"
    resolved = str(path.resolve())
    lines = [frame.lineno for frame in traceback.extract_tb(exc.__traceback__) if frame.filename == resolved]
    if not lines:
        lines = [frame.lineno for frame in traceback.extract_tb(exc.__traceback__) if frame.filename == str(path)]
    return f" line {lines[-1]}" if lines else ""


def _describe_error(exc: BaseException) -> str:
    if isinstance(exc, ToolConfigError):
        return str(exc)
    if isinstance(exc, SyntaxError):
        return f"SyntaxError: {exc.msg}"
    return f"{type(exc).__name__}: {exc}"
