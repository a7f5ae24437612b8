"""Rate limits: each person's messages per minute and replies at once, counted apart from everyone else's."""

from __future__ import annotations

import pytest

from backend.engine.rate_limits import RateLimits
from backend.errors import RateLimitedError


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_messages_per_minute_are_counted_per_person_over_a_sliding_minute() -> None:
    clock = _Clock()
    limits = RateLimits(messages_per_minute=3, clock=clock)
    for _ in range(3):
        with limits.reply("ann"):
            clock.now += 10
    with pytest.raises(RateLimitedError, match="3 messages in the last minute.*send again in 30 s.*kept"):
        with limits.reply("ann"):
            pass
    with limits.reply("bob"):  # someone else is not held back
        pass
    clock.now += 30.5  # the first message leaves the window
    with limits.reply("ann"):
        pass


def test_replies_at_once_are_limited_and_a_finished_one_frees_its_slot() -> None:
    limits = RateLimits(concurrent_replies=1)
    with limits.reply("ann"):
        with pytest.raises(RateLimitedError, match="1 reply on the way"):
            with limits.reply("ann"):
                pass
        with limits.reply("bob"):
            pass
    with limits.reply("ann"):
        pass


def test_a_refused_message_is_not_counted_and_a_failed_reply_frees_its_slot() -> None:
    limits = RateLimits(messages_per_minute=2, concurrent_replies=1)
    with limits.reply("ann"):
        with pytest.raises(RateLimitedError):
            with limits.reply("ann"):
                pass
    with pytest.raises(ValueError):
        with limits.reply("ann"):
            raise ValueError("the model failed")
    with pytest.raises(RateLimitedError, match="2 messages"):
        with limits.reply("ann"):
            pass


def test_off_by_default() -> None:
    limits = RateLimits()
    assert not limits.enabled
    for _ in range(1000):
        with limits.reply("ann"):
            pass
