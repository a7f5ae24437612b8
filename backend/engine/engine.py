"""The conversation engine: user text -> model -> proposed calls -> a person's confirmation -> tool -> result -> model."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field

from backend.core.calls import FunctionCall
from backend.core.detector import CallDetector
from backend.core.parsing import parse_reply
from backend.core.specs import FunctionSpec
from backend.core.validation import CALL_ERROR_KEY, ValidatedCall, validate_arguments, validate_call
from backend.errors import CallcardError, InvalidInputError, InvalidStateError, NotFoundError
from backend.models.protocol import GenerationParams, ModelBackend, ReplyDone, TextDelta
from backend.storage import (
    SETTLED_STATUSES,
    CallStatus,
    Conversation,
    FunctionCallRecord,
    Message,
    MessageRole,
    Store,
    User,
    new_id,
    utcnow,
)
from backend.tools import ToolPolicy, ToolRegistry

__all__ = [
    "Engine",
    "unanswered_message_ids",
    "Limits",
    "CallView",
    "EngineEvent",
    "Token",
    "PreparingCall",
    "ReplyText",
    "CallProposed",
    "CallUpdated",
    "AssistantNote",
    "ErrorEvent",
    "Done",
]

log = logging.getLogger(__name__)

EXPORT_FORMAT = "callcard.conversation.v1"
MAX_TITLE_CHARS = 200  # the conversations table's limit
_IMPORTED = " (imported)"
_SKIPPED_REASON = "The user wrote a new message instead of confirming."
_STOPPED_RUNNING = "Stopped before the function returned; it may or may not have acted."
_STOPPED_BEFORE_START = "Stopped before the function started; it did not run."


@dataclass(frozen=True)
class Limits:
    """What one message, reply, turn or result may hold; over a limit the user gets a clear error and nothing is lost."""

    max_message_chars: int = 8000
    max_calls_per_reply: int = 5
    max_calls_per_turn: int = 8
    max_title_chars: int = 60


class CallView(BaseModel):
    """What a card shows about one call."""

    id: str
    reply_id: str
    function: str
    description: str = ""
    status: CallStatus
    auto: bool = False
    proposed_arguments: dict[str, Any] = Field(default_factory=dict)
    arguments: dict[str, Any] = Field(default_factory=dict)
    edited: bool = False
    errors: dict[str, str] = Field(default_factory=dict)
    missing: list[str] = Field(default_factory=list)
    result: Any = None
    error: str | None = None
    reject_reason: str | None = None
    duration_ms: float | None = None
    spec: FunctionSpec | None = None


class Token(BaseModel):
    """Visible text of the reply being streamed."""

    kind: Literal["token"] = "token"
    text: str


class PreparingCall(BaseModel):
    """The model has started writing a function call."""

    kind: Literal["preparing_call"] = "preparing_call"


class ReplyText(BaseModel):
    """The final prose of the reply just streamed (the calls removed); replaces the streamed text."""

    kind: Literal["reply_text"] = "reply_text"
    text: str


class CallProposed(BaseModel):
    kind: Literal["call_proposed"] = "call_proposed"
    call: CallView


class CallUpdated(BaseModel):
    kind: Literal["call_updated"] = "call_updated"
    call: CallView


class AssistantNote(BaseModel):
    """A message Callcard adds in the assistant's place, such as asking for missing information."""

    kind: Literal["assistant_note"] = "assistant_note"
    text: str


class ErrorEvent(BaseModel):
    kind: Literal["error"] = "error"
    message: str
    retryable: bool = False


class Done(BaseModel):
    """The engine has finished; `awaiting_confirmation` when cards wait for a person."""

    kind: Literal["done"] = "done"
    awaiting_confirmation: bool = False


EngineEvent = Token | PreparingCall | ReplyText | CallProposed | CallUpdated | AssistantNote | ErrorEvent | Done


class Engine:
    """Drives conversations; every public method checks that the acting user owns what it touches."""

    def __init__(
        self,
        *,
        store: Store,
        backend: ModelBackend,
        registry: ToolRegistry,
        params: GenerationParams | None = None,
        limits: Limits | None = None,
        system_prompt: str | None = None,
    ) -> None:
        self.store = store
        self.backend = backend
        self.registry = registry
        self.params = params or GenerationParams()
        self.limits = limits or Limits()
        self.system_prompt = system_prompt
        # Conversations whose model reply is streaming in this process: a second reply at the same time (another
        # tab, a message sent while a confirmed call's answer streams) would interleave with it.
        self._answering: set[str] = set()

    # Conversations

    def create_conversation(self, user: str, *, title: str | None = None) -> Conversation:
        return self.store.create_conversation(owner=self._user(user), title=title, system_prompt=self.system_prompt)

    def list_conversations(self, user: str) -> list[Conversation]:
        return self.store.list_conversations(user=self._user(user))

    def conversation(self, conversation_id: str, user: str) -> Conversation:
        return self.store.conversation(conversation_id, user=self._user(user))

    def rename_conversation(self, conversation_id: str, user: str, title: str) -> Conversation:
        title = " ".join(title.split())[:MAX_TITLE_CHARS] or "Untitled"
        return self.store.update_conversation(conversation_id, user=self._user(user), title=title)

    def update_settings(
        self, conversation_id: str, user: str, *, system_prompt: str | None = None,
        temperature: float | None = None, max_new_tokens: int | None = None,
    ) -> Conversation:
        """Per-conversation generation settings; None keeps the default."""
        if temperature is not None and not 0 <= temperature <= 2:
            raise InvalidInputError("Temperature must be between 0 and 2.")
        if max_new_tokens is not None and not 1 <= max_new_tokens <= 8192:
            raise InvalidInputError("Max new tokens must be between 1 and 8192.")
        return self.store.update_conversation(
            conversation_id, user=self._user(user), system_prompt=system_prompt or None,
            temperature=temperature, max_new_tokens=max_new_tokens,
        )

    def delete_conversation(self, conversation_id: str, user: str) -> None:
        self.store.delete_conversation(conversation_id, user=self._user(user))

    def messages(self, conversation_id: str, user: str) -> list[Message]:
        self.conversation(conversation_id, user)
        return self.store.messages(conversation_id)

    def calls(self, conversation_id: str, user: str) -> list[CallView]:
        self.conversation(conversation_id, user)
        return [self._view(record) for record in self.store.calls(conversation_id=conversation_id)]

    def export_conversation(self, conversation_id: str, user: str) -> dict[str, Any]:
        """The whole conversation as JSON-ready data: messages, calls, results and edits."""
        conversation = self.conversation(conversation_id, user)
        return {
            "format": EXPORT_FORMAT,
            "conversation": conversation.model_dump(mode="json", exclude={"owner_id"}),
            "messages": [m.model_dump(mode="json", exclude={"id", "conversation_id"}) for m in self.store.messages(conversation_id)],
            "calls": [c.model_dump(mode="json", exclude={"conversation_id", "confirmed_by"}) for c in self.store.calls(conversation_id=conversation_id)],
        }

    def import_conversation(self, data: dict[str, Any], user: str) -> Conversation:
        """A new conversation owned by `user` from an export; ids are fresh, so importing twice makes two copies."""
        if not isinstance(data, dict) or data.get("format") != EXPORT_FORMAT:
            raise InvalidInputError(f"This is not a Callcard conversation export (expected format {EXPORT_FORMAT}).")
        try:
            source = data["conversation"]
            owner = self._user(user)
            conversation = self.store.create_conversation(
                owner=owner, title=_imported_title(str(source.get("title") or "")),
                model_id=source.get("model_id"), prompt_style=source.get("prompt_style"),
                system_prompt=source.get("system_prompt"), temperature=source.get("temperature"),
                max_new_tokens=source.get("max_new_tokens"),
            )
            call_ids: dict[str, str] = {}
            for call in data.get("calls", []):
                record = FunctionCallRecord.model_validate({
                    **{k: v for k, v in call.items() if k not in ("id", "conversation_id", "confirmed_by")},
                    "conversation_id": conversation.id,
                })
                call_ids[call["id"]] = record.id
                with self.store.session() as session:
                    session.add(record)
                    session.commit()
            for message in sorted(data.get("messages", []), key=lambda m: m["position"]):
                self.store.add_message(
                    conversation_id=conversation.id, role=MessageRole(message["role"]), content=str(message["content"]),
                    call_id=call_ids.get(message.get("call_id") or ""), extra=message.get("extra"),
                )
        except (KeyError, TypeError, ValueError) as error:
            raise InvalidInputError(f"This conversation export is damaged and was not imported: {error}.") from None
        return self.store.conversation(conversation.id, user=owner)

    # Turns

    async def send(self, conversation_id: str, user: str, text: str) -> AsyncIterator[EngineEvent]:
        """Store the user's message, then stream the model's reply and any proposed calls."""
        owner = self._user(user)
        conversation = self.store.conversation(conversation_id, user=owner)
        text = text.strip()
        if not text:
            yield ErrorEvent(message="The message is empty.")
            return
        if len(text) > self.limits.max_message_chars:
            yield ErrorEvent(message=(
                f"The message is {len(text):,} characters long; the limit is {self.limits.max_message_chars:,}. "
                "Shorten it and send again."
            ))
            return
        if conversation.id in self._answering:
            yield ErrorEvent(message=_STILL_ANSWERING)
            return
        skipped = self._skip_open_calls(conversation.id)
        turn_id = new_id()
        self.store.add_message(conversation_id=conversation.id, role=MessageRole.USER, content=text, extra={"turn_id": turn_id})
        for event in skipped:
            yield event
        changes = await self._model_facts() if conversation.model_id is None else {}
        if conversation.title == "New conversation":
            title = " ".join(text.split())
            if len(title) > self.limits.max_title_chars:
                title = title[: self.limits.max_title_chars - 1] + "…"
            changes["title"] = title
        if changes:
            conversation = self.store.update_conversation(conversation.id, user=owner, **changes)
        async with aclosing(self._reply(conversation, owner, turn_id)) as events:
            async for event in events:
                yield event

    async def retry(self, conversation_id: str, user: str) -> AsyncIterator[EngineEvent]:
        """Ask the model again after a failed or stopped reply; the user's message is already stored."""
        owner = self._user(user)
        conversation = self.store.conversation(conversation_id, user=owner)
        messages = [m for m in self.store.messages(conversation.id) if m.role != MessageRole.ERROR]
        if not messages or messages[-1].role not in (MessageRole.USER, MessageRole.FUNCTION_RESULT):
            yield ErrorEvent(message="There is nothing to retry: the model has already answered.")
            return
        if self._open_calls(conversation.id):
            yield ErrorEvent(message="Some calls still wait for confirmation: confirm or reject them first.")
            return
        async with aclosing(self._reply(conversation, owner, self._current_turn(messages))) as events:
            async for event in events:
                yield event

    def withdraw_unanswered(self, conversation_id: str, user: str) -> str:
        """Delete the last message and its errors if the model never answered it; returns its text.

        For "Edit and resend" and "Remove". InvalidStateError when the last message has an answer or is being
        answered now.
        """
        conversation = self.conversation(conversation_id, user)
        if conversation.id in self._answering:
            raise InvalidStateError(_STILL_ANSWERING)
        messages = self.store.messages(conversation.id)
        turns = _turns([m.role for m in messages])
        last = turns[-1] if turns else None
        if last is None or not _is_unanswered([messages[i].role for i in last]):
            raise InvalidStateError("The last message has an answer, so it cannot be taken back.")
        first = messages[last.start]
        # The turn is the conversation's tail, so deleting it leaves the positions gap-free.
        self.store.delete_tail(conversation.id, from_position=first.position, count=len(last))
        return first.content

    async def confirm(self, call_id: str, arguments: dict[str, Any] | None, user: str) -> AsyncIterator[EngineEvent]:
        """Run a proposed call with the (possibly edited) arguments, then let the model answer once all are settled."""
        owner = self._user(user)
        record, conversation = self._owned_call(call_id, owner)
        tool = self.registry.get(record.function_name)
        if tool is None or tool.policy == ToolPolicy.DISABLED:
            yield ErrorEvent(message=f"The function {record.function_name!r} is not available; reject this call.")
            return
        given = dict(record.proposed_arguments or {}) if arguments is None else dict(arguments)
        normalised, errors, missing = validate_arguments(tool.spec, given)
        if errors:
            yield CallUpdated(call=self._view(record).model_copy(update={"arguments": given, "errors": errors, "missing": missing}))
            yield ErrorEvent(message="Some fields need attention before this call can run: " + _error_summary(errors))
            return
        edited = given != (record.proposed_arguments or {})
        try:
            record = self.store.transition(
                call_id, expected=CallStatus.PROPOSED, to=CallStatus.CONFIRMED,
                edited_arguments=given if edited else None, final_arguments=normalised, validation_errors=None,
                confirmed_by=owner.id, confirmed_at=utcnow(), runner=self.store.instance,
            )
        except InvalidStateError as error:
            yield ErrorEvent(message=str(error))
            return
        async with aclosing(self._execute(record)) as events:
            async for event in events:
                yield event
        async with aclosing(self._continue_if_settled(conversation, owner, record)) as events:
            async for event in events:
                yield event

    async def reject(self, call_id: str, user: str, reason: str | None = None) -> AsyncIterator[EngineEvent]:
        """Decline a proposed call; the model is told (with the reason) and the conversation goes on."""
        owner = self._user(user)
        record, conversation = self._owned_call(call_id, owner)
        reason = (reason or "").strip()[:1000] or None
        try:
            record = self.store.transition(
                call_id, expected=CallStatus.PROPOSED, to=CallStatus.REJECTED, reject_reason=reason,
                confirmed_by=owner.id, finished_at=utcnow(),
            )
        except InvalidStateError as error:
            yield ErrorEvent(message=str(error))
            return
        self._add_result_message(record, {"declined": "The user declined this call.", "reason": reason or "none given"})
        yield CallUpdated(call=self._view(record))
        async with aclosing(self._continue_if_settled(conversation, owner, record)) as events:
            async for event in events:
                yield event

    # The loop
    #
    # Stopping: the UI's Stop cancels the task that iterates send/confirm/reject/retry (CancelledError at whatever it
    # awaits), or closes the iterator between two events (GeneratorExit at a yield). Either way the model request is
    # closed, what the person saw is kept, and the writes on the way out are plain synchronous store calls, so they
    # finish. Nested iterators are closed with `aclosing`, so their clean-up runs before ours, not later from the
    # garbage collector. State is stored before the event that reports it is yielded, so a stop between the two
    # loses nothing.

    async def _reply(self, conversation: Conversation, owner: User, turn_id: str) -> AsyncIterator[EngineEvent]:
        """Stream one model reply, store it, propose its calls, and keep going while calls settle on their own."""
        if conversation.id in self._answering:
            yield ErrorEvent(message=_STILL_ANSWERING, retryable=True)
            yield Done()
            return
        self._answering.add(conversation.id)
        try:
            async with aclosing(self._replies(conversation, owner, turn_id)) as events:
                async for event in events:
                    yield event
        finally:
            self._answering.discard(conversation.id)

    async def _replies(self, conversation: Conversation, owner: User, turn_id: str) -> AsyncIterator[EngineEvent]:
        while True:
            specs = self.registry.specs()
            text_parts: list[str] = []
            finished: ReplyDone | None = None
            detector = CallDetector()
            shown = 0
            preparing = False
            started = time.perf_counter()
            try:
                stream = self.backend.stream(
                    self._prompt_history(conversation.id), specs,
                    system=conversation.system_prompt, params=self._params(conversation),
                )
                async with aclosing(stream) as chunks:
                    async for chunk in chunks:
                        if isinstance(chunk, TextDelta):
                            text_parts.append(chunk.text)
                            detector.feed(chunk.text)
                            visible = detector.text_so_far
                            if len(visible) > shown:
                                piece, shown = visible[shown:], len(visible)  # counted as shown once yielded
                                yield Token(text=piece)
                            if detector.state == "call" and not preparing:
                                preparing = True
                                yield PreparingCall()
                        else:
                            finished = chunk
            except CallcardError as error:
                partial = "".join(text_parts)
                self.store.add_message(
                    conversation_id=conversation.id, role=MessageRole.ERROR, content=str(error),
                    extra={"turn_id": turn_id, "partial": partial, "retryable": error.retryable},
                )
                log.info("turn failed conversation=%s error=%s", conversation.id, type(error).__name__)
                yield ErrorEvent(message=str(error), retryable=error.retryable)
                yield Done()
                return
            except (asyncio.CancelledError, GeneratorExit):
                self._keep_stopped_text(conversation.id, turn_id, detector.text_so_far[:shown])
                raise
            reply = parse_reply("".join(text_parts))
            calls = [*(finished.calls if finished else []), *reply.calls]
            model_ms = (time.perf_counter() - started) * 1000
            log.info(
                "turn conversation=%s calls=%d finish=%s model_ms=%.0f",
                conversation.id, len(calls), finished.finish_reason if finished else "?", model_ms,
            )
            if reply.text:
                self.store.add_message(
                    conversation_id=conversation.id, role=MessageRole.ASSISTANT, content=reply.text,
                    extra={"turn_id": turn_id},
                )
            yield ReplyText(text=reply.text)
            if not calls:
                if reply.problems:
                    message = " ".join(reply.problems) + " Retry, or rephrase your request."
                    self.store.add_message(
                        conversation_id=conversation.id, role=MessageRole.ERROR, content=message,
                        extra={"turn_id": turn_id, "partial": "".join(text_parts), "retryable": True},
                    )
                    yield ErrorEvent(message=message, retryable=True)
                elif not reply.text:
                    message = "The model returned an empty reply. Retry, or rephrase your request."
                    self.store.add_message(
                        conversation_id=conversation.id, role=MessageRole.ERROR, content=message,
                        extra={"turn_id": turn_id, "retryable": True},
                    )
                    yield ErrorEvent(message=message, retryable=True)
                yield Done()
                return
            stop_reason = self._loop_guard(conversation.id, turn_id, calls)
            if stop_reason:
                self.store.add_message(
                    conversation_id=conversation.id, role=MessageRole.ERROR, content=stop_reason,
                    extra={"turn_id": turn_id, "retryable": False},
                )
                yield ErrorEvent(message=stop_reason)
                yield Done()
                return
            dropped = len(calls) - self.limits.max_calls_per_reply
            calls = calls[: self.limits.max_calls_per_reply]
            reply_id = new_id()
            # Every call of the reply is stored before any is shown or run: a stop from here on keeps the whole reply.
            proposals = [self._store_proposal(conversation, call, reply_id, turn_id, specs) for call in calls]
            if dropped > 0:
                yield ErrorEvent(message=(
                    f"The model proposed {len(calls) + dropped} calls in one reply; only the first {len(calls)} "
                    "are shown."
                ))
            latest: dict[str, CallView] = {}  # each call's state as last reported: no need to read them back
            for record, checked in proposals:
                async with aclosing(self._present(record, checked)) as events:
                    async for event in events:
                        if isinstance(event, (CallProposed, CallUpdated)):
                            latest[event.call.id] = event.call
                        yield event
            missing_note = _missing_note([v for v in latest.values() if v.status == CallStatus.PROPOSED])
            if missing_note:
                self.store.add_message(
                    conversation_id=conversation.id, role=MessageRole.ASSISTANT, content=missing_note,
                    extra={"turn_id": turn_id, "note": "missing"},
                )
                yield AssistantNote(text=missing_note)
            if any(v.status not in SETTLED_STATUSES for v in latest.values()):
                yield Done(awaiting_confirmation=True)
                return
            # Everything settled without a person (auto tools, unknown functions): the model goes on.

    def _keep_stopped_text(self, conversation_id: str, turn_id: str, text: str) -> None:
        """Keep what the person saw of a reply they stopped; with nothing shown yet, the turn stays unanswered."""
        text = text.strip()
        if text:
            self.store.add_message(
                conversation_id=conversation_id, role=MessageRole.ASSISTANT, content=text,
                extra={"turn_id": turn_id, "stopped": True},
            )
        log.info("turn stopped conversation=%s kept_chars=%d", conversation_id, len(text))

    def _store_proposal(
        self, conversation: Conversation, call: FunctionCall, reply_id: str, turn_id: str, specs: list[FunctionSpec],
    ) -> tuple[FunctionCallRecord, ValidatedCall]:
        """Store one proposed call, with what validation found; an unknown function fails at once."""
        checked = validate_call(call, specs)
        record = self.store.add_call(
            FunctionCallRecord(
                conversation_id=conversation.id, reply_id=reply_id, turn_id=turn_id, function_name=call.name[:200],
                proposed_arguments=call.arguments,
                validation_errors={"errors": checked.errors, "missing": checked.missing, "normalised": checked.arguments}
                if checked.spec is not None else {"errors": checked.errors, "missing": [], "normalised": {}},
            ),
            message_content=call.to_trelis_json(),
        )
        if checked.spec is None:
            record = self.store.transition(
                record.id, expected=CallStatus.PROPOSED, to=CallStatus.FAILED, finished_at=utcnow(),
                error=checked.errors[CALL_ERROR_KEY],
            )
            self._add_result_message(record, {"error": checked.errors[CALL_ERROR_KEY]})
        return record, checked

    async def _present(self, record: FunctionCallRecord, checked: ValidatedCall) -> AsyncIterator[EngineEvent]:
        """Report a stored proposal, and run it when its tool runs without asking."""
        if record.status != CallStatus.PROPOSED:
            yield CallUpdated(call=self._view(record))
            return
        yield CallProposed(call=self._view(record))
        tool = self.registry.get(record.function_name)
        if tool is not None and tool.policy == ToolPolicy.AUTO and checked.ok:
            record = self.store.transition(
                record.id, expected=CallStatus.PROPOSED, to=CallStatus.CONFIRMED, auto=True,
                final_arguments=checked.arguments, confirmed_at=utcnow(), runner=self.store.instance,
            )
            async with aclosing(self._execute(record)) as events:
                async for event in events:
                    yield event

    async def _execute(self, record: FunctionCallRecord) -> AsyncIterator[EngineEvent]:
        record = self.store.transition(record.id, expected=CallStatus.CONFIRMED, to=CallStatus.RUNNING, started_at=utcnow())
        running = False
        try:
            yield CallUpdated(call=self._view(record))
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
            )
            self._add_result_message(record, result.value)
        else:
            record = self.store.transition(
                record.id, expected=CallStatus.RUNNING, to=CallStatus.FAILED, finished_at=utcnow(),
                duration_ms=result.duration_ms, error=result.error,
            )
            self._add_result_message(record, {"error": result.error})
        log.info(
            "call conversation=%s function=%s status=%s auto=%s duration_ms=%.0f",
            record.conversation_id, record.function_name, record.status, record.auto, record.duration_ms or 0,
        )
        yield CallUpdated(call=self._view(record))

    def _interrupt(self, record: FunctionCallRecord, error: str) -> None:
        try:
            record = self.store.transition(
                record.id, expected=CallStatus.RUNNING, to=CallStatus.INTERRUPTED, finished_at=utcnow(), error=error,
            )
        except InvalidStateError:
            return  # already settled elsewhere (shutdown marked it, say)
        self._add_result_message(record, {"error": error})
        log.info("call stopped conversation=%s function=%s", record.conversation_id, record.function_name)

    async def _continue_if_settled(
        self, conversation: Conversation, owner: User, record: FunctionCallRecord,
    ) -> AsyncIterator[EngineEvent]:
        siblings = self.store.calls(reply_id=record.reply_id)
        if any(s.status not in SETTLED_STATUSES for s in siblings):
            yield Done(awaiting_confirmation=True)
            return
        async with aclosing(self._reply(conversation, owner, record.turn_id)) as events:
            async for event in events:
                yield event

    def _loop_guard(self, conversation_id: str, turn_id: str, calls: list[FunctionCall]) -> str | None:
        """Why the model must stop here (same call again after its result, or too many calls), or None."""
        earlier = self.store.calls(conversation_id=conversation_id, turn_id=turn_id)
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
        if len(earlier) + len(calls) > self.limits.max_calls_per_turn:
            return (
                f"The model has proposed {len(earlier) + len(calls)} calls for one message; the limit is "
                f"{self.limits.max_calls_per_turn}. Callcard stopped here; ask again to go on."
            )
        return None

    # Helpers

    async def _model_facts(self) -> dict[str, Any]:
        """Which model and prompt style a conversation is held with (for the audit and exports), as its fields."""
        try:
            info = await self.backend.info()
        except CallcardError:
            return {}  # the turn itself will report the failure
        return {"model_id": info.model_id[:300], "prompt_style": info.prompt_style}

    def _skip_open_calls(self, conversation_id: str) -> list[EngineEvent]:
        """A new user message settles the cards still waiting: skipped, with no result for the model.

        A declined result here would join the new message in one turn, and models answer the result and miss the
        request; with no result the new message is a turn of its own, right after the call.
        """
        events: list[EngineEvent] = []
        for record in self._open_calls(conversation_id):
            try:
                record = self.store.transition(
                    record.id, expected=CallStatus.PROPOSED, to=CallStatus.SKIPPED, finished_at=utcnow(),
                    reject_reason=_SKIPPED_REASON,
                )
            except InvalidStateError:
                continue
            events.append(CallUpdated(call=self._view(record)))
        return events

    def _open_calls(self, conversation_id: str) -> list[FunctionCallRecord]:
        return self.store.calls(conversation_id=conversation_id, status=CallStatus.PROPOSED)

    def _add_result_message(self, record: FunctionCallRecord, value: Any) -> None:
        self.store.add_message(
            conversation_id=record.conversation_id, role=MessageRole.FUNCTION_RESULT,
            content=json.dumps(value, ensure_ascii=False, default=str), call_id=record.id,
        )

    def _prompt_history(self, conversation_id: str) -> list[dict[str, str]]:
        """The conversation as the prompt formats take it: calls as finally run, no errors, no unanswered messages."""
        history: list[dict[str, str]] = []
        rows = self.store.transcript(conversation_id)
        # A failed message would otherwise join the next one in a single turn. The newest turn is the one being
        # answered (sent or retried), so it always goes in.
        left_out = _unanswered([row[0] for row in rows], include_last=False)
        for index, (role, content, function_name, arguments) in enumerate(rows):
            if role == MessageRole.ERROR or index in left_out:
                continue
            if role == MessageRole.FUNCTION_CALL and function_name is not None:
                if isinstance(arguments, str):  # JSON columns come back as text from a COALESCE on some databases
                    arguments = json.loads(arguments)
                content = FunctionCall(name=function_name, arguments=dict(arguments or {})).to_trelis_json()
            history.append({"role": role, "content": content})
        return history

    def _params(self, conversation: Conversation) -> GenerationParams:
        changes: dict[str, Any] = {}
        if conversation.temperature is not None:
            changes["temperature"] = conversation.temperature
        if conversation.max_new_tokens is not None:
            changes["max_new_tokens"] = conversation.max_new_tokens
        return self.params.model_copy(update=changes)

    def _view(self, record: FunctionCallRecord) -> CallView:
        tool = self.registry.get(record.function_name)
        checks = record.validation_errors or {}
        status = CallStatus(record.status)
        if record.final_arguments is not None:
            arguments = dict(record.final_arguments)
        else:
            arguments = {**(record.proposed_arguments or {}), **(checks.get("normalised") or {})}
        result = (record.result or {}).get("value") if record.result else None
        return CallView(
            id=record.id, reply_id=record.reply_id, function=record.function_name,
            description=tool.spec.description if tool else "", status=status, auto=record.auto,
            proposed_arguments=dict(record.proposed_arguments or {}), arguments=arguments,
            edited=record.edited_arguments is not None,
            errors=dict(checks.get("errors") or {}) if status == CallStatus.PROPOSED else {},
            missing=list(checks.get("missing") or []) if status == CallStatus.PROPOSED else [],
            result=result, error=record.error, reject_reason=record.reject_reason, duration_ms=record.duration_ms,
            spec=tool.spec if tool else None,
        )

    def _owned_call(self, call_id: str, owner: User) -> tuple[FunctionCallRecord, Conversation]:
        """The call and its conversation; NotFoundError when the conversation is another user's."""
        record = self.store.call(call_id)
        return record, self.store.conversation(record.conversation_id, user=owner)

    def _current_turn(self, messages: list[Message]) -> str:
        for message in reversed(messages):
            if message.role == MessageRole.USER:
                return str((message.extra or {}).get("turn_id") or new_id())
        return new_id()

    def _user(self, name: str) -> User:
        if not name:
            raise NotFoundError("No user is signed in.")
        return self.store.user(name)


_STILL_ANSWERING = "The model is still answering in this conversation: wait for its answer, then send again."


def unanswered_message_ids(messages: Sequence[Message], *, include_last: bool = True) -> set[int]:
    """Ids of the user messages whose turn ended with no answer (it holds only that message and errors).

    The model never sees them again (only a retry of the newest turn sends it again), and the UI marks them "not
    answered". `messages` in conversation order; `include_last=False` leaves the newest turn out, for while it is
    being answered.
    """
    unanswered = _unanswered([m.role for m in messages], include_last=include_last)
    return {m.id for i, m in enumerate(messages) if i in unanswered and m.id is not None}


def _unanswered(roles: Sequence[str], *, include_last: bool) -> set[int]:
    """Indexes of the user messages, among `roles`, whose turn has no answer."""
    turns = _turns(roles)
    if not include_last:
        turns = turns[:-1]
    return {turn.start for turn in turns if _is_unanswered([roles[i] for i in turn])}


def _turns(roles: Sequence[str]) -> list[range]:
    """Index ranges of the turns: each user message and everything up to the next one."""
    starts = [i for i, role in enumerate(roles) if role == MessageRole.USER]
    return [range(start, end) for start, end in zip(starts, [*starts[1:], len(roles)])]


def _is_unanswered(turn_roles: Sequence[str]) -> bool:
    """No assistant text and no call: the turn holds only its user message and error messages."""
    return all(role in (MessageRole.USER, MessageRole.ERROR) for role in turn_roles)


def _imported_title(original: str) -> str:
    """"<original> (imported)", the original shortened to keep within the title limit."""
    original = " ".join(original.split())
    if not original:
        return "Imported conversation"
    room = MAX_TITLE_CHARS - len(_IMPORTED)
    if len(original) > room:
        original = original[: room - 1] + "…"
    return original + _IMPORTED


def _canonical(arguments: dict[str, Any]) -> str:
    return json.dumps(arguments, sort_keys=True, ensure_ascii=False, default=str)


def _error_summary(errors: dict[str, str]) -> str:
    return "; ".join(f"{field or 'call'}: {message}" for field, message in errors.items())


def _missing_note(views: list[CallView]) -> str:
    """The assistant's question for the information a call still needs (the model card's advice)."""
    lines: list[str] = []
    for view in views:
        if not view.missing:
            continue
        asks = []
        for name in view.missing:
            argument = view.spec.argument(name.split(".")[0].split("[")[0]) if view.spec else None
            label = name.replace("_", " ")
            asks.append(f"**{label}**" + (f" ({argument.description})" if argument and argument.description else ""))
        lines.append(f"To run `{view.function}` I still need: " + ", ".join(asks) + ".")
    if not lines:
        return ""
    return "\n".join(lines) + "\nPlease fill in the card below (or tell me here), then confirm."
