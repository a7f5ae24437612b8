"""Embedded generation speed: Callcard's EmbeddedBackend against raw llama-cpp-python, same model, prompt and run.

    python -m bench.bench_embedded [--tokens 128] [--rounds 3]

Reports generation speed (tokens per second after the first token) and first-token latency for both, and their ratio
(the backend's thread, queue and stop handling should cost under 10%). Rounds alternate between the two and use fresh
prompts, so neither gains from the other's cache.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import sys
import time
from dataclasses import dataclass

import llama_cpp

from backend.core.history import Turn
from backend.core.prompts import native_messages
from backend.core.specs import FunctionSpec
from backend.models.embedded import EmbeddedBackend, bundled_model_path
from backend.models.protocol import GenerationParams, TextDelta

_WEATHER = FunctionSpec.from_any(
    {
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }
)


@dataclass
class Run:
    """One timed generation."""

    first_token_s: float
    tokens: int
    total_s: float

    @property
    def tokens_per_s(self) -> float:
        """Generation speed after the first token (the prompt's cost is in first_token_s)."""
        return (self.tokens - 1) / (self.total_s - self.first_token_s) if self.tokens > 1 else 0.0


def request(round_index: int) -> str:
    return f"Story {round_index}: write a long, detailed story about a lighthouse keeper and a storm."


async def backend_run(backend: EmbeddedBackend, text: str, functions: list[FunctionSpec], tokens: int) -> Run:
    params = GenerationParams(max_new_tokens=tokens, temperature=0.0, repetition_penalty=1.0, seed=0)
    started = time.perf_counter()
    first = 0.0
    count = 0
    async for event in backend.stream([Turn.user(text)], functions, params=params):
        if isinstance(event, TextDelta):
            first = first or time.perf_counter() - started
        else:
            count = event.generated_tokens or 0
    return Run(first, count, time.perf_counter() - started)


def raw_run(llm: llama_cpp.Llama, prompt: str, tokens: int) -> Run:
    started = time.perf_counter()
    first = 0.0
    count = 0
    for chunk in llm.create_completion(
        prompt, max_tokens=tokens, temperature=0.0, top_k=0, top_p=1.0, min_p=0.0, repeat_penalty=1.0,
        stream=True, stop=["<|im_end|>"],
    ):
        count += 1
        first = first or time.perf_counter() - started
        del chunk
    return Run(first, count, time.perf_counter() - started)


def summary(name: str, runs: list[Run]) -> tuple[float, float]:
    speed = statistics.median(r.tokens_per_s for r in runs)
    latency = statistics.median(r.first_token_s for r in runs)
    sys.stdout.write(
        f"{name:46} {speed:8.1f} tok/s   first token {1000 * latency:7.0f} ms   "
        f"({', '.join(str(r.tokens) for r in runs)} tokens)\n"
    )
    return speed, latency


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=128, help="tokens to generate per run")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    threads = max(1, os.cpu_count() or 1)
    backend = EmbeddedBackend()
    # The raw model is loaded and run on the backend's own worker thread: llama.cpp's OpenMP keeps a team of threads
    # per calling thread, and two teams on a small machine slow each other down (see EmbeddedBackend.__init__).
    on_worker = backend._worker.submit
    raw = on_worker(
        llama_cpp.Llama, model_path=str(bundled_model_path()), n_ctx=4096, n_threads=threads, n_threads_batch=threads,
        flash_attn=True, verbose=False,
    ).result()
    template = llama_cpp.llama_chat_format.Jinja2ChatFormatter(
        template=raw.metadata["tokenizer.chat_template"], eos_token="<|im_end|>", bos_token="<|im_start|>"
    )
    mine: list[Run] = []
    theirs: list[Run] = []
    offered: list[Run] = []
    for index in range(args.rounds):
        text = request(index)
        prompt = template(messages=native_messages([Turn.user(text)])).prompt  # type: ignore[arg-type]
        theirs.append(on_worker(raw_run, raw, prompt, args.tokens).result())
        mine.append(asyncio.run(backend_run(backend, text, [], args.tokens)))
        offered.append(asyncio.run(backend_run(backend, request(100 + index), [_WEATHER], args.tokens)))
    sys.stdout.write(f"SmolLM2-135M Q4_1, {threads} threads, {args.tokens} tokens, median of {args.rounds} rounds\n")
    raw_speed, raw_latency = summary("raw llama-cpp-python (create_completion)", theirs)
    speed, latency = summary("EmbeddedBackend.stream, no functions", mine)
    summary("EmbeddedBackend.stream, a function offered", offered)
    sys.stdout.write(
        f"ratio (EmbeddedBackend / raw): speed {speed / raw_speed:.2f}, first-token latency {latency / raw_latency:.2f}\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
