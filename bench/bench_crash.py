"""Random kills: a worker running Callcard's engine is SIGKILLed at random steps, restarted, and the store checked.

Run from the repository root: `python -m bench.bench_crash [--kills 200] [--database sqlite|postgresql|both]
[--seed 1] [--start fork|spawn]`. PostgreSQL is a private server started for the run (Debian's binaries, as the
tests use). See `tests/crash_harness.py` for the steps, the invariants and how kills are aimed.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
from pathlib import Path

from tests.crash_harness import INVARIANTS, CrashCounts, run_crash_harness
from tests.postgres import postgres_server

__all__ = ["main", "report"]


def report(counts: CrashCounts, *, seed: int, start: str) -> str:
    """The figures of one run as lines of text."""
    ready = sorted(counts.ready_seconds[1:]) or [0.0]  # the first start-up also pays the imports
    operations = ", ".join(f"{name} {n}" for name, n in sorted(counts.operations.items()))
    landed = ", ".join(f"{step} {n}" for step, n in counts.kills_by_step.most_common())
    missed = sum(1 for _, aim, landed_in in counts.kill_log if aim not in ("anywhere", landed_in))
    lines = [
        (f"{counts.database}: {counts.kills} kills in {counts.elapsed_s:.0f} s (seed {seed}, lives {start}ed), "
         f"{counts.lives} lives; start-up to ready: median {statistics.median(ready) * 1000:.0f} ms, "
         f"max {max(ready) * 1000:.0f} ms"),
        f"operations completed: {counts.operations_done} ({operations})",
        f"calls found confirmed or running at start-up and interrupted: {counts.interrupted_at_start}",
        f"kills by the step they landed in: {landed}",
        f"kills that landed in another step than aimed at (the aimed one had ended or never came): {missed}",
    ]
    for invariant in INVARIANTS:
        broken = sum(1 for v in counts.violations if v.startswith(invariant))
        lines.append(f"invariant {invariant}: {counts.checks[invariant]:,} facts checked, {broken} violations")
    lines.append(f"violations: {len(counts.violations)}")
    lines.extend(f"  {violation}" for violation in counts.violations)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--start", choices=["fork", "spawn"], default="fork",
                        help="fork lives from a process that imported Callcard once, or start a fresh one each time")
    options = parser.parse_args()
    logging.disable(logging.WARNING)
    databases = ["sqlite", "postgresql"] if options.database == "both" else [options.database]
    for database in databases:
        with tempfile.TemporaryDirectory() as folder:
            if database == "sqlite":
                url = f"sqlite:///{Path(folder) / 'callcard.db'}"
                counts = run_crash_harness(
                    Path(folder), database_url=url, kills=options.kills, seed=options.seed, start=options.start,
                )
            else:
                with postgres_server() as server:
                    counts = run_crash_harness(
                        Path(folder), database_url=server.new_database(), kills=options.kills, seed=options.seed,
                        start=options.start,
                    )
        print(report(counts, seed=options.seed, start=options.start), flush=True)


if __name__ == "__main__":
    main()
