"""What the engine adds per turn on top of the model's own time, and how many database writes a turn costs.

The model here is an in-process backend that streams a scripted reply at no cost, so whatever time a turn takes
is the engine's own: storing the user's message, the streaming loop with its call detector, parsing, validation,
proposing a call, confirming it, running a trivial tool, storing the result. Baseline in the same run: consuming the
same scripted stream directly, without the engine. Targets: under 5 ms per turn; no database write per token.

    .venv/bin/python -m bench.bench_engine [--conversations 50] [--turns 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from sqlalchemy import event

from backend.core.history import Turn
from backend.core.specs import FunctionSpec
from backend.engine import Engine
from backend.engine.events import CallProposed
from backend.models.protocol import GenerationParams, ModelInfo, ReplyDone, TextDelta
from backend.storage.store import Store
from backend.tools import ToolRegistry, tool_from_function

PROSE = "Your order A1001 was delivered on Tuesday; the parcel was left with a neighbour at number 12. " * 3
CALL = json.dumps({"function": "lookup_order", "arguments": {"order_number": "A1001"}})


def tokens(text: str) -> list[str]:
    """About four characters a token, like a real tokenizer's pieces of English."""
    return [text[i : i + 4] for i in range(0, len(text), 4)]


class InstantModel:
    """A backend that streams the next scripted reply at no cost (per conversation, in order)."""

    def __init__(self) -> None:
        self.scripts: dict[str, list[str]] = {}

    async def info(self) -> ModelInfo:
        return ModelInfo(backend="tgi", model_id="instant")

    async def health(self) -> bool:
        return True

    async def stream(
        self, conversation: Sequence[Turn], functions: Sequence[FunctionSpec], *,
        system: str | None = None, params: GenerationParams | None = None,
    ) -> AsyncIterator[TextDelta | ReplyDone]:
        key = conversation[0].text
        reply = self.scripts[key].pop(0)
        pieces = tokens(reply)
        for piece in pieces:
            yield TextDelta(text=piece)
        yield ReplyDone(finish_reason="eos_token", generated_tokens=len(pieces))


def lookup_order(order_number: str) -> dict[str, str]:
    """Look up an order."""
    return {"order_number": order_number, "status": "delivered"}


async def one_conversation(engine: Engine, model: InstantModel, index: int, turns: int, times: list[float]) -> None:
    user = f"user{index % 10}"
    conversation = engine.create_conversation(user)
    opener = f"Hello {index}"
    model.scripts[opener] = []
    for turn in range(turns):
        text = opener if turn == 0 else f"Where is order A1001? ({turn})"
        model.scripts[opener] += [CALL, PROSE]
        started = time.perf_counter()
        proposed = [e async for e in engine.send(conversation.id, user, text) if isinstance(e, CallProposed)]
        times.append(time.perf_counter() - started)
        started = time.perf_counter()
        async for _ in engine.confirm(proposed[0].call.id, None, user):
            pass
        times.append(time.perf_counter() - started)


async def baseline(model: InstantModel, replies: int) -> float:
    """Seconds per reply to consume the same streams without the engine."""
    model.scripts["baseline"] = [CALL, PROSE] * (replies // 2)
    started = time.perf_counter()
    for _ in range(replies):
        async for _ in model.stream([Turn.user("baseline")], []):
            pass
    return (time.perf_counter() - started) / replies


def count_writes(store: Store) -> list[int]:
    writes = [0]

    def on_execute(conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")):
            writes[0] += 1

    event.listen(store.engine, "before_cursor_execute", on_execute)
    return writes


async def run(conversations: int, turns: int, reply_chars: int) -> tuple[list[float], float, int]:
    global PROSE
    PROSE = (PROSE * (reply_chars // len(PROSE) + 1))[:reply_chars]
    with tempfile.TemporaryDirectory() as folder:
        store = Store(f"sqlite:///{Path(folder) / 'bench.db'}")
        model = InstantModel()
        engine = Engine(store=store, backend=model, registry=ToolRegistry([tool_from_function(lookup_order, source="bench")]))
        writes = count_writes(store)
        times: list[float] = []
        started = time.perf_counter()
        await asyncio.gather(*(one_conversation(engine, model, i, turns, times) for i in range(conversations)))
        wall = time.perf_counter() - started
        base = await baseline(model, 200)
        store.close()
    return times, base, writes[0], wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=50)
    parser.add_argument("--turns", type=int, default=4)
    args = parser.parse_args()

    print(f"engine overhead per turn ({args.turns} user turns + {args.turns} confirmations per conversation)")
    print(f"{'conversations':>13} {'reply chars':>11} {'p50 ms':>8} {'p95 ms':>8} {'engine ms/turn':>14} "
          f"{'baseline ms':>11} {'writes/turn':>11} {'wall s':>7}")
    asyncio.run(run(1, 2, 300))  # warm-up: imports, statement caches, the first SQLite file
    for conversations, reply_chars in ((1, 300), (args.conversations, 300), (args.conversations, 3000)):
        turns = args.turns * 10 if conversations == 1 else args.turns
        times, base, writes, wall = asyncio.run(run(conversations, turns, reply_chars))
        per_turn = sorted(t * 1000 for t in times)
        p50 = statistics.median(per_turn)
        p95 = per_turn[int(len(per_turn) * 0.95) - 1]
        print(f"{conversations:>13} {reply_chars:>11} {p50:>8.2f} {p95:>8.2f} {wall * 1000 / len(times):>14.2f} "
              f"{base * 1000:>11.3f} {writes / len(times):>11.1f} {wall:>7.2f}")
    print("A turn here is one engine call (send or confirm) including one model reply. With 50 conversations at once")
    print("they share one event loop, so a turn's latency (p50, p95) includes the others' work; what the engine adds")
    print("per turn is the loop's time divided by the turns (engine ms/turn). Baseline: reading the same replies alone.")
    print("writes/turn is the same for 300- and 3000-character replies: no database write per streamed token.")


if __name__ == "__main__":
    main()
