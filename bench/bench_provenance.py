"""What tracing each argument's source costs per proposed call, against validating the same call.

Run from the repository root: `python -m bench.bench_provenance` (`--messages 40` for a longer conversation).
Both run on every proposed call, so validation is the natural yardstick.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

from backend.core.provenance import Evidence, trace_arguments
from backend.core.specs import FunctionSpec
from backend.core.validation import validate_arguments

__all__ = ["main"]

SPEC = FunctionSpec.model_validate({
    "name": "update_shipping_address",
    "arguments": [
        {"name": "order_number", "type": "string"},
        {"name": "full_name", "type": "string"},
        {"name": "email", "type": "string", "format": "email"},
        {"name": "phone", "type": "string"},
        {"name": "delivery_date", "type": "string", "format": "date"},
        {"name": "address", "type": "object", "properties": [
            {"name": "street", "type": "string"}, {"name": "city", "type": "string"}, {"name": "zip", "type": "string"},
        ]},
        {"name": "items", "type": "array", "items": {"name": "item", "type": "string"}},
    ],
})

ARGUMENTS = {
    "order_number": "A1001", "full_name": "Ann Lee", "email": "ann.lee@example.com", "phone": "+44 20 7946 0958",
    "delivery_date": "2026-12-08", "address": {"street": "12 Rue de Rivoli", "city": "Paris", "zip": "75001"},
    "items": ["blue mug", "kettle"],
}

# The worst case: every value invented, so every text is searched every way.
INVENTED = {
    "order_number": "B2002", "full_name": "Bob Stone", "email": "bob@example.org", "phone": "+1 555 010 9999",
    "delivery_date": "2027-01-15", "address": {"street": "1 Main St", "city": "Lyon", "zip": "69001"},
    "items": ["red cup", "toaster"],
}

_CHAT = [
    "Hi, I ordered a blue mug and a kettle last week and I would like them sent somewhere else.",
    "The order is A1001, placed by Ann Lee, you can reach me at Ann.Lee@example.com.",
    "Please deliver on 8 December 2026 if you can, my phone is 020 7946 0958.",
    "The new address is 12 rue de Rivoli, 75001 Paris. Thanks a lot for your help with this!",
]
_RESULT = json.dumps({
    "order_number": "A1001", "status": "processing", "items": [{"name": "blue mug", "qty": 1}, {"name": "kettle"}],
    "history": [{"at": "2026-11-30", "event": "placed"}, {"at": "2026-12-01", "event": "paid"}],
})


def conversation(messages: int) -> list[Evidence]:
    """`messages` user messages (the four above, repeated) with a tool result after every fourth."""
    evidence: list[Evidence] = []
    for index in range(messages):
        evidence.append(Evidence(kind="user", text=_CHAT[index % len(_CHAT)], message_id=index))
        if index % 4 == 3:
            evidence.append(Evidence(kind="tool", text=_RESULT, call_id=f"c{index}", function="lookup_order"))
    return evidence


def _per_call(run: Callable[[], object], seconds: float) -> float:
    """Microseconds per run, over about `seconds`."""
    count, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        for _ in range(50):
            run()
        count += 50
    return elapsed / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=2.0)
    options = parser.parse_args()
    evidence_texts = [(e.kind, e.text, e.message_id, e.call_id, e.function) for e in conversation(options.messages)]

    def trace(arguments: dict[str, object] = ARGUMENTS) -> object:
        # Fresh evidence each time: the engine reads the conversation anew for every call.
        evidence = [Evidence(kind=k, text=t, message_id=m, call_id=c, function=f) for k, t, m, c, f in evidence_texts]
        return trace_arguments(arguments, evidence, SPEC)

    traced = trace()
    assert isinstance(traced, dict)
    grounded = sum(source.kind in ("user", "tool") for source in traced.values())
    validate = _per_call(lambda: validate_arguments(SPEC, ARGUMENTS), options.seconds)
    provenance = _per_call(trace, options.seconds)
    invented = _per_call(lambda: trace(INVENTED), options.seconds)
    print(f"conversation: {options.messages} user messages, {len(evidence_texts)} texts; call: {len(traced)} values, "
          f"{grounded} grounded")
    print(f"validate_arguments (baseline): {validate:8.1f} us/call")
    print(f"trace_arguments:               {provenance:8.1f} us/call  (x{provenance / validate:.1f} of validation)")
    print(f"trace_arguments, all invented: {invented:8.1f} us/call  (x{invented / validate:.1f} of validation)")


if __name__ == "__main__":
    main()
