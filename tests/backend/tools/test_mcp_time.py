"""A third-party server from PyPI, `mcp-server-time`, started by Callcard from a configuration file.

Also the README's example file (examples/mcp.json), and the real `python app.py` serving it: /healthz lists the
server, and stopping the app stops the server's process.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from backend.tools import ToolPolicy, ToolRegistry, build_registry
from backend.tools.mcp_servers import McpServers
from tests.fake_tgi import FakeTGI, unused_port

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "mcp.json"
WAIT_S = 90.0


@pytest.fixture
def venv_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The virtualenv's bin folder on PATH, as in an activated shell, where `mcp-server-time` lives."""
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")


@pytest.fixture
def time_server(tmp_path: Path) -> Iterator[tuple[McpServers, ToolRegistry]]:
    path = tmp_path / "mcp.json"
    server = {"command": sys.executable, "args": ["-m", "mcp_server_time", "--local-timezone", "UTC"], "trusted": True}
    path.write_text(json.dumps({"mcpServers": {"time": server}}), encoding="utf-8")
    servers = McpServers.from_file(path)
    try:
        registry = build_registry(examples=False, mcp_servers=servers, auto_tools="get_current_time")
        yield servers, registry
    finally:
        servers.close()


def test_its_tools_become_cards_with_the_schema_it_publishes(time_server: tuple[McpServers, ToolRegistry]) -> None:
    servers, registry = time_server
    assert [t.name for t in registry.tools()] == ["get_current_time", "convert_time"]
    assert servers.status()[0].state == "connected"
    now, convert = registry.get("get_current_time"), registry.get("convert_time")
    assert [(a.name, a.type, a.required) for a in now.spec.arguments] == [("timezone", "string", True)]
    assert [a.name for a in convert.spec.arguments] == ["source_timezone", "time", "target_timezone"]
    # Trusted and read-only by its annotations: auto where the operator asked, confirm elsewhere.
    assert now.policy is ToolPolicy.AUTO and convert.policy is ToolPolicy.CONFIRM and convert.read_only
    assert now.source == "MCP: time" and now.warning is None


def test_get_current_time_in_utc(time_server: tuple[McpServers, ToolRegistry]) -> None:
    _servers, registry = time_server
    result = asyncio.run(registry.execute("get_current_time", {"timezone": "UTC"}))
    assert result.ok, result.error
    assert set(result.value) == {"timezone", "datetime", "day_of_week", "is_dst"}
    assert result.value["timezone"] == "UTC" and result.value["is_dst"] is False
    moment = datetime.fromisoformat(result.value["datetime"])
    assert moment.utcoffset().total_seconds() == 0 and result.value["day_of_week"] == moment.strftime("%A")


def test_convert_time_and_a_refused_timezone(time_server: tuple[McpServers, ToolRegistry]) -> None:
    _servers, registry = time_server
    converted = asyncio.run(registry.execute(
        "convert_time", {"source_timezone": "UTC", "time": "12:00", "target_timezone": "Asia/Tokyo"}
    ))
    assert converted.ok and converted.value["time_difference"] == "+9.0h"
    assert converted.value["target"]["datetime"].endswith("T21:00:00+09:00")
    refused = asyncio.run(registry.execute("get_current_time", {"timezone": "Mars/Olympus"}))
    assert not refused.ok and "Mars/Olympus" in refused.error


@pytest.mark.usefixtures("venv_on_path")
def test_the_readme_example_file_works() -> None:
    with McpServers.from_file(EXAMPLE) as servers:
        registry = ToolRegistry()
        servers.start(registry, wait_s=WAIT_S)
        assert servers.status()[0].state == "connected", servers.status()[0].reason
        assert asyncio.run(registry.execute("get_current_time", {"timezone": "UTC"})).value["timezone"] == "UTC"


@pytest.mark.usefixtures("venv_on_path")
def test_the_app_serves_it_in_healthz_and_stops_it(tmp_path: Path, fake_tgi: FakeTGI) -> None:
    port = unused_port()
    environment = {
        **os.environ, "CALLCARD_ENDPOINT": fake_tgi.url, "CALLCARD_DATA_DIR": str(tmp_path / "data"),
        "CALLCARD_MCP_SERVERS": str(EXAMPLE), "GRADIO_SERVER_PORT": str(port), "GRADIO_ANALYTICS_ENABLED": "False",
    }
    environment.pop("CALLCARD_BACKEND", None)
    app = subprocess.Popen(
        [sys.executable, "app.py"], cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        report = _healthz(f"http://127.0.0.1:{port}/healthz", app)
        [server] = report["mcp_servers"]
        assert (server["name"], server["state"], server["tools"]) == (
            "time", "connected", ["get_current_time", "convert_time"])
        children = _children(app.pid)
        assert children, "the app started no server process"
    finally:
        app.send_signal(signal.SIGTERM)
        output = app.communicate(timeout=WAIT_S)[0].decode()
    assert app.returncode == 0, output[-3000:]
    assert not [pid for pid in children if _alive(pid)], "the server outlived the app"


def _healthz(url: str, app: subprocess.Popen[bytes]) -> dict:
    deadline = time.monotonic() + WAIT_S
    while True:
        assert app.poll() is None, app.stdout.read().decode()[-3000:] if app.stdout else "the app exited"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            if error.code != 404:  # 503 when the model is down: the report is still there
                return json.loads(error.read())
        except OSError:
            pass
        assert time.monotonic() < deadline, "the app did not start"
        time.sleep(0.3)


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = re.sub(r"^.*\) ", "", stat.read_text()).split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = re.sub(r"^.*\) ", "", Path(f"/proc/{pid}/stat").read_text()).split()[0]
    except OSError:
        return False
    return state != "Z"
