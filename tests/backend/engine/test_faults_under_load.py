"""Faults under load: many conversations at once, a failing model server and flaky tools, and nothing is lost."""

from __future__ import annotations

from pathlib import Path

from tests.load_faults import run_faults_under_load


def test_many_conversations_through_every_kind_of_fault_lose_nothing_and_run_nothing_twice(tmp_path: Path) -> None:
    counts = run_faults_under_load(tmp_path, conversations=16, messages=3, seed=11)

    # The scenario really exercised what it claims to (the seed fixes the mix and the order it is served in).
    assert counts.messages_sent == 48 and counts.calls_confirmed > 5 and counts.tool_failures > 0
    assert sum(counts.faults_served[kind] for kind in ("429", "500", "mid_stream", "dropped", "proxy_502")) > 5
    assert counts.model_failures_shown > 5
    assert (counts.lost_messages, counts.duplicated_results, counts.failures_not_shown) == (0, 0, 0)
    assert (counts.failures_not_retryable, counts.stuck_conversations) == (0, 0)
