"""A call's arguments as card fields and back: which control each argument gets, the text it shows, and how what a
person typed becomes arguments again. Pure functions: no gradio, no HTML.

A field always shows what the model wrote, even when it is wrong ("four" in a number field, an e-mail without an
@, a choice that is not offered), so a person sees it and corrects it; validation against the function's schema
then says what is wrong.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from backend.core.specs import ArgumentSpec, FunctionSpec
from backend.core.validation import top_field, validate_arguments
from backend.engine.events import CallView

__all__ = [
    "Choice",
    "FieldView",
    "Widget",
    "arguments_from_json",
    "arguments_from_values",
    "arguments_json",
    "card_fields",
    "check_values",
    "field_errors",
    "form_fields",
    "form_values",
]

Widget = Literal["text", "integer", "number", "checkbox", "tristate", "dropdown", "lines", "json"]

# HTML input types for JSON Schema string formats: the browser marks a wrong value at once (and offers the right
# keyboard on phones); the server's validation remains the judge.
_INPUT_TYPES = {"email": "email", "uri": "url", "url": "url", "iri": "url"}
_FORMAT_HINTS = {
    "email": "name@example.com", "date": "YYYY-MM-DD", "date-time": "YYYY-MM-DDThh:mm:ssZ", "time": "hh:mm:ss",
    "uri": "https://…", "url": "https://…", "uuid": "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx",
}


@dataclass(frozen=True)
class Choice:
    """One option of a dropdown: the label shown and the JSON of the value it stands for."""

    label: str
    value: str
    offered: bool = True  # False for a value the model wrote that is not one of the choices


@dataclass(frozen=True)
class FieldView:
    """One argument as a card field: which control, the text it starts with, help, and what is wrong with it."""

    name: str
    label: str
    widget: Widget
    value: str | bool
    help: str = ""
    required: bool = False
    missing: bool = False
    error: str = ""
    choices: tuple[Choice, ...] = ()
    input_type: str = "text"
    placeholder: str = ""
    multiline: bool = False
    source: str = ""  # where the value came from, in words ("" when there is nothing to say)
    source_kind: str = ""  # user, tool, default, person or model (found nowhere: the card says to check it)


def card_fields(view: CallView, errors: Mapping[str, str] | None = None) -> list[FieldView]:
    """The fields of a call's card, in the function's argument order (unknown arguments go to the JSON editor)."""
    if view.spec is None:
        return []
    missing = {top_field(name) for name in view.missing} if errors is None else set()
    fields = _fields(view.spec, view.arguments, view.errors if errors is None else errors, missing)
    return [_with_source(field, view) for field in fields]


def _with_source(field: FieldView, view: CallView) -> FieldView:
    """The field with where its value came from: a value found nowhere overrides what its other parts say."""
    found = {key: source for key, source in view.sources.items() if top_field(key) == field.name}
    if field.missing or not found:
        return field
    kinds = {source.kind for source in found.values()}
    kind = next(k for k in ("model", "person", "tool", "user", "default") if k in kinds)
    if kind == "user":
        quotes = [s.quote or "" for s in found.values() if s.kind == "user"]
        quote = quotes[0] if len(quotes) == 1 else " … ".join(quotes)
        text = f"from the customer: \u201c{_shorten(quote)}\u201d"
    elif kind == "tool":
        functions = sorted({s.function or "an earlier call" for s in found.values() if s.kind == "tool"})
        text = "from " + ", ".join(functions)
    elif kind == "model" and field.widget in ("checkbox", "tristate", "dropdown"):
        text = "the model's choice: check it"  # a yes/no or an option is never quoted, only read into the words
    else:
        text = _SOURCE_WORDS[kind]
    return replace(field, source=text, source_kind=kind)


_SOURCE_WORDS = {
    "default": "the default value", "person": "edited by a person",
    "model": "not from the conversation: check it",
}


def _shorten(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def form_fields(
    spec: FunctionSpec, values: Mapping[str, Any], errors: Mapping[str, str] | None = None,
) -> list[FieldView]:
    """The fields of a form that is not a call (an MCP server's question to the person), holding `values`."""
    return _fields(spec, values, errors or {}, set())


def _fields(
    spec: FunctionSpec, values: Mapping[str, Any], errors: Mapping[str, str], missing: set[str],
) -> list[FieldView]:
    grouped = field_errors(errors)
    fields: list[FieldView] = []
    for argument in spec.arguments:
        widget = _widget(argument)
        value = values.get(argument.name, argument.default if argument.has_default else None)
        shown = _shown_value(widget, value)
        required = argument.required and not argument.has_default
        is_missing = argument.name in missing and shown in ("", None)
        fmt = getattr(argument, "format", None) or ""
        fields.append(FieldView(
            name=argument.name,
            label=argument.name.replace("_", " ") + (" *" if required else ""),
            widget=widget,
            value=shown,
            help=argument.description,
            required=required,
            missing=is_missing,
            # A missing field's only error is that it is missing, which the card already asks for.
            error="" if is_missing else grouped.get(argument.name, ""),
            choices=_choices(argument, widget, value),
            input_type=_INPUT_TYPES.get(fmt, "text") if widget == "text" else "text",
            placeholder=_FORMAT_HINTS.get(fmt, "") if widget == "text" else "",
            multiline=widget == "text" and isinstance(shown, str) and (len(shown) > 60 or "\n" in shown),
        ))
    return fields


def _widget(argument: ArgumentSpec) -> Widget:
    if argument.enum:
        return "dropdown"
    if argument.type == "boolean":
        return "checkbox" if argument.required or argument.has_default else "tristate"
    if argument.type in ("integer", "number"):
        return argument.type
    if argument.type == "array":
        item = argument.items
        return "lines" if item is None or (item.type in ("string", "integer", "number") and not item.enum) else "json"
    if argument.type == "object":
        return "json"
    return "text"


def _shown_value(widget: Widget, value: Any) -> str | bool:
    """What the control starts with: the model's value as text (wrong values included), or a check box's state."""
    if widget == "checkbox":
        return value is True
    if widget == "tristate":
        return "true" if value is True else "false" if value is False else ""
    if widget == "dropdown":
        return "" if value is None else _option_key(value)
    if value is None:
        return ""
    if widget in ("text", "integer", "number"):
        return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    if widget == "lines" and isinstance(value, list):
        return "\n".join(v if isinstance(v, str) else json.dumps(v, ensure_ascii=False) for v in value)
    if widget == "lines" and isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False)


def _option_key(option: Any) -> str:
    return json.dumps(option, ensure_ascii=False, sort_keys=True)


def _choices(argument: ArgumentSpec, widget: Widget, value: Any) -> tuple[Choice, ...]:
    if widget != "dropdown":
        return ()
    options = [Choice(o if isinstance(o, str) else json.dumps(o, ensure_ascii=False), _option_key(o)) for o in argument.enum or []]
    if value is not None and _option_key(value) not in {c.value for c in options}:
        shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        options.append(Choice(f"{shown} (not one of the choices)", _option_key(value), offered=False))
    return tuple(options)


def arguments_from_values(view: CallView, values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """(arguments, field -> problem) from what the card's controls hold; blank fields are left out."""
    if view.spec is None:
        return dict(view.arguments), {}
    spec = view.spec
    arguments, problems = _typed_values(
        spec, card_fields(view), values, keep=lambda argument, parsed: not _untouched_default(view, argument, parsed),
    )
    # Arguments the spec does not know are kept, so validation reports them rather than silently dropping them.
    known = {argument.name for argument in spec.arguments}
    for name, value in view.arguments.items():
        if name not in known and name not in arguments:
            arguments[name] = value
    return arguments, problems


def form_values(spec: FunctionSpec, values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """(answer, field -> problem) from what a form's controls hold; blank fields are left out."""
    return _typed_values(spec, form_fields(spec, {}), values, keep=lambda _argument, _parsed: True)


def _typed_values(
    spec: FunctionSpec, fields: list[FieldView], values: Mapping[str, Any],
    *, keep: Callable[[ArgumentSpec, Any], bool],
) -> tuple[dict[str, Any], dict[str, str]]:
    typed: dict[str, Any] = {}
    problems: dict[str, str] = {}
    for spec_field in fields:
        argument = spec.argument(spec_field.name)
        if argument is None or spec_field.name not in values:
            continue
        parsed, problem = _parse_value(spec_field.widget, argument, values[spec_field.name])
        if problem:
            problems[spec_field.name] = problem
        elif parsed is not None and keep(argument, parsed):
            typed[spec_field.name] = parsed
    return typed, problems


def _untouched_default(view: CallView, argument: ArgumentSpec, value: Any) -> bool:
    """A default the model left out and nobody changed: leaving it out keeps the call as the model proposed it."""
    return argument.has_default and argument.name not in view.proposed_arguments and value == argument.default


def _parse_value(widget: Widget, argument: ArgumentSpec, value: Any) -> tuple[Any, str | None]:
    if widget == "checkbox":
        return value is True or value == "true", None
    text = value if isinstance(value, str) else "" if value is None else str(value)
    if not text.strip():
        return None, None
    if widget == "text":
        return text, None
    if widget in ("integer", "number"):
        return _number(text.strip(), widget), None
    if widget == "tristate":
        return {"true": True, "false": False}.get(text), None
    if widget == "dropdown":
        try:
            return json.loads(text), None
        except ValueError:
            return text, None
    if widget == "lines":
        items = [line.strip() for line in text.splitlines() if line.strip()]
        item_type = argument.items.type if argument.items is not None else "string"
        return [_number(item, item_type) if item_type in ("integer", "number") else item for item in items], None
    try:
        return json.loads(text), None
    except ValueError as error:
        return None, f"This is not valid JSON: {error}."


def _number(text: str, kind: str) -> Any:
    """`text` as a number when it clearly is one; otherwise the text, for validation to judge."""
    number: float | int
    try:
        number = int(text)
    except ValueError:
        try:
            number = float(text)
        except ValueError:
            return text
    if isinstance(number, float) and not math.isfinite(number):
        return text
    if isinstance(number, float) and number.is_integer() and kind == "integer":
        return int(number)
    return number


def check_values(view: CallView, values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """(arguments as typed, normalised arguments, field -> error) for what the card holds, as Confirm sees it."""
    arguments, problems = arguments_from_values(view, values)
    if view.spec is None:
        return arguments, arguments, problems
    normalised, errors, _missing = validate_arguments(view.spec, arguments)
    return arguments, normalised, {**errors, **problems}


def field_errors(errors: Mapping[str, str]) -> dict[str, str]:
    """Validation errors grouped by top-level field (`address.city` goes under `address`); "" holds the rest."""
    grouped: dict[str, list[str]] = {}
    for key, message in errors.items():
        top = top_field(key)
        prefix = f"{key}: " if key != top and top else ""
        grouped.setdefault(top, []).append(prefix + message)
    return {key: " ".join(messages) for key, messages in grouped.items()}


def arguments_json(arguments: Mapping[str, Any]) -> str:
    """Arguments as pretty JSON, for "Edit as JSON"."""
    return json.dumps(dict(arguments), indent=2, ensure_ascii=False, default=str)


def arguments_from_json(text: str) -> tuple[dict[str, Any] | None, str | None]:
    """(arguments, None) from the JSON editor, or (None, why not)."""
    try:
        value = json.loads(text or "{}")
    except ValueError as error:
        return None, f"This is not valid JSON: {error}."
    if not isinstance(value, dict):
        return None, "The arguments must be a JSON object: {\"name\": value, ...}."
    return value, None
