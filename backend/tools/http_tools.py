"""Declarative HTTP tools: a YAML or JSON file maps each function to an HTTP request and its response to the result."""

from __future__ import annotations

import dataclasses
import difflib
import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import quote

import httpx
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from backend.core.specs import FunctionSpec
from backend.errors import SpecError, ToolConfigError
from backend.tools.registry import Tool, ToolFailure, ToolPolicy

__all__ = ["Fetched", "HttpToolConfig", "HttpToolsFile", "fetch", "http_tool", "load_http_tools"]

logger = logging.getLogger(__name__)

Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
_BODYLESS_METHODS = {"GET", "DELETE"}
_MAX_RESPONSE_BYTES = 4 * 1024 * 1024
_EXCERPT_CHARS = 200
_REDACTED = "[redacted]"
# `${VAR}` is an environment secret, `{name}` an argument; the secret pattern comes first so `${X}` is never `{X}`.
_TEMPLATE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SECRET_SYNTAX = re.compile(r"\$\{")
_WHOLE_ARGUMENT = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)\}$")
_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,63}$")
_Path = tuple[str | int, ...]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HttpRequestConfig(_Strict):
    """The request one call makes: method, URL template, query, JSON body and headers."""

    method: Method = "GET"
    url: str
    query: Any = None
    body: Any = None
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("query", "body")
    @classmethod
    def _mapping(cls, value: Any) -> Any:
        names = isinstance(value, list) and all(isinstance(v, str) for v in value)
        if value is None or isinstance(value, dict) or names:
            return value
        raise ValueError("must be a list of argument names or a mapping of names to values")


class HttpResponseConfig(_Strict):
    """How the response becomes the result: the whole JSON answer, or the field at a dotted path."""

    field: str | None = None


class HttpToolConfig(_Strict):
    """One function mapped to an HTTP request."""

    name: str
    description: str = ""
    arguments: list[dict[str, Any]] | None = None
    policy: ToolPolicy = ToolPolicy.CONFIRM
    read_only: bool = False
    timeout_s: float = Field(default=10.0, gt=0, le=300)
    request: HttpRequestConfig
    response: HttpResponseConfig = Field(default_factory=HttpResponseConfig)

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not _NAME_PATTERN.match(value):
            raise ValueError("use letters, digits, '_', '.' or '-' (at most 64), starting with a letter")
        return value


class HttpToolsFile(_Strict):
    """The shape of a tools file: `tools:` followed by a list of tool mappings."""

    tools: list[HttpToolConfig] = Field(min_length=1)


def load_http_tools(
    path: str | Path,
    *,
    known_specs: Mapping[str, FunctionSpec] | None = None,
    environ: Mapping[str, str] | None = None,
) -> list[Tool]:
    """Read and check an HTTP tools file; each error names the file, line and field.

    An entry without `arguments` takes description and arguments from `known_specs` (a functionList) when it
    names a function there. `environ` (default: os.environ) is read at request time, never before.
    """
    path = Path(path)
    if not path.is_file():
        raise ToolConfigError(f"{path}: there is no such HTTP tools file.")
    data, lines = _read_document(path)
    where = _Locator(path.name, lines)
    if not isinstance(data, dict):
        raise ToolConfigError(where.message((), "expected a mapping with a 'tools:' list of tool definitions"))
    try:
        document = HttpToolsFile.model_validate(data)
    except ValidationError as exc:
        raise ToolConfigError("\n".join(where.pydantic_error(error) for error in exc.errors())) from None
    tools: list[Tool] = []
    problems: list[str] = []
    seen: set[str] = set()
    for index, config in enumerate(document.tools):
        at: _Path = ("tools", index)
        if config.name in seen:
            problems.append(where.message((*at, "name"), f"a second tool called {config.name!r}"))
            continue
        seen.add(config.name)
        spec = _spec(config, known_specs or {}, at=at, where=where, problems=problems)
        before = len(problems)
        _check_templates(config, spec, at=at, where=where, problems=problems)
        if config.policy is ToolPolicy.AUTO and not config.read_only:
            problems.append(where.message(
                (*at, "policy"), "'auto' needs read_only: true (only read-only tools may run without confirmation)"
            ))
        if spec is not None and len(problems) == before:
            tools.append(http_tool(config, spec, source=f"http: {path.name}", environ=environ))
            unset = [name for name in _secret_names(config) if name not in (os.environ if environ is None else environ)]
            if unset:
                logger.warning("%s: tool %s needs %s, which is not set", path.name, config.name, ", ".join(unset))
    if problems:
        raise ToolConfigError("\n".join(problems))
    return tools


def http_tool(
    config: HttpToolConfig, spec: FunctionSpec, *, source: str, environ: Mapping[str, str] | None = None
) -> Tool:
    """A Tool whose handler makes the request `config` describes."""

    async def run(arguments: dict[str, Any]) -> Any:
        env = os.environ if environ is None else environ
        secret_names = _secret_names(config)
        unset = [name for name in secret_names if not env.get(name)]
        if unset:
            raise ToolFailure(f"{spec.name} is not configured: set {', '.join(unset)}.")
        secrets = [env[name] for name in secret_names]
        return await _call(config, spec.name, arguments, env, secrets)

    return Tool(
        spec=spec,
        handler=run,
        source=source,
        policy=config.policy,
        timeout_s=config.timeout_s,
        read_only=config.read_only,
    )


@dataclasses.dataclass(frozen=True)
class Fetched:
    """A successful (status < 300) HTTP answer, read into memory."""

    status: int
    content: bytes
    content_type: str
    encoding: str

    @property
    def text(self) -> str:
        """The body decoded as text."""
        return self.content.decode(self.encoding, errors="replace")

    def json(self) -> Any:
        """The body parsed as JSON (ValueError when it is not)."""
        return json.loads(self.text)


async def fetch(
    name: str,
    method: str,
    url: str,
    *,
    timeout_s: float,
    params: Mapping[str, Any] | None = None,
    json_body: Any = None,
    headers: Mapping[str, str] | None = None,
    secrets: Sequence[str] = (),
    follow_redirects: bool = False,
) -> Fetched:
    """Make one request for tool `name`; every failure becomes a ToolFailure whose text has `secrets` redacted."""
    host = httpx.URL(url).host
    logger.info("Tool %s: %s %s", name, method, url)
    try:
        async with httpx.AsyncClient(timeout=timeout_s, follow_redirects=follow_redirects) as client:
            stream = client.stream(method, url, params=params, json=json_body, headers=dict(headers or {}))
            async with stream as response:
                content = await _read_limited(response, name)
    except httpx.TimeoutException:
        raise ToolFailure(f"{name} timed out after {timeout_s:g} s waiting for {host}.") from None
    except httpx.HTTPError as exc:
        raise ToolFailure(_redact(f"{name} could not reach {host} ({type(exc).__name__}).", secrets)) from None
    fetched = Fetched(
        status=response.status_code,
        content=content,
        content_type=response.headers.get("content-type", ""),
        encoding=response.charset_encoding or "utf-8",
    )
    if response.status_code >= 300:
        excerpt = " ".join(fetched.text.split())[:_EXCERPT_CHARS]
        reason = f"HTTP {response.status_code} {response.reason_phrase}".strip()
        detail = f": {excerpt}" if excerpt else "."
        raise ToolFailure(_redact(f"{name} failed: {host} answered {reason}{detail}", secrets))
    return fetched


async def _call(
    config: HttpToolConfig, name: str, arguments: dict[str, Any], env: Mapping[str, str], secrets: list[str]
) -> Any:
    request = config.request
    url = _TEMPLATE.sub(lambda m: _path_segment(arguments.get(m.group(2)), name), request.url)
    query, body = _query_and_body(request, url_arguments=_argument_names(request.url), arguments=arguments)
    headers = {key: _expand(value, arguments, env) for key, value in request.headers.items()}
    fetched = await fetch(
        name, request.method, url, timeout_s=config.timeout_s, params=query, json_body=body, headers=headers,
        secrets=secrets,
    )
    return _redact_value(_result(config, name, fetched), secrets)


async def _read_limited(response: httpx.Response, name: str) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > _MAX_RESPONSE_BYTES:
            raise ToolFailure(f"{name} failed: the answer is larger than {_MAX_RESPONSE_BYTES // (1024 * 1024)} MiB.")
        chunks.append(chunk)
    return b"".join(chunks)


def _result(config: HttpToolConfig, name: str, fetched: Fetched) -> Any:
    if not fetched.text.strip():
        return {"status": fetched.status}
    try:
        data = fetched.json()
    except ValueError:
        if config.response.field:
            raise ToolFailure(
                f"{name} failed: expected JSON with the field {config.response.field!r}, "
                f"got {fetched.content_type or 'an answer of unknown type'}."
            ) from None
        return fetched.text
    if not config.response.field:
        return data
    return _field(data, config.response.field, name)


def _field(data: Any, dotted: str, name: str) -> Any:
    """The value at a dotted path (`data.order`, `items.0.name`) of a JSON answer."""
    value = data
    for part in dotted.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.lstrip("-").isdigit() and -len(value) <= int(part) < len(value):
            value = value[int(part)]
        else:
            raise ToolFailure(f"{name} failed: the answer has no field {dotted!r} (no {part!r}).")
    return value


def _query_and_body(
    request: HttpRequestConfig, *, url_arguments: set[str], arguments: dict[str, Any]
) -> tuple[dict[str, Any] | None, Any]:
    rest = {k: v for k, v in arguments.items() if k not in url_arguments and v is not None}
    if request.query is None and request.body is None:
        if request.method in _BODYLESS_METHODS:
            return rest or None, None
        return None, rest
    return _select(request.query, arguments), _select(request.body, arguments)


def _select(mapping: Any, arguments: dict[str, Any]) -> Any:
    """Arguments picked by name (a list) or placed into a template (a mapping); absent ones are left out."""
    if mapping is None:
        return None
    if isinstance(mapping, list):
        return {key: arguments[key] for key in mapping if arguments.get(key) is not None}
    return _fill(mapping, arguments)


def _fill(template: Any, arguments: dict[str, Any]) -> Any:
    if isinstance(template, dict):
        filled = {key: _fill(value, arguments) for key, value in template.items()}
        return {key: value for key, value in filled.items() if value is not None}
    if isinstance(template, list):
        return [_fill(item, arguments) for item in template]
    if isinstance(template, str):
        whole = _WHOLE_ARGUMENT.match(template)
        if whole:  # "{count}" keeps the argument's JSON type
            return arguments.get(whole.group(1))
        return _TEMPLATE.sub(lambda m: _as_text(arguments.get(m.group(2))), template)
    return template


def _expand(template: str, arguments: dict[str, Any], env: Mapping[str, str]) -> str:
    return _TEMPLATE.sub(
        lambda m: env.get(m.group(1), "") if m.group(1) else _as_text(arguments.get(m.group(2))), template
    )


def _path_segment(value: Any, name: str) -> str:
    text = _as_text(value)
    if text in ("", ".", ".."):  # would change which resource the URL names
        raise ToolFailure(f"{name} failed: {text!r} cannot be part of the URL.")
    return quote(text, safe="")


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _redact(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if len(secret) >= 4:  # very short values would blank out ordinary text
            text = text.replace(secret, _REDACTED)
    return text


def _redact_value(value: Any, secrets: Sequence[str]) -> Any:
    if isinstance(value, str):
        return _redact(value, secrets)
    if isinstance(value, dict):
        return {_redact(str(k), secrets): _redact_value(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_value(item, secrets) for item in value]
    return value


def _secret_names(config: HttpToolConfig) -> list[str]:
    names: list[str] = []
    for value in config.request.headers.values():
        names.extend(m.group(1) for m in _TEMPLATE.finditer(value) if m.group(1) and m.group(1) not in names)
    return names


def _argument_names(text: str) -> set[str]:
    return {m.group(2) for m in _TEMPLATE.finditer(text) if m.group(2)}


def _spec(
    config: HttpToolConfig, known: Mapping[str, FunctionSpec], *, at: _Path, where: _Locator, problems: list[str]
) -> FunctionSpec | None:
    if config.arguments is None and config.name in known:
        inherited = known[config.name]
        return inherited.model_copy(update={"description": config.description or inherited.description})
    try:
        return FunctionSpec.from_any(
            {"function": config.name, "description": config.description, "arguments": config.arguments or []}
        )
    except SpecError as exc:
        problems.append(where.message((*at, "arguments"), str(exc)))
        return None


def _check_templates(
    config: HttpToolConfig, spec: FunctionSpec | None, *, at: _Path, where: _Locator, problems: list[str]
) -> None:
    """Placeholders must name arguments; secrets may only go in headers, which are never logged."""
    names = {argument.name for argument in spec.arguments} if spec is not None else None
    request_at = (*at, "request")

    def check(value: Any, field: _Path, *, secrets_allowed: bool) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                check(item, (*field, key), secrets_allowed=secrets_allowed)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                check(item, (*field, index), secrets_allowed=secrets_allowed)
        elif isinstance(value, str):
            if not secrets_allowed and _SECRET_SYNTAX.search(value):
                problems.append(where.message(field, "${...} secrets are only allowed in headers (URLs get logged)"))
            unknown = sorted(_argument_names(value) - names) if names is not None else []
            if unknown:
                problems.append(where.message(field, f"{{{unknown[0]}}} is not an argument of {config.name}"))

    url = config.request.url
    if not re.match(r"^https?://[^/{}\s?#]+(?:[/?#]|$)", url):
        problems.append(where.message((*request_at, "url"), "must start with http:// or https:// and a host name"))
    check(url, (*request_at, "url"), secrets_allowed=False)
    check(config.request.query, (*request_at, "query"), secrets_allowed=False)
    check(config.request.body, (*request_at, "body"), secrets_allowed=False)
    check(config.request.headers, (*request_at, "headers"), secrets_allowed=True)
    for key in ("query", "body"):
        selected = getattr(config.request, key)
        if isinstance(selected, list) and names is not None:
            for index, item in enumerate(selected):
                if item not in names:
                    problem = f"{item!r} is not an argument of {config.name}"
                    problems.append(where.message((*request_at, key, index), problem))
    if config.request.body is not None and config.request.method in _BODYLESS_METHODS:
        problem = f"a {config.request.method} request has no body; use query"
        problems.append(where.message((*request_at, "body"), problem))


class _Locator:
    """Turns a field path into "tools.yaml line 7: tools[0].request.method: ..." using the recorded lines."""

    def __init__(self, file_name: str, lines: dict[_Path, int]) -> None:
        self.file_name = file_name
        self.lines = lines

    def message(self, path: _Path, text: str) -> str:
        line = next((self.lines[path[:n]] for n in range(len(path), -1, -1) if path[:n] in self.lines), None)
        prefix = f"{self.file_name} line {line}" if line is not None else self.file_name
        return f"{prefix}: {_dotted(path)}: {text}" if path else f"{prefix}: {text}"

    def pydantic_error(self, error: Any) -> str:
        path: _Path = tuple(error["loc"])
        kind = error["type"]
        if kind == "missing":
            text = "is required"
        elif kind == "extra_forbidden":
            text = _unknown_field(path)
        elif kind in ("literal_error", "enum"):
            choices = re.findall(r"'([^']*)'", str(error.get("ctx", {}).get("expected", "")))
            text = f"must be one of {', '.join(choices)}"
        else:
            message = str(error["msg"]).removeprefix("Value error, ")
            text = message[:1].lower() + message[1:]
        return self.message(path, text)


def _unknown_field(path: _Path) -> str:
    model: Any = HttpToolsFile
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


def _dotted(path: _Path) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _read_document(path: Path) -> tuple[Any, dict[_Path, int]]:
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


def _lines_of(node: yaml.Node | None) -> dict[_Path, int]:
    lines: dict[_Path, int] = {}

    def visit(current: yaml.Node, path: _Path) -> None:
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
