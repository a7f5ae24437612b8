"""A throwaway PostgreSQL server for the tests: Debian's binaries, a data directory in /tmp, loopback only."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.fake_tgi import unused_port

__all__ = ["postgres_server", "PostgresUnavailable"]


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries here (scripts/test installs Debian's `postgresql`)."""


def _bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4]))
    if not found:
        raise PostgresUnavailable("PostgreSQL is not installed: run scripts/test (it installs Debian's postgresql).")
    return Path(found[-1]).parent


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """Start a private PostgreSQL on 127.0.0.1 and stop it afterwards (as user `postgres` when we are root)."""
    bindir = _bindir()
    folder = Path(tempfile.mkdtemp(prefix="callcard-pg-"))
    data = folder / "data"
    as_postgres: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [*as_postgres, str(bindir / "initdb"), "-D", str(data), "-U", "callcard", "--auth=trust", "-E", "UTF8",
         "--no-sync"],
        check=True, capture_output=True,
    )
    port = unused_port()
    server = subprocess.Popen(
        [*as_postgres, str(bindir / "postgres"), "-D", str(data), "-p", str(port), "-k", str(folder),
         "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
         "-c", "full_page_writes=off"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        instance = PostgresServer(port)
        instance.wait_ready(server)
        yield instance
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(folder, ignore_errors=True)


class PostgresServer:
    """A running test server; `new_database()` gives each test an empty database of its own."""

    def __init__(self, port: int) -> None:
        self.port = port

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://callcard@127.0.0.1:{self.port}/{database}"

    def wait_ready(self, process: subprocess.Popen[bytes]) -> None:
        import psycopg

        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"PostgreSQL did not start: {process.stderr.read().decode()[-2000:]}")
            try:
                psycopg.connect(f"host=127.0.0.1 port={self.port} user=callcard dbname=postgres", connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def new_database(self) -> str:
        import psycopg

        name = f"test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=callcard dbname=postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)
