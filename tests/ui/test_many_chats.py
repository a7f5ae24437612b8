"""Many people chatting at once, through the real app and the official client (`gradio_client`)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from gradio_client import Client
from gradio_client.client import Job

from tests.fake_tgi import Reply
from tests.ui.conftest import RunningApp
from ui.app import frame_interval

# More than Gradio's own default of 40 jobs at once, which used to hold the 41st chat back until the first ended.
CHATS = 45
REPLY = "Your order left the warehouse on Monday and should arrive by Friday at the latest."
# Every reply is held open after its first words until all chats have shown theirs (no clock involved): a chat that
# waited for another to end would never show any. The limits below only bound how long a failure takes to report.
FIRST_TOKENS = 3  # "Your order": tokens the fake server sends before holding a reply
WAIT_S = 180.0
HOLD_TIMEOUT_S = 240.0  # longer than WAIT_S, so the test's own message, not the server's, reports a failure


def _assistant_text(output: Any) -> str:
    """The assistant's text in one streamed output of /send (the chat is its first value)."""
    chat = output[0] if isinstance(output, tuple) else output
    texts = []
    for message in chat or []:
        if not (isinstance(message, dict) and message.get("role") == "assistant"):
            continue
        content = message.get("content")
        parts = content if isinstance(content, list) else [content]
        texts.extend(p.get("text", "") if isinstance(p, dict) else str(p or "") for p in parts)
    return "".join(texts)


def _showed_words(job: Job) -> bool:
    return any(text and REPLY.startswith(text) for text in map(_assistant_text, job.outputs()))


def test_45_chats_stream_at_the_same_time_and_none_waits_for_another_to_end(app: RunningApp) -> None:
    app.fake.add(*(Reply(text=REPLY, grammar=False) for _ in range(CHATS)))
    # Plain HTTP on loopback: no certificate store to build for every request the clients make.
    clients = list(ThreadPoolExecutor(16).map(lambda _: Client(app.url, verbose=False, ssl_verify=False), range(CHATS)))
    hold = app.fake.hold_streams(CHATS, after_tokens=FIRST_TOKENS, timeout_s=HOLD_TIMEOUT_S, until_released=True)
    try:
        with hold:
            questions = [f"Where is my order {index}?" for index in range(CHATS)]
            jobs = [client.submit(q, None, api_name="/send") for client, q in zip(clients, questions, strict=True)]
            deadline = time.monotonic() + WAIT_S
            while not all(map(_showed_words, jobs)) and time.monotonic() < deadline:
                time.sleep(0.05)
            silent = [index for index, job in enumerate(jobs) if not _showed_words(job)]
            assert not silent, (
                f"chats {silent} showed no words while the other chats' replies were held open after their first "
                f"words, so they were waiting for another chat to end ({hold.describe()})"
            )
            assert hold.wait_until_held(CHATS), f"the server never had every reply open at once: {hold.describe()}"
            hold.release()
            answers = [_assistant_text(job.result(timeout=WAIT_S)) for job in jobs]
        assert answers == [REPLY] * CHATS
        assert hold.most_held == CHATS
    finally:
        with ThreadPoolExecutor(CHATS) as pool:
            list(pool.map(Client.close, clients))  # each waits up to a second for its heartbeat thread


def test_with_many_answers_streaming_each_is_redrawn_less_often_and_all_redraws_stay_bounded() -> None:
    assert frame_interval(1) == frame_interval(5) <= 0.1, "a few chats stream smoothly"
    assert frame_interval(50) > frame_interval(5)
    redraws_per_second = [streams / frame_interval(streams) for streams in (50, 100, 400)]
    assert redraws_per_second == pytest.approx([redraws_per_second[0]] * 3)
