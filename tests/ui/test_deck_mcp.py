"""The deck's MCP parts: where a tool runs and what its server warns about, and a server's question as a card of its
own (a form with typed fields, or a link the person opens). No browser."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from backend.core.specs import FunctionSpec
from backend.engine.events import CallView
from backend.storage.tables import CallStatus
from backend.tools import Elicitation
from tests.ui.test_deck import Elements
from ui.deck import Question, deck_html, deck_value

NOW = datetime(2026, 12, 8, 14, 0, tzinfo=UTC)
SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "description": "Your name"},
        "guests": {"type": "integer"},
        "newsletter": {"type": "boolean", "default": False},
        "size": {"type": "string", "enum": ["S", "M", "L"]},
    },
    "required": ["name"],
}


def asked(**changes: Any) -> Elicitation:
    schema = changes.pop("schema", SCHEMA)
    base: dict[str, Any] = {
        "id": "q1", "server": "shop", "message": "Who is the order for?", "mode": "form", "schema": schema,
        "spec": FunctionSpec.from_any({"name": "elicitation", "parameters": schema}), "url": None, "tool": "order",
        "asked_at": NOW, "expires_at": NOW + timedelta(minutes=10), "warning": None,
    }
    return Elicitation(**{**base, **changes})


def card(**changes: Any) -> CallView:
    base = CallView(id="c1", reply_id="r1", function="wipe", status=CallStatus.PROPOSED, server="test",
                    warning="The server says this tool may delete or overwrite data.")
    return base.model_copy(update=changes)


def test_a_card_names_its_server_and_says_what_the_server_warns_about() -> None:
    text = "".join(Elements(deck_html([card()])).text)
    assert "MCP · test" in text and "⚠️ The server says this tool may delete or overwrite data." in text
    settled = "".join(Elements(deck_html([card(status=CallStatus.SUCCEEDED, result="wiped")])).text)
    assert "MCP · test" in settled and "may delete" not in settled  # the warning is for deciding, before it runs
    plain = "".join(Elements(deck_html([card(server=None, warning=None)])).text)
    assert "MCP" not in plain and "⚠️" not in plain


def test_a_form_question_has_typed_labelled_fields_and_its_three_answers() -> None:
    parsed = Elements(deck_html([], questions=[Question(elicitation=asked(), function="order")]))
    controls = {attrs["name"]: (tag, attrs.get("type")) for tag, attrs in parsed.tags if "data-control" in attrs}
    assert controls == {
        "name": ("input", "text"), "guests": ("input", "text"), "newsletter": ("input", "checkbox"),
        "size": ("select", None),
    }
    labels = {attrs["for"] for tag, attrs in parsed.tags if tag == "label"}
    assert {attrs["id"] for _tag, attrs in parsed.tags if "data-control" in attrs} == labels
    answers = [attrs["data-answer"] for tag, attrs in parsed.tags if tag == "button"]
    assert answers == ["accept", "decline", "cancel"]
    section = next(attrs for tag, attrs in parsed.tags if tag == "section")
    assert section["data-question"] == "q1" and "data-call" not in section  # Confirm's code never sees it
    text = "".join(parsed.text)
    assert "shop asks you" in text and "Who is the order for?" in text and "while order runs" in text
    assert "14:10 UTC" in text  # when Callcard declines for the person


def test_a_question_that_looks_like_it_wants_a_secret_says_so_and_has_no_password_box() -> None:
    schema = {"type": "object", "properties": {"api_key": {"type": "string", "format": "password"}}}
    warning = "This form asks for something that looks like a password or key."
    parsed = Elements(deck_html([], questions=[Question(elicitation=asked(schema=schema, warning=warning),
                                                         function="order")]))
    assert warning in "".join(parsed.text)
    assert [attrs.get("type") for tag, attrs in parsed.tags if tag == "input"] == ["text"]


def test_a_refused_answer_shows_what_was_typed_and_why() -> None:
    question = Question(elicitation=asked(), function="order", values={"guests": "many"},
                        errors={"name": "Required: please answer it.", "guests": "Expected a whole number."},
                        notice="Nothing was sent: check guests, name first.")
    parsed = Elements(deck_html([], questions=[question]))
    text = "".join(parsed.text)
    assert "Nothing was sent: check guests, name first." in text and "Expected a whole number." in text
    assert ("guests", "many") in [(attrs.get("name"), attrs.get("value")) for tag, attrs in parsed.tags]


def test_a_url_question_is_a_link_that_opens_apart_from_the_app() -> None:
    url = "https://auth.example.com/connect?state=abc&x=1"
    parsed = Elements(deck_html([], questions=[Question(elicitation=asked(mode="url", url=url, schema=None, spec=None),
                                                         function="order")]))
    (link,) = [attrs for tag, attrs in parsed.tags if tag == "a"]
    assert link == {"href": url, "target": "_blank", "rel": "noopener noreferrer"}
    assert [attrs["data-answer"] for tag, attrs in parsed.tags if tag == "button"] == ["accept", "decline"]
    assert "Done" in "".join(parsed.text) and not [a for tag, a in parsed.tags if tag == "input"]


def test_a_url_that_is_not_a_web_address_is_never_a_link() -> None:
    for url in ("javascript:alert(1)", "data:text/html,<b>x</b>", "file:///etc/passwd", "//evil.example"):
        elicitation = asked(mode="url", url=url, schema=None, spec=None)
        parsed = Elements(deck_html([], questions=[Question(elicitation=elicitation, function="order")]))
        assert not [attrs for tag, attrs in parsed.tags if tag == "a"], url
        assert [attrs["data-answer"] for tag, attrs in parsed.tags if tag == "button"] == ["decline", "cancel"]


def test_a_question_is_brought_into_view_and_a_value_sent_while_running_keeps_the_deck_busy() -> None:
    value = deck_value([card(status=CallStatus.RUNNING)], questions=[Question(elicitation=asked(), function="wipe")],
                       busy=True)
    assert value["focus"] == "q1" and value["busy"] is True
    assert deck_value([card()])["busy"] is False


hostile = st.text(alphabet=st.sampled_from(list("<>\"'&`${}\\/ =aZ!:")), max_size=30)


@settings(max_examples=200, deadline=None)
@given(hostile, hostile, hostile, hostile)
def test_nothing_a_server_says_becomes_markup(server: str, message: str, field: str, url: str) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string", "description": field}}}
    questions = [
        Question(elicitation=asked(server=server, message=message, schema=schema, warning=field), function=server,
                 values={"answer": message}, errors={"answer": field}, notice=message),
        Question(elicitation=asked(id="q2", server=server, message=message, mode="url", url=url, schema=None,
                                   spec=None), function=server),
        Question(elicitation=asked(id="q3", mode="url", url="https://x.example/" + url, schema=None, spec=None),
                 function=server),
    ]
    html = deck_html([card(server=server, warning=message, function=server)], questions=questions)
    known = {"section", "header", "span", "p", "form", "div", "label", "input", "select", "option", "textarea",
             "details", "summary", "button", "pre", "a", "br"}
    assert {tag for tag, _ in Elements(html).tags} <= known
    assert not re.search(r"<(?!/?(?:" + "|".join(known) + r")[\s>])", html)
    for _tag, attrs in Elements(html).tags:
        assert not attrs.get("href", "https:").lower().lstrip().startswith(("javascript", "data", "//"))
