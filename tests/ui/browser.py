"""A browser page that sees what a person sees, and fails the test on what a person would call broken.

`Watched` wraps a Playwright page of the app. `watched.clean()` fails on an error toast, a red error pill on any
component, a dialog (injected script ran), a request to any host but the app, and a traceback or error in the
app's log. `watched.settled(check)` runs a check, waits as a person would (2 s), then runs it again and checks the
page is still clean: a state that flickers back, or an error that comes a moment later, fails.

No waits work around the framework: a test never retries an action, and it never waits for streams to "settle"
before acting. If an event is lost, the test fails, because a person's click would be lost too.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

expect = pytest.importorskip("playwright.sync_api").expect

TIMEOUT_MS = 15_000
PAUSE_MS = 2_000  # a person's pause before looking again
expect.set_options(timeout=TIMEOUT_MS)

ERROR_TOASTS = ".toast-body.error"
ERROR_PILLS = "[data-testid=status-tracker] .error"


class LogWatch(logging.Handler):
    """Records the app's log lines at ERROR and above, and any line carrying a traceback."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.problems: list[str] = []
        self.allowed: list[re.Pattern[str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno < logging.ERROR and not record.exc_info:
            return
        text = f"{record.name}: {record.getMessage()}"
        if not any(pattern.search(text) for pattern in self.allowed):
            self.problems.append(text)

    @contextmanager
    def attached(self) -> Iterator[LogWatch]:
        root = logging.getLogger()
        root.addHandler(self)
        try:
            yield self
        finally:
            root.removeHandler(self)


class Watched:
    """A page of the app, with everything a person would notice going wrong."""

    def __init__(self, page: Any, app_url: str, log: LogWatch, read_stderr: Callable[[], str]) -> None:
        self.page = page
        self.dialogs: list[str] = []
        self.foreign: list[str] = []
        self.log = log
        self._read_stderr = read_stderr
        self._stderr = ""
        self._origin = urlsplit(app_url).netloc
        page.on("dialog", self._dialog)
        page.on("request", self._request)

    # -- what a person does ----------------------------------------------------------------------------------------

    def send(self, text: str) -> None:
        box = self.page.locator("#cc-input textarea")
        expect(box).to_be_editable()
        box.fill(text)
        box.press("Enter")

    def button(self, name: str) -> Any:
        return self.page.get_by_role("button", name=name, exact=True)

    def card(self, function: str | None = None, status: str | None = None) -> Any:
        cards = self.page.locator("#cc-deck .cc-card" + (f".cc-card-{status}" if status else ""))
        return cards.filter(has_text=function) if function else cards

    # -- what a person sees --------------------------------------------------------------------------------------

    def clean(self) -> None:
        """Fail on anything broken that a person (or the operator's log) would see now."""
        toasts = self.page.locator(ERROR_TOASTS)
        assert toasts.count() == 0, f"an error toast: {toasts.all_inner_texts()}"
        assert self.page.locator(ERROR_PILLS).count() == 0, "a component shows a red error pill"
        assert self.dialogs == [], f"the page opened dialogs (injected script ran?): {self.dialogs}"
        assert self.foreign == [], f"the page made requests to other hosts: {self.foreign}"
        self._stderr += self._read_stderr()
        assert "Traceback (most recent call last)" not in self._stderr, f"a traceback in the app's output:\n{self._stderr}"
        assert self.log.problems == [], f"errors in the app's log: {self.log.problems}"

    def settled(self, *checks: Callable[[], None]) -> None:
        """Run `checks`, look again after a person's pause (the state must hold), and check the page is clean."""
        for check in checks:
            check()
        self.clean()
        self.page.wait_for_timeout(PAUSE_MS)
        for check in checks:
            check()
        self.clean()

    def idle(self) -> None:
        """The reply is over: no activity line, and the textbox takes text again."""
        expect(self.page.locator("#cc-deck .cc-activity")).to_be_hidden()
        expect(self.page.locator("#cc-input textarea")).to_be_editable()

    def shot(self, folder: str | None, name: str) -> None:
        """A screenshot of the whole page, taken in a viewport as tall as the page (fixed parts stay in place)."""
        if not folder:
            return
        Path(folder).mkdir(parents=True, exist_ok=True)
        size = self.page.viewport_size
        height = self.page.evaluate("() => document.documentElement.scrollHeight")
        self.page.set_viewport_size({"width": size["width"], "height": max(size["height"], height)})
        self.page.evaluate("() => window.scrollTo(0, 0)")
        self.page.wait_for_timeout(300)  # the chat re-lays itself out for the taller window
        self.page.screenshot(path=str(Path(folder) / name))
        self.page.set_viewport_size(size)

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def _request(self, request: Any) -> None:
        parts = urlsplit(request.url)
        if parts.scheme in ("http", "https", "ws", "wss") and parts.netloc != self._origin:
            self.foreign.append(request.url)
