"""Hypothesis strategies: function specs and values that satisfy them, and pieces of model replies."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from backend.core.specs import ArgumentSpec, FunctionSpec

__all__ = [
    "SCALAR_TYPES",
    "names",
    "texts",
    "json_values",
    "valid_values",
    "valid_objects",
    "argument_specs",
    "function_specs",
    "reply_fragments",
]

SCALAR_TYPES = ("string", "number", "integer", "boolean")
_ALL_TYPES = (*SCALAR_TYPES, "array", "object")

names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.\-]{0,15}", fullmatch=True)

# Descriptions are stored stripped, so only stripped text can come back unchanged; unicode on purpose.
texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=30).map(str.strip)

_json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=10),
)
json_values = st.recursive(
    _json_scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=10,
)


def _scalar_values(arg_type: str) -> st.SearchStrategy[Any]:
    """Values of a scalar type that validation keeps as they are (blank text counts as missing, so none here)."""
    if arg_type == "string":
        return st.text(max_size=12).filter(lambda s: s.strip() != "")
    if arg_type == "integer":
        return st.integers(min_value=-(10**12), max_value=10**12)
    if arg_type == "number":
        return st.floats(allow_nan=False, allow_infinity=False) | st.integers(min_value=-(10**6), max_value=10**6)
    return st.booleans()


def valid_values(arg: ArgumentSpec) -> st.SearchStrategy[Any]:
    """Values `arg` accepts unchanged (apart from defaults filled into nested objects)."""
    if arg.enum is not None:
        base: st.SearchStrategy[Any] = st.sampled_from(arg.enum)
    elif arg.type in SCALAR_TYPES:
        base = _scalar_values(arg.type)
    elif arg.type == "array":
        base = st.lists(valid_values(arg.items) if arg.items is not None else json_values, max_size=3)
    elif arg.properties is not None:
        base = valid_objects(arg.properties)
    else:
        base = st.dictionaries(st.text(max_size=6), json_values, max_size=3)
    return st.none() | base if arg.nullable else base


@st.composite
def valid_objects(draw: st.DrawFn, fields: list[ArgumentSpec]) -> dict[str, Any]:
    """An object with every required field and some optional ones, each holding a valid value."""
    value: dict[str, Any] = {}
    for field in fields:
        if field.required or draw(st.booleans()):
            value[field.name] = draw(valid_values(field))
    return value


@st.composite
def argument_specs(draw: st.DrawFn, depth: int = 2, item: bool = False) -> ArgumentSpec:
    """An argument (or an array's item type when `item`), nesting items and properties up to `depth` levels."""
    arg_type = draw(st.sampled_from(_ALL_TYPES if depth > 0 else SCALAR_TYPES))
    fields: dict[str, Any] = {
        "name": "" if item else draw(names),
        "type": arg_type,
        "description": draw(texts),
        "required": True if item else draw(st.booleans()),
        "nullable": draw(st.booleans()),
    }
    if arg_type in SCALAR_TYPES and draw(st.integers(0, 3)) == 0:
        fields["enum"] = draw(st.lists(_scalar_values(arg_type), min_size=1, max_size=4, unique=True))
    if arg_type == "array" and draw(st.booleans()):
        fields["items"] = draw(argument_specs(depth - 1, item=True))
    if arg_type == "object" and draw(st.booleans()):
        fields["properties"] = draw(st.lists(argument_specs(depth - 1), max_size=3, unique_by=lambda a: a.name))
    arg = ArgumentSpec(**fields)
    if draw(st.integers(0, 3)) == 0:
        arg = arg.model_copy(update={"has_default": True, "default": draw(valid_values(arg))})
    return arg


@st.composite
def function_specs(draw: st.DrawFn, name: str | None = None) -> FunctionSpec:
    """A function with up to four uniquely named arguments."""
    return FunctionSpec(
        name=name or draw(names),
        description=draw(texts),
        arguments=draw(st.lists(argument_specs(), max_size=4, unique_by=lambda a: a.name)),
    )


# Pieces that models write in and around calls, to build replies of any shape from.
reply_fragments = st.sampled_from([
    "{", "}", "[", "]", "(", ")", '"', "'", "\\", ":", ",", "=", " ", "\n", "a", "1", "-", ".", "`", "<", ">",
    '"function"', '"name"', '"arguments"', '"parameters"', '"tool_calls"', "true", "None", "<tool_call>",
    "</tool_call>", "[TOOL_CALLS]", "[ARGS]", "```json\n", "```tool_code\n", "<function=f>", "f(", "get_weather",
    '{"function": "f", "arguments": {}}',
])
