"""How many typical model replies `parse_reply` reads per second on one core, against plain `json.loads`.

Run from the repository root: `python -m bench.bench_parser` (`--seconds 5` for steadier figures).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

from backend.core.detector import CallDetector
from backend.core.parsing import parse_reply

__all__ = ["MIX", "main"]

# What the models write: short prose, a Trelis call, prose before a call, two calls, a pythonic list. Each entry:
# a label, the reply, and the JSON text of its calls (what the plain `json.loads` baseline reads).
MIX: list[tuple[str, str, list[str]]] = [
    ("short prose", "Hello! I can look up orders, the weather and the time. What would you like to know?", []),
    ("short prose", "The order 12345 was shipped yesterday and should arrive on Friday.", []),
    (
        "Trelis call",
        '{"function": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}',
        ['{"function": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}'],
    ),
    (
        "prose + call",
        'Sure, let me look that up for you. {"function": "lookup_order", "arguments": {"order_number": "12345"}}',
        ['{"function": "lookup_order", "arguments": {"order_number": "12345"}}'],
    ),
    (
        "two calls",
        '{"function": "get_weather", "arguments": {"city": "Paris"}}\n'
        '{"function": "get_time", "arguments": {"timezone": "Europe/Paris"}}',
        [
            '{"function": "get_weather", "arguments": {"city": "Paris"}}',
            '{"function": "get_time", "arguments": {"timezone": "Europe/Paris"}}',
        ],
    ),
    (
        "pythonic",
        '[get_weather(city="Paris", days=3)]',
        ['{"name": "get_weather", "arguments": {"city": "Paris", "days": 3}}'],
    ),
]

_ROUNDS = 5  # the best round counts: the others lost time to whatever else the machine was doing


def _rate(work: Callable[[], Any], items_per_call: int, seconds: float) -> float:
    """Items per second for `work`, the best of a few rounds that together take about `seconds`."""
    best = 0.0
    for _ in range(_ROUNDS):
        calls = 0
        start = time.perf_counter()
        deadline = start + seconds / _ROUNDS
        while (now := time.perf_counter()) < deadline:
            for _ in range(20):
                work()
            calls += 20
        best = max(best, calls * items_per_call / (now - start))
    return best


def _stream(reply: str) -> None:
    detector = CallDetector()
    for start in range(0, len(reply), 4):  # about one token per chunk
        detector.feed(reply[start : start + 4])


def main(argv: list[str] | None = None) -> None:
    """Print parser and baseline throughput for the mix, and for each kind of reply."""
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--seconds", type=float, default=1.0, help="time spent on each measurement")
    seconds = options.parse_args(argv).seconds
    for _, reply, call_texts in MIX:  # the parser must agree with the baseline before its speed means anything
        if len(parse_reply(reply).calls) != len(call_texts):
            raise SystemExit(f"parse_reply misread {reply!r}")
    replies = [reply for _, reply, _ in MIX]
    call_texts = [text for _, _, texts in MIX for text in texts]

    def parse_mix() -> None:
        for reply in replies:
            parse_reply(reply)

    def loads_mix() -> None:
        for text in call_texts:
            json.loads(text)

    def stream_mix() -> None:
        for reply in replies:
            _stream(reply)

    parser_rate = _rate(parse_mix, len(replies), seconds)
    baseline_rate = _rate(loads_mix, len(replies), seconds)
    # Benchmark figures are this script's output, so they go to stdout rather than to the log.
    print(f"parse_reply, mix:               {parser_rate:>10,.0f} replies/s")
    print(f"json.loads of the mix's calls:  {baseline_rate:>10,.0f} replies/s (baseline: no search, no prose)")
    print(f"ratio parse_reply / baseline:   {parser_rate / baseline_rate:>10.2f}")
    print(f"CallDetector, mix, 4-char chunks:{_rate(stream_mix, len(replies), seconds):>9,.0f} replies/s")
    for label in dict.fromkeys(label for label, _, _ in MIX):
        kind = [reply for other, reply, _ in MIX if other == label]
        rate = _rate(lambda kind=kind: [parse_reply(reply) for reply in kind], len(kind), seconds / 2)
        print(f"  parse_reply, {label + ':':<18}{rate:>10,.0f} replies/s")


if __name__ == "__main__":
    main()
