"""The MCP servers file: the common mcpServers shape, Callcard's keys, and errors that name the line and field."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from backend.errors import ToolConfigError
from backend.tools.mcp_config import expand_secrets, load_mcp_config, secret_names

GOOD = """
mcpServers:
  time:
    command: mcp-server-time
    args: ["--local-timezone", "UTC"]
    trusted: true
  orders:
    type: http
    url: https://orders.example.com/mcp
    headers:
      Authorization: Bearer ${ORDERS_TOKEN}
    timeout: 20
  notes:
    command: notes-server
    env: {NOTES_KEY: "${NOTES_KEY}", MODE: plain}
    disabled: true
"""


def _write(tmp_path: Path, text: str, name: str = "mcp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_servers_in_file_order_with_callcard_keys_and_secrets_left_as_written(tmp_path: Path) -> None:
    servers = load_mcp_config(_write(tmp_path, GOOD), environ={})
    assert [s.name for s in servers] == ["time", "orders", "notes"]
    time, orders, notes = servers
    assert (time.transport, time.where, time.trusted, time.timeout) == ("stdio", "mcp-server-time --local-timezone UTC",
                                                                         True, 60.0)
    assert (orders.transport, orders.where, orders.trusted, orders.timeout) == ("http", orders.url, False, 20.0)
    assert orders.headers == {"Authorization": "Bearer ${ORDERS_TOKEN}"}
    assert notes.disabled and secret_names(notes) == ["NOTES_KEY"] and secret_names(orders) == ["ORDERS_TOKEN"]
    assert "ORDERS_TOKEN" not in repr(orders) and "NOTES_KEY" not in repr(notes)  # env and headers stay out of logs


def test_the_common_json_file_of_other_mcp_clients_loads(tmp_path: Path) -> None:
    text = '{"mcpServers": {"time": {"command": "uvx", "args": ["mcp-server-time"], "env": {}}}}'
    [server] = load_mcp_config(_write(tmp_path, text, "claude_desktop_config.json"))
    assert server.command == "uvx" and server.args == ["mcp-server-time"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("mcpServers:\n  time:\n    command: x\n    trustd: true\n",
         "mcp.yaml line 4: mcpServers.time.trustd: unknown field (did you mean 'trusted'?)"),
        ("mcpServers:\n  time:\n    command: x\n    timeout: -1\n",
         "mcp.yaml line 4: mcpServers.time.timeout: input should be greater than 0"),
        ("mcpServers:\n  time:\n    args: [a]\n",
         "mcp.yaml line 2: mcpServers.time: give either command"),
        ("mcpServers:\n  time:\n    command: x\n    url: http://a\n",
         "mcp.yaml line 2: mcpServers.time: give either command"),
        ("mcpServers:\n  web:\n    url: ftp://example.com\n",
         "mcp.yaml line 3: mcpServers.web.url: must start with http:// or https://"),
        ("mcpServers:\n  web:\n    type: sse\n    url: http://a/sse\n",
         "mcp.yaml line 3: mcpServers.web.type: the old SSE transport is not supported"),
        ("mcpServers:\n  time:\n    command: x\n    args: [--token, '${TOKEN}']\n",
         "mcp.yaml line 4: mcpServers.time.args[1]: ${...} secrets are only allowed in env and headers"),
        ("mcpServers:\n  web:\n    url: 'https://a/${TOKEN}'\n",
         "mcp.yaml line 3: mcpServers.web.url: ${...} secrets are only allowed in env and headers"),
        ("mcpServers:\n  web:\n    url: https://a/mcp\n    headers:\n      Authorization: 'Bearer ${bad-name}'\n",
         "mcp.yaml line 5: mcpServers.web.headers.Authorization: write secrets as ${NAME}"),
        ("mcpServers:\n  web:\n    url: https://a/mcp\n    env: {A: b}\n",
         "mcp.yaml line 4: mcpServers.web.env: env is for command servers"),
        ("mcpServers:\n  my server:\n    command: x\n",
         "mcp.yaml line 2: mcpServers.my server: a server name uses letters"),
        ("servers:\n  time:\n    command: x\n", 'expected a mapping with "mcpServers"'),
    ],
)
def test_mistakes_name_the_file_line_and_field(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ToolConfigError) as raised:
        load_mcp_config(_write(tmp_path, text))
    assert message in str(raised.value)


def test_invalid_json_names_its_line(tmp_path: Path) -> None:
    with pytest.raises(ToolConfigError, match=r"mcp.json line 3: invalid JSON"):
        load_mcp_config(_write(tmp_path, '{"mcpServers": {\n  "time": {"command": "x"}\n  "web": {}}}', "mcp.json"))


def test_a_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(ToolConfigError, match="no such MCP servers file"):
        load_mcp_config(tmp_path / "absent.json")


def test_secrets_are_expanded_from_the_environment_only_when_asked() -> None:
    values = {"Authorization": "Bearer ${TOKEN}", "X-Plain": "plain"}
    assert expand_secrets(values, {"TOKEN": "abc"}) == {"Authorization": "Bearer abc", "X-Plain": "plain"}
    with pytest.raises(ToolConfigError, match="set TOKEN in the environment"):
        expand_secrets(values, {})
