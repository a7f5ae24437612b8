"""The evaluation's scoring of the support-desk scenarios: a write for a read, asking, and Callcard's `ask`."""

from __future__ import annotations

import json

from eval.run_eval import score_reply
from eval.support_scenarios import SCENARIOS, load_scenarios


def _case(case_id: str):  # type: ignore[no-untyped-def]
    return next(c for c in load_scenarios() if c.id == f"support_{case_id}")


def _call(name: str, **arguments: object) -> str:
    return json.dumps({"function": name, "arguments": arguments})


def test_the_scenario_set_is_what_customers_type_with_reads_writes_talk_and_asks() -> None:
    assert len(SCENARIOS) >= 30 and len({case_id for case_id, _, _ in SCENARIOS}) == len(SCENARIOS)
    kinds = {case_id.split("_")[0] for case_id, _, _ in SCENARIOS}
    assert kinds == {"lookup", "list", "cancel", "address", "ticket", "none", "ask"}


def test_a_function_that_writes_for_a_request_that_only_reads_is_its_own_failure() -> None:
    reply = _call("update_shipping_address", order_number="A1001", street="A1001", city="A1001",
                  postal_code="A1001", country="A1001")
    assert score_reply(_case("lookup_1"), reply, [])[0] == "write_for_a_read"
    assert score_reply(_case("none_5"), _call("cancel_order", order_number="A1001", reason="x"), [])[0] == (
        "write_for_a_read")
    assert score_reply(_case("lookup_1"), _call("lookup_order", order_number="A1001"), [])[0] == "ok"


def test_a_request_missing_its_facts_is_right_to_ask_in_words_or_with_an_empty_card() -> None:
    assert score_reply(_case("ask_1"), "Which order would you like to cancel?", [])[0] == "ok"
    assert score_reply(_case("ask_1"), _call("cancel_order", order_number="", reason=""), [])[0] == "ok"
    invented = _call("cancel_order", order_number="A1001", reason="Cancelling an order")
    assert score_reply(_case("ask_1"), invented, [])[0] == "called_irrelevant"
    assert score_reply(_case("ask_1"), invented, [], ask=True)[0] == "ok"  # the card would ask for both


def test_ask_withholds_an_invented_value_and_keeps_a_quoted_one() -> None:
    invented = _call("list_orders", email="https://www.example.com/email/1042")
    assert score_reply(_case("list_1"), invented, [], ask=True)[0] == "asked"
    quoted = _call("list_orders", email="ada.lovelace@example.com")
    assert score_reply(_case("list_1"), quoted, [], ask=True)[0] == "ok"
