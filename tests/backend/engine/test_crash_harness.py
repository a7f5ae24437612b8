"""Random SIGKILLs at every step of scripted conversations: after each restart the store keeps every invariant.

A few kills here, each aimed at a different step (streaming, confirm, the tool before and after it acts, settle,
reject, import, delete, take back, start-up itself); `python -m bench.bench_crash` runs 200 per database.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from backend.storage.store import Store
from tests.crash_harness import INVARIANTS, CrashCounts, StoreChecker, run_crash_harness
from tests.postgres import PostgresServer

_SQLITE_AIMS = [
    "stream", "reply-stored", "confirm", "running", "tool", "tool-effect", "settled", "reject", "import", "delete",
    "withdraw", "recover",
]
_POSTGRES_AIMS = ["stream", "confirm", "tool", "tool-effect", "reject", "import", "delete", "recover"]


@pytest.fixture(scope="module")
def sqlite_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[CrashCounts, Path, str]:
    folder = tmp_path_factory.mktemp("crash")
    url = f"sqlite:///{folder / 'callcard.db'}"
    return run_crash_harness(folder, database_url=url, seed=3, aims=_SQLITE_AIMS), folder, url


def _assert_survived(counts: CrashCounts, kills: int) -> None:
    assert counts.violations == []
    assert counts.kills == kills
    assert len(counts.kills_by_step) >= 4, f"kills landed in too few steps: {counts.kills_by_step}"
    assert all(counts.checks[invariant] > 0 for invariant in INVARIANTS), counts.checks


def test_sqlite_store_keeps_every_invariant_through_kills_at_every_step(
    sqlite_run: tuple[CrashCounts, Path, str],
) -> None:
    counts, _, _ = sqlite_run

    _assert_survived(counts, len(_SQLITE_AIMS))


def test_postgresql_store_keeps_every_invariant_through_kills_at_every_step(
    postgres: PostgresServer, tmp_path: Path,
) -> None:
    counts = run_crash_harness(tmp_path, database_url=postgres.new_database(), seed=4, aims=_POSTGRES_AIMS)

    _assert_survived(counts, len(_POSTGRES_AIMS))


def test_lives_started_as_fresh_interpreters_survive_kills_too(tmp_path: Path) -> None:
    """The runs above fork each life from a process that imported Callcard once; here each is a new process."""
    aims = ["tool", "recover", "import", "stream"]
    counts = run_crash_harness(tmp_path, database_url=f"sqlite:///{tmp_path / 'callcard.db'}", seed=5, aims=aims,
                               start="spawn")

    _assert_survived(counts, len(aims))


def test_the_checker_sees_a_broken_store(sqlite_run: tuple[CrashCounts, Path, str]) -> None:
    """The harness's zero means something: a lost result, a second run and a gap in positions are each reported."""
    _, folder, url = sqlite_run
    store = Store(url)
    with store.engine.begin() as connection:
        connection.execute(text(
            "DELETE FROM messages WHERE id = (SELECT max(id) FROM messages WHERE role = 'function_result')"
        ))
        # The newest message is the last of its conversation: moving it on leaves a gap and collides with nothing.
        connection.execute(text("UPDATE messages SET position = position + 5 WHERE id = (SELECT max(id) FROM messages)"))
    effects = (folder / "effects.log").read_text().split()
    assert effects, "the run confirmed no call that acted"
    with (folder / "effects.log").open("a") as file:
        file.write(effects[0] + "\n")
    counts = CrashCounts()

    StoreChecker(store, folder, counts).check(0, "none")

    broken = {violation.split(":")[0] for violation in counts.violations}
    assert {"1 results", "2 effects", "4 positions"} <= broken, counts.violations
    store.close()
