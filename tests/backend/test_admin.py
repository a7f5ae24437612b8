"""Backups: a copy taken while the app writes opens as a consistent database, and the command line makes them."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from backend.admin import backup_sqlite
from backend.errors import ConfigError
from backend.storage.store import Store
from backend.storage.tables import MessageRole
from backend.tools.support_desk import SupportDesk

_ROOT = Path(__file__).resolve().parents[2]


def test_a_backup_taken_during_writes_restores_a_consistent_conversation(tmp_path: Path) -> None:
    store = Store.in_data_dir(tmp_path / "live")
    conversation = store.create_conversation(owner=store.user("ann"))
    for index in range(200):  # enough pages that the copy takes several steps
        store.add_message(conversation_id=conversation.id, role=MessageRole.USER, content=f"before {index} " * 20)
    writing, stop = threading.Event(), threading.Event()
    written = [200]

    def write() -> None:
        while not stop.is_set():
            store.add_message(conversation_id=conversation.id, role=MessageRole.USER, content="during " * 40)
            written[0] += 1
            writing.set()

    writer = threading.Thread(target=write)
    writer.start()
    try:
        writing.wait(timeout=30)
        copies = [backup_sqlite(tmp_path / "live" / "callcard.db", tmp_path / "backups" / f"copy-{n}.db") for n in range(3)]
    finally:
        stop.set()
        writer.join()

    assert written[0] > 200  # the writer really ran while the copies were taken
    for copy in copies:
        assert not copy.with_name(copy.name + "-wal").exists()
        restored = Store(f"sqlite:///{copy}")
        try:
            positions = [m.position for m in restored.messages(conversation.id)]
            assert 200 <= len(positions) <= written[0]
            assert positions == list(range(positions[0], positions[0] + len(positions)))  # gap-free, unique
            assert restored.conversation(conversation.id, user=restored.user("ann")).id == conversation.id
        finally:
            restored.close()
    store.close()


def test_a_backup_never_overwrites_and_says_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no database"):
        backup_sqlite(tmp_path / "absent.db", tmp_path / "copy.db")
    source = tmp_path / "live.db"
    sqlite3.connect(source).close()
    (tmp_path / "copy.db").write_text("an older backup")
    with pytest.raises(ConfigError, match="already exists"):
        backup_sqlite(source, tmp_path / "copy.db")
    assert (tmp_path / "copy.db").read_text() == "an older backup"


def test_the_command_copies_the_store_and_the_support_desk(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store = Store.in_data_dir(data)
    conversation = store.create_conversation(owner=store.user("ann"))
    store.add_message(conversation_id=conversation.id, role=MessageRole.USER, content="Where is A1001?")
    SupportDesk(data).close()
    environment = {**os.environ, "CALLCARD_DATA_DIR": str(data)}
    environment.pop("CALLCARD_DATABASE_URL", None)

    done = subprocess.run(
        [sys.executable, "-m", "backend.admin", "backup", str(tmp_path / "backups")],
        cwd=_ROOT, env=environment, capture_output=True, text=True, timeout=120,
    )

    assert done.returncode == 0, done.stderr
    copies = sorted((tmp_path / "backups").iterdir())
    assert [c.name.split("-")[0] for c in copies] == ["callcard", "support_desk"]
    restored = Store(f"sqlite:///{copies[0]}")
    assert [m.content for m in restored.messages(conversation.id)] == ["Where is A1001?"]
    restored.close()
    with sqlite3.connect(copies[1]) as desk:
        assert desk.execute("SELECT count(*) FROM orders").fetchone()[0] > 0
    store.close()
