"""The card deck in a real browser: how long from a click on Confirm to the model's answer on screen, and what a
deck update costs, against a plain message's round trip measured in the same run.

The app is the real one (engine, SQLite store, support desk, Gradio queue) in this process, with the TGI backend on
the fake TGI server answering at once, and headless Chromium (Debian's) driven by Playwright. Each round:

- baseline: type a message, press Enter, wait until the model's answer is visible (one stream, no card);
- card: a reply proposes `lookup_order`; wait for its card; click Confirm; wait until the tool's result is on the
  card and the model's answer is visible (the confirm stream, then the final view with the deck).

It prints the medians and the ratio card/baseline, the CPU this process spent per round of each (server and the
Python side of the driver; Chromium runs in its own processes), and what building one deck value costs on the server
(`Page.conversation_view`: read the conversation, render chat and deck) with the size of the deck's HTML.

    .venv/bin/python -m bench.bench_card_deck [--rounds 20]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

from tests.fake_tgi import FakeTGI
from tests.ui.conftest import CHROMIUM, CHROMIUM_ARGS, script_call, start_app
from ui.auth import People
from ui.page import Page

ANSWER = "Order {n} is on its way."


def _seconds(action: Callable[[], object], *, until: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds) from `action` until `until` returns."""
    wall, cpu = time.perf_counter(), time.process_time()
    action()
    until()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    options = parser.parse_args()
    expect.set_options(timeout=30_000)
    with tempfile.TemporaryDirectory() as folder, FakeTGI() as fake:
        app = start_app(Path(folder), fake)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(app.url)
            expect(page.get_by_text("logins are off")).to_be_visible()
            box = page.locator("#cc-input textarea")
            chat = page.locator("#cc-chat")
            plain: list[tuple[float, float]] = []
            card: list[tuple[float, float]] = []
            for n in range(options.rounds + 2):  # two rounds to warm up
                page.get_by_role("button", name="➕ New conversation", exact=True).click()
                expect(page.get_by_text("Ask something.")).to_be_visible()

                fake.reply(f"Hello {n}, how can I help?")
                box.fill(f"Hello {n}")
                greeting = chat.get_by_text(f"Hello {n}, how can I help?")
                result = _seconds(lambda: box.press("Enter"), until=expect(greeting).to_be_visible)
                expect(box).to_be_editable()
                if n >= 2:
                    plain.append(result)

                order = f"A{1001 + n % 3}"
                script_call(fake, ("lookup_order", {"order_number": order}))
                fake.reply(ANSWER.format(n=order))
                box.fill(f"Where is {order}?")
                box.press("Enter")
                confirm = page.get_by_role("button", name="Confirm", exact=True)
                expect(confirm).to_be_visible()
                answer = chat.get_by_text(ANSWER.format(n=order))
                result_on_card = page.locator("#cc-deck .cc-card-succeeded", has_text=order)
                result = _seconds(confirm.click, until=lambda a=answer, r=result_on_card: (
                    expect(a).to_be_visible(), expect(r).to_be_visible(),
                ))
                expect(box).to_be_editable()
                if n >= 2:
                    card.append(result)
            browser.close()

        conversation = app.engine.list_conversations("local")[0]
        handlers = Page(engine=app.engine, registry=app.engine.registry, people=People.open(), backend_info=None)
        builds = []
        for _ in range(50):
            began = time.perf_counter()
            _chat, deck = handlers.conversation_view("local", conversation.id)
            builds.append(time.perf_counter() - began)
        app.demo.close()
        app.store.close()

    plain_wall = statistics.median(w for w, _ in plain)
    card_wall = statistics.median(w for w, _ in card)
    print(f"rounds: {options.rounds} (after 2 to warm up)")
    print(f"plain message, Enter -> answer visible:          median {plain_wall * 1000:7.1f} ms   CPU here {statistics.median(c for _, c in plain) * 1000:6.1f} ms")
    print(f"card, Confirm click -> result and answer visible: median {card_wall * 1000:7.1f} ms   CPU here {statistics.median(c for _, c in card) * 1000:6.1f} ms")
    print(f"ratio card / plain: x{card_wall / plain_wall:.2f}")
    print(f"one deck value on the server (read the conversation, chat + deck): median {statistics.median(builds) * 1000:.2f} ms; "
          f"deck HTML {len(deck['html']):,} characters")


if __name__ == "__main__":
    main()
