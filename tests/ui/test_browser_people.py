"""Signed-in people in headless Chromium: each sees only their own conversations, a support lead audits everyone's
calls and sees the support tickets, audit rows open their conversation, and signing out stays in the tab."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.fake_tgi import FakeTGI
from tests.ui.browser import Watched, expect
from tests.ui.conftest import PASSWORDS, SCREENSHOTS, RunningApp, drain, script_call


def login(open_page: Callable[..., Watched], app: RunningApp, name: str) -> Watched:
    watched = open_page(app)
    page = watched.page
    page.get_by_label("username").fill(name)
    page.get_by_label("password").fill(PASSWORDS[name])
    page.get_by_role("button", name="Login").click()
    expect(page.get_by_text(f"👤 {name}")).to_be_visible()
    return watched


def test_people_see_only_their_own_and_a_lead_audits_everyone(open_page: Any, auth_app: RunningApp) -> None:
    drain(auth_app.fake)
    alice = login(open_page, auth_app, "alice")
    script_call(auth_app.fake, ("create_support_ticket", {
        "name": "Ada Lovelace", "email": "ada.lovelace@example.com", "order_number": "A1001",
        "issue": "The mouse arrived broken.",
    }))
    auth_app.fake.reply("I opened a ticket for you.")
    alice.send("Alice asks for a ticket: the mouse of A1001 arrived broken")
    alice.button("Confirm").click()
    alice.settled(lambda: expect(alice.page.locator("#cc-chat").get_by_text("I opened a ticket for you.")).to_be_visible())
    expect(alice.page.get_by_role("tab", name="Tickets")).to_be_hidden()  # customers' details are for leads

    bob = login(open_page, auth_app, "bob")
    expect(bob.page.get_by_text("Ask something.")).to_be_visible()
    expect(bob.page.get_by_text("Alice asks for a ticket")).to_have_count(0)
    bob.page.get_by_role("tab", name="Audit").click()
    bob.settled(
        lambda: expect(bob.page.get_by_text("Your calls, newest decision first")).to_be_visible(),
        lambda: expect(bob.page.locator("#cc-audit")).not_to_contain_text("create_support_ticket"),
    )

    carol = login(open_page, auth_app, "carol")
    expect(carol.page.get_by_text("(support lead)")).to_be_visible()
    carol.page.get_by_role("tab", name="Audit").click()
    audit = carol.page.locator("#cc-audit")
    carol.settled(
        lambda: expect(audit).to_contain_text("alice"),
        lambda: expect(audit).to_contain_text("create_support_ticket"),
        lambda: expect(audit).to_contain_text("succeeded"),
    )
    # A row of someone else's conversation does not open it, even for a lead.
    carol.shot(SCREENSHOTS, "audit.png")
    audit.locator("[role=gridcell]", has_text="create_support_ticket").first.click()
    expect(carol.page.locator(".toast-body.warning")).to_contain_text("Only the person who had this conversation")
    carol.page.get_by_role("tab", name="Tickets").click()
    carol.settled(lambda: expect(carol.page.locator("#cc-tickets")).to_contain_text("The mouse arrived broken."))

    assert auth_app.engine.list_conversations("bob") == []
    assert auth_app.engine.list_conversations("alice")[0].title.startswith("Alice asks for a ticket")


def test_an_audit_row_opens_its_conversation_and_sign_out_stays_in_the_tab(open_page: Any, auth_app: RunningApp) -> None:
    drain(auth_app.fake)
    alice = login(open_page, auth_app, "alice")
    page = alice.page
    alice.button("➕ New conversation").click()
    script_call(auth_app.fake, ("lookup_order", {"order_number": "A1002"}))
    auth_app.fake.reply("A1002 is on its way.")
    alice.send("Where is A1002?")
    alice.button("Reject").click()
    alice.settled(lambda: expect(page.locator("#cc-chat").get_by_text("A1002 is on its way.")).to_be_visible())
    alice.button("➕ New conversation").click()
    expect(page.get_by_text("Ask something.")).to_be_visible()

    page.get_by_role("tab", name="Audit").click()
    page.locator("#cc-audit [role=gridcell]", has_text=re.compile(r"Where is A1002\? ↗")).first.click()
    alice.settled(
        lambda: expect(page.get_by_role("tab", name="Chat")).to_have_attribute("aria-selected", "true"),
        lambda: expect(page.locator("#cc-chat").get_by_text("A1002 is on its way.")).to_be_visible(),
    )

    pages_before = len(page.context.pages)
    page.get_by_role("link", name="Sign out", exact=True).click()
    expect(page.get_by_label("username")).to_be_visible()
    assert len(page.context.pages) == pages_before, "signing out opened another tab"


@pytest.fixture(autouse=True)
def _no_leftover_replies(module_fake_tgi: FakeTGI) -> Iterator[None]:
    yield
    assert module_fake_tgi.pending == 0, "the test left scripted replies unused"
