"""Typed turns: a call keeps its id, and a result names the call it answers."""

from __future__ import annotations

import pytest

from backend.core.calls import FunctionCall
from backend.core.history import Turn


def test_a_call_turn_needs_the_calls_id() -> None:
    with pytest.raises(ValueError, match="needs its id"):
        Turn.function_call(FunctionCall(name="get_weather"))
    turn = Turn.function_call(FunctionCall(id="c1", name="get_weather", arguments={"city": "Paris"}))
    assert turn.call is not None and turn.call.id == "c1" and turn.text == ""


def test_only_a_result_names_a_call_and_only_a_call_turn_carries_one() -> None:
    with pytest.raises(ValueError, match="names the call"):
        Turn(role="function_result", text="18")
    with pytest.raises(ValueError, match="names the call"):
        Turn(role="user", text="hi", call_id="c1")
    with pytest.raises(ValueError, match="carries a call"):
        Turn(role="assistant", call=FunctionCall(id="c1", name="get_weather"))
    assert Turn.function_result("c1", "18").call_id == "c1"


def test_turns_are_values() -> None:
    assert Turn.user("Hi") == Turn.user("Hi")
    with pytest.raises(ValueError):
        Turn.user("Hi").text = "Bye"  # type: ignore[misc]
