"""The Tools tab's MCP servers and the audit's tool source, as text (no browser)."""

from __future__ import annotations

import csv
import io

from backend.tools.mcp_servers import ServerStatus
from tests.ui.test_present import entry
from ui.present import AUDIT_COLUMNS, audit_csv, audit_rows, servers_markdown


def status(**changes: object) -> ServerStatus:
    base = ServerStatus(name="time", transport="stdio", where="mcp-server-time --local-timezone UTC", state="connected",
                        trusted=True, tools=["get_current_time", "convert_time"])
    return base.model_copy(update=changes)


def test_each_server_shows_its_state_where_it_runs_trust_and_its_tools() -> None:
    text = servers_markdown([
        status(),
        status(name="orders", transport="http", where="https://user:pw@orders.example.com:8443/mcp?key=s3cret#x",
               state="unavailable", reason="connection refused", trusted=False, tools=[],
               skipped={"upload": "its input schema cannot be shown as a card"}),
        status(name="notes", state="disabled", tools=[], trusted=False),
    ])
    assert text.startswith("## MCP servers")
    assert "### `time` · 🟢 connected" in text and "`mcp-server-time --local-timezone UTC`" in text
    assert "**Tools:** `get_current_time`, `convert_time`" in text and "**Trusted:** yes" in text
    assert "### `orders` · 🔴 unavailable: connection refused" in text
    assert "`https://orders.example.com:8443/mcp?…`" in text  # no user, password, query or fragment
    assert "s3cret" not in text and "pw@" not in text
    assert "Left out: `upload`: its input schema cannot be shown as a card" in text
    assert "### `notes` · ⚪ disabled" in text and "none: it is disabled" in text
    assert servers_markdown([]) == ""


def test_a_server_name_or_reason_cannot_become_markup() -> None:
    text = servers_markdown([status(name="<img src=x onerror=alert(1)>", state="unavailable",
                                    reason="<script>alert(1)</script> [link](javascript:alert(1))")])
    assert "<script>" not in text and "](javascript" not in text


def test_the_audit_names_the_server_that_ran_each_call() -> None:
    now = {"lookup_order": "MCP: orders", "moved_tool": "MCP: elsewhere"}
    rows = audit_rows([
        entry(tool_source="MCP: time", function="moved_tool"),  # recorded when proposed: what ran, whatever is now
        entry(),  # recorded before sources were: where the function comes from now, said so
        entry(function="gone_tool"),
    ], now.get)
    column = AUDIT_COLUMNS.index("Tool source")
    assert [row[column] for row in rows] == ["MCP: time", "MCP: orders (now)", ""]
    (header, first, *_rest) = list(csv.reader(io.StringIO(audit_csv(rows))))
    assert header[column] == "Tool source" and first[column] == "MCP: time"
