"""Faults under load: 50 conversations at once through a failing model server and flaky tools, and what was lost.

Run from the repository root: `python -m bench.bench_faults [--conversations 50] [--messages 3] [--seed 7]`.
Every failed reply is retried as a person would and every card confirmed; see `tests/load_faults.py`.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

from tests.load_faults import run_faults_under_load

__all__ = ["main"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=50)
    parser.add_argument("--messages", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    options = parser.parse_args()
    logging.disable(logging.WARNING)  # each fault logs a warning; the counts below are the point
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        counts = run_faults_under_load(
            Path(folder), conversations=options.conversations, messages=options.messages, seed=options.seed,
        )
    elapsed = time.perf_counter() - started
    served = ", ".join(f"{kind} {n}" for kind, n in sorted(counts.faults_served.items()))
    print(f"{counts.conversations} conversations at once, {counts.messages_sent} messages, {elapsed:.1f} s")
    print(f"model replies served: {served}")
    print(f"failures shown to people: {counts.model_failures_shown} (all retried until answered)")
    print(f"calls confirmed: {counts.calls_confirmed}; tool runs: {counts.tool_runs}, of which failed or timed out: "
          f"{counts.tool_failures}")
    print(f"lost user messages: {counts.lost_messages}; duplicated results: {counts.duplicated_results}; "
          f"failures not shown: {counts.failures_not_shown}; not retryable: {counts.failures_not_retryable}; "
          f"conversations left unanswered: {counts.stuck_conversations}")


if __name__ == "__main__":
    main()
