"""MCP tools as people use them, in headless Chromium against the real app with real MCP servers started from a
configuration file: the reference `mcp-server-time` from PyPI and the test server (tests/mcp_server.py), whose
`greet` asks the person for their name in the middle of the call.

Set CALLCARD_SCREENSHOTS=docs/screenshots to (re)write the README's MCP screenshots.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from backend.engine import Engine
from backend.models.tgi import TGIBackend
from backend.storage.store import Store
from backend.storage.tables import CallStatus
from backend.tools import build_registry
from backend.tools.mcp_servers import McpServers
from tests.fake_tgi import FakeTGI
from tests.ui.browser import Watched, expect
from tests.ui.conftest import SCREENSHOTS, RunningApp, drain, script_call, unused_port

ROOT = Path(__file__).resolve().parents[2]
PARIS_ANSWER = "In Paris it is a quarter past three in the afternoon."
SERVERS = {
    "time": {"command": sys.executable, "args": ["-m", "mcp_server_time", "--local-timezone", "UTC"], "trusted": True},
    "test": {"command": sys.executable, "args": ["-m", "tests.mcp_server"], "cwd": str(ROOT)},
    "notes": {"command": sys.executable, "args": ["-m", "tests.mcp_server"], "cwd": str(ROOT), "disabled": True},
}


@pytest.fixture(scope="module")
def mcp_app(tmp_path_factory: pytest.TempPathFactory, module_fake_tgi: FakeTGI) -> Iterator[RunningApp]:
    """The app with two MCP servers (and a disabled one) as its only tools, as app.py wires it."""
    from ui.app import build_app, launch

    data_dir = tmp_path_factory.mktemp("mcp_app")
    config = data_dir / "mcp.json"
    config.write_text(json.dumps({"mcpServers": SERVERS}), encoding="utf-8")
    servers = McpServers.from_file(config)
    store = Store(f"sqlite:///{data_dir / 'callcard.db'}")
    try:
        registry = build_registry(examples=False, mcp_servers=servers)
        engine = Engine(store=store, backend=TGIBackend(module_fake_tgi.url, retries=0), registry=registry)
        demo = build_app(engine=engine, mcp=servers)
        port = unused_port()
        launch(demo, prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True)
        yield RunningApp(url=f"http://127.0.0.1:{port}/", engine=engine, store=store, fake=module_fake_tgi, demo=demo,
                         data_dir=data_dir, extra={"mcp": servers})
        demo.close()
    finally:
        servers.close()
        store.close()


@pytest.fixture
def watched(open_page: Callable[..., Watched], mcp_app: RunningApp) -> Iterator[Watched]:
    """The open app in a new conversation; the page must end the test clean."""
    drain(mcp_app.fake)
    page = open_page(mcp_app)
    expect(page.page.get_by_text("logins are off")).to_be_visible()
    page.button("➕ New conversation").click()
    expect(page.page.get_by_text("Ask something.")).to_be_visible()
    yield page
    page.clean()


def chat(watched: Watched) -> Any:
    return watched.page.locator("#cc-chat")


def newest_call(app: RunningApp) -> Any:
    conversation = app.engine.list_conversations("local")[0]
    return app.store.calls(conversation_id=conversation.id)[-1]


def test_a_time_card_names_its_server_runs_edited_and_the_model_answers(watched: Watched, mcp_app: RunningApp) -> None:
    script_call(mcp_app.fake, ("get_current_time", {"timezone": "UTC"}), prose="Let me check the clock.")
    mcp_app.fake.reply(PARIS_ANSWER)
    watched.send("What time is it in Paris?")

    card = watched.card("get_current_time", "proposed")
    expect(card).to_contain_text("MCP · time")
    expect(card).not_to_contain_text("may delete")  # read-only: nothing to warn about
    timezone = card.get_by_label("timezone *")
    expect(timezone).to_have_value("UTC")
    timezone.fill("Europe/Paris")
    watched.idle()
    watched.shot(SCREENSHOTS, "mcp-card.png")

    watched.button("Confirm").click()
    done = watched.card("get_current_time", "succeeded")
    watched.settled(
        lambda: expect(chat(watched).get_by_text(PARIS_ANSWER)).to_be_visible(),
        lambda: expect(done).to_contain_text('"timezone": "Europe/Paris"'),
        lambda: expect(done).to_contain_text("MCP · time"),
        watched.idle,
    )
    record = newest_call(mcp_app)
    assert record.status == CallStatus.SUCCEEDED and record.final_arguments == {"timezone": "Europe/Paris"}


def test_a_destructive_tool_warns_on_its_card(watched: Watched, mcp_app: RunningApp) -> None:
    script_call(mcp_app.fake, ("wipe", {"table": "orders"}))
    watched.send("Empty the orders table")
    card = watched.card("wipe", "proposed")
    watched.settled(
        lambda: expect(card).to_contain_text("MCP · test"),
        lambda: expect(card).to_contain_text("The server says this tool may delete or overwrite data."),
        watched.idle,
    )
    watched.button("Reject").click()
    watched.settled(lambda: expect(watched.card("wipe", "rejected")).to_be_visible(), watched.idle)


def test_a_servers_question_during_the_call_is_a_card_and_the_answer_completes_it(
    watched: Watched, mcp_app: RunningApp,
) -> None:
    script_call(mcp_app.fake, ("greet", {}))
    mcp_app.fake.reply("The server greeted you, Ada.")
    watched.send("Say hello to me")
    expect(watched.card("greet", "proposed")).to_contain_text("MCP · test")
    watched.button("Confirm").click()

    # The call is still running while the server waits: its question is a card of its own, with typed fields.
    question = watched.page.locator("#cc-deck .cc-question-card")
    expect(question).to_contain_text("test asks you")
    expect(question).to_contain_text("What is your name?")
    expect(watched.card("greet", "running")).to_be_visible()
    # Still busy, and says why; Stop is still there.
    expect(watched.page.locator("#cc-deck .cc-activity")).to_contain_text("The server waits for your answer…")
    name = question.get_by_label("name *")
    expect(name).to_have_value("")
    watched.clean()
    watched.shot(SCREENSHOTS, "mcp-question.png")

    question.get_by_role("button", name="Answer", exact=True).click()  # blank: nothing is sent
    expect(question).to_contain_text("Nothing was sent: check name first.")
    assert newest_call(mcp_app).status == CallStatus.RUNNING
    name.fill("Ada")
    question.get_by_role("button", name="Answer", exact=True).click()

    done = watched.card("greet", "succeeded")
    watched.settled(
        lambda: expect(done).to_contain_text("Hello, Ada!"),
        lambda: expect(chat(watched).get_by_text("The server greeted you, Ada.")).to_be_visible(),
        lambda: expect(question).to_have_count(0),
        watched.idle,
    )
    assert mcp_app.extra["mcp"].elicitations.pending() == []
    assert "Hello, Ada!" in mcp_app.fake.generations[-1].prompt


def test_stop_while_the_server_waits_for_an_answer_interrupts_the_call_and_takes_the_question_away(
    watched: Watched, mcp_app: RunningApp,
) -> None:
    script_call(mcp_app.fake, ("greet", {}))
    watched.send("Say hello to me")
    watched.button("Confirm").click()
    question = watched.page.locator("#cc-deck .cc-question-card")
    expect(question).to_contain_text("What is your name?")
    watched.page.locator("#cc-deck .cc-stop").click()

    watched.settled(
        lambda: expect(watched.card("greet", "interrupted")).to_be_visible(),
        lambda: expect(question).to_have_count(0),
        watched.idle,
    )
    assert newest_call(mcp_app).status == CallStatus.INTERRUPTED
    assert mcp_app.extra["mcp"].elicitations.pending() == []


def test_the_tools_tab_shows_each_server_and_the_tools_it_offers_now(watched: Watched, mcp_app: RunningApp) -> None:
    page = watched.page
    page.get_by_role("tab", name="Tools").click()
    tools = page.locator("#cc-tools")
    extra = tools.get_by_role("heading", name="extra", exact=True)
    watched.settled(
        lambda: expect(tools).to_contain_text(re.compile(r"time · 🟢 connected")),
        lambda: expect(tools).to_contain_text(re.compile(r"notes · ⚪ disabled")),
        lambda: expect(tools).to_contain_text("get_current_time"),
        lambda: expect(extra).to_have_count(0),
    )
    # The test server adds a tool while the app runs (on a thread: Playwright holds this one's event loop), and
    # says so; the registry follows on the MCP servers' thread. The tab shows it once asked again.
    registry = mcp_app.engine.registry
    run_tool(registry, "grow")
    registered(lambda: "extra" in registry)
    page.locator("#cc-tools-refresh").click()
    watched.settled(lambda: expect(extra).to_be_visible())
    run_tool(registry, "shrink")
    registered(lambda: "extra" not in registry)


def run_tool(registry: Any, name: str) -> None:
    done = threading.Thread(target=lambda: asyncio.run(registry.execute(name, {})))
    done.start()
    done.join(60)


def registered(check: Callable[[], bool]) -> None:
    """Wait for the server's list_changed to reach the registry (the servers' news, not the page's)."""
    deadline = time.monotonic() + 60
    while not check():
        assert time.monotonic() < deadline, "the registry did not follow the server's tool list"
        time.sleep(0.05)
