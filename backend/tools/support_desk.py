"""The built-in support desk: sample orders in SQLite and the tools a support agent model uses on them."""

from __future__ import annotations

import datetime
import logging
import random
import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel
from sqlalchemy.orm import registry
from sqlmodel import Field, Session, SQLModel, select

from backend.core.validation import check_format
from backend.storage.database import sqlite_engine
from backend.tools.python_tools import Format, tool_from_function
from backend.tools.registry import Tool, ToolFailure

__all__ = [
    "DATABASE_FILE",
    "Address",
    "OrderItemView",
    "OrderStatus",
    "OrderView",
    "SupportDesk",
    "TicketView",
    "normalise_order_number",
    "support_desk_tools",
]

logger = logging.getLogger(__name__)

DATABASE_FILE = "support_desk.db"
SOURCE = "builtin: support desk"
_SEED = 1001
_ORDER_COUNT = 30
_SEED_START = datetime.date(2026, 9, 1)
_NO_ORDER_WORDS = {"none", "n/a", "na", "-", "no order", "unknown"}
_Email = Annotated[str, Format("email")]

# Own metadata: the desk lives in its own file, apart from the conversation store's tables.
_desk_registry = registry()


class _DeskTable(SQLModel, registry=_desk_registry):
    pass


class OrderStatus(StrEnum):
    """Where an order is in its life."""

    PENDING = "pending"
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    CANCELLED = "cancelled"


class _Customer(_DeskTable, table=True):
    __tablename__ = "customer"

    id: int | None = Field(default=None, primary_key=True)
    name: str
    email: str = Field(unique=True, index=True)


class _Order(_DeskTable, table=True):
    __tablename__ = "orders"  # "order" is an SQL keyword

    id: int | None = Field(default=None, primary_key=True)
    number: str = Field(unique=True, index=True)
    customer_id: int = Field(foreign_key="customer.id", index=True)
    status: str
    placed_on: datetime.date
    shipped_on: datetime.date | None = None
    delivered_on: datetime.date | None = None
    street: str
    city: str
    postal_code: str
    country: str
    cancel_reason: str | None = None
    updated_at: datetime.datetime | None = None


class _OrderItem(_DeskTable, table=True):
    __tablename__ = "order_item"

    id: int | None = Field(default=None, primary_key=True)
    order_id: int = Field(foreign_key="orders.id", index=True)
    sku: str
    name: str
    quantity: int
    unit_price_cents: int


class _Ticket(_DeskTable, table=True):
    __tablename__ = "ticket"

    id: int | None = Field(default=None, primary_key=True)
    name: str
    email: str = Field(index=True)
    order_number: str | None = None
    issue: str
    status: str = "open"
    created_at: datetime.datetime


class Address(BaseModel):
    """A shipping address."""

    street: str
    city: str
    postal_code: str
    country: str


class OrderItemView(BaseModel):
    """One line of an order."""

    sku: str
    name: str
    quantity: int
    unit_price: float


class OrderView(BaseModel):
    """An order as the tools report it."""

    order_number: str
    status: OrderStatus
    customer_name: str
    email: str
    placed_on: datetime.date
    shipped_on: datetime.date | None
    delivered_on: datetime.date | None
    items: list[OrderItemView]
    total: float
    currency: str = "EUR"
    shipping_address: Address
    cancel_reason: str | None = None


class TicketView(BaseModel):
    """A support ticket, for the UI's list of tickets."""

    ticket: str
    name: str
    email: str
    order_number: str | None
    issue: str
    status: str
    created_at: datetime.datetime


def normalise_order_number(text: str) -> str:
    """'a1001', '#A1001', 'order A-1001' and '1001' all mean 'A1001'."""
    cleaned = re.sub(r"[\s#\-_.:]", "", text).upper().removeprefix("ORDER").removeprefix("NO")
    return f"A{cleaned}" if cleaned.isdigit() else cleaned


class SupportDesk:
    """Orders, customers and tickets in `support_desk.db` under `data_dir`, seeded on first use."""

    def __init__(self, data_dir: str | Path) -> None:
        directory = Path(data_dir)
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / DATABASE_FILE
        self.engine = sqlite_engine(f"sqlite:///{self.path}")
        _DeskTable.metadata.create_all(self.engine)
        with Session(self.engine) as session:
            if session.exec(select(_Order.id).limit(1)).first() is None:
                _seed(session)
                session.commit()
                logger.info("Created the sample support desk in %s", self.path)

    def lookup_order(self, order_number: str) -> dict[str, Any]:
        """Look up an order by its order number: status, items, total, shipping address and dates.

        Args:
            order_number: The order number, e.g. A1001.
        """
        with Session(self.engine) as session:
            order = self._order(session, order_number)
            return self._view(session, order).model_dump(mode="json")

    def list_orders(self, email: _Email) -> dict[str, Any]:
        """List a customer's orders, newest first, by the e-mail address they ordered with.

        Args:
            email: The customer's e-mail address.
        """
        with Session(self.engine) as session:
            customer = _customer_by_email(session, email)
            if customer is None:
                return {
                    "email": email.strip(),
                    "orders": [],
                    "note": "No orders are registered to this e-mail address. Check the spelling with the customer, "
                    "or look the order up by its number.",
                }
            newest_first = _Order.placed_on.desc()  # type: ignore[attr-defined]
            orders = session.exec(select(_Order).where(_Order.customer_id == customer.id).order_by(newest_first)).all()
            return {
                "email": customer.email,
                "customer_name": customer.name,
                "orders": [
                    {"order_number": o.number, "status": o.status, "placed_on": o.placed_on.isoformat(),
                     "total": _total(session, o)}
                    for o in orders
                ],
            }

    def update_shipping_address(
        self, order_number: str, street: str, city: str, postal_code: str, country: str
    ) -> dict[str, Any]:
        """Change the shipping address of an order that has not shipped yet.

        Args:
            order_number: The order number, e.g. A1001.
            street: Street and house number.
            city: City.
            postal_code: Postal code.
            country: Country.
        """
        with Session(self.engine) as session:
            order = self._order(session, order_number)
            if order.status != OrderStatus.PENDING:
                raise ToolFailure(
                    f"Order {order.number} is {order.status}, so its address can no longer be changed; "
                    "only pending orders can be redirected."
                )
            previous = _address(order)
            order.street, order.city, order.postal_code, order.country = (
                street.strip(), city.strip(), postal_code.strip(), country.strip()
            )
            order.updated_at = _now()
            session.add(order)
            session.commit()
            return {
                "order_number": order.number,
                "previous_address": previous.model_dump(),
                "shipping_address": _address(order).model_dump(),
                "message": f"The shipping address of order {order.number} was changed.",
            }

    def cancel_order(self, order_number: str, reason: str) -> dict[str, Any]:
        """Cancel an order that has not shipped yet.

        Args:
            order_number: The order number, e.g. A1001.
            reason: Why the customer wants to cancel.
        """
        with Session(self.engine) as session:
            order = self._order(session, order_number)
            if order.status == OrderStatus.CANCELLED:
                reason = order.cancel_reason or "no reason given"
                raise ToolFailure(f"Order {order.number} is already cancelled ({reason}).")
            if order.status in (OrderStatus.SHIPPED, OrderStatus.DELIVERED):
                delivered = order.status == OrderStatus.DELIVERED
                when = order.delivered_on if delivered else order.shipped_on
                instead = "return it instead" if delivered else "return it once it arrives"
                raise ToolFailure(
                    f"Order {order.number} was already {order.status} on {when}, so it cannot be cancelled; "
                    f"the customer can {instead}."
                )
            order.status = OrderStatus.CANCELLED
            order.cancel_reason = reason.strip()
            order.updated_at = _now()
            session.add(order)
            session.commit()
            return {
                "order_number": order.number,
                "status": order.status,
                "refund": _total(session, order),
                "message": f"Order {order.number} is cancelled; the refund goes back to the original payment method.",
            }

    def create_support_ticket(self, name: str, email: _Email, order_number: str, issue: str) -> dict[str, Any]:
        """Open a support ticket so a person from the support team follows up with the customer.

        Args:
            name: The customer's name.
            email: The customer's e-mail address, for the reply.
            order_number: The order the issue is about, e.g. A1001 ("none" when it is about no order).
            issue: What went wrong, in a few sentences.
        """
        email, problem = check_format("email", email)
        if problem:  # the registry checks arguments first; this is for callers that come straight here
            raise ToolFailure(f"{email!r} does not look like an e-mail address; ask the customer for it again.")
        note = None
        with Session(self.engine) as session:
            number = None
            if order_number.strip().lower() not in _NO_ORDER_WORDS:
                order = self._order(session, order_number, email=email)
                number = order.number
                customer = session.get(_Customer, order.customer_id)
                if customer is not None and customer.email.casefold() != email.casefold():
                    note = "This order is registered to a different e-mail address."
            ticket = _Ticket(
                name=name.strip(), email=email, order_number=number, issue=issue.strip(), created_at=_now()
            )
            session.add(ticket)
            session.commit()
            session.refresh(ticket)
            result: dict[str, Any] = {
                "ticket": _ticket_reference(ticket),
                "status": ticket.status,
                "message": "The ticket is open; the support team answers by e-mail within one working day.",
            }
            if note:
                result["note"] = note
            return result

    def list_tickets(self) -> list[TicketView]:
        """Every support ticket, newest first."""
        with Session(self.engine) as session:
            tickets = session.exec(select(_Ticket).order_by(_Ticket.id.desc())).all()  # type: ignore[union-attr]
            return [
                TicketView(
                    ticket=_ticket_reference(t), name=t.name, email=t.email, order_number=t.order_number,
                    issue=t.issue, status=t.status, created_at=t.created_at,
                )
                for t in tickets
            ]

    def list_all_orders(self) -> list[OrderView]:
        """Every order, by number (for the UI and tests)."""
        with Session(self.engine) as session:
            return [self._view(session, o) for o in session.exec(select(_Order).order_by(_Order.number)).all()]

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()

    def _order(self, session: Session, order_number: str, *, email: str | None = None) -> _Order:
        number = normalise_order_number(order_number)
        order = session.exec(select(_Order).where(_Order.number == number)).first()
        if order is not None:
            return order
        shown = order_number.strip()
        customer = _customer_by_email(session, email) if email else None
        if customer is not None:
            numbers = session.exec(select(_Order.number).where(_Order.customer_id == customer.id)).all()
            raise ToolFailure(f"No order {shown}. Orders for this e-mail are {', '.join(sorted(numbers))}.")
        if email:
            raise ToolFailure(f"No order {shown}, and no orders are registered to {email}.")
        raise ToolFailure(
            f"No order {shown}. Order numbers look like A1001: check the number with the customer, "
            "or find their orders by e-mail with list_orders."
        )

    def _view(self, session: Session, order: _Order) -> OrderView:
        customer = session.get(_Customer, order.customer_id)
        items = _items(session, order)
        return OrderView(
            order_number=order.number,
            status=OrderStatus(order.status),
            customer_name=customer.name if customer else "",
            email=customer.email if customer else "",
            placed_on=order.placed_on,
            shipped_on=order.shipped_on,
            delivered_on=order.delivered_on,
            items=[
                OrderItemView(sku=i.sku, name=i.name, quantity=i.quantity, unit_price=i.unit_price_cents / 100)
                for i in items
            ],
            total=sum(i.quantity * i.unit_price_cents for i in items) / 100,
            shipping_address=_address(order),
            cancel_reason=order.cancel_reason,
        )


def support_desk_tools(desk: SupportDesk, *, timeout_s: float = 10.0) -> list[Tool]:
    """The desk's tools: reads are read-only (an operator may make them auto); writes always need confirmation."""
    reads = [desk.lookup_order, desk.list_orders]
    writes = [desk.update_shipping_address, desk.cancel_order, desk.create_support_ticket]
    return [
        tool_from_function(method, read_only=method in reads, timeout_s=timeout_s, source=SOURCE)
        for method in [*reads, *writes]
    ]


def _customer_by_email(session: Session, email: str | None) -> _Customer | None:
    if not email or not email.strip():
        return None
    folded = email.strip().casefold()
    return session.exec(select(_Customer).where(_Customer.email == folded)).first()


def _items(session: Session, order: _Order) -> list[_OrderItem]:
    return list(session.exec(select(_OrderItem).where(_OrderItem.order_id == order.id).order_by(_OrderItem.id)).all())


def _total(session: Session, order: _Order) -> float:
    return sum(i.quantity * i.unit_price_cents for i in _items(session, order)) / 100


def _address(order: _Order) -> Address:
    return Address(street=order.street, city=order.city, postal_code=order.postal_code, country=order.country)


def _ticket_reference(ticket: _Ticket) -> str:
    return f"T{1000 + (ticket.id or 0)}"


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0)


_CUSTOMERS = [
    ("Ada Lovelace", "London", "NW1 6XE", "United Kingdom", "Baker Street"),
    ("Grace Hopper", "Arlington", "22201", "United States", "Wilson Boulevard"),
    ("Alan Turing", "Manchester", "M13 9PL", "United Kingdom", "Oxford Road"),
    ("Katherine Johnson", "Hampton", "23666", "United States", "Mercury Boulevard"),
    ("Hedy Lamarr", "Vienna", "1010", "Austria", "Kärntner Straße"),
    ("Emmy Noether", "Erlangen", "91054", "Germany", "Hauptstraße"),
    ("Marie Curie", "Paris", "75005", "France", "Rue Pierre et Marie Curie"),
    ("Linus Pauling", "Portland", "97201", "United States", "Broadway"),
    ("Sofia Kovalevskaya", "Stockholm", "114 28", "Sweden", "Drottninggatan"),
    ("Srinivasa Ramanujan", "Chennai", "600004", "India", "Luz Church Road"),
    ("Rosalind Franklin", "Cambridge", "CB2 1TN", "United Kingdom", "King's Parade"),
    ("Niels Bohr", "Copenhagen", "2100", "Denmark", "Blegdamsvej"),
]
_PRODUCTS = [
    ("KB-101", "Mechanical keyboard", 8900),
    ("MS-220", "Wireless mouse", 2950),
    ("HD-330", "Noise-cancelling headphones", 19900),
    ("MN-270", "27-inch monitor", 24900),
    ("CB-010", "USB-C cable, 2 m", 1290),
    ("DK-440", "Laptop docking station", 13900),
    ("WC-150", "HD webcam", 5900),
    ("SD-512", "512 GB SSD", 6490),
    ("LS-080", "Laptop stand", 3900),
    ("PB-200", "Power bank, 20000 mAh", 4490),
]
_STATUS_WEIGHTS = [
    (OrderStatus.PENDING, 3), (OrderStatus.SHIPPED, 3), (OrderStatus.DELIVERED, 5), (OrderStatus.CANCELLED, 1),
]


def _seed(session: Session) -> None:
    """Deterministic sample data: the same customers, orders and items on every first run."""
    rng = random.Random(_SEED)
    customers = []
    for name, city, postal_code, country, street in _CUSTOMERS:
        email = name.lower().replace(" ", ".") + "@example.com"
        customer = _Customer(name=name, email=email)
        session.add(customer)
        customers.append((customer, city, postal_code, country, street))
    session.flush()
    statuses = [status for status, _ in _STATUS_WEIGHTS]
    weights = [weight for _, weight in _STATUS_WEIGHTS]
    for index in range(_ORDER_COUNT):
        # Every customer gets at least one order; the rest are spread at random.
        entry = customers[index] if index < len(customers) else rng.choice(customers)
        customer, city, postal_code, country, street = entry
        status = rng.choices(statuses, weights)[0]
        placed_on = _SEED_START + datetime.timedelta(days=2 * index)
        shipped = status in (OrderStatus.SHIPPED, OrderStatus.DELIVERED)
        order = _Order(
            number=f"A{1001 + index}",
            customer_id=customer.id,
            status=status,
            placed_on=placed_on,
            shipped_on=placed_on + datetime.timedelta(days=2) if shipped else None,
            delivered_on=placed_on + datetime.timedelta(days=5) if status == OrderStatus.DELIVERED else None,
            street=f"{rng.randint(1, 220)} {street}",
            city=city,
            postal_code=postal_code,
            country=country,
            cancel_reason="Ordered by mistake." if status == OrderStatus.CANCELLED else None,
        )
        session.add(order)
        session.flush()
        for sku, product, price in rng.sample(_PRODUCTS, rng.randint(1, 3)):
            session.add(_OrderItem(order_id=order.id, sku=sku, name=product, quantity=rng.randint(1, 3),
                                   unit_price_cents=price))
