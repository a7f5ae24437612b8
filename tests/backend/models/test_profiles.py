"""Model profiles: the bundled model's heuristics, and grounding optional values in the user's message."""

from __future__ import annotations

from backend.core.specs import FunctionSpec
from backend.models.profiles import (
    NEUTRAL,
    SMOLLM2_135M,
    SMOLLM2_RELEVANCE_THRESHOLD,
    grounded_arguments,
    relevance_context,
)


def test_the_bundled_model_s_profile_holds_its_calibrated_heuristics() -> None:
    assert SMOLLM2_135M.relevance_threshold == SMOLLM2_RELEVANCE_THRESHOLD == 2.5
    assert SMOLLM2_135M.ground_optional_values is True


def test_the_neutral_profile_leaves_every_decision_to_the_model() -> None:
    assert NEUTRAL.relevance_threshold is None
    assert NEUTRAL.ground_optional_values is False


def test_relevance_context_names_the_function_and_what_it_does() -> None:
    spec = FunctionSpec(name="get_weather", description="Get the current weather in a city.")
    # The threshold was calibrated with exactly this text: a change here needs eval/calibrate.py again.
    assert relevance_context(spec) == "Tools:\n- get_weather: Get the current weather in a city."


def test_optional_values_the_request_does_not_mention_are_left_out() -> None:
    spec = FunctionSpec.from_any({
        "name": "find_library",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"}, "preferences": {"type": "array", "items": {"type": "string"}},
                "years": {"type": "integer"}, "frequency": {"type": "string"}, "open_late": {"type": "boolean"},
            },
            "required": ["city"],
        },
    })
    request = "A pet-friendly library in Boston, open for 2.5 years?"
    written = {
        "city": "Cambridge",  # required: kept even when the request does not say it (the card shows it)
        "preferences": ["Pet-friendly", "Cafe inside"],  # items one by one
        "years": 2,  # "2.5" is not "2"
        "frequency": "quarterly",
        "open_late": True,  # nothing to look for in a boolean
    }
    assert grounded_arguments(written, spec, request) == {"city": "Cambridge", "preferences": ["Pet-friendly"]}
    assert grounded_arguments(written, spec, "") == written  # after a function result there is no request to check


def test_the_bundled_model_is_offered_a_function_that_changes_data_only_when_asked_for_that_change() -> None:
    specs = [FunctionSpec(name=name) for name in (
        "lookup_order", "update_shipping_address", "cancel_order", "create_support_ticket", "add", "bookHotel")]

    def offered(request: str) -> list[str]:
        return [spec.name for spec in SMOLLM2_135M.offered(specs, request)]

    assert offered("Where is order A1001?") == ["lookup_order", "add"]
    assert offered("How long do refunds take?") == ["lookup_order", "add"]
    assert "cancel_order" in offered("Please CANCEL order A1005") and "update_shipping_address" not in offered("Cancel it")
    assert "update_shipping_address" in offered("Please send order A1013 to 5 Rue de Rivoli instead")
    assert "create_support_ticket" in offered("Order A1001 arrived broken, please open a ticket")
    assert "bookHotel" in offered("Reserve a room in Rome")
    assert NEUTRAL.offered(specs, "Where is order A1001?") == specs  # other models choose for themselves
