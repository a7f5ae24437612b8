"""The turn rules: a turn is a user message and what follows; which were answered; what the model sees; loops."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from backend.core.calls import FunctionCall
from backend.core.history import Turn
from backend.core.prompts import FUNCTION_RESULT_TEMPLATE
from backend.core.provenance import Evidence
from backend.storage.tables import CallStatus, FunctionCallRecord, Message, MessageRole, new_id

__all__ = [
    "current_turn", "evidence", "is_unanswered", "loop_guard", "prompt_history", "turns", "unanswered_message_ids",
]

_log = logging.getLogger(__name__)

# One row of `Store.transcript`: role, content, call id, function name, arguments as run or proposed, message id.
_TranscriptRow = tuple[str, str, str | None, str | None, dict[str, Any] | None, int]


def unanswered_message_ids(messages: Sequence[Message], *, include_last: bool = True) -> set[int]:
    """Ids of the user messages whose turn ended with no answer (it holds only that message and errors).

    The model never sees them again (only a retry of the newest turn sends it again), and the UI marks them "not
    answered". `messages` in conversation order; `include_last=False` leaves the newest turn out, for while it is
    being answered.
    """
    unanswered = _unanswered([m.role for m in messages], include_last=include_last)
    return {m.id for i, m in enumerate(messages) if i in unanswered and m.id is not None}


def turns(roles: Sequence[str]) -> list[range]:
    """Index ranges of the turns: each user message and everything up to the next one."""
    starts = [i for i, role in enumerate(roles) if role == MessageRole.USER]
    return [range(start, end) for start, end in zip(starts, [*starts[1:], len(roles)])]


def is_unanswered(turn_roles: Sequence[str]) -> bool:
    """No assistant text and no call: the turn holds only its user message and error messages."""
    return all(role in (MessageRole.USER, MessageRole.ERROR) for role in turn_roles)


def current_turn(messages: Sequence[Message]) -> str:
    """The id of the newest user message's turn (a fresh one when there is none, or it has none)."""
    for message in reversed(messages):
        if message.role == MessageRole.USER:
            return str((message.extra or {}).get("turn_id") or new_id())
    return new_id()


def prompt_history(rows: Sequence[_TranscriptRow]) -> list[Turn]:
    """The conversation as the models take it: calls as finally run, no errors, no unanswered messages."""
    history: list[Turn] = []
    # A failed message would otherwise join the next one in a single turn. The newest turn is the one being
    # answered (sent or retried), so it always goes in.
    left_out = _unanswered([row[0] for row in rows], include_last=False)
    for index, (role, content, call_id, function_name, arguments, _message_id) in enumerate(rows):
        if role == MessageRole.ERROR or index in left_out:
            continue
        if role == MessageRole.FUNCTION_CALL and function_name is not None:
            if isinstance(arguments, str):  # JSON columns come back as text from a COALESCE on some databases
                arguments = json.loads(arguments)
            history.append(Turn.function_call(FunctionCall(id=call_id, name=function_name, arguments=dict(arguments or {}))))
        elif role == MessageRole.FUNCTION_RESULT and call_id is not None:
            history.append(Turn.function_result(call_id, content))
        elif role == MessageRole.FUNCTION_RESULT:  # an imported result whose call the export did not name
            history.append(Turn.user(FUNCTION_RESULT_TEMPLATE.format(result=content)))
        elif role in (MessageRole.USER, MessageRole.ASSISTANT):
            history.append(Turn(role=role, text=content))
        else:  # an imported call message whose call the export did not carry: nothing the model could read
            _log.warning("Left a %s message without its call out of the prompt.", role)
    return history


def evidence(rows: Sequence[_TranscriptRow]) -> list[Evidence]:
    """What a call's values may come from: every message the customer wrote, and every call's result."""
    found: list[Evidence] = []
    for role, content, call_id, function_name, _arguments, message_id in rows:
        if role == MessageRole.USER:
            found.append(Evidence(kind="user", text=content, message_id=message_id))
        elif role == MessageRole.FUNCTION_RESULT:
            found.append(Evidence(kind="tool", text=content, call_id=call_id, function=function_name))
    return found


def loop_guard(
    earlier: Sequence[FunctionCallRecord], calls: Sequence[FunctionCall], *, max_calls_per_turn: int,
) -> str | None:
    """Why the model must stop here (same call again after its result, or too many calls), or None.

    `earlier`: the calls already proposed in this turn; `calls`: those the model asks for now.
    """
    answered = {
        (c.function_name, _canonical(c.final_arguments or c.proposed_arguments or {}))
        for c in earlier if c.status == CallStatus.SUCCEEDED
    }
    for call in calls:
        if (call.name, _canonical(call.arguments)) in answered:
            return (
                f"The model asked to call {call.name} again with the same arguments after getting its result. "
                "Callcard stopped here to avoid a loop; ask a follow-up question to go on."
            )
    if len(earlier) + len(calls) > max_calls_per_turn:
        return (
            f"The model has proposed {len(earlier) + len(calls)} calls for one message; the limit is "
            f"{max_calls_per_turn}. Callcard stopped here; ask again to go on."
        )
    return None


def _unanswered(roles: Sequence[str], *, include_last: bool) -> set[int]:
    """Indexes of the user messages, among `roles`, whose turn has no answer."""
    found = turns(roles)
    if not include_last:
        found = found[:-1]
    return {turn.start for turn in found if is_unanswered([roles[i] for i in turn])}


def _canonical(arguments: dict[str, Any]) -> str:
    return json.dumps(arguments, sort_keys=True, ensure_ascii=False, default=str)
