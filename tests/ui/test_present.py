"""The pure half of the UI: engine events -> chat messages, calls -> card fields, and back. No browser, no gradio."""

from __future__ import annotations

import csv
import io

from backend.engine import CallProposed, CallUpdated, CallView, Done, ErrorEvent, PreparingCall, ReplyText, Token
from backend.llm import ModelInfo
from backend.specs import FunctionSpec
from backend.store import CallStatus
from ui.present import (
    NOT_SET,
    ChatStream,
    arguments_from_fields,
    arguments_from_json,
    audit_csv,
    call_message,
    card_fields,
    check_fields,
    format_result,
    md_code,
    md_text,
    status_markdown,
)

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
    ],
})


def view(**changes: object) -> CallView:
    base = CallView(
        id="c1", reply_id="r1", function=SPEC.name, status=CallStatus.PROPOSED, spec=SPEC,
        proposed_arguments={"order_number": "A1001"}, arguments={"order_number": "A1001"},
        errors={"country": "Required: please provide it."}, missing=["country"],
    )
    return base.model_copy(update=changes)


def test_a_streamed_call_shows_preparing_then_a_card_message_never_raw_json() -> None:
    chat = ChatStream()
    chat.add_user("Send A1001 to Berlin")
    for event in (PreparingCall(), ReplyText(text=""), CallProposed(call=view()), Done(awaiting_confirmation=True)):
        chat.apply(event)

    messages = chat.chat
    assert messages[0] == {"role": "user", "content": "Send A1001 to Berlin"}
    assert not any("Preparing" in str(m.get("metadata", {}).get("title", "")) for m in messages), "replaced by the call"
    call = messages[-1]
    assert "update\\_shipping\\_address" in call["metadata"]["title"] or "update_shipping_address" in call["metadata"]["title"]
    assert call["metadata"]["status"] == "pending" and "waiting for your confirmation" in call["metadata"]["title"]
    assert '"order_number": "A1001"' in call["content"]
    assert chat.awaiting_confirmation


def test_tokens_stream_into_one_message_and_the_final_text_replaces_them() -> None:
    chat = ChatStream()
    chat.add_user("hi")
    for piece in ("Hel", "lo ", "there"):
        chat.apply(Token(text=piece))
    assert chat.chat[-1] == {"role": "assistant", "content": "Hello there"}
    chat.apply(ReplyText(text="Hello there!"))
    assert chat.chat[-1]["content"] == "Hello there!"


def test_an_error_is_readable_and_retryable_and_the_users_message_stays() -> None:
    chat = ChatStream()
    chat.add_user("Where is my order?")
    chat.apply(ErrorEvent(message="The model server is overloaded — try again in a moment.", retryable=True))
    chat.apply(Done())
    assert chat.retryable and "overloaded" in (chat.error or "")
    assert chat.chat[0]["content"] == "Where is my order?"


def test_a_settled_call_message_shows_the_edit_and_the_result() -> None:
    done = view(
        status=CallStatus.SUCCEEDED, arguments={"order_number": "A1002", "country": "DE"}, edited=True,
        result={"ok": True}, duration_ms=1234.0, errors={}, missing=[],
    )
    message = call_message(done)
    assert "Proposed by the model" in message["content"] and "Edited and confirmed" in message["content"]
    assert '"A1002"' in message["content"] and '"ok": true' in message["content"]
    assert message["metadata"]["status"] == "done" and message["metadata"]["duration"] == 1.234


def test_each_argument_gets_the_right_widget_and_missing_fields_are_marked() -> None:
    fields = {f.name: f for f in card_fields(view())}
    assert {name: f.widget for name, f in fields.items()} == {
        "order_number": "text", "country": "dropdown", "floor": "integer", "express": "tristate",
        "gift": "checkbox", "notes": "lines", "extra": "json",
    }
    assert fields["country"].missing and fields["country"].required and fields["country"].label == "country *"
    assert [value for _, value in fields["country"].choices] == ["FR", "DE", "NL"]
    assert fields["order_number"].value == "A1001" and fields["order_number"].help == "e.g. A1001"
    assert fields["express"].value == NOT_SET and fields["gift"].value is False


def test_card_values_become_arguments_and_are_validated_before_anything_runs() -> None:
    current = view()
    values = ["A1001", "DE", 3.0, "true", True, "leave at door\n\nring twice", '{"code": 1234}']
    arguments, problems = arguments_from_fields(current, values)
    assert problems == {}
    assert arguments == {
        "order_number": "A1001", "country": "DE", "floor": 3, "express": True, "gift": True,
        "notes": ["leave at door", "ring twice"], "extra": {"code": 1234},
    }
    normalised, errors = check_fields(current, ["", None, None, NOT_SET, False, "", "{not json"])
    assert "order_number" in errors and "country" in errors
    assert "not valid JSON" in errors["extra"]


def test_edit_as_json_accepts_only_an_object() -> None:
    assert arguments_from_json('{"order_number": "A1"}') == ({"order_number": "A1"}, None)
    assert arguments_from_json("[1, 2]")[1] is not None
    assert "not valid JSON" in (arguments_from_json("{oops")[1] or "")


def test_model_text_is_made_inert_before_it_reaches_markdown() -> None:
    hostile = '<img src=x onerror="window.__pwned=1"> [click](javascript:alert(1))'
    escaped = md_text(hostile)
    assert escaped.count("\\<") == hostile.count("<"), "every < is escaped, so Markdown shows it as text"
    assert "](" not in escaped and "\\]\\(" in escaped, "no live link"
    assert md_code("a `tick` <b>") == "``a `tick` <b>``", "a code span longer than any backtick run inside"


def test_long_results_are_folded() -> None:
    assert format_result({"a": 1})[1] is False
    assert format_result(list(range(500)))[1] is True


def test_the_demo_model_is_called_a_demo_and_says_how_to_use_a_real_server() -> None:
    info = ModelInfo(backend="embedded", model_id="SmolLM2-135M-Instruct", demo=True, call_mode="grammar")
    text = status_markdown(info, True)
    assert "CALLCARD_ENDPOINT" in text and "demo" in text.lower()
    assert "TGI" in status_markdown(ModelInfo(backend="tgi", model_id="m"), False)


def test_audit_csv_cannot_smuggle_spreadsheet_formulas() -> None:
    text = audit_csv([["2026-11-23", "ann", "=HYPERLINK(\"http://evil\")", "lookup_order"]])
    rows = list(csv.reader(io.StringIO(text)))
    assert not rows[-1][2].startswith("=")
