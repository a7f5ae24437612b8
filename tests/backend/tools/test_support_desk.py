"""The built-in support desk on a real SQLite file: seed data, reads, writes and the business rules."""

from __future__ import annotations

import asyncio
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from backend.tools import SupportDesk, ToolFailure, ToolRegistry, support_desk_tools
from backend.tools.support_desk import DATABASE_FILE, OrderStatus, normalise_order_number


def _run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


@pytest.fixture
def registry(desk: SupportDesk) -> ToolRegistry:
    return ToolRegistry(support_desk_tools(desk))


def _first(desk: SupportDesk, status: OrderStatus) -> str:
    return next(o.order_number for o in desk.list_all_orders() if o.status is status)


def test_seed_is_deterministic_and_lives_in_its_own_file(tmp_path: Path, desk: SupportDesk) -> None:
    other = SupportDesk(tmp_path / "other")
    try:
        first = [o.model_dump() for o in desk.list_all_orders()]
        assert first == [o.model_dump() for o in other.list_all_orders()]
    finally:
        other.close()
    assert len(first) == 30
    assert [o["order_number"] for o in first] == [f"A{1001 + i}" for i in range(30)]
    assert {o["status"] for o in first} == set(OrderStatus)
    assert all(o["items"] and o["email"].endswith("@example.com") for o in first)
    assert desk.path == tmp_path / "data" / DATABASE_FILE
    with sqlite3.connect(desk.path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_reopening_keeps_changes_and_does_not_reseed(tmp_path: Path, desk: SupportDesk) -> None:
    number = _first(desk, OrderStatus.PENDING)
    desk.cancel_order(number, "Changed my mind")
    desk.close()
    again = SupportDesk(tmp_path / "data")
    try:
        assert len(again.list_all_orders()) == 30
        assert again.lookup_order(number)["status"] == "cancelled"
    finally:
        again.close()


@pytest.mark.parametrize("text", ["A1001", "a1001", "#A1001", " order A-1001 ", "1001"])
def test_order_numbers_are_normalised(text: str) -> None:
    assert normalise_order_number(text) == "A1001"


def test_lookup_and_list(registry: ToolRegistry) -> None:
    order = _run(registry.execute("lookup_order", {"order_number": "#a1001"}))
    assert order.ok and order.value["order_number"] == "A1001"
    assert order.value["customer_name"] == "Ada Lovelace" and order.value["total"] > 0
    listed = _run(registry.execute("list_orders", {"email": " Ada.Lovelace@Example.com "}))
    assert "A1001" in [o["order_number"] for o in listed.value["orders"]]
    nobody = _run(registry.execute("list_orders", {"email": "nobody@example.com"}))
    assert nobody.ok and nobody.value["orders"] == [] and "No orders" in nobody.value["note"]


def test_unknown_orders_get_helpful_messages(registry: ToolRegistry, desk: SupportDesk) -> None:
    unknown = _run(registry.execute("lookup_order", {"order_number": "123"}))
    assert not unknown.ok
    assert unknown.error.startswith("No order 123. Order numbers look like A1001")
    ada = [o["order_number"] for o in desk.list_orders("ada.lovelace@example.com")["orders"]]
    ticket = _run(registry.execute("create_support_ticket", {
        "name": "Ada", "email": "ada.lovelace@example.com", "order_number": "123", "issue": "Broken mouse",
    }))
    assert ticket.error == f"No order 123. Orders for this e-mail are {', '.join(sorted(ada))}."
    stranger = _run(registry.execute("create_support_ticket", {
        "name": "Zed", "email": "zed@example.org", "order_number": "A9999", "issue": "Where is it?",
    }))
    assert stranger.error == "No order A9999, and no orders are registered to zed@example.org."


def test_cancel_rules(registry: ToolRegistry, desk: SupportDesk) -> None:
    pending = _first(desk, OrderStatus.PENDING)
    done = _run(registry.execute("cancel_order", {"order_number": pending, "reason": "Too slow"}))
    assert done.ok and done.value["status"] == "cancelled" and done.value["refund"] > 0
    assert desk.lookup_order(pending)["cancel_reason"] == "Too slow"
    again = _run(registry.execute("cancel_order", {"order_number": pending, "reason": "x"}))
    assert again.error.startswith(f"Order {pending} is already cancelled")
    for status in (OrderStatus.SHIPPED, OrderStatus.DELIVERED):
        number = _first(desk, status)
        refused = _run(registry.execute("cancel_order", {"order_number": number, "reason": "x"}))
        assert not refused.ok and f"Order {number} was already {status}" in refused.error
        assert "cannot be cancelled" in refused.error
        assert desk.lookup_order(number)["status"] == status


def test_update_shipping_address(registry: ToolRegistry, desk: SupportDesk) -> None:
    pending = _first(desk, OrderStatus.PENDING)
    new = {"street": "1 New Road", "city": "Leeds", "postal_code": "LS1 1AA", "country": "United Kingdom"}
    changed = _run(registry.execute("update_shipping_address", {"order_number": pending, **new}))
    assert changed.ok and changed.value["shipping_address"] == new
    assert desk.lookup_order(pending)["shipping_address"] == new
    shipped = _first(desk, OrderStatus.SHIPPED)
    refused = _run(registry.execute("update_shipping_address", {"order_number": shipped, **new}))
    assert not refused.ok and "can no longer be changed" in refused.error


def test_tickets(registry: ToolRegistry, desk: SupportDesk) -> None:
    assert desk.list_tickets() == []
    first = _run(registry.execute("create_support_ticket", {
        "name": "Ada Lovelace", "email": "ada.lovelace@example.com", "order_number": "a1001", "issue": "Mouse broke.",
    }))
    second = _run(registry.execute("create_support_ticket", {
        "name": "Grace", "email": "grace@example.net", "order_number": "none", "issue": "Do you ship to Mars?",
    }))
    assert first.ok and second.ok and first.value["ticket"] != second.value["ticket"]
    bad_email = _run(registry.execute("create_support_ticket", {
        "name": "X", "email": "ana.silva(at)example", "order_number": "none", "issue": "?",
    }))
    assert not bad_email.ok
    assert bad_email.error == (
        "Invalid arguments for create_support_ticket: email: Expected an e-mail address like name@example.com."
    )
    tickets = desk.list_tickets()
    assert [t.ticket for t in tickets] == [second.value["ticket"], first.value["ticket"]]
    assert tickets[1].order_number == "A1001" and tickets[0].order_number is None


def test_concurrent_writes_from_threads(desk: SupportDesk) -> None:
    def open_ticket(index: int) -> str:
        return desk.create_support_ticket(f"User {index}", f"user{index}@example.com", "none", "Hello")["ticket"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        references = list(pool.map(open_ticket, range(40)))
    assert len(set(references)) == 40 and len(desk.list_tickets()) == 40


def test_reads_are_read_only_and_writes_are_not(desk: SupportDesk) -> None:
    flags = {t.name: t.read_only for t in support_desk_tools(desk)}
    assert flags == {
        "lookup_order": True, "list_orders": True, "update_shipping_address": False, "cancel_order": False,
        "create_support_ticket": False,
    }


def test_e_mail_arguments_declare_their_format_and_are_checked_before_the_desk_is_touched(
    registry: ToolRegistry, desk: SupportDesk
) -> None:
    specs = {tool.name: tool.spec for tool in support_desk_tools(desk)}
    formats = {
        (name, argument.name): argument.format for name, spec in specs.items() for argument in spec.arguments
        if argument.format is not None
    }
    assert formats == {("list_orders", "email"): "email", ("create_support_ticket", "email"): "email"}
    listed = _run(registry.execute("list_orders", {"email": "ada.lovelace(at)example.com"}))
    assert not listed.ok and listed.error.endswith("email: Expected an e-mail address like name@example.com.")
    # Called straight, not through the registry, the desk still refuses what is not an address.
    with pytest.raises(ToolFailure, match="does not look like an e-mail address"):
        desk.create_support_ticket(name="X", email="ana.silva(at)example", order_number="none", issue="?")
    assert desk.list_tickets() == []
