"""Fixtures for the UI tests: the real app on a free port (a real SQLite file, the real tool registry, the TGI backend
pointed at the fake TGI server), and one headless Chromium for the whole session."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest

from backend.auth import Account, Accounts, hash_password
from backend.engine import Engine, Limits
from backend.models.tgi import TGIBackend
from backend.storage.store import Store
from backend.tools import SupportDesk, ToolRegistry, build_registry, tool_from_function
from tests.fake_tgi import FakeTGI
from tests.ui.browser import TIMEOUT_MS, LogWatch, Watched, expect
from ui.auth import People

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]
# Where the main-flow test saves the README's screenshots when asked to (they are not rewritten on every run).
SCREENSHOTS = os.environ.get("CALLCARD_SCREENSHOTS")


def book_table(
    restaurant: str,
    guests: int,
    budget: float,
    outdoor: bool,
    cuisine: Literal["italian", "thai", "french"],
    dishes: list[str],
    notes: str = "",
) -> dict[str, Any]:
    """Book a table at a restaurant.

    Args:
        restaurant: The restaurant's name.
        guests: How many people.
        budget: Budget per person, in euros.
        outdoor: Whether to sit outside.
        cuisine: The kind of food.
        dishes: Dishes to order ahead.
        notes: Anything else the restaurant should know.
    """
    return {"booked": True, "restaurant": restaurant, "guests": guests, "budget": budget, "outdoor": outdoor}


def echo_note(text: str) -> dict[str, str]:
    """Store a note and return it as stored.

    Args:
        text: The note.
    """
    return {"stored": text}


def ui_registry(data_dir: Path, desk: SupportDesk | None = None) -> ToolRegistry:
    """The real registry (the built-in support desk) plus two tools with every kind of field."""
    registry = build_registry(support_desk=desk or SupportDesk(data_dir), examples=False)
    registry.add(tool_from_function(book_table, source="python: tests/ui/conftest.py"))
    registry.add(tool_from_function(echo_note, source="python: tests/ui/conftest.py"))
    return registry


def unused_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def call_text(function: str, arguments: dict[str, Any]) -> str:
    """A Trelis call as the model writes it."""
    return json.dumps({"function": function, "arguments": arguments}, ensure_ascii=False)


def script_call(fake: FakeTGI, *calls: tuple[str, dict[str, Any]], prose: str = "") -> None:
    """Queue a reply that makes `calls` (the free probe, then the grammar-constrained re-request TGIBackend sends)."""
    text = "\n".join(call_text(name, arguments) for name, arguments in calls)
    fake.reply((prose + " " if prose else "") + text, when_grammar=text)


def drain(fake: FakeTGI) -> None:
    """Drop replies a failed test left queued, so the next test starts from an empty script."""
    while fake._take(grammar=True) is not None or fake._take(grammar=False) is not None:
        pass


@dataclass
class RunningApp:
    """The app under test, and what tests look at behind it."""

    url: str
    engine: Engine
    store: Store
    fake: FakeTGI
    demo: Any
    data_dir: Path
    extra: dict[str, Any] = field(default_factory=dict)


def start_app(data_dir: Path, fake: FakeTGI, *, people: People | None = None, limits: Limits | None = None) -> RunningApp:
    from ui.app import build_app, launch

    store = Store(f"sqlite:///{data_dir / 'callcard.db'}")
    desk = SupportDesk(data_dir)
    registry = ui_registry(data_dir, desk)
    engine = Engine(store=store, backend=TGIBackend(fake.url, retries=0), registry=registry, limits=limits)
    demo = build_app(engine=engine, people=people, tickets=desk.list_tickets)
    port = unused_port()
    launch(demo, people=people, prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True)
    return RunningApp(url=f"http://127.0.0.1:{port}/", engine=engine, store=store, fake=fake, demo=demo, data_dir=data_dir)


@pytest.fixture(scope="module")
def module_fake_tgi() -> Iterator[FakeTGI]:
    """One fake TGI server for a module's app (tests queue their own replies)."""
    with FakeTGI() as server:
        yield server


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, module_fake_tgi: FakeTGI) -> Iterator[RunningApp]:
    """The app with logins off (everyone is "local"), a message limit small enough to hit in a test."""
    running = start_app(tmp_path_factory.mktemp("app"), module_fake_tgi, limits=Limits(max_message_chars=500))
    yield running
    running.demo.close()
    running.store.close()


PASSWORDS = {"alice": "alice-secret", "bob": "bob-secret", "carol": "carol-secret"}


@pytest.fixture(scope="module")
def auth_app(tmp_path_factory: pytest.TempPathFactory, module_fake_tgi: FakeTGI) -> Iterator[RunningApp]:
    """The app with password logins: alice and bob are users, carol a support lead."""
    accounts = Accounts([
        # Few iterations keep the test fast; the format and the check are the production ones.
        Account(name, hash_password(password, iterations=1_000), "lead" if name == "carol" else "user")
        for name, password in PASSWORDS.items()
    ])
    people = People(accounts=accounts)
    running = start_app(tmp_path_factory.mktemp("auth_app"), module_fake_tgi, people=people)
    yield running
    running.demo.close()
    running.store.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium (Debian's) per test module.

    Not per session: Playwright's sync API keeps an event loop running on the main thread while it is open, and
    every asyncio.run() in a test collected after it would fail.
    """
    if not CHROMIUM.exists():
        pytest.skip("Chromium is not installed: apt-get install -y chromium fonts-noto-color-emoji")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def log_watch() -> Iterator[LogWatch]:
    """The app's log lines at ERROR or with a traceback, during one test."""
    with LogWatch().attached() as watch:
        yield watch


@pytest.fixture
def open_page(browser: Any, log_watch: LogWatch, capfd: pytest.CaptureFixture[str]) -> Iterator[Callable[..., Watched]]:
    """Opens the app in a fresh browser context (its own localStorage): `open_page(app, width=390, dark=True)`."""
    contexts: list[Any] = []

    def open_(target: RunningApp, *, width: int = 1280, height: int = 900, dark: bool = False) -> Watched:
        context = browser.new_context(
            viewport={"width": width, "height": height}, color_scheme="dark" if dark else "light",
        )
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        watched = Watched(page, target.url, log_watch, lambda: capfd.readouterr().err)
        page.goto(target.url)
        return watched

    yield open_
    for context in contexts:
        context.close()


@pytest.fixture
def watched(open_page: Callable[..., Watched], app: RunningApp) -> Iterator[Watched]:
    """The open app in a new conversation, its scripted replies cleared; the page must end the test clean."""
    drain(app.fake)
    page = open_page(app)
    expect(page.page.get_by_text("logins are off")).to_be_visible()
    page.button("➕ New conversation").click()
    expect(page.page.get_by_text("Ask something.")).to_be_visible()
    yield page
    page.clean()
