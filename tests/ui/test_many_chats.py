"""Many people chatting at once, through the real app and the official client (`gradio_client`)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from gradio_client import Client

from tests.fake_tgi import Reply
from tests.ui.conftest import RunningApp
from ui.app import frame_interval

# More than Gradio's own default of 40 jobs at once, which used to hold the 41st chat back until the first ended.
CHATS = 45
REPLY = "Your order left the warehouse on Monday and should arrive by Friday at the latest."


def _has_answer(output: Any) -> bool:
    chat = output[0] if isinstance(output, tuple) else output
    return any(isinstance(m, dict) and m.get("role") == "assistant" and m.get("content") for m in chat or [])


def test_45_chats_stream_at_the_same_time_and_none_waits_for_another_to_end(app: RunningApp) -> None:
    # Each reply streams for about 3 s: if any chat had to wait for another to end, its first words would come
    # after that other chat's last.
    app.fake.add(*(Reply(text=REPLY, token_delay=0.1, grammar=False) for _ in range(CHATS)))
    # Plain HTTP on loopback: no certificate store to build for every request the clients make.
    clients = list(ThreadPoolExecutor(16).map(lambda _: Client(app.url, verbose=False, ssl_verify=False), range(CHATS)))

    def chat(index: int) -> tuple[float, float]:
        job = clients[index].submit(f"Where is my order {index}?", None, api_name="/send")
        first = None
        while not job.done():
            if first is None and any(_has_answer(output) for output in job.outputs()):
                first = time.monotonic()
            time.sleep(0.02)
        assert _has_answer(job.result()), f"chat {index} got no answer"
        return first or time.monotonic(), time.monotonic()

    with ThreadPoolExecutor(CHATS) as pool:
        firsts, ends = zip(*pool.map(chat, range(CHATS)), strict=True)
        list(pool.map(Client.close, clients))  # each waits up to a second for its heartbeat thread
    assert max(firsts) < min(ends), "a chat's first words came only after another chat had ended"


def test_with_many_answers_streaming_each_is_redrawn_less_often_and_all_redraws_stay_bounded() -> None:
    assert frame_interval(1) == frame_interval(5) <= 0.1, "a few chats stream smoothly"
    assert frame_interval(50) > frame_interval(5)
    redraws_per_second = [streams / frame_interval(streams) for streams in (50, 100, 400)]
    assert redraws_per_second == pytest.approx([redraws_per_second[0]] * 3)
