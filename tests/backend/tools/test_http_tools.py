"""Declarative HTTP tools against a real loopback server, and the checks a tools file goes through at start-up."""

from __future__ import annotations

import asyncio
import json
import logging
import textwrap
from pathlib import Path
from typing import Any

import pytest

from backend.errors import ToolConfigError
from backend.tools import ToolPolicy, ToolRegistry, load_http_tools
from tests.backend.tools.conftest import FakeServer, Received, Reply

SECRET = "s3cr3t-token-value"


def _run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def _write(tmp_path: Path, text: str, name: str = "tools.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def _orders_file(tmp_path: Path, base_url: str, *, field: str | None = "data.order", timeout_s: float = 5) -> Path:
    response = f"    response:\n      field: {field}\n" if field else ""
    return _write(tmp_path, f"""\
tools:
  - name: lookup_order
    description: Look up an order.
    read_only: true
    policy: auto
    timeout_s: {timeout_s}
    arguments:
      - name: order_number
        type: string
        description: The order number.
      - name: verbose
        type: boolean
        description: Include the items.
        required: false
    request:
      method: get
      url: {base_url}/api/orders/{{order_number}}
      headers:
        Authorization: Bearer ${{ORDERS_API_TOKEN}}
        X-Order: "{{order_number}}"
{response}""")


def _registry(path: Path, env: dict[str, str] | None = None) -> ToolRegistry:
    return ToolRegistry(load_http_tools(path, environ={"ORDERS_API_TOKEN": SECRET} if env is None else env))


def test_get_with_field_extraction_url_quoting_and_secret_header(tmp_path: Path, fake_server: FakeServer) -> None:
    order = {"number": "A 1/2", "status": "shipped"}
    fake_server.reply("/api/orders/A%201%2F2", Reply(body={"data": {"order": order}}))
    registry = _registry(_orders_file(tmp_path, fake_server.url))
    tool = registry.get("lookup_order")
    assert tool.policy is ToolPolicy.AUTO and tool.read_only and tool.source == "http: tools.yaml"
    result = _run(registry.execute("lookup_order", {"order_number": "A 1/2", "verbose": True}))
    assert result.ok, result.error
    assert result.value == order
    [request] = fake_server.requests
    assert request.method == "GET"
    assert request.path == "/api/orders/A%201%2F2"  # the argument stays one path segment
    assert request.query == {"verbose": ["true"]}  # arguments not in the URL go to the query of a GET
    assert request.headers["authorization"] == f"Bearer {SECRET}"
    assert request.headers["x-order"] == "A 1/2"


def test_post_with_body_template_keeps_types(tmp_path: Path, fake_server: FakeServer) -> None:
    fake_server.reply("/tickets", lambda r: Reply(status=201, body={"received": json.loads(r.body)}))
    path = _write(tmp_path, f"""
        tools:
          - name: open_ticket
            description: Open a ticket.
            arguments:
              - {{name: email, type: string, description: E-mail}}
              - {{name: priority, type: integer, description: Priority}}
              - {{name: tags, type: array, description: Tags, items: {{type: string}}}}
            request:
              method: POST
              url: {fake_server.url}/tickets
              query: {{source: callcard}}
              body:
                customer: {{contact: "{{email}}"}}
                priority: "{{priority}}"
                tags: "{{tags}}"
                summary: "Ticket from {{email}}"
        """)
    result = _run(_registry(path, {}).execute("open_ticket", {"email": "a@b.c", "priority": 2, "tags": ["x"]}))
    assert result.ok, result.error
    assert result.value == {"received": {
        "customer": {"contact": "a@b.c"}, "priority": 2, "tags": ["x"], "summary": "Ticket from a@b.c",
    }}
    assert fake_server.requests[0].query == {"source": ["callcard"]}


@pytest.mark.parametrize(("status", "reason"), [(404, "Not Found"), (503, "Service Unavailable")])
def test_http_errors_are_failed_results_with_status_and_excerpt(
    tmp_path: Path, fake_server: FakeServer, status: int, reason: str
) -> None:
    fake_server.reply("/api/orders/A1", Reply(status=status, body={"error": "order A1 " + "x" * 500}))
    result = _run(_registry(_orders_file(tmp_path, fake_server.url)).execute("lookup_order", {"order_number": "A1"}))
    assert not result.ok
    assert result.error.startswith(f"lookup_order failed: 127.0.0.1 answered HTTP {status} {reason}: ")
    assert '{"error": "order A1 x' in result.error
    assert len(result.error) < 320


def test_timeout_is_a_failed_result(tmp_path: Path, fake_server: FakeServer) -> None:
    fake_server.reply("/api/orders/A1", Reply(body={}, delay_s=1.0))
    path = _orders_file(tmp_path, fake_server.url, timeout_s=0.2)
    result = _run(_registry(path).execute("lookup_order", {"order_number": "A1"}))
    assert not result.ok and "timed out after 0.2 s" in result.error


def test_non_json_answer(tmp_path: Path, fake_server: FakeServer) -> None:
    fake_server.reply("/api/orders/A1", Reply(body="<html>Order A1: shipped</html>", content_type="text/html"))
    as_text = _run(_registry(_orders_file(tmp_path, fake_server.url, field=None)).execute(
        "lookup_order", {"order_number": "A1"}))
    assert as_text.ok and as_text.value == "<html>Order A1: shipped</html>"
    needs_json = _run(_registry(_orders_file(tmp_path, fake_server.url)).execute(
        "lookup_order", {"order_number": "A1"}))
    assert not needs_json.ok
    assert needs_json.error == "lookup_order failed: expected JSON with the field 'data.order', got text/html."


def test_missing_field_and_unreachable_host(tmp_path: Path, fake_server: FakeServer, closed_port_url: str) -> None:
    fake_server.reply("/api/orders/A1", Reply(body={"data": {}}))
    missing = _run(_registry(_orders_file(tmp_path, fake_server.url)).execute("lookup_order", {"order_number": "A1"}))
    assert missing.error == "lookup_order failed: the answer has no field 'data.order' (no 'order')."
    down = _run(_registry(_orders_file(tmp_path, closed_port_url)).execute("lookup_order", {"order_number": "A1"}))
    assert not down.ok and down.error.startswith("lookup_order could not reach 127.0.0.1")


def test_unset_secret_fails_the_call_not_the_start(tmp_path: Path, fake_server: FakeServer) -> None:
    registry = _registry(_orders_file(tmp_path, fake_server.url), env={})
    result = _run(registry.execute("lookup_order", {"order_number": "A1"}))
    assert result.error == "lookup_order is not configured: set ORDERS_API_TOKEN."
    assert fake_server.requests == []


def test_dot_segments_cannot_change_the_resource(tmp_path: Path, fake_server: FakeServer) -> None:
    result = _run(_registry(_orders_file(tmp_path, fake_server.url)).execute("lookup_order", {"order_number": ".."}))
    assert not result.ok and fake_server.requests == []


def test_secrets_never_appear_in_arguments_results_errors_or_logs(
    tmp_path: Path, fake_server: FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    def echo_headers(received: Received) -> Reply:
        status = 200 if received.path.endswith("/ok") else 500
        return Reply(status=status, body={"data": {"order": {"seen": received.headers["authorization"]}}})

    fake_server.reply("/api/orders/ok", echo_headers)
    fake_server.reply("/api/orders/fail", echo_headers)
    registry = _registry(_orders_file(tmp_path, fake_server.url))
    arguments = {"order_number": "ok"}
    with caplog.at_level(logging.DEBUG):
        ok = _run(registry.execute("lookup_order", arguments))
        failed = _run(registry.execute("lookup_order", {"order_number": "fail"}))
    assert fake_server.requests[0].headers["authorization"] == f"Bearer {SECRET}"  # it was really sent
    assert ok.ok and ok.value == {"seen": "Bearer [redacted]"}
    assert not failed.ok and "[redacted]" in failed.error
    assert arguments == {"order_number": "ok"}
    for text in (ok.model_dump_json(), failed.model_dump_json(), json.dumps(arguments)):
        assert SECRET not in text
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "lookup_order" in logged and SECRET not in logged


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path, """
        tools:
          - name: lookup_order
            request:
              url: https://orders.example/api
             method: GET
        """)
    with pytest.raises(ToolConfigError, match=r"^tools.yaml line 5: invalid YAML: "):
        load_http_tools(path)


def test_wrong_field_names_line_and_path(tmp_path: Path) -> None:
    path = _write(tmp_path, """
        # Orders API
        tools:
          - name: lookup_order
            description: Look up an order.
            arguments: []
            request:
              method: FETCH
              url: https://orders.example/api/orders
          - name: cancel_order
            policy: auto
            reqest:
              url: https://orders.example/api/cancel
        """)
    with pytest.raises(ToolConfigError) as caught:
        load_http_tools(path)
    lines = str(caught.value).splitlines()
    assert lines[0] == "tools.yaml line 7: tools[0].request.method: must be one of GET, POST, PUT, PATCH, DELETE"
    assert "tools.yaml line 9: tools[1].request: is required" in lines
    assert "tools.yaml line 11: tools[1].reqest: unknown field (did you mean 'request'?)" in lines


@pytest.mark.parametrize(
    ("request_lines", "expected"),
    [
        (["url: https://x.example/{order}"], "line 7: tools[0].request.url: {order} is not an argument of f"),
        (["url: https://x.example/a?key=${KEY}"], "line 7: tools[0].request.url: ${...} secrets are only allowed in"),
        (["url: ftp://x.example/a"], "line 7: tools[0].request.url: must start with http:// or https://"),
        (["url: https://{order_number}.example/a"], "line 7: tools[0].request.url: must start with http://"),
        (["url: https://x.example/a", "query: [order_number, nope]"], "line 8: tools[0].request.query[1]: 'nope'"),
        (["url: https://x.example/a", "body: {a: 1}"], "line 8: tools[0].request.body: a GET request has no body"),
        (["url: https://x.example/a", "query: 5"], "line 8: tools[0].request.query: must be a list of argument"),
    ],
)
def test_cross_field_checks_name_the_line(tmp_path: Path, request_lines: list[str], expected: str) -> None:
    lines = [
        "tools:",
        "  - name: f",
        "    arguments:",
        "      - {name: order_number, type: string, description: The order}",
        "    policy: confirm",
        "    request:",
        *("      " + line for line in request_lines),
    ]
    with pytest.raises(ToolConfigError) as caught:
        load_http_tools(_write(tmp_path, "\n".join(lines) + "\n"))
    assert f"tools.yaml {expected}" in str(caught.value)


def test_auto_needs_read_only_and_names_must_be_unique(tmp_path: Path) -> None:
    path = _write(tmp_path, """
        tools:
          - name: delete_order
            policy: auto
            request: {method: DELETE, url: "https://x.example/a"}
          - name: delete_order
            request: {url: "https://x.example/b"}
        """)
    with pytest.raises(ToolConfigError) as caught:
        load_http_tools(path)
    message = str(caught.value)
    assert "tools.yaml line 3: tools[0].policy: 'auto' needs read_only: true" in message
    assert "tools.yaml line 5: tools[1].name: a second tool called 'delete_order'" in message


def test_bad_trelis_arguments_are_reported_at_arguments(tmp_path: Path) -> None:
    path = _write(tmp_path, """
        tools:
          - name: f
            arguments:
              - {name: x, type: widget}
            request: {url: "https://x.example/a"}
        """)
    with pytest.raises(ToolConfigError, match=r"tools.yaml line 3: tools\[0\].arguments: .*unknown type 'widget'"):
        load_http_tools(path)


def test_json_tools_file_with_line_numbers(tmp_path: Path, fake_server: FakeServer) -> None:
    text = '{\n  "tools": [\n    {"name": "f",\n     "request": {"url": "https://x.example", "method": "GO"}}\n  ]\n}\n'
    broken = _write(tmp_path, text, "tools.json")
    with pytest.raises(ToolConfigError, match=r"^tools.json line 4: tools\[0\].request.method: must be one of"):
        load_http_tools(broken)
    invalid = _write(tmp_path, '{"tools": [\n  {"name": "f",}\n]}', "bad.json")
    with pytest.raises(ToolConfigError, match=r"^bad.json line 2: invalid JSON"):
        load_http_tools(invalid)
    fake_server.reply("/ping", Reply(body={"pong": True}))
    ping = {"name": "ping", "request": {"url": fake_server.url + "/ping"}}
    good = _write(tmp_path, json.dumps({"tools": [ping]}), "ok.json")
    assert _run(ToolRegistry(load_http_tools(good)).execute("ping", {})).value == {"pong": True}


def test_empty_or_wrong_shaped_file(tmp_path: Path) -> None:
    with pytest.raises(ToolConfigError, match="expected a mapping with a 'tools:' list"):
        load_http_tools(_write(tmp_path, "- just a list\n"))
    with pytest.raises(ToolConfigError, match="no such HTTP tools file"):
        load_http_tools(tmp_path / "missing.yaml")


def test_an_argument_s_format_is_read_from_the_file_and_checked_before_any_request(
    tmp_path: Path, fake_server: FakeServer
) -> None:
    fake_server.reply("/subscribe", Reply(body={"ok": True}))
    path = _write(tmp_path, f"""\
        tools:
          - name: subscribe
            description: Subscribe someone to the newsletter.
            arguments:
              - name: email
                type: string
                format: email
                description: Their e-mail address.
              - name: start
                type: string
                format: date
                description: The first issue's date.
            request:
              method: POST
              url: {fake_server.url}/subscribe
              body: [email, start]
        """)
    registry = _registry(path)
    spec = registry.get("subscribe").spec
    assert [(a.name, a.format) for a in spec.arguments] == [("email", "email"), ("start", "date")]
    refused = _run(registry.execute("subscribe", {"email": "ana.silva(at)example", "start": "2026-03-01"}))
    assert refused.error == "Invalid arguments for subscribe: email: Expected an e-mail address like name@example.com."
    assert fake_server.requests == []
    assert _run(registry.execute("subscribe", {"email": "ana.silva@example.com ", "start": "2026-03-01"})).ok
    assert json.loads(fake_server.requests[0].body) == {"email": "ana.silva@example.com", "start": "2026-03-01"}
