"""Operator commands: `python -m backend.admin backup FOLDER` copies the SQLite databases while the app runs.

SQLite's online backup API copies a consistent snapshot page by page, so writers go on meanwhile and the copy is
a database that opens as it was at one moment, WAL contents included. PostgreSQL has its own tools (`pg_dump`).
"""

from __future__ import annotations

import argparse
import logging
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from backend.errors import ConfigError
from backend.settings import load_settings
from backend.tools.support_desk import DATABASE_FILE as DESK_FILE

__all__ = ["backup_sqlite", "backup_databases", "main"]

_log = logging.getLogger(__name__)

_PAGES_PER_STEP = 1024  # copied between chances for writers to take the lock


def backup_sqlite(source: Path, target: Path) -> Path:
    """A consistent copy of the SQLite database `source` at `target` (which must not exist), checked afterwards."""
    if not source.is_file():
        raise ConfigError(f"There is no database at {source}.")
    if target.exists():
        raise ConfigError(f"{target} already exists: give a new path, so no backup is overwritten.")
    target.parent.mkdir(parents=True, exist_ok=True)
    live, copy = sqlite3.connect(source, timeout=30), sqlite3.connect(target)
    try:
        live.backup(copy, pages=_PAGES_PER_STEP)
        copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
        (verdict,) = copy.execute("PRAGMA integrity_check").fetchone()
    finally:
        live.close()
        copy.close()
    if verdict != "ok":
        target.unlink(missing_ok=True)
        raise ConfigError(f"The copy of {source} failed its integrity check ({verdict}); nothing was kept.")
    return target


def backup_databases(data_dir: Path, database_url: str | None, folder: Path) -> list[Path]:
    """Copies of Callcard's store and the support desk under `folder`; the store only when it is SQLite."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    sources: list[Path] = []
    if database_url is None:
        sources.append(data_dir / "callcard.db")
    elif database_url.startswith("sqlite:///"):
        sources.append(Path(database_url.removeprefix("sqlite:///")))
    else:
        _log.warning("The store is not SQLite (%s): back it up with its own tools, e.g. pg_dump.",
                     database_url.split("://", 1)[0])
    desk = data_dir / DESK_FILE
    if desk.is_file():
        sources.append(desk)
    return [backup_sqlite(source, folder / f"{source.stem}-{stamp}{source.suffix}") for source in sources]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backend.admin", description="Callcard operator commands.")
    commands = parser.add_subparsers(dest="command", required=True)
    backup = commands.add_parser("backup", help="copy the SQLite databases (safe while the app runs)")
    backup.add_argument("folder", type=Path, help="where the copies go (created if needed)")
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    settings = load_settings()
    try:
        copies = backup_databases(settings.data_dir, settings.database_url, options.folder)
    except ConfigError as error:
        print(f"Backup failed: {error}")
        return 1
    for copy in copies:
        print(f"Backed up to {copy}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
