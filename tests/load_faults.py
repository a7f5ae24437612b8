"""Many conversations at once against a model server and tools that fail in every way, and what the store kept.

Used by `tests/backend/engine/test_faults_under_load.py` (small) and `bench/bench_faults.py` (50 at once). Each
conversation sends messages, retries every failed reply as a person would, and confirms every proposed call; the
fake TGI server answers from a shuffled mix of good replies, calls, 429s, 500s, errors in the middle of a stream,
dropped connections and slow streams; the tool fails or overruns its timeout now and then. Afterwards the store is
checked: every message a person sent is there exactly once, no call ran or got a result twice, every failure was
shown as retryable, and every conversation ended answered.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

from backend.engine import Engine
from backend.engine.events import CallProposed, EngineEvent, ErrorEvent
from backend.models.protocol import GenerationParams
from backend.models.tgi import TGIBackend
from backend.storage.store import Store
from backend.storage.tables import CallStatus, MessageRole
from backend.tools import ToolFailure, ToolRegistry, tool_from_function
from tests.fake_tgi import FakeTGI, Reply

__all__ = ["FaultCounts", "run_faults_under_load"]


def _call(index: int) -> str:
    # A different order each time: the same call again after its result would (rightly) be stopped as a loop.
    return json.dumps({"function": "order_status", "arguments": {"order_number": f"A{1001 + index}"}})

_FAULTS = frozenset({"429", "500", "mid_stream", "dropped", "proxy_502"})
_MAX_TRIES = 30  # retries per reply before a conversation counts as stuck (the mix makes ~1 in 3 replies fail)


@dataclass
class FaultCounts:
    """What happened, and what went wrong: the last five must be 0."""

    conversations: int = 0
    messages_sent: int = 0
    model_failures_shown: int = 0
    calls_confirmed: int = 0
    tool_failures: int = 0
    tool_runs: int = 0
    faults_served: Counter[str] = field(default_factory=Counter)
    lost_messages: int = 0
    duplicated_results: int = 0
    failures_not_shown: int = 0
    failures_not_retryable: int = 0
    stuck_conversations: int = 0

    @property
    def violations(self) -> int:
        return (self.lost_messages + self.duplicated_results + self.failures_not_shown + self.failures_not_retryable
                + self.stuck_conversations)


class _FlakyTool:
    """An order-status tool that counts its runs and fails or overruns its timeout now and then."""

    def __init__(self, rng: random.Random, timeout_s: float) -> None:
        self.rng, self.timeout_s = rng, timeout_s
        self.runs = 0
        self._lock = threading.Lock()

    def order_status(self, order_number: str) -> dict[str, str]:
        """Where an order is.

        Args:
            order_number: The order number, e.g. A1001.
        """
        with self._lock:
            self.runs += 1
            fate = self.rng.random()
        if fate < 0.15:
            raise ToolFailure(f"The order system did not answer for {order_number}.")
        if fate < 0.25:
            time.sleep(self.timeout_s * 3)  # overruns its timeout: the call fails as timed out
        return {"order_number": order_number, "status": "shipped"}


def _mix(rng: random.Random, count: int) -> list[tuple[str, Reply]]:
    """`count` scripted replies: two thirds good (text or a call), a third faults of every kind."""
    kinds = [
        ("text", 40), ("call", 27), ("429", 6), ("500", 6), ("mid_stream", 6), ("dropped", 6), ("slow", 5),
        ("proxy_502", 4),
    ]
    names, weights = zip(*kinds, strict=True)
    replies = []
    for index, kind in enumerate(rng.choices(names, weights, k=count)):
        replies.append((kind, {
            "text": Reply(text="Your order is on its way and should arrive this week."),
            "call": Reply(text=_call(index)),
            "429": Reply(status=429, error="Model is overloaded", error_type="overloaded"),
            "500": Reply(status=500, error="Request failed during generation", error_type="generation"),
            "mid_stream": Reply(text="It is on its way and will", error_after=3, error="CUDA error", error_type="generation"),
            "dropped": Reply(text="It is on its way and will arrive soon", drop_after=2),
            "slow": Reply(text="Your order is on its way.", first_token_delay=0.2, token_delay=0.02),
            "proxy_502": Reply(status=502, body="<html><body>502 Bad Gateway</body></html>", content_type="text/html"),
        }[kind]))
    return replies


async def _until_answered(
    events: list[EngineEvent], again: Callable[[], AsyncIterator[EngineEvent]], counts: FaultCounts,
) -> list[EngineEvent] | None:
    """Retry while the reply failed, as a person would; None if it never succeeded."""
    for _ in range(_MAX_TRIES):
        errors = [e for e in events if isinstance(e, ErrorEvent)]
        if not errors:
            return events
        counts.model_failures_shown += len(errors)
        if not all(e.retryable for e in errors):
            counts.failures_not_retryable += 1
            return None
        events = [e async for e in again()]
    return None


async def _conversation(engine: Engine, user: str, messages: int, counts: FaultCounts) -> None:
    conversation = engine.create_conversation(user)
    for index in range(messages):
        text = f"{user} message {index}: where is my order A1001?"
        counts.messages_sent += 1
        events = await _until_answered(
            [e async for e in engine.send(conversation.id, user, text)],
            lambda: engine.retry(conversation.id, user), counts,
        )
        while events is not None:
            proposed = [e.call for e in events if isinstance(e, CallProposed)]
            if not proposed:
                break
            counts.calls_confirmed += 1
            call_id = proposed[0].id
            events = await _until_answered(
                [e async for e in engine.confirm(call_id, None, user)], lambda: engine.retry(conversation.id, user),
                counts,
            )
        if events is None:
            counts.stuck_conversations += 1
            return


def _check_store(store: Store, engine: Engine, users: list[str], messages: int, counts: FaultCounts) -> None:
    for user in users:
        for conversation in engine.list_conversations(user):
            stored = store.messages(conversation.id)
            sent = Counter(m.content for m in stored if m.role == MessageRole.USER)
            expected = {f"{user} message {i}: where is my order A1001?" for i in range(messages)}
            counts.lost_messages += sum(1 for text in expected if sent[text] == 0)
            counts.lost_messages += sum(n - 1 for n in sent.values() if n > 1)  # a message stored twice is as bad
            results = Counter(m.call_id for m in stored if m.role == MessageRole.FUNCTION_RESULT)
            counts.duplicated_results += sum(n - 1 for n in results.values() if n > 1)
            for call in engine.calls(conversation.id, user):
                if call.status == CallStatus.FAILED:
                    counts.tool_failures += 1
                if call.status in (CallStatus.SUCCEEDED, CallStatus.FAILED):
                    counts.tool_runs += 1


def run_faults_under_load(
    folder: Path, *, conversations: int = 50, messages: int = 3, seed: int = 7, tool_timeout_s: float = 0.3,
) -> FaultCounts:
    """Run the scenario (its own fake TGI server and SQLite store under `folder`) and count what went wrong."""
    rng = random.Random(seed)
    counts = FaultCounts(conversations=conversations)
    flaky = _FlakyTool(rng, tool_timeout_s)
    registry = ToolRegistry()
    registry.add(tool_from_function(flaky.order_status, read_only=True, timeout_s=tool_timeout_s))
    store = Store(f"sqlite:///{folder / 'faults.db'}")
    users = [f"user{n:02d}" for n in range(conversations)]
    with FakeTGI() as fake:
        script = _mix(rng, conversations * messages * 12)
        counts.faults_served.update(kind for kind, _ in script)  # corrected below by what was left unserved
        fake.add(*(reply for _, reply in script))
        backend = TGIBackend(fake.url, call_mode="parse", retries=0, timeout=10)
        engine = Engine(store=store, backend=backend, registry=registry, params=GenerationParams(max_new_tokens=64))

        async def everyone() -> None:
            await asyncio.gather(*(_conversation(engine, user, messages, counts) for user in users))

        asyncio.run(everyone())
        unserved = script[len(script) - fake.pending :] if fake.pending else []
        counts.faults_served.subtract(kind for kind, _ in unserved)
    faults = sum(n for kind, n in counts.faults_served.items() if kind in _FAULTS)
    counts.failures_not_shown = abs(faults - counts.model_failures_shown)  # each fault is exactly one error shown
    _check_store(store, engine, users, messages, counts)
    if flaky.runs != counts.tool_runs:  # a run with no settled call, or a settled call that ran twice
        counts.duplicated_results += abs(flaky.runs - counts.tool_runs)
    store.close()
    return counts
