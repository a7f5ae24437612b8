"""TGIBackend's overhead over a raw SSE reader, against the fake TGI server on loopback.

Run from the repository root: `.venv/bin/python -m bench.bench_tgi_client [--replies 50] [--tokens 200]`.
Both sides stream the same scripted replies in the same run; the fake server sends tokens as fast as it can, so
what is measured is client-side cost: time to first token and time to the end of the reply.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import time
from collections.abc import Awaitable, Callable

import httpx

from backend.core.history import Turn
from backend.core.specs import load_functions
from backend.models.protocol import TextDelta
from backend.models.tgi import TGIBackend
from tests.fake_tgi import FakeTGI, tokenize

CONVERSATION = [Turn.user("Tell me about the weather in Paris.")]
FUNCTIONS = load_functions(
    {"function": "get_weather", "description": "Weather in a city.", "arguments": [{"name": "city", "type": "string"}]}
)

Timing = tuple[float, float]  # seconds to the first token, seconds to the end


async def _backend_reply(backend: TGIBackend, with_functions: bool) -> Timing:
    start = time.perf_counter()
    first = None
    async for event in backend.stream(CONVERSATION, FUNCTIONS if with_functions else []):
        if first is None and isinstance(event, TextDelta):
            first = time.perf_counter() - start
    return first or 0.0, time.perf_counter() - start


async def _raw_reply(client: httpx.AsyncClient | None, url: str, prompt: str) -> Timing:
    """Read TGI's event stream by hand: the floor any client has to pay."""
    start = time.perf_counter()
    first = None
    body = {"inputs": prompt, "parameters": {"details": True, "max_new_tokens": 1024}}
    own = client is None
    client = client or httpx.AsyncClient(timeout=30)
    try:
        async with client.stream("POST", f"{url}/generate_stream", json=body) as response:
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                event = json.loads(line[5:])
                if first is None and not event["token"]["special"]:
                    first = time.perf_counter() - start
                if event.get("details") is not None:
                    break
    finally:
        if own:
            await client.aclose()
    return first or 0.0, time.perf_counter() - start


async def _measure(
    name: str, fake: FakeTGI, text: str, replies: int, once: Callable[[], Awaitable[Timing]]
) -> dict[str, float]:
    for _ in range(3):  # warm up: imports, the cached /info, the connection
        fake.reply(text)
        await once()
    timings = []
    for _ in range(replies):
        fake.reply(text)
        timings.append(await once())
    first = statistics.median(t[0] for t in timings) * 1000
    total = statistics.median(t[1] for t in timings) * 1000
    print(f"{name:<44} first token {first:8.2f} ms   whole reply {total:8.2f} ms")
    return {"first": first, "total": total}


async def main(replies: int, tokens: int) -> None:
    text = " ".join(f"word{i % 10}" for i in range(tokens // 2))  # two fake tokens per word
    with FakeTGI(max_total_tokens=100_000, max_input_tokens=50_000) as fake:
        backend = TGIBackend(fake.url, retries=0)
        prompt = ""

        async def capture_prompt() -> Timing:
            nonlocal prompt
            timing = await _backend_reply(backend, False)
            prompt = fake.generations[-1].prompt
            return timing

        print(f"{replies} replies of {len(tokenize(text))} tokens each, medians:")
        ours = await _measure("TGIBackend.stream (no functions)", fake, text, replies, capture_prompt)
        guided = await _measure(
            "TGIBackend.stream (functions, free-text reply)", fake, text, replies, lambda: _backend_reply(backend, True)
        )
        async with httpx.AsyncClient(timeout=30) as shared:
            raw = await _measure(
                "raw httpx SSE reader (one shared client)",
                fake,
                text,
                replies,
                lambda: _raw_reply(shared, fake.url, prompt),
            )
        fresh = await _measure(
            "raw httpx SSE reader (new client each time)",
            fake,
            text,
            replies,
            lambda: _raw_reply(None, fake.url, prompt),
        )
    print()
    for label, measured in (("no functions", ours), ("functions", guided)):
        print(
            f"TGIBackend ({label}) / raw shared-client reader: first token x{measured['first'] / raw['first']:.2f}, "
            f"whole reply x{measured['total'] / raw['total']:.2f}"
        )
    print(
        f"TGIBackend (no functions) / raw new-client reader: first token x{ours['first'] / fresh['first']:.2f}, "
        f"whole reply x{ours['total'] / fresh['total']:.2f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replies", type=int, default=50, help="replies measured per client (default 50)")
    parser.add_argument("--tokens", type=int, default=200, help="tokens per reply (default 200)")
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main(arguments.replies, arguments.tokens))
