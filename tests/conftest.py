"""Shared fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fake_tgi import FakeTGI
from tests.postgres import PostgresServer, PostgresUnavailable, postgres_server


@pytest.fixture
def fake_tgi() -> Iterator[FakeTGI]:
    """A fake TGI server on a loopback port with an empty script; stopped after the test."""
    with FakeTGI() as server:
        yield server


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the whole run, started on first use."""
    try:
        with postgres_server() as server:
            yield server
    except PostgresUnavailable as error:
        pytest.skip(str(error))


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a SQLite file in tmp_path, and (second run) a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'callcard.db'}"
    return request.getfixturevalue("postgres").new_database()
