"""Model profiles: what the embedded backend does for one particular model beyond the generic pipeline.

The grammar pipeline works for any GGUF chat model. A profile adds heuristics that were measured for one model and
would be guesses for another: the bundled SmolLM2-135M gets `SMOLLM2_135M`; any other model file gets `NEUTRAL`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from backend.core.specs import FunctionSpec

__all__ = [
    "NEUTRAL",
    "RELEVANCE_BASELINE",
    "SMOLLM2_135M",
    "SMOLLM2_RELEVANCE_THRESHOLD",
    "ModelProfile",
    "asks_for_change",
    "grounded_arguments",
    "relevance_context",
]

# The bundled model almost always starts a call when functions are offered, even for unrelated requests: its own
# choice between "no call" and a call carries no signal (measured on BFCL). What does carry signal is how much more
# likely the user's message becomes once the functions are in view (pointwise mutual information, summed over the
# message's tokens, in nats). Below this margin the reply is text. Calibrated on BFCL cases outside the evaluated ones
# (eval/calibrate.py), with the system texts below: change them and the threshold must be calibrated again.
SMOLLM2_RELEVANCE_THRESHOLD = 2.5

# The system text the user's message is scored under without any function in view.
RELEVANCE_BASELINE = "You are a helpful assistant."


def relevance_context(spec: FunctionSpec) -> str:
    """A short system text naming one function, to see how much it makes the user's message expected."""
    return f"Tools:\n- {spec.name}: {spec.description}"


@dataclass(frozen=True)
class ModelProfile:
    """One model's heuristics for the grammar pipeline; the defaults leave every decision to the model."""

    name: str
    # Text or call is decided by the relevance gate (see SMOLLM2_RELEVANCE_THRESHOLD) at this margin in nats; None
    # lets the model choose through a grammar over "no call" and the function names.
    relevance_threshold: float | None = None
    # Keep only the optional argument values the user's message mentions (see `grounded_arguments`).
    ground_optional_values: bool = False
    # Offer a function that changes data (its name starts with a verb such as cancel or update) only when the
    # request asks for a change in words of that verb (see `offered`): the small model otherwise answers "Where is
    # my order?" with update_shipping_address.
    writes_need_asking: bool = False

    def offered(self, functions: list[FunctionSpec], request: str) -> list[FunctionSpec]:
        """The functions the model may choose for `request` under this profile."""
        if not self.writes_need_asking:
            return functions
        return [spec for spec in functions if asks_for_change(spec, request)]


NEUTRAL = ModelProfile(name="neutral")
SMOLLM2_135M = ModelProfile(
    name="SmolLM2-135M-Instruct", relevance_threshold=SMOLLM2_RELEVANCE_THRESHOLD, ground_optional_values=True,
    writes_need_asking=True,
)

# Verbs that start the name of a function that changes data, and the stems of the words a person uses to ask for it
# ("modif" for modify and modification). Only verbs that cannot be a calculation or a lookup: "add" and "set" are
# left out (add(a, b), set_precision).
_UPDATE = ("updat", "chang", "modif", "edit", "correct", "move", "redirect", "send", "switch")
_CHANGE_WORDS = {
    "update": _UPDATE, "change": _UPDATE, "modify": _UPDATE, "edit": _UPDATE,
    "cancel": ("cancel", "call off"),
    "delete": ("delet", "remov", "eras"),
    "remove": ("delet", "remov", "eras"),
    "create": ("creat", "open", "file", "rais", "submit", "new", "make", "regist"),
    "book": ("book", "reserv"),
}


def asks_for_change(spec: FunctionSpec, request: str) -> bool:
    """False for a function that changes data when `request` does not ask for that change; True otherwise."""
    verb = re.split(r"[_.\-]|(?<=[a-z])(?=[A-Z])", spec.name, maxsplit=1)[0].lower()
    words = _CHANGE_WORDS.get(verb)
    if words is None:
        return True
    return any(re.search(rf"\b{re.escape(word)}", request, re.IGNORECASE) for word in words)


def grounded_arguments(arguments: dict[str, Any], spec: FunctionSpec, request: str) -> dict[str, Any]:
    """The arguments without optional values the request does not mention (list items one by one).

    The bundled model fills optional arguments with invented values (a "features" list, a "frequency") more often
    than with asked-for ones; left out, the function's defaults apply, and the card still offers every field.
    """
    if not request:
        return arguments
    optional = {a.name for a in spec.arguments if not a.required}
    kept: dict[str, Any] = {}
    for key, value in arguments.items():
        if key not in optional:
            kept[key] = value
        elif isinstance(value, list):
            items = [item for item in value if _mentioned(item, request)]
            if items:
                kept[key] = items
        elif _mentioned(value, request):
            kept[key] = value
    return kept


def _mentioned(value: object, request: str) -> bool:
    """Whether every string and number in `value` is written in `request` (numbers as whole numbers)."""
    leaves = _leaves(value)
    text = request.casefold()
    return bool(leaves) and all(
        re.search(rf"(?<![\w.]){re.escape(leaf)}(?![\w]|\.\d)", text) is not None for leaf in leaves
    )


def _leaves(value: object) -> set[str]:
    """The strings and numbers inside a JSON value, as a message would write them (casefolded)."""
    if isinstance(value, bool) or value is None:
        return set()
    if isinstance(value, dict):
        return set().union(*(_leaves(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(_leaves(v) for v in value))
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip().casefold()
    return {text} if text else set()
