"""Function specs: every input form, the richer Trelis fields, conversions and their round trips, clear errors."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.core.specs import (
    GRAMMAR_FORMATS,
    ArgumentSpec,
    FunctionSpec,
    calls_schema,
    function_list_text,
    load_functions,
)
from backend.errors import SpecError
from tests.backend.core.strategies import function_specs, json_values, names, valid_objects

try:
    import jsonschema
except ImportError:  # not a dependency: a small checker of the keywords Callcard emits stands in
    jsonschema = None

PROPERTY_SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

BING_DESCRIPTION = (
    "Search the web for content on Bing. This allows users to search online/the internet/the web for content."
)
ARXIV_DESCRIPTION = (
    "Search for research papers on ArXiv. Make use of AND, OR and NOT operators as appropriate to join terms "
    "within the query."
)

# The model card's sample functionList, as a user would paste it.
CARD_FUNCTION_LIST = """{
    "function": "search_bing",
    "description": "Search the web for content on Bing. This allows users to search online/the internet/the web for content.",
    "arguments": [
        {
            "name": "query",
            "type": "string",
            "description": "The search query string"
        }
    ]
}

{
    "function": "search_arxiv",
    "description": "Search for research papers on ArXiv. Make use of AND, OR and NOT operators as appropriate to join terms within the query.",
    "arguments": [
        {
            "name": "query",
            "type": "string",
            "description": "The search query string"
        }
    ]
}"""

QUERY = ArgumentSpec(name="query", type="string", description="The search query string")
SEARCH_BING = FunctionSpec(name="search_bing", description=BING_DESCRIPTION, arguments=[QUERY])
SEARCH_ARXIV = FunctionSpec(name="search_arxiv", description=ARXIV_DESCRIPTION, arguments=[QUERY])

BING_METADATA = {
    "function": "search_bing",
    "description": BING_DESCRIPTION,
    "arguments": [{"name": "query", "type": "string", "description": "The search query string"}],
}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "default": "celsius"},
            },
            "required": ["city"],
        },
    },
}
GET_WEATHER = FunctionSpec(
    name="get_weather",
    description="Current weather in a city.",
    arguments=[
        ArgumentSpec(name="city", type="string", description="City name"),
        ArgumentSpec(
            name="unit",
            type="string",
            required=False,
            enum=["celsius", "fahrenheit"],
            has_default=True,
            default="celsius",
        ),
    ],
)


def _only(source: Any) -> FunctionSpec:
    specs = load_functions(source)
    assert len(specs) == 1
    return specs[0]


def _argument(raw: dict[str, Any]) -> ArgumentSpec:
    """The single argument of a Trelis function whose one argument is `raw`."""
    return _only({"function": "f", "arguments": [{"name": "a", **raw}]}).arguments[0]


# --- input forms ------------------------------------------------------------------------------------------------


def test_trelis_metadata_as_on_the_model_card() -> None:
    assert FunctionSpec.from_any(BING_METADATA) == SEARCH_BING
    assert SEARCH_BING.arguments[0].required is True


def test_function_metadata_wrapper() -> None:
    assert FunctionSpec.from_any({"functionMetadata": BING_METADATA}) == SEARCH_BING
    assert load_functions({"functionMetadata": BING_METADATA}) == [SEARCH_BING]


def test_whole_function_list_text_with_objects_one_after_another() -> None:
    assert load_functions(CARD_FUNCTION_LIST) == [SEARCH_BING, SEARCH_ARXIV]


@pytest.mark.parametrize(
    "text",
    [
        json.dumps(BING_METADATA) + "\n" + json.dumps(BING_METADATA | {"function": "search_arxiv"}),
        json.dumps(BING_METADATA) + ",\n\n" + json.dumps(BING_METADATA | {"function": "search_arxiv"}) + "\n",
        json.dumps([BING_METADATA, BING_METADATA | {"function": "search_arxiv"}], indent=2),
    ],
    ids=["one-per-line", "comma-separated", "json-array"],
)
def test_function_list_text_variants(text: str) -> None:
    assert [spec.name for spec in load_functions(text)] == ["search_bing", "search_arxiv"]


def test_blank_text_is_no_functions() -> None:
    assert load_functions("") == []
    assert load_functions("  \n\n ") == []


def test_openai_tool() -> None:
    assert FunctionSpec.from_any(WEATHER_TOOL) == GET_WEATHER


def test_plain_name_description_parameters() -> None:
    assert FunctionSpec.from_any(WEATHER_TOOL["function"]) == GET_WEATHER


def test_plain_function_without_parameters_has_no_arguments() -> None:
    assert FunctionSpec.from_any({"name": "now"}) == FunctionSpec(name="now")


def test_anthropic_input_schema() -> None:
    tool = {"name": "get_weather", "description": "Current weather in a city."}
    tool["input_schema"] = WEATHER_TOOL["function"]["parameters"]
    assert FunctionSpec.from_any(tool) == GET_WEATHER


def test_list_mixing_forms() -> None:
    mixed = [BING_METADATA, WEATHER_TOOL, {"functionMetadata": SEARCH_ARXIV.to_trelis()}, FunctionSpec(name="now")]
    assert load_functions(mixed) == [SEARCH_BING, GET_WEATHER, SEARCH_ARXIV, FunctionSpec(name="now")]


def test_tools_and_functions_wrappers() -> None:
    assert load_functions({"tools": [WEATHER_TOOL, BING_METADATA]}) == [GET_WEATHER, SEARCH_BING]
    assert load_functions({"functions": [WEATHER_TOOL["function"]]}) == [GET_WEATHER]
    assert load_functions(json.dumps({"tools": [WEATHER_TOOL]})) == [GET_WEATHER]


def test_function_spec_passes_through() -> None:
    assert load_functions(SEARCH_BING) == [SEARCH_BING]
    assert FunctionSpec.from_any(SEARCH_BING) is SEARCH_BING


def test_descriptions_are_stripped_and_missing_ones_empty() -> None:
    raw = {"function": "f", "description": "  Does things.\n", "arguments": [{"name": "a", "type": "int"}]}
    spec = FunctionSpec.from_any(raw)
    assert spec.description == "Does things."
    assert spec.arguments[0].description == ""


# --- richer Trelis fields ---------------------------------------------------------------------------------------


def test_trelis_required_defaults_to_true_and_can_be_turned_off() -> None:
    assert _argument({"type": "string"}).required is True
    assert _argument({"type": "string", "required": False}).required is False


def test_trelis_default() -> None:
    arg = _argument({"type": "integer", "default": 10, "required": False})
    assert (arg.has_default, arg.default, arg.required) == (True, 10, False)
    assert _argument({"type": "string"}).has_default is False
    none_default = _argument({"type": "string", "default": None})
    assert (none_default.has_default, none_default.default) == (True, None)


def test_trelis_enum_with_a_type() -> None:
    arg = _argument({"type": "string", "enum": ["express", "standard"]})
    assert (arg.type, arg.enum) == ("string", ["express", "standard"])


@pytest.mark.parametrize(
    ("values", "expected_type"),
    [
        (["a", "b"], "string"),
        ([1, 2, 3], "integer"),
        ([1, 2.5], "number"),
        ([True, False], "boolean"),
        (["a", 1], "string"),
    ],
)
def test_trelis_type_enum_infers_the_type_from_the_values(values: list[Any], expected_type: str) -> None:
    arg = _argument({"type": "enum", "enum": values})
    assert (arg.type, arg.enum) == (expected_type, values)
    assert _argument({"enum": values}).type == expected_type  # no type at all: the values decide too


def test_trelis_array_items() -> None:
    arg = _argument({"type": "array", "items": {"type": "string", "description": "A tag"}})
    assert arg.items == ArgumentSpec(type="string", description="A tag")
    assert _argument({"type": "list", "items": "int"}).items == ArgumentSpec(type="integer")
    assert _argument({"type": "array"}).items is None


def test_trelis_object_properties() -> None:
    arg = _argument(
        {
            "type": "object",
            "properties": [
                {"name": "city", "type": "string"},
                {"name": "zip", "type": "string", "required": False},
                {"name": "floors", "type": "array", "items": {"type": "integer"}},
            ],
        }
    )
    assert arg.properties == [
        ArgumentSpec(name="city", type="string"),
        ArgumentSpec(name="zip", type="string", required=False),
        ArgumentSpec(name="floors", type="array", items=ArgumentSpec(type="integer")),
    ]


def test_trelis_argument_written_as_json_schema_object() -> None:
    arg = _argument(
        {
            "type": "object",
            "properties": {"city": {"type": "string"}, "zip": {"type": "string"}},
            "required": ["city"],
        }
    )
    # `required` here is JSON Schema's list of fields, not the argument's own flag.
    assert arg.required is True
    assert arg.properties == [
        ArgumentSpec(name="city", type="string"),
        ArgumentSpec(name="zip", type="string", required=False),
    ]
    assert _argument({"type": "object", "properties": {"x": {"type": "int"}}, "required": []}).required is True


def test_object_fields_without_a_required_list() -> None:
    plain = {"type": "object", "properties": {"x": {"type": "string"}, "y": {"type": "string"}}}
    marked = {"type": "object", "properties": {"x": {"type": "string"}, "y": {"type": "string", "required": False}}}
    spec = _only({"name": "f", "parameters": {"type": "object", "properties": {"plain": plain, "marked": marked}}})
    # JSON Schema: no `required` list means every field is optional; Trelis marks make the others required.
    assert [f.required for f in spec.arguments[0].properties or []] == [False, False]
    assert [f.required for f in spec.arguments[1].properties or []] == [True, False]


def test_trelis_arguments_as_a_mapping() -> None:
    spec = _only({"function": "f", "arguments": {"city": {"type": "string"}, "count": "int"}})
    assert spec.arguments == [ArgumentSpec(name="city", type="string"), ArgumentSpec(name="count", type="integer")]


@pytest.mark.parametrize(
    "raw",
    [
        {"type": "string", "nullable": True},
        {"type": ["string", "null"]},
        {"type": "string|null"},
        {"type": "Optional[str]"},
        {"anyOf": [{"type": "string"}, {"type": "null"}]},
    ],
    ids=["flag", "type-list", "pipe", "optional", "anyOf"],
)
def test_trelis_nullable_spellings(raw: dict[str, Any]) -> None:
    arg = _argument(raw)
    assert (arg.type, arg.nullable) == ("string", True)


def test_trelis_items_enum_listing_null_is_nullable() -> None:
    arg = _argument({"type": "array", "items": {"type": ["string", "null"], "enum": ["a", "b", None]}})
    assert arg.items == ArgumentSpec(type="string", nullable=True, enum=["a", "b"])


# --- types and aliases ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw_type", "expected"),
    [
        ("string", "string"),
        ("number", "number"),
        ("integer", "integer"),
        ("boolean", "boolean"),
        ("array", "array"),
        ("object", "object"),
        ("str", "string"),
        ("text", "string"),
        ("int", "integer"),
        ("float", "number"),
        ("double", "number"),
        ("bool", "boolean"),
        ("list", "array"),
        ("tuple", "array"),
        ("dict", "object"),
        ("String", "string"),
        (" Integer ", "integer"),
    ],
)
def test_type_names_and_aliases(raw_type: str, expected: str) -> None:
    assert _argument({"type": raw_type}).type == expected
    openai = {"name": "f", "parameters": {"type": "object", "properties": {"a": {"type": raw_type}}}}
    assert _only(openai).arguments[0].type == expected


def test_json_schema_shapes_without_a_type() -> None:
    spec = _only(
        {
            "name": "f",
            "parameters": {
                "type": "object",
                "properties": {
                    "obj": {"properties": {"x": {"type": "number"}}},
                    "arr": {"items": {"type": "boolean"}},
                    "mode": {"const": "fast"},
                },
                "required": ["obj", "arr", "mode"],
            },
        }
    )
    assert [(a.name, a.type) for a in spec.arguments] == [("obj", "object"), ("arr", "array"), ("mode", "string")]
    assert spec.arguments[0].properties == [ArgumentSpec(name="x", type="number", required=False)]
    assert spec.arguments[2].enum == ["fast"]


def test_json_schema_nullable_forms() -> None:
    properties = {
        "a": {"type": ["integer", "null"]},
        "b": {"anyOf": [{"type": "integer"}, {"type": "null"}], "description": "B"},
        "c": {"type": "string", "enum": ["x", None]},
        "d": {"type": "integer", "nullable": True},
    }
    spec = _only({"name": "f", "parameters": {"type": "object", "properties": properties}})
    assert all(a.nullable for a in spec.arguments)
    assert spec.arguments[1] == ArgumentSpec(name="b", type="integer", description="B", required=False, nullable=True)
    assert spec.arguments[2].enum == ["x"]


# --- conversions ------------------------------------------------------------------------------------------------

RICH = FunctionSpec(
    name="book_trip",
    description="Book a trip.",
    arguments=[
        ArgumentSpec(name="city", type="string", description="Where to"),
        ArgumentSpec(name="nights", type="integer", required=False, has_default=True, default=1),
        ArgumentSpec(name="speed", type="string", enum=["express", "standard"], nullable=True),
        ArgumentSpec(name="tags", type="array", items=ArgumentSpec(type="string")),
        ArgumentSpec(
            name="address",
            type="object",
            required=False,
            properties=[
                ArgumentSpec(name="street", type="string"),
                ArgumentSpec(name="zip", type="string", required=False),
            ],
        ),
    ],
)
RICH_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "description": "Where to"},
        "nights": {"type": "integer", "default": 1},
        "speed": {"type": ["string", "null"], "enum": ["express", "standard", None]},
        "tags": {"type": "array", "items": {"type": "string"}},
        "address": {
            "type": "object",
            "properties": {"street": {"type": "string"}, "zip": {"type": "string"}},
            "required": ["street"],
            "additionalProperties": False,
        },
    },
    "required": ["city", "speed", "tags"],
    "additionalProperties": False,
}
RICH_TRELIS = {
    "function": "book_trip",
    "description": "Book a trip.",
    "arguments": [
        {"name": "city", "type": "string", "description": "Where to"},
        {"name": "nights", "type": "integer", "description": "", "required": False, "default": 1},
        {"name": "speed", "type": "string", "description": "", "nullable": True, "enum": ["express", "standard"]},
        {"name": "tags", "type": "array", "description": "", "items": {"type": "string"}},
        {
            "name": "address",
            "type": "object",
            "description": "",
            "required": False,
            "properties": [
                {"name": "street", "type": "string", "description": ""},
                {"name": "zip", "type": "string", "description": "", "required": False},
            ],
        },
    ],
}


def test_to_json_schema() -> None:
    assert RICH.to_json_schema() == RICH_SCHEMA


def test_to_openai_tool() -> None:
    assert RICH.to_openai_tool() == {
        "type": "function",
        "function": {"name": "book_trip", "description": "Book a trip.", "parameters": RICH_SCHEMA},
    }


def test_to_trelis_writes_richer_fields_only_when_set() -> None:
    assert RICH.to_trelis() == RICH_TRELIS
    assert SEARCH_BING.to_trelis() == BING_METADATA


def test_to_trelis_json_is_the_model_card_layout() -> None:
    assert SEARCH_BING.to_trelis_json() == CARD_FUNCTION_LIST.split("\n\n")[0]
    assert FunctionSpec(name="f", description="Café ☕").to_trelis_json() == (
        '{\n    "function": "f",\n    "description": "Café ☕",\n    "arguments": []\n}'
    )


def test_function_list_text_is_the_model_card_sample() -> None:
    assert function_list_text([SEARCH_BING, SEARCH_ARXIV]) == CARD_FUNCTION_LIST
    assert function_list_text([]) == ""


def test_conversions_back() -> None:
    assert FunctionSpec.from_any(RICH.to_openai_tool()) == RICH
    assert FunctionSpec.from_any(RICH.to_trelis()) == RICH
    plain = {"name": "book_trip", "description": "Book a trip.", "parameters": RICH_SCHEMA}
    assert FunctionSpec.from_any(plain) == RICH


def test_argument_lookup() -> None:
    assert RICH.argument("tags") is RICH.arguments[3]
    assert RICH.argument("nope") is None


@PROPERTY_SETTINGS
@given(function_specs())
def test_round_trip_through_openai_tool(spec: FunctionSpec) -> None:
    assert FunctionSpec.from_any(spec.to_openai_tool()) == spec
    assert load_functions(json.dumps(spec.to_openai_tool(), ensure_ascii=False)) == [spec]


@PROPERTY_SETTINGS
@given(function_specs())
def test_round_trip_through_trelis(spec: FunctionSpec) -> None:
    assert FunctionSpec.from_any(spec.to_trelis()) == spec
    assert load_functions(spec.to_trelis_json()) == [spec]


@PROPERTY_SETTINGS
@given(st.lists(names, max_size=4, unique=True).flatmap(lambda ns: st.tuples(*(function_specs(name=n) for n in ns))))
def test_round_trip_through_function_list_text(specs: tuple[FunctionSpec, ...]) -> None:
    assert load_functions(function_list_text(specs)) == list(specs)


_spec_keys = st.sampled_from(["function", "name", "arguments", "parameters", "type"])


@settings(max_examples=150, deadline=None)
@given(json_values | st.dictionaries(_spec_keys, json_values))
def test_arbitrary_json_loads_or_raises_spec_error(value: Any) -> None:
    try:
        specs = load_functions(value)
    except SpecError as error:
        assert str(error)
    else:
        assert all(isinstance(spec, FunctionSpec) for spec in specs)


# --- errors -----------------------------------------------------------------------------------------------------


def _error(source: Any) -> str:
    with pytest.raises(SpecError) as caught:
        load_functions(source)
    return str(caught.value)


def test_missing_function_name() -> None:
    message = _error({"description": "no name", "arguments": []})
    assert "needs a name" in message and "'function'" in message and "'name'" in message
    assert "has no name" in _error({"function": "  ", "arguments": []})
    assert "has no name" in _error({"type": "function", "function": {"name": "", "parameters": {}}})


def test_missing_argument_name_names_the_function() -> None:
    message = _error({"function": "search", "arguments": [{"type": "string"}]})
    assert "argument" in message and "'search'" in message and "no name" in message


@pytest.mark.parametrize("name", ["has space", "1starts_with_digit", "semi;colon", "trailing_newline\n", "x" * 129])
def test_invalid_names(name: str) -> None:
    assert "invalid name" in _error({"function": name})
    assert "invalid name" in _error({"function": "f", "arguments": [{"name": name, "type": "string"}]})


def test_unknown_type_names_function_argument_and_type() -> None:
    message = _error({"function": "schedule", "arguments": [{"name": "when", "type": "datetime"}]})
    assert "'schedule'" in message and "'when'" in message and "'datetime'" in message
    assert "string" in message and "integer" in message  # the known types are listed
    message = _error({"name": "schedule", "parameters": {"properties": {"when": {"type": "datetime"}}}})
    assert "'schedule'" in message and "'when'" in message and "'datetime'" in message


def test_missing_type() -> None:
    message = _error({"function": "f", "arguments": [{"name": "a", "description": "no type"}]})
    assert "'a'" in message and "no type" in message


def test_enum_problems() -> None:
    assert "'enum'" in _error({"function": "f", "arguments": [{"name": "a", "type": "enum"}]})
    assert "'enum'" in _error({"function": "f", "arguments": [{"name": "a", "type": "string", "enum": []}]})
    assert "'enum'" in _error({"function": "f", "arguments": [{"name": "a", "type": "string", "enum": "a,b"}]})


def test_several_types_are_rejected() -> None:
    assert "one type" in _error({"function": "f", "arguments": [{"name": "a", "type": ["string", "integer"]}]})
    schema = {"anyOf": [{"type": "string"}, {"type": "integer"}]}
    assert "several types" in _error({"name": "f", "parameters": {"properties": {"a": schema}}})


def test_duplicate_argument() -> None:
    arguments = [{"name": "q", "type": "string"}, {"name": "q", "type": "integer"}]
    message = _error({"function": "search", "arguments": arguments})
    assert "Duplicate argument 'q'" in message and "'search'" in message


def test_duplicate_object_field() -> None:
    properties = [{"name": "city", "type": "string"}, {"name": "city", "type": "string"}]
    message = _error({"function": "f", "arguments": [{"name": "address", "type": "object", "properties": properties}]})
    assert "'city'" in message and "'address'" in message


def test_duplicate_function() -> None:
    assert "Duplicate function 'search_bing'" in _error([BING_METADATA, WEATHER_TOOL, BING_METADATA])
    assert "Duplicate function 'search_bing'" in _error(CARD_FUNCTION_LIST.replace("search_arxiv", "search_bing"))
    assert "Duplicate function 'get_weather'" in _error({"tools": [WEATHER_TOOL, WEATHER_TOOL["function"]]})


def test_bad_json_text_names_the_line() -> None:
    # The comma after the second object's name (line 14) is gone: the parser stumbles on line 15.
    message = _error(CARD_FUNCTION_LIST.replace('"search_arxiv",', '"search_arxiv"'))
    assert "not valid JSON" in message and "line 15" in message and "','" in message
    assert "line 1" in _error("{'function': 'f'}")
    assert "line 3" in _error('{"function": "f"}\n\n{"function": "g",}')


def test_required_argument_missing_from_properties() -> None:
    message = _error({"name": "f", "parameters": {"type": "object", "properties": {}, "required": ["city"]}})
    assert "'f'" in message and "'city'" in message


@pytest.mark.parametrize(
    "source",
    [
        42,
        [None],
        {"function": "f", "arguments": "query"},
        {"function": "f", "arguments": [{"name": "a", "type": "object", "properties": 5}]},
        {"function": "f", "arguments": [{"name": "a", "type": "array", "items": 5}]},
        {"name": "f", "parameters": ["a"]},
        {"name": "f", "parameters": {"properties": ["a"]}},
        {"name": "f", "parameters": {"properties": {"a": "string"}}},
        {"name": "f", "parameters": {"properties": {}, "required": True}},
        {"name": "f", "parameters": {"properties": {"a": {"type": "string"}}, "required": [["a"]]}},
        {"name": "f", "parameters": {"properties": {"a": {"anyOf": [5]}}}},
        {"name": "f", "parameters": {"properties": {"o": {"type": "object", "properties": {"x": "string"}}}}},
    ],
)
def test_malformed_specs_raise_spec_error(source: Any) -> None:
    assert _error(source)


def test_spec_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        load_functions({"function": "f", "arguments": [{"name": "a", "type": "date"}]})


# --- calls_schema -----------------------------------------------------------------------------------------------


def _matches(schema: dict[str, Any], value: Any) -> bool:
    """Whether `value` satisfies `schema`: jsonschema when installed, else the keywords Callcard emits."""
    if jsonschema is not None:
        return jsonschema.Draft202012Validator(schema).is_valid(value)
    return _subset_matches(schema, value)


def _subset_matches(schema: dict[str, Any], value: Any) -> bool:
    if "anyOf" in schema:
        return any(_subset_matches(option, value) for option in schema["anyOf"])
    if "const" in schema and value != schema["const"]:
        return False
    if "enum" in schema and not any(_same(value, option) for option in schema["enum"]):
        return False
    types = schema.get("type")
    if types is not None:
        allowed = types if isinstance(types, list) else [types]
        if not any(_has_type(value, t) for t in allowed):
            return False
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        if any(name not in value for name in schema.get("required", [])):
            return False
        if schema.get("additionalProperties") is False and any(name not in properties for name in value):
            return False
        return all(_subset_matches(properties[k], v) for k, v in value.items() if k in properties)
    if isinstance(value, list) and "items" in schema:
        return all(_subset_matches(schema["items"], item) for item in value)
    return True


def _same(value: Any, option: Any) -> bool:
    """JSON equality: true and false are not the numbers 1 and 0."""
    return value == option and isinstance(value, bool) == isinstance(option, bool)


def _has_type(value: Any, name: str) -> bool:
    checks = {
        "null": lambda v: v is None,
        "boolean": lambda v: isinstance(v, bool),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "string": lambda v: isinstance(v, str),
        "array": lambda v: isinstance(v, list),
        "object": lambda v: isinstance(v, dict),
    }
    return checks[name](value)


def test_calls_schema_shape() -> None:
    schema = calls_schema([SEARCH_BING, RICH])
    assert list(schema) == ["anyOf"]
    assert [option["properties"]["function"] for option in schema["anyOf"]] == [
        {"const": "search_bing"},
        {"const": "book_trip"},
    ]
    for option, spec in zip(schema["anyOf"], [SEARCH_BING, RICH]):
        assert option["type"] == "object"
        assert option["required"] == ["function", "arguments"]
        assert option["additionalProperties"] is False
        assert option["properties"]["arguments"] == spec.to_json_schema()
        assert option["properties"]["arguments"]["additionalProperties"] is False


def test_calls_schema_of_one_function_is_that_option() -> None:
    assert calls_schema([SEARCH_BING]) == calls_schema([SEARCH_BING, SEARCH_ARXIV])["anyOf"][0]


def test_calls_schema_is_a_valid_schema() -> None:
    if jsonschema is None:
        pytest.skip("jsonschema is not installed")
    jsonschema.Draft202012Validator.check_schema(calls_schema([SEARCH_BING, RICH, GET_WEATHER]))


@pytest.mark.parametrize(
    ("call", "valid"),
    [
        ({"function": "search_bing", "arguments": {"query": "llamas"}}, True),
        ({"function": "book_trip", "arguments": {"city": "Oslo", "speed": None, "tags": ["a"]}}, True),
        (
            {
                "function": "book_trip",
                "arguments": {"city": "Oslo", "speed": "express", "tags": [], "nights": 3, "address": {"street": "A"}},
            },
            True,
        ),
        ({"function": "search_bing", "arguments": {}}, False),
        ({"function": "search_web", "arguments": {"query": "llamas"}}, False),
        ({"function": "search_bing", "arguments": {"query": "llamas", "page": 2}}, False),
        ({"function": "search_bing", "arguments": {"query": 5}}, False),
        ({"function": "search_bing", "arguments": {"query": "x"}, "extra": 1}, False),
        ({"function": "book_trip", "arguments": {"city": "Oslo", "speed": "slow", "tags": []}}, False),
        ({"function": "book_trip", "arguments": {"city": "Oslo", "speed": None, "tags": [1]}}, False),
        ({"function": "book_trip", "arguments": {"city": "Oslo", "speed": None, "tags": [], "address": {}}}, False),
        ({"function": "book_trip", "arguments": {"city": "Oslo", "speed": None, "tags": [], "nights": 1.5}}, False),
        ({"arguments": {"query": "llamas"}}, False),
    ],
)
def test_calls_schema_accepts_valid_calls_only(call: dict[str, Any], valid: bool) -> None:
    assert _matches(calls_schema([SEARCH_BING, RICH]), call) is valid


@PROPERTY_SETTINGS
@given(st.data())
def test_valid_arguments_satisfy_calls_schema(data: st.DataObject) -> None:
    spec = data.draw(function_specs())
    arguments = data.draw(valid_objects(spec.arguments))
    schema = calls_schema([spec, SEARCH_BING])
    assert _matches(schema, {"function": spec.name, "arguments": arguments})
    assert not _matches(schema, {"function": spec.name, "arguments": {**arguments, "not an argument": 1}})


# --- string formats ---------------------------------------------------------------------------------------------

CONTACT = {
    "name": "contact",
    "parameters": {
        "type": "object",
        "properties": {
            "email": {"type": "string", "format": "email", "description": "Where to reply."},
            "day": {"anyOf": [{"type": "string", "format": "date"}, {"type": "null"}]},
            "cc": {"type": "array", "items": {"type": "string", "format": "email"}},
            "site": {"type": "object", "properties": {"url": {"type": "string", "format": "URI "}}},
            "size": {"type": "integer", "format": "int32"},
        },
        "required": ["email"],
    },
}


def test_formats_load_from_json_schema_at_every_depth() -> None:
    spec = _only({"type": "function", "function": CONTACT})
    formats = {a.name: a.format for a in spec.arguments}
    assert formats == {"email": "email", "day": "date", "cc": None, "site": None, "size": "int32"}
    assert spec.argument("day").nullable
    assert spec.argument("cc").items == ArgumentSpec(format="email")
    assert spec.argument("site").properties == [ArgumentSpec(name="url", format="uri", required=False)]


def test_formats_load_from_trelis_metadata() -> None:
    assert _argument({"type": "string", "format": "email"}).format == "email"
    assert _argument({"type": "array", "items": {"type": "string", "format": "date-time"}}).items.format == "date-time"
    assert _argument({"type": "string", "format": "  "}).format is None
    assert _argument({"type": "string"}).format is None


def test_a_format_that_is_not_a_name_is_refused() -> None:
    message = _error({"function": "f", "arguments": [{"name": "a", "type": "string", "format": ["email"]}]})
    assert "'a'" in message and "'format'" in message


def test_formats_go_into_json_schema_and_trelis_and_come_back() -> None:
    spec = _only(CONTACT)
    assert spec.to_json_schema()["properties"]["email"] == {
        "type": "string", "description": "Where to reply.", "format": "email",
    }
    assert spec.to_trelis()["arguments"][0] == {
        "name": "email", "type": "string", "description": "Where to reply.", "format": "email",
    }
    assert FunctionSpec.from_any(spec.to_trelis()) == spec
    assert FunctionSpec.from_any(spec.to_openai_tool(formats=None)) == spec


def _formats_in(schema: Any) -> list[tuple[Any, str]]:
    """(type, format) of every schema fragment in `schema` that names a format."""
    if isinstance(schema, list):
        return [found for item in schema for found in _formats_in(item)]
    if not isinstance(schema, dict):
        return []
    here = [(schema.get("type"), schema["format"])] if isinstance(schema.get("format"), str) else []
    inner = [value for key, value in schema.items() if key not in ("default", "enum", "const")]  # values, not schemas
    return here + [found for value in inner for found in _formats_in(value)]


def test_grammar_schemas_keep_only_the_formats_every_grammar_engine_takes() -> None:
    spec = _only(CONTACT)
    assert sorted(_formats_in(calls_schema([spec]))) == [(["string", "null"], "date")]
    assert _formats_in(spec.to_openai_tool()) == [(["string", "null"], "date")]
    assert sorted(f for _, f in _formats_in(spec.to_json_schema())) == ["date", "email", "email", "int32", "uri"]
    assert GRAMMAR_FORMATS == {"date", "date-time", "time", "uuid"}


_any_format = st.sampled_from(["email", "date", "date-time", "time", "uuid", "uri", "ipv4", "int32", "made-up"])


def _with_formats(arg: ArgumentSpec, draw: Any) -> ArgumentSpec:
    """`arg` with a random format (or none) on it and everything inside it."""
    update: dict[str, Any] = {"format": draw(st.none() | _any_format)}
    if arg.items is not None:
        update["items"] = _with_formats(arg.items, draw)
    if arg.properties is not None:
        update["properties"] = [_with_formats(p, draw) for p in arg.properties]
    return arg.model_copy(update=update)


@PROPERTY_SETTINGS
@given(function_specs(), st.data())
def test_any_formats_round_trip_and_grammar_schemas_carry_only_grammar_formats_on_strings(
    spec: FunctionSpec, data: st.DataObject
) -> None:
    spec = spec.model_copy(update={"arguments": [_with_formats(a, data.draw) for a in spec.arguments]})
    assert FunctionSpec.from_any(spec.to_trelis()) == spec
    assert FunctionSpec.from_any(spec.to_openai_tool(formats=None)) == spec
    for schema in (calls_schema([spec]), spec.to_openai_tool()):
        for kind, name in _formats_in(schema):
            assert name in GRAMMAR_FORMATS and kind in ("string", ["string", "null"])
