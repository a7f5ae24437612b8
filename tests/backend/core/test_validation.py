"""Argument validation: safe coercions only, enums, string formats, defaults, missing and unknown arguments, paths."""

from __future__ import annotations

import datetime
import ipaddress
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.core.calls import FunctionCall
from backend.core.specs import ArgumentSpec, FunctionSpec
from backend.core.validation import (
    CALL_ERROR_KEY,
    VALIDATED_FORMATS,
    ValidatedCall,
    check_format,
    top_field,
    validate_arguments,
    validate_call,
)
from tests.backend.core.strategies import SCALAR_TYPES, function_specs, json_values, valid_objects

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


# -- string formats ------------------------------------------------------------------------------------------------

FORMAT_CASES = {
    "email": (["ana.silva@example.com", "a.b+tag@mail.example.co.uk", "jürgen@bücher.de"],
              ["ana.silva(at)example", "ana.silva@example", "ana silva@example.com", "a@@example.com",
               "a@example..com", "@example.com", "a@.example.com", "Ana <ana@example.com>", "a@example.c"],
              "Expected an e-mail address like name@example.com."),
    "date": (["2026-03-01", "2024-02-29", "0001-01-01"],
             ["2026-3-1", "01/03/2026", "20260301", "2026-03-01T10:00", "March 1st", "٢٠٢٦-٠٣-٠١"],
             "Expected a date as YYYY-MM-DD, like 2026-03-01."),
    "date-time": (["2026-03-01T14:30:00Z", "2026-03-01T14:30:00.123+01:00", "2026-03-01 14:30", "2026-03-01T14:30:00"],
                  ["2026-03-01", "2026-03-01T25:00", "2026-03-01T14:30:00+1", "tomorrow at 3"],
                  "Expected a date and time as YYYY-MM-DDTHH:MM:SS, like 2026-03-01T14:30:00Z."),
    "time": (["14:30", "14:30:00", "23:59:59.5Z", "08:00:00-05:00"],
             ["24:00", "2pm", "14h30", "14:60", "1430"],
             "Expected a time as HH:MM or HH:MM:SS, like 14:30 or 14:30:00+01:00."),
    "uri": (["https://example.com/page?q=1#top", "http://127.0.0.1:8080/", "ftp://[2001:db8::1]/file"],
            ["example.com/page", "/page", "mailto:ana@example.com", "https://", "https://exa mple.com",
             "http://example.com:99999/", "https://[::1/"],
            "Expected an absolute URL with a scheme and a host, like https://example.com/page."),
    "uuid": (["123e4567-e89b-12d3-a456-426614174000", "123E4567-E89B-12D3-A456-426614174000"],
             ["123e4567e89b12d3a456426614174000", "{123e4567-e89b-12d3-a456-426614174000}", "not-a-uuid"],
             "Expected a UUID like 123e4567-e89b-12d3-a456-426614174000."),
    "ipv4": (["192.168.0.1", "0.0.0.0"], ["256.1.1.1", "01.2.3.4", "1.2.3", "::1"],
             "Expected an IPv4 address like 192.168.0.1."),
    "ipv6": (["2001:db8::1", "::1", "::ffff:192.168.0.1"], ["192.168.0.1", "2001:db8:::1", "gggg::1"],
             "Expected an IPv6 address like 2001:db8::1."),
}


@pytest.mark.parametrize("format_name", FORMAT_CASES)
def test_each_validated_format_accepts_its_text_and_says_what_it_expects_otherwise(format_name: str) -> None:
    good, bad, message = FORMAT_CASES[format_name]
    arg = ArgumentSpec(name="x", format=format_name)
    for value in good:
        assert _value(arg, value) == value
    for value in bad:
        assert _error(arg, value) == message, value
    assert VALIDATED_FORMATS >= set(FORMAT_CASES)


def test_the_user_reports_e_mail_is_refused_and_a_real_one_passes_without_its_spaces() -> None:
    email = ArgumentSpec(name="email", format="email")
    assert _error(email, "ana.silva(at)example") == "Expected an e-mail address like name@example.com."
    assert _value(email, "  ana.silva@example.com\n") == "ana.silva@example.com"


def test_a_day_the_month_does_not_have_is_named() -> None:
    assert _error(ArgumentSpec(name="d", format="date"), "2026-02-30") == "There is no date 2026-02-30 in the calendar."
    assert _error(ArgumentSpec(name="d", format="date-time"), "2023-02-29T10:00") == (
        "There is no date 2023-02-29 in the calendar."
    )


def test_unknown_formats_and_formats_of_other_types_are_annotations_only() -> None:
    assert _value(ArgumentSpec(name="h", format="hostname"), " any text ") == " any text "
    assert _value(ArgumentSpec(name="n", type="integer", format="int32"), "42") == 42
    assert check_format("made-up", "whatever") == ("whatever", None)


def test_formats_apply_to_null_items_and_fields_as_to_any_string() -> None:
    nullable = ArgumentSpec(name="cc", format="email", nullable=True)
    assert _check(nullable, None).ok
    emails = ArgumentSpec(name="to", type="array", items=ArgumentSpec(format="email"))
    result = _check(emails, ["a@example.com", "b(at)example.com"])
    assert result.errors == {"to[1]": "Expected an e-mail address like name@example.com."}
    contact = ArgumentSpec(name="contact", type="object", properties=[ArgumentSpec(name="email", format="email")])
    assert _value(contact, {"email": " a@example.com "}) == {"email": "a@example.com"}
    # An enum is its own check: its values are the author's, whatever they look like.
    assert _value(ArgumentSpec(name="e", format="email", enum=["support"]), "support") == "support"


_EXAMPLES = st.sampled_from(["2026-03-01", "14:30", "a@example.com", "https://example.com", "::1", "10.0.0.1"])


@PROPERTY_SETTINGS
@given(format_name=st.sampled_from(sorted(VALIDATED_FORMATS)), text=st.text(max_size=40) | _EXAMPLES)
def test_a_format_check_never_raises_and_only_ever_trims_what_it_accepts(format_name: str, text: str) -> None:
    checked, problem = check_format(format_name, text)
    if problem is None:
        assert checked == text.strip() and check_format(format_name, checked) == (checked, None)
    else:
        assert checked == text and problem.endswith(".") and problem[0].isupper()
    if format_name == "email" and "@" not in text:
        assert problem is not None


_OFFSETS = st.integers(-(23 * 60 + 59), 23 * 60 + 59).map(lambda m: datetime.timezone(datetime.timedelta(minutes=m)))


@PROPERTY_SETTINGS
@given(
    day=st.dates(),
    moment=st.datetimes(timezones=st.none() | _OFFSETS),
    clock=st.times(timezones=st.none() | _OFFSETS),
    identifier=st.uuids(),
    v4=st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address),
    v6=st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address),
    email=st.emails(),
)
def test_what_python_writes_for_each_format_passes(
    day: datetime.date, moment: datetime.datetime, clock: datetime.time, identifier: uuid.UUID,
    v4: ipaddress.IPv4Address, v6: ipaddress.IPv6Address, email: str,
) -> None:
    written = {
        "date": day.isoformat(), "date-time": moment.isoformat(), "time": clock.isoformat(),
        "uuid": str(identifier), "ipv4": str(v4), "ipv6": str(v6), "email": email,
    }
    for format_name, text in written.items():
        assert check_format(format_name, text) == (text, None), (format_name, text)
    assert check_format("ipv6", str(v4))[1] is not None and check_format("ipv4", str(v6))[1] is not None


@pytest.mark.parametrize(
    ("key", "top"),
    [("city", "city"), ("address.city", "address"), ("tags[0]", "tags"), ("items[1].name", "items"), ("", "")],
)
def test_top_field_names_the_argument_an_error_key_is_about(key: str, top: str) -> None:
    assert top_field(key) == top
