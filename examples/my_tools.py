"""Example Python tools for Callcard: start with CALLCARD_TOOLS=examples/my_tools.py.

Each decorated function becomes a tool: its name, docstring and type hints are what the model sees.
"""

from __future__ import annotations

import datetime
from typing import Literal

from pydantic import BaseModel, Field

from backend.tools import ToolFailure, tool

_RATES_EUR = {"EUR": 1.0, "USD": 1.08, "GBP": 0.86, "JPY": 162.0}


class Parcel(BaseModel):
    """A parcel to ship."""

    weight_kg: float = Field(description="Weight in kilograms")
    fragile: bool = False


Currency = Literal["EUR", "USD", "GBP", "JPY"]


@tool(policy="auto", timeout_s=5)
def convert_currency(amount: float, source: Currency, target: Currency) -> dict:
    """Convert an amount of money between currencies at today's reference rates.

    Args:
        amount: How much money, in the source currency.
        source: The currency of the amount.
        target: The currency to convert to.
    """
    converted = amount / _RATES_EUR[source] * _RATES_EUR[target]
    return {"amount": round(converted, 2), "currency": target}


@tool(read_only=True)
def shipping_quote(parcels: list[Parcel], destination_country: str, express: bool = False) -> dict:
    """Quote the shipping cost of one or more parcels.

    Args:
        parcels: The parcels, with their weights.
        destination_country: Where they go.
        express: Two-day delivery instead of five.
    """
    if not parcels:
        raise ToolFailure("A quote needs at least one parcel.")  # the model reads this message as it is
    weight = sum(p.weight_kg for p in parcels)
    price = 4.90 + 1.20 * weight + (3.0 if any(p.fragile for p in parcels) else 0.0)
    days = 2 if express else 5
    return {
        "destination": destination_country,
        "price_eur": round(price * (1.8 if express else 1.0), 2),
        "arrives_by": (datetime.date.today() + datetime.timedelta(days=days)).isoformat(),
    }


@tool
async def schedule_callback(phone: str, day: datetime.date, slot: Literal["morning", "afternoon"] = "morning") -> dict:
    """Book a phone call back from the support team (a write: a person confirms it first).

    Args:
        phone: The customer's phone number.
        day: The day of the call.
        slot: Morning or afternoon.
    """
    if day < datetime.date.today():
        raise ToolFailure(f"{day} is in the past; pick a day from today on.")
    return {"booked": True, "phone": phone, "day": day.isoformat(), "slot": slot}
