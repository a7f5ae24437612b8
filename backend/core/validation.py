"""Argument validation: a proposed call checked against its function's spec, with safe coercions and per-field errors.

String formats (JSON Schema's `format`) are checked pragmatically: email, date, date-time, time, uri/url, uuid, ipv4
and ipv6; surrounding whitespace is dropped from such values. Other formats are accepted as they are, as JSON Schema
treats formats as annotations.
"""

from __future__ import annotations

import copy
import datetime
import difflib
import ipaddress
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, Field

from backend.core.calls import FunctionCall
from backend.core.specs import ArgumentSpec, FunctionSpec

__all__ = [
    "ValidatedCall", "validate_call", "validate_arguments", "check_format", "top_field", "CALL_ERROR_KEY",
    "VALIDATED_FORMATS",
]

CALL_ERROR_KEY = ""  # key of errors about the call as a whole (unknown function) rather than one field

_INTEGER_TEXT = re.compile(r"^[+-]?\d{1,300}$")
_NUMBER_TEXT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_TRUE_TEXT = {"true", "yes"}
_FALSE_TEXT = {"false", "no"}
# Pragmatic, not RFC 5322: one @, no spaces, control characters or address punctuation, a dot in the domain, no
# empty label, and a top-level label of two characters or more.
_EMAIL_CHARS = r'[^\s@()<>\[\]:;,"\\\x00-\x1f\x7f]'
_LABEL_CHARS = r'[^\s@()<>\[\]:;,"\\\x00-\x1f\x7f.]'
_EMAIL = re.compile(rf"{_EMAIL_CHARS}{{1,64}}@(?:{_LABEL_CHARS}+\.)+{_LABEL_CHARS}{{2,}}")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# HH:MM, seconds and their fraction optional, then an optional offset (RFC 3339 asks for one; people and pydantic
# often leave it out).
_HOUR = "(?:[01][0-9]|2[0-3])"
_TIME = rf"{_HOUR}:[0-5][0-9](?::[0-5][0-9](?:\.[0-9]{{1,9}})?)?(?:[Zz]|[+-]{_HOUR}:?[0-5][0-9])?"
_TIME_ONLY = re.compile(_TIME)
_DATE_TIME = re.compile(rf"([0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}})[Tt ]{_TIME}")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_URL_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*")


class ValidatedCall(BaseModel):
    """A proposed call after validation: its spec, normalised arguments, and what is wrong or missing."""

    call: FunctionCall
    spec: FunctionSpec | None = None
    arguments: dict[str, Any] = Field(default_factory=dict)
    errors: dict[str, str] = Field(default_factory=dict)
    missing: list[str] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the call can run as it is."""
        return self.spec is not None and not self.errors


def validate_call(call: FunctionCall, specs: Iterable[FunctionSpec] | Mapping[str, FunctionSpec]) -> ValidatedCall:
    """Check `call` against the spec of the function it names; never raises for bad model output."""
    by_name = dict(specs) if isinstance(specs, Mapping) else {spec.name: spec for spec in specs}
    spec = by_name.get(call.name)
    if spec is None:
        return ValidatedCall(call=call, errors={CALL_ERROR_KEY: _unknown_function(call.name, list(by_name))})
    arguments, errors, missing = validate_arguments(spec, call.arguments)
    return ValidatedCall(call=call, spec=spec, arguments=arguments, errors=errors, missing=missing)


def validate_arguments(
    spec: FunctionSpec, arguments: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    """(normalised arguments with defaults filled, field -> error, missing required fields) for `spec`."""
    errors: dict[str, str] = {}
    missing: list[str] = []
    normalised = _check_fields(spec.arguments, arguments, path="", errors=errors, missing=missing, owner=spec.name)
    return normalised, errors, missing


def top_field(key: str) -> str:
    """The argument an error or missing-field key is about: `address` for `address.city` or `address[0]`."""
    return key.split(".")[0].split("[")[0]


def _check_fields(
    fields: list[ArgumentSpec],
    values: Mapping[str, Any],
    *,
    path: str,
    errors: dict[str, str],
    missing: list[str],
    owner: str,
) -> dict[str, Any]:
    normalised: dict[str, Any] = {}
    known = {f.name for f in fields}
    for name in values:
        if name not in known:
            errors[f"{path}{name}"] = f"{owner} has no argument {name!r}." + _suggestion(str(name), known)
    for field in fields:
        key = f"{path}{field.name}"
        value = values.get(field.name)
        if _is_blank(value) and not (value is None and field.nullable and field.name in values):
            if field.has_default:
                normalised[field.name] = _default(field, key=key)
            elif field.required:
                missing.append(key)
                errors[key] = "Required: please provide it."
            continue
        normalised[field.name] = _check_value(field, value, key=key, errors=errors, missing=missing)
    return normalised


def _default(field: ArgumentSpec, *, key: str) -> Any:
    """The field's default, normalised like a given value (so validating again changes nothing), as a fresh copy."""
    default = copy.deepcopy(field.default)  # a tool may change its arguments; the spec's default must not change
    problems: dict[str, str] = {}
    normalised = _check_value(field, default, key=key, errors=problems, missing=[])
    # A default the spec's author got wrong (often None for "not given") goes on as written: the call is not to blame.
    return default if problems else normalised


def _check_value(field: ArgumentSpec, value: Any, *, key: str, errors: dict[str, str], missing: list[str]) -> Any:
    if value is None:
        if field.nullable:
            return None
        errors[key] = "May not be empty."
        return None
    coerced, problem = _coerce(field, value)
    if problem:
        errors[key] = problem
        return value
    if field.enum is not None:
        coerced, problem = _match_enum(field.enum, coerced)
        if problem:
            errors[key] = problem
            return coerced
    elif field.type == "string" and field.format is not None:
        coerced, problem = check_format(field.format, coerced)
        if problem:
            errors[key] = problem
            return coerced
    if field.type == "array" and field.items is not None:
        return [
            _check_value(field.items, item, key=f"{key}[{index}]", errors=errors, missing=missing)
            for index, item in enumerate(coerced)
        ]
    if field.type == "object" and field.properties is not None:
        return _check_fields(field.properties, coerced, path=f"{key}.", errors=errors, missing=missing, owner=key)
    return coerced


def _coerce(field: ArgumentSpec, value: Any) -> tuple[Any, str | None]:
    """(value converted to the field's type, None) or (value, why not); only lossless, unambiguous conversions."""
    kind = field.type
    if kind == "string":
        if isinstance(value, str):
            return value, None
        if _is_finite_number(value):
            return str(value), None
        return value, f"Expected text, got {_describe(value)}."
    if kind == "integer":
        if isinstance(value, bool):
            return value, "Expected a whole number, got true/false."
        if isinstance(value, int):
            return value, None
        if isinstance(value, float) and value.is_integer():
            return int(value), None
        if isinstance(value, str) and _INTEGER_TEXT.match(value.strip()):
            return int(value.strip()), None
        return value, f"Expected a whole number, got {_describe(value)}."
    if kind == "number":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return (value, None) if _is_finite_number(value) else (value, "Expected a finite number.")
        if isinstance(value, str) and _NUMBER_TEXT.match(value.strip()):
            text = value.strip()
            number = int(text) if _INTEGER_TEXT.match(text) else float(text)
            return (number, None) if _is_finite_number(number) else (value, "Expected a finite number.")
        return value, f"Expected a number, got {_describe(value)}."
    if kind == "boolean":
        if isinstance(value, bool):
            return value, None
        if isinstance(value, str) and value.strip().lower() in _TRUE_TEXT | _FALSE_TEXT:
            return value.strip().lower() in _TRUE_TEXT, None
        return value, f"Expected true or false, got {_describe(value)}."
    if kind == "array":
        if isinstance(value, (list, tuple)):
            return list(value), None
        decoded = _decode_json_text(value, list)
        return (decoded, None) if decoded is not None else (value, f"Expected a list, got {_describe(value)}.")
    if isinstance(value, dict):
        return value, None
    decoded = _decode_json_text(value, dict)
    return (decoded, None) if decoded is not None else (value, f"Expected an object, got {_describe(value)}.")


def check_format(format_name: str, value: str) -> tuple[str, str | None]:
    """(value without surrounding whitespace, None) when `value` is text of the format, else (value, what to write).

    A format this module does not know is accepted as it is.
    """
    check = _FORMAT_CHECKS.get(format_name)
    if check is None:
        return value, None
    text = value.strip()
    problem = check(text)
    return (value, problem) if problem else (text, None)


def _email(text: str) -> str | None:
    return None if _EMAIL.fullmatch(text) else "Expected an e-mail address like name@example.com."


def _date(text: str) -> str | None:
    if not _DATE.fullmatch(text):
        return "Expected a date as YYYY-MM-DD, like 2026-03-01."
    return _calendar_problem(text)


def _date_time(text: str) -> str | None:
    match = _DATE_TIME.fullmatch(text)
    if match is None:
        return "Expected a date and time as YYYY-MM-DDTHH:MM:SS, like 2026-03-01T14:30:00Z."
    return _calendar_problem(match.group(1))


def _calendar_problem(date: str) -> str | None:
    try:
        datetime.date.fromisoformat(date)
    except ValueError:
        return f"There is no date {date} in the calendar."
    return None


def _time(text: str) -> str | None:
    return None if _TIME_ONLY.fullmatch(text) else "Expected a time as HH:MM or HH:MM:SS, like 14:30 or 14:30:00+01:00."


def _url(text: str) -> str | None:
    problem = "Expected an absolute URL with a scheme and a host, like https://example.com/page."
    if any(c.isspace() for c in text):
        return problem
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018  # raises ValueError for a port that is not a number in range
    except ValueError:
        return problem
    return None if _URL_SCHEME.fullmatch(parts.scheme) and parts.hostname else problem


def _uuid(text: str) -> str | None:
    return None if _UUID.fullmatch(text) else "Expected a UUID like 123e4567-e89b-12d3-a456-426614174000."


def _ip(version: int, example: str) -> Callable[[str], str | None]:
    def check(text: str) -> str | None:
        try:
            if ipaddress.ip_address(text).version == version:
                return None
        except ValueError:
            pass
        return f"Expected an IPv{version} address like {example}."

    return check


# format -> its check: None when the text is of the format, else what to write instead
_FORMAT_CHECKS: dict[str, Callable[[str], str | None]] = {
    "email": _email,
    "idn-email": _email,
    "date": _date,
    "date-time": _date_time,
    "time": _time,
    "uri": _url,
    "url": _url,
    "iri": _url,
    "uuid": _uuid,
    "ipv4": _ip(4, "192.168.0.1"),
    "ipv6": _ip(6, "2001:db8::1"),
}
VALIDATED_FORMATS = frozenset(_FORMAT_CHECKS)


def _match_enum(options: list[Any], value: Any) -> tuple[Any, str | None]:
    if value in options and not (isinstance(value, bool) and not any(isinstance(o, bool) for o in options)):
        return value, None
    if isinstance(value, str):  # "Express" for "express" is the same choice, not a guess
        folded = [o for o in options if isinstance(o, str) and o.casefold() == value.strip().casefold()]
        if len(folded) == 1:
            return folded[0], None
    return value, "Must be one of: " + ", ".join(json.dumps(o, ensure_ascii=False) for o in options) + "."


def _decode_json_text(value: Any, expected: type) -> Any:
    if not isinstance(value, str) or len(value) > 1_000_000:
        return None
    try:
        decoded = json.loads(value)
    except (ValueError, RecursionError):
        return None
    return decoded if isinstance(decoded, expected) else None


def _is_finite_number(value: Any) -> bool:
    # Python ints are exact at any size; math.isfinite would overflow converting a huge one to float.
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _describe(value: Any) -> str:
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"the text {json.dumps(shown, ensure_ascii=False)}"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    return {list: "a list", dict: "an object"}.get(type(value), type(value).__name__)


def _unknown_function(name: str, known: list[str]) -> str:
    if not known:
        return f"The model called {name!r}, but no functions are available."
    return f"The model called an unknown function {name!r}." + _suggestion(name, known, always_list=True)


def _suggestion(name: str, known: Iterable[str], *, always_list: bool = False) -> str:
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    if close:
        return " Did you mean " + " or ".join(repr(c) for c in close) + "?"
    if always_list and known:
        return " Known functions: " + ", ".join(known[:10]) + ("..." if len(known) > 10 else "") + "."
    return ""
