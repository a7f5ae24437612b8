"""Provenance: values people wrote are found however they wrote them; values nobody wrote are never grounded."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from backend.core.provenance import Evidence, Provenance, trace_arguments, ungrounded_required
from backend.core.specs import FunctionSpec


def _user(text: str, message_id: int = 1) -> Evidence:
    return Evidence(kind="user", text=text, message_id=message_id)


def _source(value: object, *texts: str) -> Provenance:
    evidence = [_user(text, message_id=index) for index, text in enumerate(texts, start=1)]
    return trace_arguments({"value": value}, evidence)["value"]


@pytest.mark.parametrize(
    ("value", "text", "quote"),
    [
        (1042, "Where is my order 1,042?", "1,042"),
        ("1042", "Where is my order 1,042?", "1,042"),
        (1042.0, "order 1042 please", "1042"),
        (3, "I need three boxes", "three"),
        ("john.doe@example.com", "Mail John.Doe@Example.COM please", "John.Doe@Example.COM"),
        ("+15551234567", "call me on (555) 123-4567", "(555) 123-4567"),
        ("555 123 4567", "my number is +1-555-123-4567.", "+1-555-123-4567"),
        ("2024-03-05", "I ordered it on 5 March 2024.", "5 March 2024"),
        ("2024-03-05", "ordered March 5th, 2024", "March 5th, 2024"),
        ("2024-03-05", "ordered 05/03/2024", "05/03/2024"),
        ("San Francisco, CA", "Weather in san francisco ca today?", "san francisco ca"),
        ("Ann  Lee", "I'm ann lee.", "ann lee"),
        ("A1001", "Where is order A1001?", "A1001"),
    ],
)
def test_what_people_wrote_is_found_however_they_wrote_it(value: object, text: str, quote: str) -> None:
    source = _source(value, text)
    assert source.kind == "user" and source.message_id == 1 and source.quote == quote
    assert source.span is not None and text[source.span[0] : source.span[1]] == quote


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("https://www.example.com/email/1042", "Where is my order 1042?"),  # the demo model's invention
        ("A1", "Where is order A1001?"),  # part of a word is not the word
        (1042, "Where is order A1042?"),
        (104, "order 1042"),
        ("john@example.com", "I'm John, I shop at example.com"),
        ("2024-05-03", "I ordered it on 5 March 2024."),
        ("2024-03-05", "I ordered it on March 5."),  # no year was given: the model chose one
        ("2024-03-05T10:00:00", "ordered 05/03/2024"),  # nor a time
        ("5551234567", "order 5551234"),
        (True, "yes please, express shipping"),  # a yes/no is the model's reading, never a quote
        ("", "anything"),
        ("!!!", "!!!"),
    ],
)
def test_what_nobody_wrote_is_the_models(value: object, text: str) -> None:
    assert _source(value, text).kind == "model"


def test_the_newest_user_message_is_credited_then_tool_results_then_the_default() -> None:
    spec = FunctionSpec.model_validate(
        {"name": "ship", "arguments": [{"name": "speed", "type": "string", "required": False, "default": "standard", "has_default": True}]}
    )
    evidence = [
        _user("Send A1001 please", message_id=1),
        Evidence(kind="tool", text='{"order": "A1001", "customer": "Ann Lee"}', call_id="c1", function="lookup_order"),
        _user("Yes, A1001, to Paris", message_id=3),
    ]
    traced = trace_arguments({"order": "A1001", "name": "Ann Lee", "speed": "standard", "city": "Oslo"}, evidence, spec)
    assert traced["order"].kind == "user" and traced["order"].message_id == 3
    assert traced["name"] == Provenance(kind="tool", call_id="c1", function="lookup_order", quote="Ann Lee")
    assert traced["speed"].kind == "default"
    assert traced["city"].kind == "model"


def test_each_item_of_a_list_and_field_of_an_object_has_its_own_source() -> None:
    traced = trace_arguments(
        {"items": ["mug", "kettle"], "address": {"city": "Paris", "zip": "75001"}, "note": None},
        [_user("Two things: a mug and a teapot, to Paris 75001")],
    )
    assert {key: source.kind for key, source in traced.items()} == {
        "items[0]": "user", "items[1]": "model", "address.city": "user", "address.zip": "user",
    }


def test_required_values_found_nowhere_are_listed_for_asking() -> None:
    spec = FunctionSpec.model_validate({
        "name": "update_address",
        "arguments": [
            {"name": "order_number", "type": "string"},
            {"name": "address", "type": "object", "properties": [{"name": "city", "type": "string"}]},
            {"name": "note", "type": "string", "required": False},
        ],
    })
    traced = trace_arguments(
        {"order_number": "A1001", "address": {"city": "A1001"}, "note": "gift"}, [_user("Update order A1001")], spec,
    )
    assert ungrounded_required(spec, traced) == []
    traced = trace_arguments(
        {"order_number": "A1001", "address": {"city": "Paris"}, "note": "gift"}, [_user("Update order A1001")], spec,
    )
    assert ungrounded_required(spec, traced) == ["address"]


# -- properties ----------------------------------------------------------------------------------------------------

_word = st.text(st.sampled_from("abcdefghij"), min_size=1, max_size=8)
_other_word = st.text(st.sampled_from("klmnopqrst"), min_size=1, max_size=8)
_separator = st.sampled_from([" ", ", ", "  ", " - ", "\n", "; "])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_word, _separator), min_size=1, max_size=12), st.data())
def test_any_run_of_words_from_a_message_is_found_there(words: list[tuple[str, str]], data: st.DataObject) -> None:
    text = "".join(word + separator for word, separator in words)
    start = data.draw(st.integers(0, len(words) - 1))
    end = data.draw(st.integers(start + 1, len(words)))
    value = " ".join(word.upper() for word, _ in words[start:end])
    source = _source(value, text)
    assert source.kind == "user" and source.span is not None
    assert source.quote is not None and source.quote.casefold().split()[0].strip(",;-") == words[start][0]


@settings(max_examples=200, deadline=None)
@given(st.lists(_word, min_size=1, max_size=12), st.lists(_other_word, min_size=1, max_size=3), st.data())
def test_a_value_with_a_word_nobody_wrote_is_never_grounded(
    words: list[str], invented: list[str], data: st.DataObject,
) -> None:
    text = " ".join(words)
    start = data.draw(st.integers(0, len(words) - 1))
    value_words = [*words[start : start + 3]]
    value_words.insert(data.draw(st.integers(0, len(value_words))), invented[0])
    assert _source(" ".join(value_words), text, text.upper()).kind == "model"


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=10**9), st.sampled_from(["{:,}", "{}", "{:,}.00"]))
def test_a_number_is_found_with_or_without_thousands_separators(number: int, form: str) -> None:
    text = f"Order {form.format(number)} is late."
    assert _source(number, text).kind == "user"
    assert _source(str(number), text).kind == "user"
    assume(number > 0)
    assert _source(number + 1, text).kind == "model"


@settings(max_examples=200, deadline=None)
@given(
    st.dates(min_value=date(1990, 1, 1), max_value=date(2090, 12, 31)),
    st.sampled_from(["{d.day} {month} {d.year}", "{month} {d.day}, {d.year}", "{d:%Y-%m-%d}", "{d.day}th of {month} {d.year}"]),
)
def test_a_date_is_found_however_it_is_written(day: date, form: str) -> None:
    text = "It was ordered on " + form.format(d=day, month=day.strftime("%B")) + "."
    assert _source(day.isoformat(), text).kind == "user"
    other = day.replace(year=day.year + 1)
    assert _source(other.isoformat(), text).kind == "model"
