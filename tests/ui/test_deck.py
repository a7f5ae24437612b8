"""The card deck's HTML and the card fields behind it: what a person sees and what their edits become. No browser."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

from hypothesis import given, settings
from hypothesis import strategies as st

from backend.core.specs import FunctionSpec
from backend.engine.events import CallView
from backend.storage.tables import CallStatus
from ui.card_fields import arguments_from_json, arguments_from_values, card_fields, check_values
from ui.deck import Overlay, Unanswered, deck_html, deck_value

SPEC = FunctionSpec.from_any({
    "function": "update_shipping_address",
    "description": "Change where an order goes.",
    "arguments": [
        {"name": "order_number", "type": "string", "description": "e.g. A1001"},
        {"name": "country", "type": "enum", "enum": ["FR", "DE", "NL"], "description": "ISO code"},
        {"name": "floor", "type": "integer", "description": "", "required": False},
        {"name": "express", "type": "boolean", "description": "", "required": False},
        {"name": "gift", "type": "boolean", "description": "", "required": False, "default": False},
        {"name": "notes", "type": "array", "items": {"type": "string"}, "description": "", "required": False},
        {"name": "extra", "type": "object", "description": "", "required": False},
        {"name": "email", "type": "string", "format": "email", "description": "", "required": False},
    ],
})


def view(**changes: object) -> CallView:
    base = CallView(
        id="c1", reply_id="r1", function=SPEC.name, status=CallStatus.PROPOSED, spec=SPEC,
        proposed_arguments={"order_number": "A1001"}, arguments={"order_number": "A1001"},
        errors={"country": "Required: please provide it."}, missing=["country"],
    )
    return base.model_copy(update=changes)


class Elements(HTMLParser):
    """The start tags of a document, with their attributes, and its text."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_each_argument_gets_the_right_control_and_missing_fields_are_marked() -> None:
    fields = {f.name: f for f in card_fields(view())}
    assert {name: f.widget for name, f in fields.items()} == {
        "order_number": "text", "country": "dropdown", "floor": "integer", "express": "tristate",
        "gift": "checkbox", "notes": "lines", "extra": "json", "email": "text",
    }
    assert fields["country"].missing and fields["country"].required and fields["country"].label == "country *"
    assert [c.label for c in fields["country"].choices] == ["FR", "DE", "NL"]
    assert fields["email"].input_type == "email" and fields["email"].placeholder == "name@example.com"
    assert fields["express"].value == "" and fields["gift"].value is False


def test_a_wrong_value_from_the_model_stays_visible() -> None:
    fields = {f.name: f for f in card_fields(view(arguments={"floor": "four", "country": "Germany"}))}
    assert fields["floor"].value == "four"
    assert [c.label for c in fields["country"].choices][-1] == "Germany (not one of the choices)"
    assert fields["country"].value == json.dumps("Germany")


def test_what_a_person_types_becomes_arguments_and_is_validated_before_anything_runs() -> None:
    current = view()
    values = {
        "order_number": "A1001", "country": json.dumps("DE"), "floor": "3", "express": "true", "gift": True,
        "notes": "leave at door\n\nring twice", "extra": '{"code": 1234}', "email": " ana@example.com ",
    }
    arguments, problems = arguments_from_values(current, values)
    assert problems == {}
    assert arguments == {
        "order_number": "A1001", "country": "DE", "floor": 3, "express": True, "gift": True,
        "notes": ["leave at door", "ring twice"], "extra": {"code": 1234}, "email": " ana@example.com ",
    }
    _typed, _normalised, errors = check_values(current, {
        "order_number": "", "country": "", "floor": "four", "express": "", "gift": False, "notes": "",
        "extra": "{not json", "email": "ana.silva(at)example",
    })
    assert {"order_number", "country", "floor", "extra", "email"} <= set(errors)
    assert "not valid JSON" in errors["extra"]


def test_edit_as_json_accepts_only_an_object() -> None:
    assert arguments_from_json('{"order_number": "A1"}') == ({"order_number": "A1"}, None)
    assert arguments_from_json("[1, 2]")[1] is not None
    assert "not valid JSON" in (arguments_from_json("{oops")[1] or "")


def test_an_open_card_has_labelled_controls_and_its_two_buttons() -> None:
    parsed = Elements(deck_html([view()]))
    controls = {attrs["id"]: tag for tag, attrs in parsed.tags if "data-control" in attrs}
    labels = {attrs["for"] for tag, attrs in parsed.tags if tag == "label"}
    assert set(controls) == labels, "every control has a label (people and tests find fields by it)"
    actions = [attrs["data-action"] for tag, attrs in parsed.tags if tag == "button" and "data-action" in attrs]
    assert actions == ["apply_json", "confirm", "reject"]
    assert "❓ The model asks for the country." in "".join(parsed.text)


def test_a_refused_confirm_shows_what_was_typed_and_why_nothing_ran() -> None:
    overlay = Overlay(arguments={"order_number": "A1001", "floor": "four"}, errors={"floor": "Expected a whole number."},
                      notice="Nothing ran: check floor first.")
    parsed = Elements(deck_html([view()], overlays={"c1": overlay}))
    text = "".join(parsed.text)
    assert "Nothing ran: check floor first." in text and "Expected a whole number." in text
    assert ("input", "four") in [(tag, attrs.get("value")) for tag, attrs in parsed.tags]


def test_settled_cards_show_outcome_and_reason() -> None:
    cards = [
        view(id="a", status=CallStatus.SUCCEEDED, result={"ok": True}, errors={}, missing=[]),
        view(id="b", status=CallStatus.REJECTED, reject_reason="The customer called back.", errors={}, missing=[]),
        view(id="c", status=CallStatus.SKIPPED, errors={}, missing=[]),
    ]
    text = "".join(Elements(deck_html(cards)).text)
    assert '"ok": true' in text and "Reason: The customer called back." in text and "you wrote a new message" in text


def test_the_unanswered_panel_offers_retry_edit_and_remove() -> None:
    parsed = Elements(deck_html([], unanswered=Unanswered(text="hello", error="Shorten it, or start a new conversation.")))
    actions = [attrs["data-action"] for tag, attrs in parsed.tags if "data-action" in attrs]
    assert actions == ["retry", "edit", "remove"]


def test_every_value_is_new_and_names_the_card_to_bring_into_view() -> None:
    first, second = deck_value([view()]), deck_value([view()])
    assert first["serial"] != second["serial"] and first["focus"] == "c1"
    assert deck_value([view(status=CallStatus.SUCCEEDED)])["focus"] is None


hostile = st.text(alphabet=st.sampled_from(list("<>\"'&`${}\\/ =aZ!")), max_size=30)


@settings(max_examples=200, deadline=None)
@given(hostile, hostile, hostile, hostile)
def test_nothing_from_a_model_or_tool_becomes_markup(function: str, value: str, result: str, reason: str) -> None:
    spec = FunctionSpec.from_any({"function": "f", "arguments": [{"name": "a", "type": "string", "description": value}]})
    cards = [
        view(id="o", function=function, spec=spec, arguments={"a": value}, description=value, errors={"a": value}),
        view(id="s", function=function, status=CallStatus.SUCCEEDED, result=result, errors={}, missing=[]),
        view(id="r", function=function, status=CallStatus.REJECTED, reject_reason=reason, errors={}, missing=[]),
    ]
    html = deck_html(cards, unanswered=Unanswered(text=value, error=reason))
    # The deck's template is a JS template literal over the value: ${ in the value is data, never code; but the
    # HTML itself must hold no tag or attribute that came from the text.
    known = {"section", "header", "span", "p", "form", "div", "label", "input", "select", "option", "textarea",
             "details", "summary", "button", "pre"}
    assert {tag for tag, _ in Elements(html).tags} <= known
    assert not re.search(r"<(?!/?(?:" + "|".join(known) + r")[\s>])", html)
