"""Fixtures for the tools tests: a real loopback HTTP server with scripted replies, and a support desk in tmp_path."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from backend.tools.support_desk import SupportDesk


@dataclass
class Reply:
    """What the fake server answers on one path."""

    status: int = 200
    body: Any = b""
    content_type: str = "application/json"
    delay_s: float = 0.0


@dataclass
class Received:
    """One request the fake server got."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeServer:
    """A ThreadingHTTPServer on 127.0.0.1 answering each path with a scripted Reply (or a function of the request)."""

    url: str = ""
    routes: dict[str, Reply | Callable[[Received], Reply]] = field(default_factory=dict)
    requests: list[Received] = field(default_factory=list)

    def reply(self, path: str, reply: Reply | Callable[[Received], Reply]) -> None:
        self.routes[path] = reply


def _handler_for(server: FakeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            received = Received(
                method=self.command,
                path=parts.path,
                query=parse_qs(parts.query),
                headers={k.lower(): v for k, v in self.headers.items()},
                body=self.rfile.read(length) if length else b"",
            )
            server.requests.append(received)
            route = server.routes.get(parts.path, Reply(status=404, body={"error": "not found"}))
            reply = route(received) if callable(route) else route
            if reply.delay_s:
                time.sleep(reply.delay_s)
            body = reply.body
            if not isinstance(body, (bytes, str)):
                body = json.dumps(body)
            data = body.encode("utf-8") if isinstance(body, str) else body
            try:
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout tests)
                pass

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            return

    return Handler


@pytest.fixture
def fake_server() -> Iterator[FakeServer]:
    """A fresh fake HTTP server per test."""
    state = FakeServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(state))
    httpd.daemon_threads = True
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def closed_port_url() -> str:
    """A loopback URL where nothing listens."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[SupportDesk]:
    """A seeded support desk in its own SQLite file."""
    support_desk = SupportDesk(tmp_path / "data")
    try:
        yield support_desk
    finally:
        support_desk.close()
