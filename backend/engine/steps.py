"""A call's steps: proposed, confirmed (by a person or by its tool's policy), run, settled, rejected or skipped.

Each status change is a compare-and-set in the store, and each settled call gets the result message the model reads,
written in the same transaction as its status: a crash leaves a call either unsettled or settled with its result.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing
from typing import Any, Literal

from backend.core.calls import FunctionCall
from backend.core.provenance import Evidence, Provenance, trace_arguments, ungrounded_required
from backend.core.specs import FunctionSpec
from backend.core.validation import CALL_ERROR_KEY, ValidatedCall, top_field, validate_call
from backend.engine.events import CallProposed, CallUpdated, CallView, EngineEvent
from backend.errors import InvalidStateError
from backend.storage.store import Store
from backend.storage.tables import CallStatus, FunctionCallRecord, User, utcnow
from backend.tools import ToolPolicy, ToolRegistry

__all__ = ["CallSteps", "Ungrounded", "missing_note"]

# What to do with a value found nowhere in the conversation: ask the person for it, flag it on the card, or nothing.
Ungrounded = Literal["ask", "flag", "off"]

log = logging.getLogger(__name__)

_SKIPPED_REASON = "The user wrote a new message instead of confirming."
_STOPPED_RUNNING = "Stopped before the function returned; it may or may not have acted."
_STOPPED_BEFORE_START = "Stopped before the function started; it did not run."


class CallSteps:
    """Moves calls from one status to the next and writes the messages that go with them."""

    def __init__(self, *, store: Store, registry: ToolRegistry, ungrounded: Ungrounded = "flag") -> None:
        self.store = store
        self.registry = registry
        self.ungrounded = ungrounded

    def view(self, record: FunctionCallRecord) -> CallView:
        """What a card shows about the call."""
        tool = self.registry.get(record.function_name)
        checks = record.validation_errors or {}
        status = CallStatus(record.status)
        if record.final_arguments is not None:
            arguments = dict(record.final_arguments)
        else:
            withheld = set(checks.get("withheld") or [])  # values found nowhere, left for the person to give
            proposed = {k: v for k, v in (record.proposed_arguments or {}).items() if k not in withheld}
            arguments = {**proposed, **(checks.get("normalised") or {})}
        result = (record.result or {}).get("value") if record.result else None
        return CallView(
            id=record.id, reply_id=record.reply_id, function=record.function_name,
            description=tool.spec.description if tool else "", status=status, auto=record.auto,
            proposed_arguments=dict(record.proposed_arguments or {}), arguments=arguments,
            edited=record.edited_arguments is not None,
            errors=dict(checks.get("errors") or {}) if status == CallStatus.PROPOSED else {},
            missing=list(checks.get("missing") or []) if status == CallStatus.PROPOSED else [],
            result=result, error=record.error, reject_reason=record.reject_reason, duration_ms=record.duration_ms,
            spec=tool.spec if tool else None, server=tool.server if tool else None,
            warning=tool.warning if tool else None,
            sources={key: Provenance.model_validate(value) for key, value in (record.provenance or {}).items()},
        )

    def propose(
        self, conversation_id: str, call: FunctionCall, reply_id: str, turn_id: str, specs: list[FunctionSpec],
        evidence: Sequence[Evidence] = (),
    ) -> tuple[FunctionCallRecord, ValidatedCall]:
        """Store one proposed call, with where its values came from and what validation found.

        An unknown function fails at once. With `ungrounded="ask"`, a required value found nowhere in `evidence` is
        withheld: the card asks for it as for a missing one (the model's value stays in the record as proposed).
        """
        spec = next((s for s in specs if s.name == call.name), None)
        sources = trace_arguments(call.arguments, evidence, spec)
        withheld = ungrounded_required(spec, sources) if spec is not None and self.ungrounded == "ask" else []
        asked = FunctionCall(name=call.name, arguments={k: v for k, v in call.arguments.items() if k not in withheld})
        checked = validate_call(asked, specs)
        if checked.spec is not None:
            found = {"errors": checked.errors, "missing": checked.missing, "normalised": checked.arguments,
                     "withheld": withheld}
        else:
            found = {"errors": checked.errors, "missing": [], "normalised": {}}
        tool = self.registry.get(call.name)
        record = FunctionCallRecord(
            conversation_id=conversation_id, reply_id=reply_id, turn_id=turn_id, function_name=call.name[:200],
            proposed_arguments=call.arguments, validation_errors=found,
            provenance={key: value.model_dump(exclude_none=True) for key, value in sources.items()}
            if self.ungrounded != "off" else None,
            tool_source=tool.source[:200] if tool is not None else None,
        )
        result = None
        if checked.spec is None:  # stored failed, with its result, in the transaction that stores it
            record.status = CallStatus.FAILED
            record.finished_at = utcnow()
            record.error = checked.errors[CALL_ERROR_KEY]
            result = _result_message({"error": record.error})
        record = self.store.add_call(record, message_content=call.to_trelis_json(), result_message=result)
        return record, checked

    async def present(self, record: FunctionCallRecord, checked: ValidatedCall) -> AsyncIterator[EngineEvent]:
        """Report a stored proposal, and run it when its tool runs without asking."""
        if record.status != CallStatus.PROPOSED:
            yield CallUpdated(call=self.view(record))
            return
        yield CallProposed(call=self.view(record))
        tool = self.registry.get(record.function_name)
        if tool is not None and tool.policy == ToolPolicy.AUTO and checked.ok:
            record = self.store.transition(
                record.id, expected=CallStatus.PROPOSED, to=CallStatus.CONFIRMED, auto=True,
                final_arguments=checked.arguments, confirmed_at=utcnow(), runner=self.store.instance,
            )
            async with aclosing(self.execute(record)) as events:
                async for event in events:
                    yield event

    def confirm(
        self, record: FunctionCallRecord, *, owner: User, arguments: dict[str, Any], normalised: dict[str, Any],
    ) -> FunctionCallRecord:
        """A person confirmed the call with `arguments` (checked: `normalised`); InvalidStateError if it moved on."""
        edited = arguments != (record.proposed_arguments or {})
        return self.store.transition(
            record.id, expected=CallStatus.PROPOSED, to=CallStatus.CONFIRMED,
            edited_arguments=arguments if edited else None, final_arguments=normalised, validation_errors=None,
            confirmed_by=owner.id, confirmed_at=utcnow(), runner=self.store.instance,
            provenance=_with_edits(record.provenance, record.proposed_arguments or {}, arguments)
            if record.provenance is not None else None,
        )

    def reject(self, call_id: str, *, owner: User, reason: str | None) -> FunctionCallRecord:
        """A person declined the call; the model is told, with the reason. InvalidStateError if it moved on."""
        return self.store.transition(
            call_id, expected=CallStatus.PROPOSED, to=CallStatus.REJECTED, reject_reason=reason,
            confirmed_by=owner.id, finished_at=utcnow(),
            result_message=_result_message({"declined": "The user declined this call.", "reason": reason or "none given"}),
        )

    async def execute(self, record: FunctionCallRecord) -> AsyncIterator[EngineEvent]:
        """Run a confirmed call and settle it with its result; a stop on the way interrupts it."""
        record = self.store.transition(
            record.id, expected=CallStatus.CONFIRMED, to=CallStatus.RUNNING, started_at=utcnow(),
        )
        running = False
        try:
            yield CallUpdated(call=self.view(record))
            running = True
            result = await self.registry.execute(record.function_name, dict(record.final_arguments or {}))
        except (asyncio.CancelledError, GeneratorExit):
            # The tool's thread may still finish, but nobody records it: the call is never re-run or reported done.
            self._interrupt(record, _STOPPED_RUNNING if running else _STOPPED_BEFORE_START)
            raise
        if result.ok:
            record = self.store.transition(
                record.id, expected=CallStatus.RUNNING, to=CallStatus.SUCCEEDED, finished_at=utcnow(),
                duration_ms=result.duration_ms, result={"value": result.value, "truncated": result.truncated},
                result_message=_result_message(result.value),
            )
        else:
            # A call cut off midway (its MCP server crashed) may have acted: interrupted, like a stopped one, not failed.
            settled = CallStatus.INTERRUPTED if result.interrupted else CallStatus.FAILED
            record = self.store.transition(
                record.id, expected=CallStatus.RUNNING, to=settled, finished_at=utcnow(),
                duration_ms=result.duration_ms, error=result.error, result_message=_result_message({"error": result.error}),
            )
        log.info(
            "call conversation=%s function=%s status=%s auto=%s duration_ms=%.0f",
            record.conversation_id, record.function_name, record.status, record.auto, record.duration_ms or 0,
        )
        yield CallUpdated(call=self.view(record))

    def skip_open(self, conversation_id: str) -> list[EngineEvent]:
        """A new user message settles the cards still waiting: skipped, with no result for the model.

        A declined result here would join the new message in one turn, and models answer the result and miss the
        request; with no result the new message is a turn of its own, right after the call.
        """
        events: list[EngineEvent] = []
        for record in self.open_calls(conversation_id):
            try:
                record = self.store.transition(
                    record.id, expected=CallStatus.PROPOSED, to=CallStatus.SKIPPED, finished_at=utcnow(),
                    reject_reason=_SKIPPED_REASON,
                )
            except InvalidStateError:
                continue
            events.append(CallUpdated(call=self.view(record)))
        return events

    def open_calls(self, conversation_id: str) -> list[FunctionCallRecord]:
        """The conversation's calls still waiting for a person."""
        return self.store.calls(conversation_id=conversation_id, status=CallStatus.PROPOSED)

    def _interrupt(self, record: FunctionCallRecord, error: str) -> None:
        try:
            record = self.store.transition(
                record.id, expected=CallStatus.RUNNING, to=CallStatus.INTERRUPTED, finished_at=utcnow(), error=error,
                result_message=_result_message({"error": error}),
            )
        except InvalidStateError:
            return  # already settled elsewhere (shutdown marked it, say)
        log.info("call stopped conversation=%s function=%s", record.conversation_id, record.function_name)


def missing_note(views: list[CallView]) -> str:
    """The assistant's question for the information a call still needs (the model card's advice)."""
    lines: list[str] = []
    for view in views:
        if not view.missing:
            continue
        asks = []
        for name in view.missing:
            argument = view.spec.argument(top_field(name)) if view.spec else None
            label = name.replace("_", " ")
            asks.append(f"**{label}**" + (f" ({argument.description})" if argument and argument.description else ""))
        lines.append(f"To run `{view.function}` I still need: " + ", ".join(asks) + ".")
    if not lines:
        return ""
    return "\n".join(lines) + "\nPlease fill in the card below (or tell me here), then confirm."


def _with_edits(
    provenance: dict[str, Any], proposed: dict[str, Any], confirmed: dict[str, Any],
) -> dict[str, Any]:
    """Sources after a person's edits: a value they changed or filled in is theirs, whatever the model wrote."""
    person = Provenance(kind="person").model_dump(exclude_none=True)
    return {
        key: provenance[key] if key in provenance and _leaf(proposed, key) == _leaf(confirmed, key) else person
        for key in trace_arguments(confirmed, ())  # every leaf path of what was confirmed
    }


_ABSENT = object()


def _leaf(arguments: dict[str, Any], key: str) -> Any:
    """The value at a provenance path (`address.city`, `items[0]`) of `arguments`, or _ABSENT."""
    value: Any = arguments
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", key):
        if part.startswith("["):
            index = int(part[1:-1])
            if not isinstance(value, list) or index >= len(value):
                return _ABSENT
            value = value[index]
        elif isinstance(value, dict) and part in value:
            value = value[part]
        else:
            return _ABSENT
    return value


def _result_message(value: Any) -> str:
    """A call's result as the function_result message the model reads."""
    return json.dumps(value, ensure_ascii=False, default=str)
