"""The support-desk scenario set: what customers really type, with the right call (or none) for Callcard's desk.

Each case is scored like a BFCL case (every argument among the acceptable values, strings compared loosely); a case
with no answer must not call anything. `WRITES` names the functions that change data: choosing one for a request
that only reads is the mistake a support team can least afford, and the evaluation counts it separately.
"""

from __future__ import annotations

import tempfile
from typing import Any

from backend.core.history import Turn
from backend.core.specs import FunctionSpec
from backend.tools.support_desk import SupportDesk, support_desk_tools
from eval.bfcl import TestCase

__all__ = ["ASKS", "CATEGORY", "SCENARIOS", "WRITES", "load_scenarios", "support_functions"]

CATEGORY = "support"
WRITES = frozenset({"update_shipping_address", "cancel_order", "create_support_ticket"})

# (id, what the customer wrote, None for "no call" or (function, {argument: acceptable values})).
# "" among the acceptable values: the argument may be left out.
Answer = tuple[str, dict[str, list[Any]]] | None
SCENARIOS: list[tuple[str, str, Answer]] = [
    # Reading an order by its number.
    ("lookup_1", "Where is order A1001?", ("lookup_order", {"order_number": ["A1001"]})),
    ("lookup_2", "Where is my order A1004? It hasn't arrived yet.", ("lookup_order", {"order_number": ["A1004"]})),
    ("lookup_3", "can you check the status of A1012 please", ("lookup_order", {"order_number": ["A1012"]})),
    ("lookup_4", "Has order A1007 shipped?", ("lookup_order", {"order_number": ["A1007"]})),
    ("lookup_5", "What's in order A1002?", ("lookup_order", {"order_number": ["A1002"]})),
    ("lookup_6", "How much did I pay for A1015?", ("lookup_order", {"order_number": ["A1015"]})),
    ("lookup_7", "Order number A1009 - when will it be delivered?", ("lookup_order", {"order_number": ["A1009"]})),
    ("lookup_8", "Hi! Could you tell me the shipping address on order A1003?", ("lookup_order", {"order_number": ["A1003"]})),
    ("lookup_9", "Is A1010 still pending?", ("lookup_order", {"order_number": ["A1010"]})),
    ("lookup_10", "Track my package, order A1020.", ("lookup_order", {"order_number": ["A1020"]})),
    # Reading a customer's orders by e-mail.
    ("list_1", "What orders do I have? My email is ada.lovelace@example.com",
     ("list_orders", {"email": ["ada.lovelace@example.com"]})),
    ("list_2", "Show me all orders for grace.hopper@example.com", ("list_orders", {"email": ["grace.hopper@example.com"]})),
    ("list_3", "I forgot my order number. I ordered with alan.turing@example.com",
     ("list_orders", {"email": ["alan.turing@example.com"]})),
    ("list_4", "List the orders placed with the address linus.pauling@example.com",
     ("list_orders", {"email": ["linus.pauling@example.com"]})),
    # Changing data, asked for plainly.
    ("cancel_1", "Please cancel order A1005, I ordered it by mistake.",
     ("cancel_order", {"order_number": ["A1005"], "reason": ["I ordered it by mistake", "ordered it by mistake",
                                                             "ordered by mistake", "by mistake", "mistake"]})),
    ("cancel_2", "Cancel A1011 because I found it cheaper elsewhere",
     ("cancel_order", {"order_number": ["A1011"], "reason": ["I found it cheaper elsewhere", "found it cheaper elsewhere",
                                                             "cheaper elsewhere"]})),
    ("cancel_3", "I want to cancel my order A1006, I no longer need it.",
     ("cancel_order", {"order_number": ["A1006"], "reason": ["I no longer need it", "no longer need it",
                                                             "no longer needed"]})),
    ("address_1", "Change the shipping address of A1008 to 12 Baker Street, London, NW1 6XE, United Kingdom",
     ("update_shipping_address", {"order_number": ["A1008"], "street": ["12 Baker Street"], "city": ["London"],
                                  "postal_code": ["NW1 6XE"], "country": ["United Kingdom", "UK"]})),
    ("address_2", "Please send order A1013 to 5 Rue de Rivoli, 75001 Paris, France instead.",
     ("update_shipping_address", {"order_number": ["A1013"], "street": ["5 Rue de Rivoli"], "city": ["Paris"],
                                  "postal_code": ["75001"], "country": ["France"]})),
    ("ticket_1", "My name is Ada Lovelace, ada.lovelace@example.com. Order A1001 arrived broken, please open a ticket.",
     ("create_support_ticket", {"name": ["Ada Lovelace"], "email": ["ada.lovelace@example.com"],
                                "order_number": ["A1001"], "issue": ["arrived broken", "Order A1001 arrived broken",
                                                                     "broken", "the order arrived broken"]})),
    ("ticket_2", "Open a support ticket: Grace Hopper, grace.hopper@example.com, order A1014 is missing an item.",
     ("create_support_ticket", {"name": ["Grace Hopper"], "email": ["grace.hopper@example.com"],
                                "order_number": ["A1014"], "issue": ["missing an item", "order A1014 is missing an item",
                                                                     "an item is missing", "missing item"]})),
    # Nothing to call: talk, policy questions, and things the desk cannot do.
    ("none_1", "Hello!", None),
    ("none_2", "Thanks, that's all.", None),
    ("none_3", "What are your opening hours?", None),
    ("none_4", "Do you ship to Canada?", None),
    ("none_5", "How long do refunds usually take?", None),
    ("none_6", "What's the weather like in Paris?", None),
    ("none_7", "Can you recommend a good kettle?", None),
    ("none_8", "Who are you?", None),
    # A request that needs information the customer has not given: ask (in words, or as a card whose required
    # fields are left empty for the customer to fill), never call with invented values. See ASKS.
    ("ask_1", "I want to cancel my order.", None),
    ("ask_2", "Where is my order?", None),
    ("ask_3", "Please change my shipping address.", None),
    ("ask_4", "Open a ticket for me.", None),
]

# The "ask" cases: besides no call at all, a card for one of these functions with every required value left empty
# is right too (Callcard then asks for them on the card).
ASKS: dict[str, frozenset[str]] = {
    f"{CATEGORY}_ask_1": frozenset({"cancel_order"}),
    f"{CATEGORY}_ask_2": frozenset({"lookup_order", "list_orders"}),
    f"{CATEGORY}_ask_3": frozenset({"update_shipping_address"}),
    f"{CATEGORY}_ask_4": frozenset({"create_support_ticket"}),
}


def support_functions() -> list[FunctionSpec]:
    """The support desk's functions, as the app offers them."""
    with tempfile.TemporaryDirectory() as folder:
        desk = SupportDesk(folder)
        try:
            return [tool.spec for tool in support_desk_tools(desk)]
        finally:
            desk.close()


def load_scenarios(limit: int | None = None) -> list[TestCase]:
    """The scenarios as evaluation cases (the first `limit`)."""
    functions = support_functions()
    raw = [spec.to_openai_tool()["function"] for spec in functions]
    return [
        TestCase(
            id=f"{CATEGORY}_{case_id}", category=CATEGORY, messages=[Turn.user(text)], system=None,
            functions=functions, raw_functions=raw, answers=None if answer is None else [{answer[0]: answer[1]}],
        )
        for case_id, text, answer in SCENARIOS[:limit]
    ]
