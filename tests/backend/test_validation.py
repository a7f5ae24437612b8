"""Argument validation: safe coercions only, enums, defaults, missing and unknown arguments, nested paths."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.calls import FunctionCall
from backend.specs import ArgumentSpec, FunctionSpec
from backend.validation import CALL_ERROR_KEY, ValidatedCall, validate_arguments, validate_call
from tests.backend.strategies import SCALAR_TYPES, function_specs, json_values, valid_objects

PROPERTY_SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _spec(*arguments: ArgumentSpec, name: str = "f") -> FunctionSpec:
    return FunctionSpec(name=name, arguments=list(arguments))


def _check(arg: ArgumentSpec, value: Any) -> ValidatedCall:
    """Validate a call passing `value` as the only argument `arg`."""
    return validate_call(FunctionCall(name="f", arguments={arg.name: value}), [_spec(arg)])


def _value(arg: ArgumentSpec, value: Any) -> Any:
    result = _check(arg, value)
    assert result.ok, result.errors
    return result.arguments[arg.name]


def _error(arg: ArgumentSpec, value: Any) -> str:
    result = _check(arg, value)
    assert not result.ok
    assert list(result.errors) == [arg.name]
    return result.errors[arg.name]


STRING = ArgumentSpec(name="s", type="string")
INTEGER = ArgumentSpec(name="i", type="integer")
NUMBER = ArgumentSpec(name="n", type="number")
BOOLEAN = ArgumentSpec(name="b", type="boolean")
ARRAY = ArgumentSpec(name="a", type="array")
OBJECT = ArgumentSpec(name="o", type="object")


# --- coercions --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arg", "given_value", "expected"),
    [
        (STRING, "hello", "hello"),
        (STRING, "  padded  ", "  padded  "),
        (STRING, 5, "5"),
        (STRING, 2.5, "2.5"),
        pytest.param(STRING, 10**400, "1" + "0" * 400, id="string-huge-int"),
        (INTEGER, 5, 5),
        (INTEGER, "5", 5),
        (INTEGER, " -12 ", -12),
        (INTEGER, "+7", 7),
        (INTEGER, 5.0, 5),
        pytest.param(INTEGER, 10**400, 10**400, id="integer-huge-int"),
        (NUMBER, 3.5, 3.5),
        (NUMBER, 3, 3),
        (NUMBER, "3.5", 3.5),
        (NUMBER, "10", 10),
        (NUMBER, "-.5", -0.5),
        (NUMBER, "1e3", 1000.0),
        pytest.param(NUMBER, 10**400, 10**400, id="number-huge-int"),
        (BOOLEAN, True, True),
        (BOOLEAN, False, False),
        (BOOLEAN, "true", True),
        (BOOLEAN, "False", False),
        (BOOLEAN, " yes ", True),
        (BOOLEAN, "no", False),
        (ARRAY, [1, "a"], [1, "a"]),
        (ARRAY, (1, 2), [1, 2]),
        (ARRAY, '["a", "b"]', ["a", "b"]),
        (ARRAY, [], []),
        (OBJECT, {"k": 1}, {"k": 1}),
        (OBJECT, '{"k": [1]}', {"k": [1]}),
    ],
)
def test_safe_coercions(arg: ArgumentSpec, given_value: Any, expected: Any) -> None:
    value = _value(arg, given_value)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(
    ("arg", "given_value", "message_part"),
    [
        (INTEGER, 5.5, "whole number"),
        (INTEGER, "5.5", "whole number"),
        (INTEGER, "five", "whole number"),
        (INTEGER, True, "true/false"),
        (INTEGER, float("inf"), "whole number"),
        (NUMBER, True, "number"),
        (NUMBER, "abc", "number"),
        (NUMBER, "1e999", "finite"),
        (NUMBER, float("nan"), "finite"),
        (NUMBER, float("-inf"), "finite"),
        (NUMBER, [1], "a list"),
        (STRING, True, "true/false"),
        (STRING, float("nan"), "text"),
        (STRING, ["a"], "a list"),
        (STRING, {"a": 1}, "an object"),
        (BOOLEAN, 1, "true or false"),
        (BOOLEAN, "maybe", "true or false"),
        (BOOLEAN, 0, "true or false"),
        (ARRAY, "a, b", "list"),
        (ARRAY, '{"a": 1}', "list"),
        (ARRAY, 5, "list"),
        (OBJECT, "[1, 2]", "object"),
        (OBJECT, "not json", "object"),
        (OBJECT, [1], "object"),
    ],
)
def test_lossy_or_ambiguous_values_are_errors(arg: ArgumentSpec, given_value: Any, message_part: str) -> None:
    message = _error(arg, given_value)
    assert message_part in message
    kept = _check(arg, given_value).arguments[arg.name]
    assert kept is given_value or kept == given_value  # kept as sent, for the person to correct


def test_error_message_shows_the_value() -> None:
    assert _error(INTEGER, "five") == 'Expected a whole number, got the text "five".'
    assert _error(INTEGER, 5.5) == "Expected a whole number, got the number 5.5."
    long_text = _error(INTEGER, "x" * 100)
    assert "..." in long_text and len(long_text) < 100


# --- enums ------------------------------------------------------------------------------------------------------

SPEED = ArgumentSpec(name="speed", type="string", enum=["express", "standard", "Slow", "SLOW"])
LEVEL = ArgumentSpec(name="level", type="integer", enum=[1, 2, 3])


def test_enum_exact_match() -> None:
    assert _value(SPEED, "express") == "express"
    assert _value(SPEED, "Slow") == "Slow"
    assert _value(SPEED, "SLOW") == "SLOW"


def test_enum_case_insensitive_unique_match() -> None:
    assert _value(SPEED, "Express") == "express"
    assert _value(SPEED, " STANDARD ") == "standard"


def test_enum_ambiguous_case_insensitive_match_is_an_error() -> None:
    assert "Must be one of" in _error(SPEED, "slow")


def test_value_not_in_enum_lists_the_options() -> None:
    assert _error(SPEED, "overnight") == 'Must be one of: "express", "standard", "Slow", "SLOW".'
    assert _error(LEVEL, 4) == "Must be one of: 1, 2, 3."


def test_enum_after_coercion() -> None:
    assert _value(LEVEL, "2") == 2
    assert _value(LEVEL, 3.0) == 3
    assert "Must be one of" in _error(ArgumentSpec(name="flag", type="boolean", enum=[True]), "false")


def test_nullable_enum() -> None:
    arg = SPEED.model_copy(update={"nullable": True})
    assert _value(arg, None) is None
    assert "Must be one of" in _error(arg, "null")


# --- defaults, missing, optional, nullable ----------------------------------------------------------------------

SEARCH = _spec(
    ArgumentSpec(name="query", type="string"),
    ArgumentSpec(name="limit", type="integer", required=False, has_default=True, default=10),
    ArgumentSpec(name="lang", type="string", required=False),
    ArgumentSpec(name="site", type="string", nullable=True),
    name="search",
)


def _search(**arguments: Any) -> ValidatedCall:
    return validate_call(FunctionCall(name="search", arguments=arguments), [SEARCH])


def test_defaults_are_filled_and_optional_absent_arguments_omitted() -> None:
    result = _search(query="llamas", site=None)
    assert result.ok
    assert result.arguments == {"query": "llamas", "limit": 10, "site": None}
    assert result.spec is SEARCH


def test_given_values_override_defaults() -> None:
    assert _search(query="llamas", limit="3", lang="en", site="example.org").arguments == {
        "query": "llamas",
        "limit": 3,
        "lang": "en",
        "site": "example.org",
    }


def test_defaults_are_normalised_copies() -> None:
    tags = ArgumentSpec(name="tags", type="array", required=False, has_default=True, default=["a"])
    level = ArgumentSpec(name="level", type="integer", required=False, has_default=True, default="3")
    since = ArgumentSpec(name="since", type="string", required=False, has_default=True, default=None)
    spec = _spec(tags, level, since)
    result = validate_call(FunctionCall(name="f"), [spec])
    assert result.ok and result.arguments == {"tags": ["a"], "level": 3, "since": None}
    result.arguments["tags"].append("b")  # a tool changing its arguments must not change the spec
    assert tags.default == ["a"]
    assert validate_call(FunctionCall(name="f"), [spec]).arguments["tags"] == ["a"]


def test_blank_values_take_the_default() -> None:
    assert _search(query="q", limit="", site=None).arguments["limit"] == 10
    assert _search(query="q", limit=None, site=None).arguments["limit"] == 10
    assert "lang" not in _search(query="q", lang="  ", site=None).arguments


@pytest.mark.parametrize("blank", [None, "", "   ", "\n\t"])
def test_missing_required_values(blank: Any) -> None:
    result = _search(query=blank)
    assert not result.ok
    assert result.missing == ["query", "site"]
    assert result.errors["query"] == "Required: please provide it."
    assert set(result.errors) == {"query", "site"}


def test_nullable_required_argument() -> None:
    assert _search(query="q", site=None).ok  # given as null: fine
    absent = _search(query="q")
    assert absent.missing == ["site"]  # left out: still missing
    assert _search(query="q", site="").missing == ["site"]


def test_null_for_a_non_nullable_argument_with_no_default() -> None:
    arg = ArgumentSpec(name="tags", type="array", items=ArgumentSpec(type="string"))
    assert _check(arg, None).missing == ["tags"]


def test_null_array_item_is_an_error_unless_nullable() -> None:
    arg = ArgumentSpec(name="tags", type="array", items=ArgumentSpec(type="string"))
    result = _check(arg, ["a", None])
    assert result.errors == {"tags[1]": "May not be empty."}
    nullable_items = arg.model_copy(update={"items": ArgumentSpec(type="string", nullable=True)})
    assert _value(nullable_items, ["a", None]) == ["a", None]


# --- unknown arguments and functions ----------------------------------------------------------------------------


def test_unknown_argument_suggests_the_close_name() -> None:
    result = _search(querry="llamas", site=None)
    assert not result.ok
    assert result.errors["querry"] == "search has no argument 'querry'. Did you mean 'query'?"
    assert result.missing == ["query"]
    assert "querry" not in result.arguments


def test_unknown_argument_without_a_close_name() -> None:
    result = _search(query="q", site=None, colour="red")
    assert result.errors == {"colour": "search has no argument 'colour'."}


def test_unknown_function_suggests_close_names() -> None:
    specs = [SEARCH, _spec(name="search_web"), _spec(name="get_weather")]
    result = validate_call(FunctionCall(name="serch", arguments={"query": "x"}), specs)
    assert not result.ok and result.spec is None and result.arguments == {}
    message = result.errors[CALL_ERROR_KEY]
    assert message.startswith("The model called an unknown function 'serch'. Did you mean ")
    assert "'search'" in message and "'get_weather'" not in message


def test_unknown_function_lists_the_known_ones() -> None:
    specs = [_spec(name=f"tool_{i:02d}") for i in range(12)]
    message = validate_call(FunctionCall(name="weather"), specs).errors[CALL_ERROR_KEY]
    assert "Known functions: tool_00, tool_01" in message and message.endswith("...")


def test_unknown_function_with_no_functions() -> None:
    message = validate_call(FunctionCall(name="weather"), []).errors[CALL_ERROR_KEY]
    assert message == "The model called 'weather', but no functions are available."


def test_specs_as_a_mapping() -> None:
    result = validate_call(FunctionCall(name="search", arguments={"query": "q", "site": None}), {"search": SEARCH})
    assert result.ok and result.call.name == "search"


def test_validate_arguments_directly() -> None:
    assert validate_arguments(SEARCH, {"query": "q", "site": None, "limit": "x"}) == (
        {"query": "q", "limit": "x", "site": None},
        {"limit": 'Expected a whole number, got the text "x".'},
        [],
    )


def test_function_without_arguments() -> None:
    assert validate_call(FunctionCall(name="now"), [_spec(name="now")]).ok
    assert not validate_call(FunctionCall(name="now", arguments={"tz": "UTC"}), [_spec(name="now")]).ok


# --- nested arrays and objects ----------------------------------------------------------------------------------

ADDRESS = ArgumentSpec(
    name="address",
    type="object",
    properties=[
        ArgumentSpec(name="street", type="string"),
        ArgumentSpec(name="city", type="string"),
        ArgumentSpec(name="floor", type="integer", required=False, has_default=True, default=0),
    ],
)
TAGS = ArgumentSpec(name="tags", type="array", items=ArgumentSpec(type="string", enum=["red", "green"]))
STOPS = ArgumentSpec(
    name="stops",
    type="array",
    items=ArgumentSpec(type="object", properties=[ArgumentSpec(name="city", type="string")]),
)
MATRIX = ArgumentSpec(name="matrix", type="array", items=ArgumentSpec(type="array", items=ArgumentSpec(type="number")))


def test_array_items_are_validated_with_indexed_paths() -> None:
    assert _value(TAGS, ["Red", "green"]) == ["red", "green"]
    result = _check(TAGS, ["red", "blue", 3])
    assert result.errors == {"tags[1]": 'Must be one of: "red", "green".', "tags[2]": 'Must be one of: "red", "green".'}


def test_nested_arrays() -> None:
    assert _value(MATRIX, [[1, "2.5"], []]) == [[1, 2.5], []]
    assert set(_check(MATRIX, [[1], [2, "x"]]).errors) == {"matrix[1][1]"}
    assert _value(MATRIX, "[[1, 2]]") == [[1, 2]]


def test_object_fields_are_validated_with_dotted_paths() -> None:
    assert _value(ADDRESS, {"street": "Main St 1", "city": "Oslo"}) == {
        "street": "Main St 1",
        "city": "Oslo",
        "floor": 0,
    }
    result = _check(ADDRESS, {"street": "Main St 1", "floor": "2nd", "zip": "0150"})
    assert result.missing == ["address.city"]
    assert result.errors["address.city"] == "Required: please provide it."
    assert result.errors["address.floor"].startswith("Expected a whole number")
    assert result.errors["address.zip"] == "address has no argument 'zip'."


def test_object_given_as_json_text() -> None:
    assert _value(ADDRESS, '{"street": "Main St 1", "city": "Oslo", "floor": "3"}') == {
        "street": "Main St 1",
        "city": "Oslo",
        "floor": 3,
    }


def test_objects_inside_arrays() -> None:
    assert _value(STOPS, [{"city": "Oslo"}, {"city": 7}]) == [{"city": "Oslo"}, {"city": "7"}]
    result = _check(STOPS, [{"city": "Oslo"}, {"cty": "Rome"}])
    assert result.missing == ["stops[1].city"]
    assert result.errors["stops[1].cty"] == "stops[1] has no argument 'cty'. Did you mean 'city'?"


def test_array_without_item_type_and_object_without_fields_accept_anything() -> None:
    assert _value(ARRAY, [1, "a", None, {"b": []}]) == [1, "a", None, {"b": []}]
    assert _value(OBJECT, {"anything": [1, {"x": None}]}) == {"anything": [1, {"x": None}]}


# --- properties -------------------------------------------------------------------------------------------------

_tricky_text = st.sampled_from(
    ["5", "5.5", "1e999", "-0", "true", "No", "[1, 2]", '{"a": 1}', "null", "", "  ", "٣", "9" * 400, "[[[[[[[[", "x"]
)
_arguments_values = st.one_of(
    json_values,
    _tricky_text,
    st.integers(),
    st.sampled_from([10**400, -(10**400), float("nan"), float("inf"), float("-inf"), 2.0, -0.0]),
)


@PROPERTY_SETTINGS
@given(st.data())
def test_validate_call_never_raises_on_arbitrary_arguments(data: st.DataObject) -> None:
    spec = data.draw(function_specs())
    known = [a.name for a in spec.arguments] or ["x"]
    arguments = data.draw(st.dictionaries(st.sampled_from(known) | st.text(max_size=5), _arguments_values, max_size=5))
    name = data.draw(st.sampled_from([spec.name, spec.name + "_x"]))
    result = validate_call(FunctionCall(name=name, arguments=arguments), [spec])
    assert isinstance(result, ValidatedCall)
    assert all(isinstance(key, str) and isinstance(message, str) and message for key, message in result.errors.items())
    assert set(result.missing) <= set(result.errors)
    assert result.ok == (result.spec is not None and not result.errors)
    if name != spec.name:
        assert not result.ok and CALL_ERROR_KEY in result.errors


@PROPERTY_SETTINGS
@given(st.data())
def test_valid_calls_are_ok_and_validation_is_idempotent(data: st.DataObject) -> None:
    spec = data.draw(function_specs())
    arguments = data.draw(valid_objects(spec.arguments))
    result = validate_call(FunctionCall(name=spec.name, arguments=arguments), [spec])
    assert result.ok, (arguments, result.errors)
    assert result.missing == []
    for arg in spec.arguments:
        if arg.name in arguments and arg.type in SCALAR_TYPES:
            assert result.arguments[arg.name] == arguments[arg.name]
        elif arg.name not in arguments:
            assert (arg.name in result.arguments) == arg.has_default
    again = validate_call(FunctionCall(name=spec.name, arguments=result.arguments), [spec])
    assert again.ok and again.arguments == result.arguments
