"""Declarative HTTP tools: a YAML or JSON file maps each function to an HTTP request and its response to the result."""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from backend.core.specs import FunctionSpec
from backend.errors import SpecError, ToolConfigError
from backend.tools.config_file import FieldPath, Locator, read_document
from backend.tools.fetch import Fetched, fetch, redact
from backend.tools.registry import Tool, ToolFailure, ToolPolicy

__all__ = ["HttpToolConfig", "HttpToolsFile", "http_tool", "load_http_tools"]

logger = logging.getLogger(__name__)

Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
_BODYLESS_METHODS = {"GET", "DELETE"}
# `${VAR}` is an environment secret, `{name}` an argument; the secret pattern comes first so `${X}` is never `{X}`.
_TEMPLATE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SECRET_SYNTAX = re.compile(r"\$\{")
_WHOLE_ARGUMENT = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)\}$")
_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,63}$")


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
    data, lines = read_document(path)
    where = Locator(path.name, lines, HttpToolsFile)
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
        at: FieldPath = ("tools", index)
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


def _redact_value(value: Any, secrets: Sequence[str]) -> Any:
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, dict):
        return {redact(str(k), secrets): _redact_value(v, secrets) for k, v in value.items()}
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
    config: HttpToolConfig, known: Mapping[str, FunctionSpec], *, at: FieldPath, where: Locator, problems: list[str]
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
    config: HttpToolConfig, spec: FunctionSpec | None, *, at: FieldPath, where: Locator, problems: list[str]
) -> None:
    """Placeholders must name arguments; secrets may only go in headers, which are never logged."""
    names = {argument.name for argument in spec.arguments} if spec is not None else None
    request_at = (*at, "request")

    def check(value: Any, field: FieldPath, *, secrets_allowed: bool) -> None:
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


