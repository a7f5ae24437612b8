"""The Engine: conversations, turns (send, retry, take back), confirm and reject, and the loop that streams replies."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from backend.core.detector import CallDetector
from backend.core.parsing import parse_reply
from backend.core.validation import validate_arguments
from backend.engine.audit import AuditEntry, AuditFilters, audit_entries
from backend.engine.events import (
    AssistantNote,
    CallProposed,
    CallUpdated,
    CallView,
    Done,
    EngineEvent,
    ErrorEvent,
    PreparingCall,
    ReplyText,
    Token,
)
from backend.engine.rate_limits import RateLimits
from backend.engine.steps import CallSteps, Ungrounded, missing_note
from backend.engine.transfer import check_export, export_conversation, import_conversation
from backend.engine.turns import current_turn, evidence, is_unanswered, loop_guard, prompt_history, turns
from backend.errors import CallcardError, InvalidInputError, InvalidStateError, NotFoundError, RateLimitedError
from backend.models.protocol import GenerationParams, ModelBackend, ReplyDone, TextDelta
from backend.storage.store import Store
from backend.storage.tables import (
    MAX_TITLE_CHARS,
    SETTLED_STATUSES,
    CallStatus,
    Conversation,
    FunctionCallRecord,
    Message,
    MessageRole,
    User,
    new_id,
)
from backend.tools import ToolPolicy, ToolRegistry

__all__ = ["Engine", "Limits"]

log = logging.getLogger(__name__)

_STILL_ANSWERING = "The model is still answering in this conversation: wait for its answer, then send again."
_REPLY_LEASE = timedelta(seconds=60)


@dataclass(frozen=True)
class Limits:
    """What one message, reply, turn or result may hold; over a limit the user gets a clear error and nothing is lost."""

    max_message_chars: int = 8000
    max_calls_per_reply: int = 5
    max_calls_per_turn: int = 8
    max_title_chars: int = 60


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
        reply_lease: timedelta = _REPLY_LEASE,
        rate_limits: RateLimits | None = None,
        ungrounded: Ungrounded = "flag",
    ) -> None:
        self.store = store
        self.backend = backend
        self.registry = registry
        self.params = params or GenerationParams()
        self.limits = limits or Limits()
        self.system_prompt = system_prompt
        self._steps = CallSteps(store=store, registry=registry, ungrounded=ungrounded)
        self.rate_limits = rate_limits or RateLimits()
        # A streaming reply holds its conversation's lease in the database, so no second reply starts there at the
        # same time from any replica (another tab, a message sent while a confirmed call's answer streams): they
        # would interleave. The holder renews it every third of this; a replica that died lets it expire.
        self.reply_lease = reply_lease

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
        return [self._steps.view(record) for record in self.store.calls(conversation_id=conversation_id)]

    def export_conversation(self, conversation_id: str, user: str) -> dict[str, Any]:
        """The whole conversation as JSON-ready data: messages, calls, results and edits."""
        return export_conversation(self.store, self.conversation(conversation_id, user))

    def import_conversation(self, data: dict[str, Any], user: str) -> Conversation:
        """A new conversation owned by `user` from an export; ids are fresh, so importing twice makes two copies."""
        check_export(data)
        return import_conversation(self.store, data, owner=self._user(user))

    # Turns

    async def send(
        self, conversation_id: str, user: str, text: str, *, client: str | None = None,
    ) -> AsyncIterator[EngineEvent]:
        """Store the user's message, then stream the model's reply and any proposed calls.

        `client` names who the rate limits count (a browser session when everyone shares one user), else `user`.
        """
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
        if self.store.lease_holder(conversation.id) is not None:
            yield ErrorEvent(message=_STILL_ANSWERING)
            return
        try:  # before the message is stored: a refused one goes back to the person, unsent
            release = self.rate_limits.admit(client or user)
        except RateLimitedError as error:
            yield ErrorEvent(message=str(error))
            return
        try:
            async with aclosing(self._send(conversation, owner, text)) as events:
                async for event in events:
                    yield event
        finally:
            release()

    async def _send(self, conversation: Conversation, owner: User, text: str) -> AsyncIterator[EngineEvent]:
        skipped = self._steps.skip_open(conversation.id)
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

    async def retry(self, conversation_id: str, user: str, *, client: str | None = None) -> AsyncIterator[EngineEvent]:
        """Ask the model again after a failed or stopped reply; the user's message is already stored."""
        owner = self._user(user)
        conversation = self.store.conversation(conversation_id, user=owner)
        messages = [m for m in self.store.messages(conversation.id) if m.role != MessageRole.ERROR]
        if not messages or messages[-1].role not in (MessageRole.USER, MessageRole.FUNCTION_RESULT):
            yield ErrorEvent(message="There is nothing to retry: the model has already answered.")
            return
        if self._steps.open_calls(conversation.id):
            yield ErrorEvent(message="Some calls still wait for confirmation: confirm or reject them first.")
            return
        try:  # a retry asks the model as a message does, so it counts as one
            release = self.rate_limits.admit(client or user)
        except RateLimitedError as error:
            yield ErrorEvent(message=str(error), retryable=True)
            return
        try:
            async with aclosing(self._reply(conversation, owner, current_turn(messages))) as events:
                async for event in events:
                    yield event
        finally:
            release()

    def withdraw_unanswered(self, conversation_id: str, user: str) -> str:
        """Delete the last message and its errors if the model never answered it; returns its text.

        For "Edit and resend" and "Remove". InvalidStateError when the last message has an answer or is being
        answered now.
        """
        conversation = self.conversation(conversation_id, user)
        # Held while it deletes, so that no reply starts on the message being taken back.
        holder = self._new_holder()
        if not self.store.take_lease(conversation.id, holder=holder, ttl=self.reply_lease):
            raise InvalidStateError(_STILL_ANSWERING)
        try:
            messages = self.store.messages(conversation.id)
            found = turns([m.role for m in messages])
            last = found[-1] if found else None
            if last is None or not is_unanswered([messages[i].role for i in last]):
                raise InvalidStateError("The last message has an answer, so it cannot be taken back.")
            first = messages[last.start]
            # The turn is the conversation's tail, so deleting it leaves the positions gap-free.
            self.store.delete_tail(conversation.id, from_position=first.position, count=len(last))
            return first.content
        finally:
            self._release_lease(conversation.id, holder)

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
            shown = {"arguments": given, "errors": errors, "missing": missing}
            yield CallUpdated(call=self._steps.view(record).model_copy(update=shown))
            yield ErrorEvent(message="Some fields need attention before this call can run: " + _error_summary(errors))
            return
        try:
            record = self._steps.confirm(record, owner=owner, arguments=given, normalised=normalised)
        except InvalidStateError as error:
            yield ErrorEvent(message=str(error))
            return
        async with aclosing(self._steps.execute(record)) as events:
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
            record = self._steps.reject(call_id, owner=owner, reason=reason)
        except InvalidStateError as error:
            yield ErrorEvent(message=str(error))
            return
        yield CallUpdated(call=self._steps.view(record))
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
        holder = self._new_holder()
        if not self.store.take_lease(conversation.id, holder=holder, ttl=self.reply_lease):
            yield ErrorEvent(message=_STILL_ANSWERING, retryable=True)
            yield Done()
            return
        heartbeat = asyncio.create_task(self._renew_lease(conversation.id, holder))
        try:
            async with aclosing(self._replies(conversation, owner, turn_id)) as events:
                async for event in events:
                    yield event
        finally:  # also on a stop: a cancelled task or a closed iterator gives the conversation back at once
            heartbeat.cancel()
            self._release_lease(conversation.id, holder)

    async def _replies(self, conversation: Conversation, owner: User, turn_id: str) -> AsyncIterator[EngineEvent]:
        while True:
            specs = self.registry.specs()
            # Read once per reply: the prompt and the evidence for its calls' provenance come from the same rows (what
            # the reply itself stores, the model's text, is never evidence).
            transcript = self.store.transcript(conversation.id)
            text_parts: list[str] = []
            finished: ReplyDone | None = None
            detector = CallDetector()
            shown = 0
            preparing = False
            started = time.perf_counter()
            try:
                stream = self.backend.stream(
                    prompt_history(transcript), specs,
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
            earlier = self.store.calls(conversation_id=conversation.id, turn_id=turn_id)
            stop_reason = loop_guard(earlier, calls, max_calls_per_turn=self.limits.max_calls_per_turn)
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
            found = evidence(transcript)
            proposals = [self._steps.propose(conversation.id, call, reply_id, turn_id, specs, found) for call in calls]
            if dropped > 0:
                yield ErrorEvent(message=(
                    f"The model proposed {len(calls) + dropped} calls in one reply; only the first {len(calls)} "
                    "are shown."
                ))
            latest: dict[str, CallView] = {}  # each call's state as last reported: no need to read them back
            for record, checked in proposals:
                async with aclosing(self._steps.present(record, checked)) as events:
                    async for event in events:
                        if isinstance(event, (CallProposed, CallUpdated)):
                            latest[event.call.id] = event.call
                        yield event
            note = missing_note([v for v in latest.values() if v.status == CallStatus.PROPOSED])
            if note:
                self.store.add_message(
                    conversation_id=conversation.id, role=MessageRole.ASSISTANT, content=note,
                    extra={"turn_id": turn_id, "note": "missing"},
                )
                yield AssistantNote(text=note)
            if any(v.status not in SETTLED_STATUSES for v in latest.values()):
                yield Done(awaiting_confirmation=True)
                return
            # Everything settled without a person (auto tools, unknown functions): the model goes on.

    def _new_holder(self) -> str:
        """A holder name for one reply: this replica's, made unique so that a second reply here is refused too."""
        return f"{self.store.instance[:160]}/{new_id()}"

    async def _renew_lease(self, conversation_id: str, holder: str) -> None:
        """Keep the reply's lease while it lasts, however long the model or an automatic tool takes."""
        while True:
            await asyncio.sleep(self.reply_lease.total_seconds() / 3)
            try:
                renewed = self.store.renew_lease(conversation_id, holder=holder, ttl=self.reply_lease)
            except Exception:  # the next beat may reach the database again; the lease lasts until then
                log.exception("could not renew the reply lease conversation=%s", conversation_id)
                continue
            if not renewed:  # this process stalled past the expiry and another reply took over
                log.warning("reply lease lost conversation=%s", conversation_id)
                return

    def _release_lease(self, conversation_id: str, holder: str) -> None:
        try:
            self.store.release_lease(conversation_id, holder=holder)
        except Exception:  # never hides what ended the reply; an unreleased lease expires on its own
            log.exception("could not release the reply lease conversation=%s", conversation_id)

    def _keep_stopped_text(self, conversation_id: str, turn_id: str, text: str) -> None:
        """Keep what the person saw of a reply they stopped; with nothing shown yet, the turn stays unanswered."""
        text = text.strip()
        if text:
            self.store.add_message(
                conversation_id=conversation_id, role=MessageRole.ASSISTANT, content=text,
                extra={"turn_id": turn_id, "stopped": True},
            )
        log.info("turn stopped conversation=%s kept_chars=%d", conversation_id, len(text))

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

    # Helpers

    async def _model_facts(self) -> dict[str, Any]:
        """Which model and prompt style a conversation is held with (for the audit and exports), as its fields."""
        try:
            info = await self.backend.info()
        except CallcardError:
            return {}  # the turn itself will report the failure
        return {"model_id": info.model_id[:300], "prompt_style": info.prompt_style}

    def _params(self, conversation: Conversation) -> GenerationParams:
        changes: dict[str, Any] = {}
        if conversation.temperature is not None:
            changes["temperature"] = conversation.temperature
        if conversation.max_new_tokens is not None:
            changes["max_new_tokens"] = conversation.max_new_tokens
        return self.params.model_copy(update=changes)

    def _owned_call(self, call_id: str, owner: User) -> tuple[FunctionCallRecord, Conversation]:
        """The call and its conversation; NotFoundError when the conversation is another user's."""
        record = self.store.call(call_id)
        return record, self.store.conversation(record.conversation_id, user=owner)

    def _user(self, name: str) -> User:
        if not name:
            raise NotFoundError("No user is signed in.")
        return self.store.user(name)

    # The audit

    def audit(self, user: str, filters: AuditFilters | None = None, *, sees_everyone: bool = False) -> list[AuditEntry]:
        """The calls `user` may see, newest first: everyone's when `sees_everyone` (a support lead), else their own."""
        return audit_entries(self.store, self._user(user), filters or AuditFilters(), sees_everyone=sees_everyone)


def _error_summary(errors: dict[str, str]) -> str:
    return "; ".join(f"{field or 'call'}: {message}" for field, message in errors.items())
