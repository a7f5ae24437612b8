"""Connecting to a database: SQLAlchemy engines for SQLite (every connection set up the same way) and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event

__all__ = ["create_database_engine", "sqlite_engine"]


def create_database_engine(url: str) -> Engine:
    """An engine for a SQLAlchemy URL; `postgresql://` gets the psycopg (3) driver."""
    if url.startswith("sqlite"):
        return sqlite_engine(url)
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return create_engine(url, pool_pre_ping=True)


def sqlite_engine(url: str) -> Engine:
    """A SQLite engine usable from many threads, its file's folder created; see `_sqlite_pragmas`."""
    path = url.split("///", 1)[-1]
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 10})
    event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """Readers never block the writer (WAL), foreign keys hold, and a locked database is waited for, not an error."""
    cursor = dbapi_connection.cursor()
    for pragma in ("journal_mode=WAL", "foreign_keys=ON", "synchronous=NORMAL", "busy_timeout=5000"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()
