"""Provenance through the engine: each proposed value's source is stored, shown, kept in the audit, and `ask` mode
leaves a required value nobody wrote for the person to give."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.engine import Engine
from backend.engine.audit import AuditFilters
from backend.engine.events import AssistantNote, CallProposed
from backend.engine.steps import Ungrounded
from backend.models.protocol import GenerationParams
from backend.models.tgi import TGIBackend
from backend.storage.store import Store
from backend.tools import SupportDesk, ToolRegistry, support_desk_tools
from tests.backend.engine.test_engine_turns import collect, of
from tests.fake_tgi import FakeTGI

INVENTED = {"function": "list_orders", "arguments": {"email": "https://www.example.com/email/1042"}}


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[ToolRegistry]:
    desk = SupportDesk(tmp_path / "desk")
    yield ToolRegistry(support_desk_tools(desk))
    desk.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(f"sqlite:///{tmp_path / 'callcard.db'}")
    yield store
    store.close()


def _engine(store: Store, registry: ToolRegistry, fake: FakeTGI, ungrounded: Ungrounded) -> Engine:
    backend = TGIBackend(fake.url, call_mode="parse", retries=0, timeout=5)
    return Engine(store=store, backend=backend, registry=registry, params=GenerationParams(max_new_tokens=100),
                  ungrounded=ungrounded)


def test_a_value_the_customer_wrote_is_quoted_and_one_nobody_wrote_is_flagged(
    store: Store, registry: ToolRegistry, fake_tgi: FakeTGI,
) -> None:
    engine = _engine(store, registry, fake_tgi, "flag")
    conversation = engine.create_conversation("ann")
    fake_tgi.reply(json.dumps({"function": "lookup_order", "arguments": {"order_number": "A1001"}}))
    (looked_up,) = of(CallProposed, collect(engine.send(conversation.id, "ann", "Where is order a1001 ?")))
    source = looked_up.call.sources["order_number"]
    assert (source.kind, source.quote) == ("user", "a1001")

    fake_tgi.reply(json.dumps(INVENTED))
    (invented,) = of(CallProposed, collect(engine.send(conversation.id, "ann", "Where is my order 1042?")))
    assert invented.call.sources["email"].kind == "model"
    assert invented.call.arguments == INVENTED["arguments"]  # flag only marks it


def test_ask_leaves_a_required_value_nobody_wrote_empty_and_asks_for_it(
    store: Store, registry: ToolRegistry, fake_tgi: FakeTGI,
) -> None:
    engine = _engine(store, registry, fake_tgi, "ask")
    conversation = engine.create_conversation("ann")
    fake_tgi.reply(json.dumps(INVENTED))

    events = collect(engine.send(conversation.id, "ann", "Where is my order 1042?"))

    (proposed,) = of(CallProposed, events)
    assert "email" not in proposed.call.arguments and proposed.call.missing == ["email"]
    assert "email" in of(AssistantNote, events)[0].text
    assert store.call(proposed.call.id).proposed_arguments == INVENTED["arguments"]  # the model's value is kept

    fake_tgi.reply("You have one order.")
    collect(engine.confirm(proposed.call.id, {"email": "ada.lovelace@example.com"}, "ann"))
    (entry,) = engine.audit("ann", AuditFilters(function="list_orders"))
    assert entry.sources == {"email": "edited by a person"}
    assert entry.arguments == {"email": "ada.lovelace@example.com"}


def test_a_value_from_an_earlier_result_names_that_call(
    store: Store, registry: ToolRegistry, fake_tgi: FakeTGI,
) -> None:
    engine = _engine(store, registry, fake_tgi, "ask")
    conversation = engine.create_conversation("ann")
    fake_tgi.reply(json.dumps({"function": "lookup_order", "arguments": {"order_number": "A1001"}}))
    (lookup,) = of(CallProposed, collect(engine.send(conversation.id, "ann", "Where is order A1001?")))
    fake_tgi.reply("It has shipped.")
    collect(engine.confirm(lookup.call.id, None, "ann"))
    result = store.call(lookup.call.id).result or {}
    city = result["value"]["shipping_address"]["city"]
    fake_tgi.reply(json.dumps({"function": "cancel_order", "arguments": {"order_number": "A1001", "reason": city}}))

    (cancel,) = of(CallProposed, collect(engine.send(conversation.id, "ann", "Cancel it please, order A1001")))

    assert cancel.call.sources["reason"].kind == "tool" and cancel.call.sources["reason"].function == "lookup_order"
    assert cancel.call.sources["reason"].call_id == lookup.call.id
    assert cancel.call.arguments["reason"] == city and cancel.call.missing == []


def test_off_stores_no_provenance(store: Store, registry: ToolRegistry, fake_tgi: FakeTGI) -> None:
    engine = _engine(store, registry, fake_tgi, "off")
    conversation = engine.create_conversation("ann")
    fake_tgi.reply(json.dumps(INVENTED))
    (proposed,) = of(CallProposed, collect(engine.send(conversation.id, "ann", "Where is my order 1042?")))
    assert proposed.call.sources == {} and proposed.call.arguments == INVENTED["arguments"]
