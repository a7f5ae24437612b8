"""MCP servers against a real server (tests/mcp_server.py) over stdio and Streamable HTTP: tools, calls, failures.

Real processes and sockets; waits are generous and no test measures a duration, so a busy machine only slows them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from backend.errors import InvalidInputError
from backend.tools import ToolPolicy, ToolRegistry, ToolResult, build_registry, tool_from_function
from backend.tools.mcp_servers import McpServers

ROOT = Path(__file__).resolve().parents[3]
WAIT_S = 60.0
SERVER = {"command": sys.executable, "args": ["-m", "tests.mcp_server"], "cwd": str(ROOT)}


def _config(tmp_path: Path, servers: dict[str, dict[str, Any]]) -> Path:
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"mcpServers": servers}), encoding="utf-8")
    return path


@contextmanager
def _started(
    path: Path, registry: ToolRegistry | None = None, *, environ: dict[str, str] | None = None,
    backoff: tuple[float, float] = (0.2, 1.0), **options: Any,
) -> Iterator[tuple[McpServers, ToolRegistry]]:
    registry = registry if registry is not None else ToolRegistry()
    servers = McpServers.from_file(path, environ=environ if environ is not None else {}, backoff=backoff)
    try:
        servers.start(registry, wait_s=WAIT_S, **options)
        yield servers, registry
    finally:
        servers.close()


def _run(registry: ToolRegistry, name: str, arguments: dict[str, Any] | None = None) -> ToolResult:
    return asyncio.run(registry.execute(name, arguments or {}))


def _eventually(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.05)


def _answering(servers: McpServers, action: str, content: dict[str, Any] | None = None) -> threading.Thread:
    """A person (on another thread) who answers the first question with `action`."""
    servers.elicitations.subscribe(lambda elicitation, answer: None)  # someone is there to be asked

    def person() -> None:
        _eventually(lambda: bool(servers.elicitations.pending()), "the server asks")
        question = servers.elicitations.pending()[0]
        assert (question.server, question.tool, question.mode) == ("test", "greet", "form")
        if action == "accept":
            with pytest.raises(InvalidInputError):
                servers.elicitations.answer(question.id, "accept", {})  # the form's name is required
        servers.elicitations.answer(question.id, action, content)

    thread = threading.Thread(target=person)
    thread.start()
    return thread


@pytest.fixture
def http_server() -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """The test server on a loopback port, over Streamable HTTP."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.mcp_server", "--http"], cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(process.stdout.readline() if process.stdout else ""))
    reader.start()
    reader.join(WAIT_S)
    try:
        assert lines and lines[0].startswith("listening on "), f"the HTTP test server did not start: {lines}"
        yield lines[0].split()[-1], process
    finally:
        process.kill()
        process.wait(WAIT_S)


def test_stdio_tools_join_the_registry_as_confirm_cards(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    with _started(_config(tmp_path, {"test": SERVER})) as (servers, registry):
        names = [t.name for t in registry.tools()]
        assert {"echo", "add", "wipe", "fail", "crash", "slow", "greet", "grow"} <= set(names)
        echo = registry.get("echo")
        assert echo.policy is ToolPolicy.CONFIRM and echo.server == "test" and echo.source == "MCP: test"
        assert [(a.name, a.type, a.required) for a in echo.spec.arguments] == [("text", "string", True)]
        assert registry.get("wipe").warning and registry.get("echo").warning is None
        [status] = servers.status()
        assert (status.state, status.transport, status.tools, status.connections) == ("connected", "stdio", names, 1)
        _eventually(lambda: "test server starting" in caplog.text, "the server's stderr reaches the log")


def test_results_errors_and_images(tmp_path: Path) -> None:
    with _started(_config(tmp_path, {"test": SERVER})) as (_servers, registry):
        assert _run(registry, "add", {"a": 2, "b": 3}).value == {"sum": 5}
        assert _run(registry, "echo", {"text": "hi"}).value == {"result": "hi"}
        failed = _run(registry, "fail", {"reason": "no such order"})
        assert not failed.ok and "no such order" in failed.error and not failed.interrupted
        assert _run(registry, "picture").value == [{"type": "image", "mime_type": "image/png", "bytes": 70}]
        assert not _run(registry, "add", {"a": "two"}).ok  # checked against the spec before the server sees it
        # A question with nobody subscribed to answer it is declined at once, not left waiting.
        assert _run(registry, "greet").value == {"result": "No name given (decline)."}


def test_a_slow_call_times_out_and_the_server_stays_usable(tmp_path: Path) -> None:
    with _started(_config(tmp_path, {"test": {**SERVER, "timeout": 1}})) as (servers, registry):
        slow = _run(registry, "slow", {"seconds": 120})
        assert not slow.ok and "did not answer within 1 s" in slow.error
        assert _run(registry, "echo", {"text": "still here"}).ok
        assert servers.status()[0].connections == 1


def test_a_crash_mid_call_is_interrupted_never_resent_and_the_server_comes_back(tmp_path: Path) -> None:
    marker = tmp_path / "crashes.txt"
    # A long backoff keeps the server down until a call asks for it again.
    with _started(_config(tmp_path, {"test": SERVER}), backoff=(600, 600)) as (servers, registry):
        crashed = _run(registry, "crash", {"marker": str(marker)})
        assert not crashed.ok and crashed.interrupted and "may or may not have taken effect" in crashed.error
        _eventually(lambda: servers.status()[0].state == "unavailable", "the server is marked unavailable")
        assert "process exited" in (servers.status()[0].reason or "")
        assert _run(registry, "echo", {"text": "back"}).ok  # the call reconnects first
        status = servers.status()[0]
        assert (status.state, status.connections, status.failures) == ("connected", 2, 0)
    assert marker.read_text(encoding="utf-8") == "crashed\n"  # sent exactly once


def test_a_lost_server_reconnects_by_itself(tmp_path: Path) -> None:
    with _started(_config(tmp_path, {"test": SERVER}), backoff=(0.2, 1.0)) as (servers, registry):
        assert _run(registry, "crash").interrupted
        _eventually(lambda: servers.status()[0].connections == 2, "the server reconnects")
        assert servers.status()[0].state == "connected"


def test_the_tool_list_follows_list_changed(tmp_path: Path) -> None:
    with _started(_config(tmp_path, {"test": SERVER})) as (servers, registry):
        assert "extra" not in registry
        assert _run(registry, "grow").ok
        _eventually(lambda: "extra" in registry, "the new tool is registered")
        assert _run(registry, "extra", {"word": "hi"}).value == {"result": "HI"}
        assert "extra" in servers.status()[0].tools
        assert _run(registry, "shrink").ok
        _eventually(lambda: "extra" not in registry, "the withdrawn tool is gone")


@pytest.mark.parametrize(
    ("action", "content", "expected"),
    [("accept", {"name": "Ada"}, "Hello, Ada!"), ("decline", None, "No name given (decline)."),
     ("cancel", None, "No name given (cancel).")],
)
def test_elicitation_waits_for_the_persons_answer(
    tmp_path: Path, action: str, content: dict[str, Any] | None, expected: str
) -> None:
    # A 1 s call timeout: the time the person takes does not count against the server.
    with _started(_config(tmp_path, {"test": {**SERVER, "timeout": 1}})) as (servers, registry):
        person = _answering(servers, action, content)
        result = _run(registry, "greet")
        person.join(WAIT_S)
        assert result.value == {"result": expected}
        assert servers.elicitations.pending() == []


def test_secrets_are_read_at_connect_time_and_never_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    environ: dict[str, str] = {}
    path = _config(tmp_path, {"test": {**SERVER, "env": {"TEST_TOKEN": "Bearer ${MCP_TEST_SECRET}"}}})
    servers = McpServers.from_file(path, environ=environ, backoff=(600, 600))
    registry = ToolRegistry()
    try:
        environ["MCP_TEST_SECRET"] = "first-s3cret"  # set after the file was read: only connecting reads it
        servers.start(registry, wait_s=WAIT_S)
        assert _run(registry, "env", {"name": "TEST_TOKEN"}).value == {"result": "Bearer first-s3cret"}
        environ["MCP_TEST_SECRET"] = "second-s3cret"
        assert _run(registry, "crash").interrupted
        _eventually(lambda: servers.status()[0].state == "unavailable", "the server is down")
        assert _run(registry, "env", {"name": "TEST_TOKEN"}).value == {"result": "Bearer second-s3cret"}
        shown = repr(servers.status()) + json.dumps([s.model_dump(mode="json") for s in servers.status()])
    finally:
        servers.close()
    for secret in ("first-s3cret", "second-s3cret"):
        assert secret not in caplog.text and secret not in shown


def test_a_server_that_answers_garbage_gives_a_failed_result(tmp_path: Path) -> None:
    liar = {**SERVER, "args": ["-m", "tests.mcp_server", "--garbage"]}
    with _started(_config(tmp_path, {"liar": liar})) as (servers, registry):
        result = _run(registry, "answer")
        assert not result.ok and "not an MCP result" in result.error
        assert servers.status()[0].state == "connected"  # one bad answer is the call's failure, not the server's


def test_a_server_that_cannot_start_leaves_callcard_running(tmp_path: Path) -> None:
    path = _config(tmp_path, {
        "missing": {"command": str(tmp_path / "no-such-server")},
        "unset": {**SERVER, "env": {"TOKEN": "${MCP_TEST_UNSET}"}},
        "off": {**SERVER, "disabled": True},
        "test": SERVER,
    })
    with _started(path) as (servers, registry):
        states = {s.name: (s.state, s.reason) for s in servers.status()}
        assert states["missing"][0] == "unavailable" and "not found" in states["missing"][1]
        assert states["unset"] == ("unavailable", "set MCP_TEST_UNSET in the environment")
        assert states["off"] == ("disabled", None) and states["test"] == ("connected", None)
        assert all(t.server == "test" for t in registry.tools() if t.server)


def test_clashing_names_go_to_server_prefixed_names_in_file_order(tmp_path: Path) -> None:
    def echo(text: str) -> str:
        """A built-in echo that was here first."""
        return text

    registry = ToolRegistry([tool_from_function(echo)])
    with _started(_config(tmp_path, {"one": SERVER, "two": SERVER}), registry) as (servers, _):
        assert registry.get("echo").server is None
        assert registry.get("one__echo").server == "one" and registry.get("two__echo").server == "two"
        assert registry.get("add").server == "one" and registry.get("two__add").server == "two"
        assert _run(registry, "two__add", {"a": 1, "b": 1}).value == {"sum": 2}
        one, two = servers.status()
        assert "one__echo" in one.tools and "two__add" in two.tools


def test_build_registry_applies_auto_only_to_a_trusted_servers_read_only_tools(tmp_path: Path) -> None:
    path = _config(tmp_path, {"trusted": {**SERVER, "trusted": True}})
    servers = McpServers.from_file(path, environ={})
    try:
        registry = build_registry(examples=False, mcp_servers=servers, auto_tools="echo,wipe", disabled_tools="add")
        assert registry.get("echo").policy is ToolPolicy.AUTO and registry.get("echo").read_only
        assert registry.get("wipe").policy is ToolPolicy.CONFIRM  # not read-only: a person confirms it
        assert registry.get("add").policy is ToolPolicy.DISABLED
    finally:
        servers.close()


def test_close_stops_the_servers_process(tmp_path: Path) -> None:
    with _started(_config(tmp_path, {"test": SERVER})) as (_servers, registry):
        pid = _run(registry, "pid").value["result"]
    _eventually(lambda: not _alive(pid), "the server's process is gone")


def test_streamable_http_server(http_server: tuple[str, subprocess.Popen[str]], tmp_path: Path) -> None:
    url, _process = http_server
    path = _config(tmp_path, {"test": {"url": url, "headers": {"Authorization": "Bearer ${MCP_TEST_TOKEN}"}}})
    with _started(path, environ={"MCP_TEST_TOKEN": "http-s3cret"}) as (servers, registry):
        assert servers.status()[0].transport == "http" and registry.get("echo").server == "test"
        assert _run(registry, "header", {"name": "Authorization"}).value == {"result": "Bearer http-s3cret"}
        assert _run(registry, "add", {"a": 20, "b": 22}).value == {"sum": 42}
        assert "boom" in _run(registry, "fail", {"reason": "boom"}).error
        person = _answering(servers, "accept", {"name": "Grace"})
        assert _run(registry, "greet").value == {"result": "Hello, Grace!"}
        person.join(WAIT_S)
        assert _run(registry, "grow").ok
        _eventually(lambda: "extra" in registry, "the new tool is registered")


def test_a_streamable_http_server_that_dies_mid_call(http_server: tuple[str, subprocess.Popen[str]],
                                                     tmp_path: Path) -> None:
    url, process = http_server
    with _started(_config(tmp_path, {"test": {"url": url, "timeout": 10}})) as (servers, registry):
        crashed = _run(registry, "crash")
        assert not crashed.ok and crashed.interrupted
        process.wait(WAIT_S)
        _eventually(lambda: servers.status()[0].state == "unavailable", "the server is marked unavailable")
        assert servers.status()[0].reason
        gone = _run(registry, "echo", {"text": "anyone?"})
        assert not gone.ok and not gone.interrupted and "not sent" in gone.error


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"  # a zombie has exited; only its parent's bookkeeping is left
