"""The flows people use, in headless Chromium against the real app, a real SQLite file and the fake TGI server.

Set CALLCARD_SCREENSHOTS=docs/screenshots to (re)write the README's screenshots from the main flow.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backend.store import CallStatus, FunctionCallRecord
from tests.fake_tgi import FakeTGI, Reply
from tests.ui.conftest import PASSWORDS, SCREENSHOTS, RunningApp, call_text, drain, script_call

expect = pytest.importorskip("playwright.sync_api").expect

TIMEOUT_MS = 15_000
expect.set_options(timeout=TIMEOUT_MS)


class Watched:
    """A page, the dialogs it tried to open (none may: a dialog would mean injected script ran), and its streams.

    Gradio 6.31 can lose an event submitted in the instant its previous event's stream closes (its updates wait
    for the next event), which a person never hits but Playwright does: `settle()` waits for the streams to close.
    """

    def __init__(self, page: Any) -> None:
        self.page = page
        self.dialogs: list[str] = []
        self._streams = 0
        page.on("dialog", self._dialog)
        page.on("request", lambda request: self._count(request, 1))
        page.on("requestfinished", lambda request: self._count(request, -1))
        page.on("requestfailed", lambda request: self._count(request, -1))

    def settle(self) -> None:
        """Wait until no event stream has been open for 300 ms (follow-up events start just after a stream ends)."""
        quiet = 0
        for _ in range(400):
            quiet = quiet + 1 if self._streams <= 0 else 0
            if quiet >= 6:
                return
            self.page.wait_for_timeout(50)

    def _count(self, request: Any, change: int) -> None:
        if "/queue/data" in request.url:
            self._streams += change

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()


@pytest.fixture
def watched(browser: Any, app: RunningApp) -> Iterator[Watched]:
    """A fresh browser context (its own localStorage) on the open app, ready for a new conversation."""
    drain(app.fake)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.goto(app.url)
    expect(page.get_by_text("logins are off")).to_be_visible()
    page.get_by_role("button", name="➕ New conversation", exact=True).click()
    expect(page.get_by_text("Ask something.")).to_be_visible()
    yield Watched(page)
    context.close()


def send(watched: Watched, text: str) -> None:
    watched.settle()
    box = watched.page.locator("#cc-input textarea")
    box.fill(text)
    box.press("Enter")


def click(watched: Watched, locator: Any) -> None:
    watched.settle()
    locator.click()


def confirm_buttons(page: Any) -> Any:
    return page.get_by_role("button", name="Confirm", exact=True)


def newest_calls(app: RunningApp, user: str = "local") -> list[FunctionCallRecord]:
    conversation = app.engine.list_conversations(user)[0]
    return app.store.calls(conversation_id=conversation.id)


def shot(page: Any, name: str) -> None:
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOTS) / name), full_page=True)


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
    send(watched, "Book a table at Chez Marie for 4 people, thai food, outside")

    expect(page.get_by_text("Preparing a function call")).to_be_visible()
    expect(page.get_by_text('{"function"')).to_have_count(0)
    expect(confirm_buttons(page)).to_be_visible()
    expect(page.get_by_text("I can book that for you.")).to_be_visible()
    guests = page.get_by_label("guests *")
    expect(guests).to_have_value("4")
    expect(page.get_by_label("cuisine *")).to_have_value("thai")
    expect(page.get_by_label("outdoor *")).to_be_checked()
    expect(page.get_by_label("dishes *")).to_have_value("pad thai\ngreen curry")
    guests.fill("6")
    page.get_by_label("budget *").fill("42.5")
    shot(page, "chat-with-card.png")

    click(watched, confirm_buttons(page))
    expect(page.get_by_text("Your table at Chez Marie is booked for 6 people, outside.")).to_be_visible()
    card = page.locator(".cc-card-succeeded")
    expect(card).to_contain_text("Result")
    expect(card).to_contain_text('"guests": 6')
    expect(confirm_buttons(page)).to_have_count(0)
    shot(page, "after-confirm.png")

    [record] = newest_calls(app)
    assert record.status == CallStatus.SUCCEEDED
    assert record.final_arguments["guests"] == 6 and record.final_arguments["budget"] == 42.5
    assert record.proposed_arguments["guests"] == 4 and record.edited_arguments is not None
    assert watched.dialogs == []


def test_reject_with_a_reason(watched: Watched, app: RunningApp) -> None:
    page = watched.page
    script_call(app.fake, ("cancel_order", {"order_number": "A1002", "reason": "changed my mind"}))
    app.fake.reply("All right: order A1002 stays as it is.")
    send(watched, "Cancel order A1002")
    expect(confirm_buttons(page)).to_be_visible()
    page.get_by_placeholder("Reason for rejecting (optional; the model is told)").fill("The customer called back.")
    click(watched, page.get_by_role("button", name="Reject", exact=True))

    expect(page.get_by_text("All right: order A1002 stays as it is.")).to_be_visible()
    expect(page.locator(".cc-card-rejected")).to_contain_text("The customer called back.")
    [record] = newest_calls(app)
    assert record.status == CallStatus.REJECTED and record.reject_reason == "The customer called back."
    assert "The customer called back." in app.fake.generations[-1].prompt


def test_a_missing_field_is_asked_for_and_nothing_runs_until_it_is_filled(watched: Watched, app: RunningApp) -> None:
    page = watched.page
    script_call(app.fake, ("lookup_order", {}))
    app.fake.reply("Order A1001 has shipped.")
    send(watched, "Where is my order?")

    field = page.get_by_label("order number *")
    expect(field).to_have_value("")
    expect(page.locator(".cc-missing-input")).to_have_count(1)
    expect(page.locator(".cc-card").get_by_text("The model asks for the order number")).to_be_visible()
    click(watched, confirm_buttons(page))
    expect(page.get_by_text("Nothing ran: check order number first.")).to_be_visible()
    assert newest_calls(app)[0].status == CallStatus.PROPOSED

    field.fill("A1001")
    click(watched, confirm_buttons(page))
    expect(page.get_by_text("Order A1001 has shipped.")).to_be_visible()
    [record] = newest_calls(app)
    assert record.status == CallStatus.SUCCEEDED and record.final_arguments == {"order_number": "A1001"}


def test_invalid_json_in_a_list_of_objects_is_shown_inline(watched: Watched, app: RunningApp) -> None:
    page = watched.page
    script_call(app.fake, ("echo_note", {"text": "hello"}))
    send(watched, "Note hello")
    expect(confirm_buttons(page)).to_be_visible()
    page.get_by_text("Edit as JSON", exact=True).click()
    editor = page.locator(".cc-card .cm-content").last
    editor.fill('{"text": "hello", "colour": "blue"')
    click(watched, page.get_by_role("button", name="Apply JSON to the fields", exact=True))
    expect(page.get_by_text("This is not valid JSON")).to_be_visible()
    editor.fill('{"text": "hello", "colour": "blue"}')
    click(watched, page.get_by_role("button", name="Apply JSON to the fields", exact=True))
    expect(page.get_by_text("echo_note has no argument 'colour'.")).to_be_visible()
    assert newest_calls(app)[0].status == CallStatus.PROPOSED


def test_several_calls_in_one_reply_settle_one_by_one(watched: Watched, app: RunningApp) -> None:
    page = watched.page
    script_call(
        app.fake, ("lookup_order", {"order_number": "A1001"}), ("lookup_order", {"order_number": "A1003"}),
        prose="I will look both up.",
    )
    app.fake.reply("A1001 has shipped and A1003 was delivered.")
    send(watched, "Where are orders A1001 and A1003?")

    expect(confirm_buttons(page)).to_have_count(2)
    click(watched, confirm_buttons(page).first)
    expect(page.locator(".cc-card-succeeded")).to_have_count(1)
    expect(confirm_buttons(page)).to_have_count(1)
    assert app.fake.pending == 1  # no answer until every call of the reply is settled
    click(watched, confirm_buttons(page))
    expect(page.get_by_text("A1001 has shipped and A1003 was delivered.")).to_be_visible()
    expect(page.locator(".cc-card-succeeded")).to_have_count(2)
    assert [r.status for r in newest_calls(app)] == [CallStatus.SUCCEEDED, CallStatus.SUCCEEDED]


def test_a_reload_finds_the_conversation_and_its_open_card(watched: Watched, app: RunningApp) -> None:
    page = watched.page
    script_call(app.fake, ("list_orders", {"email": "ada@example.com"}))
    send(watched, "Which orders does ada@example.com have?")
    expect(confirm_buttons(page)).to_be_visible()

    page.reload()
    chat = page.locator("#cc-chat")
    expect(chat.get_by_text("Which orders does ada@example.com have?")).to_be_visible()
    expect(confirm_buttons(page)).to_be_visible()
    expect(page.get_by_label("email *")).to_have_value("ada@example.com")
    expect(page.locator("#cc-conversations").get_by_label("Which orders does ada@example.com have?")).to_be_checked()


def test_sidebar_rename_switch_export_delete(watched: Watched, app: RunningApp, tmp_path: Path) -> None:
    page = watched.page
    page.get_by_text("This conversation", exact=True).click()
    title = page.get_by_label("Title", exact=True)
    app.fake.reply("Hello there!")
    send(watched, "First conversation")
    expect(page.get_by_text("Hello there!")).to_be_visible()
    expect(title).to_have_value("First conversation")
    watched.settle()
    title.fill("Renamed chat")
    click(watched, page.get_by_role("button", name="Rename", exact=True))
    conversations = page.locator("#cc-conversations")
    expect(conversations.get_by_label("Renamed chat", exact=True)).to_be_checked()

    click(watched, page.get_by_role("button", name="➕ New conversation", exact=True))
    expect(page.get_by_text("Ask something.")).to_be_visible()
    watched.settle()
    conversations.get_by_label("Renamed chat", exact=True).check()
    expect(page.get_by_text("Hello there!")).to_be_visible()

    click(watched, page.get_by_role("button", name="Export as JSON", exact=True))
    link = page.get_by_role("row", name=re.compile(r"^callcard-Renamed-chat-\w+\.json")).get_by_role("link")
    with page.expect_download() as download:
        link.click()
    saved = tmp_path / "export.json"
    download.value.save_as(saved)
    exported = json.loads(saved.read_text())
    assert exported["conversation"]["title"] == "Renamed chat"
    assert [m["content"] for m in exported["messages"]] == ["First conversation", "Hello there!"]

    click(watched, page.get_by_role("button", name="Delete…", exact=True))
    click(watched, page.get_by_role("button", name="Yes, delete it", exact=True))
    expect(conversations.get_by_label("Renamed chat", exact=True)).to_have_count(0)
    assert all(c.title != "Renamed chat" for c in app.engine.list_conversations("local"))


def test_a_failed_reply_can_be_retried_and_unsent_text_stays_in_the_textbox(watched: Watched, app: RunningApp) -> None:
    page = watched.page
    app.fake.proxy_error(502)
    send(watched, "Hello?")
    retry = page.get_by_role("button", name="↻ Retry", exact=True)
    expect(retry).to_be_visible()
    expect(page.locator("#cc-chat").get_by_text("Error:")).to_be_visible()

    app.fake.reply("Hello! How can I help?")
    click(watched, retry)
    expect(page.get_by_text("Hello! How can I help?")).to_be_visible()
    expect(retry).to_be_hidden()

    too_long = "Please read this. " * 40  # over the test app's 500-character limit
    send(watched, too_long)
    expect(page.get_by_text("the limit is 500")).to_be_visible()
    expect(page.locator("#cc-input textarea")).to_have_value(too_long)


INJECTION = '<img src=x onerror="window.__pwned=1;alert(1)"><script>window.__pwned=2;alert(2)</script>'


def test_injected_html_never_runs(watched: Watched, app: RunningApp) -> None:
    page = watched.page
    script_call(app.fake, ("echo_note", {"text": "note " + INJECTION}), prose="Saving " + INJECTION)
    app.fake.reply("Saved " + INJECTION + " [click](javascript:alert(3))")
    send(watched, "Save this " + INJECTION)
    expect(confirm_buttons(page)).to_be_visible()
    expect(page.get_by_label("text *")).to_have_value("note " + INJECTION)
    click(watched, confirm_buttons(page))
    expect(page.locator(".cc-card-succeeded")).to_contain_text('"stored": "note <img src=x')

    # A call to a function that does not exist fails at once, and shows its (model-written) arguments.
    script_call(app.fake, ("delete_everything", {"x": INJECTION}))
    app.fake.reply("Sorry, that function does not exist.")
    send(watched, "Call something odd")
    expect(page.get_by_text("Sorry, that function does not exist.")).to_be_visible()
    expect(page.get_by_role("button", name=re.compile("delete_everything · ❌ failed"))).to_be_visible()

    click(watched, page.get_by_role("tab", name="Audit"))
    expect(page.locator("#cc-audit")).to_contain_text("echo_note")
    page.get_by_role("tab", name="Tools").click()
    page.reload()
    expect(page.locator("#cc-chat").get_by_text("Sorry, that function does not exist.")).to_be_visible()
    page.wait_for_timeout(300)
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert watched.dialogs == []


def _login(browser: Any, app: RunningApp, name: str) -> tuple[Any, Watched]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.goto(app.url)
    page.get_by_label("username").fill(name)
    page.get_by_label("password").fill(PASSWORDS[name])
    page.get_by_role("button", name="Login").click()
    expect(page.get_by_text(f"👤 {name}")).to_be_visible()
    return context, Watched(page)


def test_two_users_cannot_see_each_other_and_a_lead_audits_everyone(browser: Any, auth_app: RunningApp) -> None:
    drain(auth_app.fake)
    alice_context, alice = _login(browser, auth_app, "alice")
    script_call(auth_app.fake, ("lookup_order", {"order_number": "A1001"}))
    auth_app.fake.reply("Your order A1001 has shipped.")
    send(alice, "Alice asks where A1001 is")
    click(alice, confirm_buttons(alice.page))
    expect(alice.page.get_by_text("Your order A1001 has shipped.")).to_be_visible()

    bob_context, bob = _login(browser, auth_app, "bob")
    expect(bob.page.get_by_text("Ask something.")).to_be_visible()
    expect(bob.page.get_by_text("Alice asks where A1001 is")).to_have_count(0)
    bob.page.get_by_role("tab", name="Audit").click()
    expect(bob.page.get_by_text("Your calls:")).to_be_visible()
    expect(bob.page.locator("#cc-audit")).not_to_contain_text("lookup_order")

    carol_context, carol = _login(browser, auth_app, "carol")
    expect(carol.page.get_by_text("(support lead)")).to_be_visible()
    carol.page.get_by_role("tab", name="Audit").click()
    expect(carol.page.locator("#cc-audit")).to_contain_text("alice")
    expect(carol.page.locator("#cc-audit")).to_contain_text("lookup_order")
    for context in (alice_context, bob_context, carol_context):
        context.close()
    assert auth_app.engine.list_conversations("bob") == []
    assert [c.title for c in auth_app.engine.list_conversations("alice")] == ["Alice asks where A1001 is"]
    assert alice.dialogs == bob.dialogs == carol.dialogs == []


@pytest.fixture(autouse=True)
def _no_leftover_replies(module_fake_tgi: FakeTGI) -> Iterator[None]:
    yield
    assert module_fake_tgi.pending == 0, "the test left scripted replies unused"
