"""Per-person limits for a public demo: messages per minute and replies at once, so one visitor cannot flood it."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from backend.errors import RateLimitedError

__all__ = ["RateLimits"]

_WINDOW_S = 60.0
_PRUNE_ABOVE = 10_000


@dataclass
class _Person:
    sent: deque[float]
    replying: int = 0


class RateLimits:
    """Counts each key's (a user, or a browser session when logins are off) messages and replies in flight.

    None for a limit turns it off. Only this process counts: behind a load balancer with sticky sessions, each
    replica limits the people it serves, which is what a flood of one visitor needs.
    """

    def __init__(
        self, *, messages_per_minute: int | None = None, concurrent_replies: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.messages_per_minute = messages_per_minute
        self.concurrent_replies = concurrent_replies
        self._clock = clock
        self._people: dict[str, _Person] = {}
        self._lock = threading.Lock()  # replies start on Gradio's worker threads and its event loop alike

    @property
    def enabled(self) -> bool:
        return self.messages_per_minute is not None or self.concurrent_replies is not None

    @contextmanager
    def reply(self, key: str) -> Iterator[None]:
        """Counts one message and holds one reply slot for `key` until the block ends; RateLimitedError if over."""
        release = self.admit(key)
        try:
            yield
        finally:
            release()

    def admit(self, key: str) -> Callable[[], None]:
        """Counts one message and takes one reply slot for `key` (RateLimitedError if over); returns its release."""
        if not self.enabled:
            return _nothing
        self._start(key)
        released = False

        def release() -> None:
            nonlocal released
            with self._lock:
                if released:
                    return
                released = True
                person = self._people[key]
                person.replying -= 1
                if not person.replying and not person.sent:
                    del self._people[key]

        return release

    def _start(self, key: str) -> None:
        now = self._clock()
        with self._lock:
            if len(self._people) > _PRUNE_ABOVE:  # visitors who left: forget those with nothing in the last minute
                self._people = {
                    k: p for k, p in self._people.items() if p.replying or (p.sent and p.sent[-1] > now - _WINDOW_S)
                }
            person = self._people.setdefault(key, _Person(sent=deque()))
            while person.sent and person.sent[0] <= now - _WINDOW_S:
                person.sent.popleft()
            if self.concurrent_replies is not None and person.replying >= self.concurrent_replies:
                raise RateLimitedError(
                    f"You already have {person.replying} {_replies(person.replying)} on the way; wait for "
                    f"{'it' if person.replying == 1 else 'one'} to finish, then send again. Your message is kept."
                )
            if self.messages_per_minute is not None and len(person.sent) >= self.messages_per_minute:
                wait = max(1, round(person.sent[0] + _WINDOW_S - now))
                raise RateLimitedError(
                    f"You have sent {len(person.sent)} messages in the last minute, the limit here; send again in "
                    f"{wait} s. Your message is kept."
                )
            person.sent.append(now)
            person.replying += 1


def _nothing() -> None:
    return None


def _replies(count: int) -> str:
    return "reply" if count == 1 else "replies"
