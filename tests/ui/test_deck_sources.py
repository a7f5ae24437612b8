"""Each field of a card says where its value came from; a value found nowhere says to check it."""

from __future__ import annotations

from backend.core.provenance import Provenance
from tests.ui.test_deck import Elements, view
from ui.card_fields import card_fields
from ui.deck import Overlay, deck_html

SOURCES = {
    "order_number": Provenance(kind="user", message_id=3, span=(18, 23), quote="a1001"),
    "email": Provenance(kind="model"),
    "notes[0]": Provenance(kind="tool", call_id="c0", function="lookup_order", quote="fragile"),
    "notes[1]": Provenance(kind="user", quote="ring twice"),
}
ARGUMENTS = {"order_number": "A1001", "email": "https://example.com/1042", "notes": ["fragile", "ring twice"]}


def test_each_field_says_where_its_value_came_from() -> None:
    fields = {f.name: f for f in card_fields(view(arguments=ARGUMENTS, sources=SOURCES))}
    assert fields["order_number"].source == "from the customer: \u201ca1001\u201d"
    assert (fields["email"].source, fields["email"].source_kind) == ("not from the conversation: check it", "model")
    assert fields["notes"].source == "from lookup_order"  # a list takes its least trusted item's source
    assert fields["country"].source == ""  # missing: the card asks for it instead


def test_the_card_shows_sources_inert_and_linked_to_their_controls() -> None:
    html = deck_html([view(arguments=ARGUMENTS, sources={
        **SOURCES, "order_number": Provenance(kind="user", quote='<img src="http://x/leak">')})])
    parsed = Elements(html)
    assert not [attrs for tag, attrs in parsed.tags if tag == "img"]
    notes = [attrs for tag, attrs in parsed.tags if tag == "p" and "cc-source" in (attrs.get("class") or "")]
    assert {attrs["class"] for attrs in notes} >= {"cc-source cc-source-user", "cc-source cc-source-model"}
    text = "".join(parsed.text)
    assert '\u201c<img src="http://x/leak">\u201d' in text and "not from the conversation: check it" in text
    email = next(attrs for tag, attrs in parsed.tags if tag == "input" and attrs.get("name") == "email")
    assert "cc-c1-email-source" in (email.get("aria-describedby") or "")


def test_a_value_the_person_changed_on_the_card_becomes_theirs() -> None:
    overlay = Overlay(arguments={**ARGUMENTS, "email": "ada@example.com"}, errors={"country": "Required."})
    html = deck_html([view(arguments=ARGUMENTS, sources=SOURCES)], overlays={"c1": overlay})
    text = "".join(Elements(html).text)
    assert "edited by a person" in text and "not from the conversation" not in text
    assert "from the customer: \u201ca1001\u201d" in text
