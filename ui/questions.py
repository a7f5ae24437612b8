"""MCP servers' questions during a call (elicitation): which running call each belongs to, and waking its stream.

Why this shape: a question arrives on the MCP servers' thread while the call that caused it streams in one page
request, and the person's answer comes back in another. `Questions` subscribes to the broker once per app (never
from inside `@gr.render`, whose listeners are lost). A stream says which MCP calls it is running (`watch`, before
the call is sent, so no question can come first) and how to wake it; a question goes to the one watched call of its
server and tool, and wakes that stream, which redraws its deck with the question's card. The answer (`answer`)
goes to the broker, whose news of the settled question wakes the stream again to take the card away.

A question that cannot be tied to exactly one running call is declined at once: it could belong to another
person's conversation, and showing it to the wrong person would be worse than saying no.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from backend.core.validation import validate_arguments
from backend.errors import CallcardError, NotFoundError
from backend.tools import Elicitation, ElicitationAnswer, ElicitationBroker
from ui.card_fields import form_values
from ui.deck import ANSWERS, Question

__all__ = ["Questions"]

log = logging.getLogger(__name__)


@dataclass
class _Watch:
    """A call running in a stream: whose it is and how to wake the stream (from any thread)."""

    call_id: str
    function: str
    server: str
    user: str
    conversation_id: str
    wake: Callable[[], None]


@dataclass
class _Asked:
    """A question tied to a running call, with what the person tried when it could not be sent."""

    elicitation: Elicitation
    call_id: str
    values: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    notice: str = ""


class Questions:
    """The questions MCP servers ask during the calls this app's streams run."""

    def __init__(self, broker: ElicitationBroker) -> None:
        self._broker = broker
        self._lock = threading.Lock()
        self._watches: dict[str, _Watch] = {}
        self._asked: dict[str, _Asked] = {}
        self.close = broker.subscribe(self._heard)  # subscribing also tells the broker a person can be asked

    def watch(
        self, *, call_id: str, function: str, server: str, user: str, conversation_id: str, wake: Callable[[], None],
    ) -> None:
        """A stream is about to run an MCP call: its server's questions during the call go to this stream."""
        with self._lock:
            self._watches[call_id] = _Watch(call_id, function, server, user, conversation_id, wake)

    def unwatch(self, call_id: str) -> None:
        """The call ended, or its stream did: a question of its still waiting is cancelled (nobody will see it)."""
        with self._lock:
            self._watches.pop(call_id, None)
            orphans = [asked_id for asked_id, asked in self._asked.items() if asked.call_id == call_id]
        for asked_id in orphans:
            self._settle(asked_id, "cancel")

    def shown(self, user: str, conversation_id: str) -> list[Question]:
        """The questions waiting in `user`'s conversation, oldest first, as their cards show them."""
        with self._lock:
            found = []
            for asked in self._asked.values():
                watch = self._watches.get(asked.call_id)
                if watch is not None and (watch.user, watch.conversation_id) == (user, conversation_id):
                    found.append(Question(
                        elicitation=asked.elicitation, function=watch.function, values=dict(asked.values),
                        errors=dict(asked.errors), notice=asked.notice,
                    ))
        return sorted(found, key=lambda question: question.elicitation.asked_at)

    def answer(self, question_id: str, user: str, action: str, values: Mapping[str, Any] | None = None) -> None:
        """`user` answers a question of theirs; an answer the form refuses stays on the card with what is wrong.

        A question that is not theirs, or no longer waiting, is left alone (its stream redraws without it).
        """
        with self._lock:
            asked = self._asked.get(question_id)
            watch = self._watches.get(asked.call_id) if asked is not None else None
        if asked is None or watch is None or watch.user != user or action not in ANSWERS:
            log.info("an answer to question %s was not taken (no longer waiting, or not this person's)", question_id)
            return
        content = None
        if action == "accept" and asked.elicitation.mode == "form" and asked.elicitation.spec is not None:
            spec = asked.elicitation.spec
            content, problems = form_values(spec, values or {})
            _checked, errors, missing = validate_arguments(spec, content)
            errors = {**{name: "Required: please answer it." for name in missing}, **errors, **problems}
            if errors:
                names = ", ".join(sorted({name.replace("_", " ") or "the answer" for name in errors}))
                shown = {**content, **{name: (values or {}).get(name) for name in problems}}
                self._keep(question_id, shown, errors, f"Nothing was sent: check {names} first.", watch)
                return
        self._settle(question_id, action, content, watch=watch)

    def _settle(
        self, question_id: str, action: str, content: dict[str, Any] | None = None, *, watch: _Watch | None = None,
    ) -> None:
        try:
            self._broker.answer(question_id, action, content)  # type: ignore[arg-type]  # checked against ANSWERS
        except NotFoundError:
            pass  # answered, timed out or ended meanwhile: the broker's news of it wakes the stream
        except CallcardError as error:  # the broker's own check of the form refused it
            if watch is not None:
                self._keep(question_id, dict(content or {}), {}, str(error), watch)

    def _keep(
        self, question_id: str, values: dict[str, Any], errors: dict[str, str], notice: str, watch: _Watch,
    ) -> None:
        with self._lock:
            asked = self._asked.get(question_id)
            if asked is None:
                return
            asked.values, asked.errors, asked.notice = values, errors, notice
        watch.wake()

    def _heard(self, elicitation: Elicitation, answer: ElicitationAnswer | None) -> None:
        """The broker's news, on the MCP servers' thread: a question arrived, or one was settled."""
        if answer is not None:
            with self._lock:
                asked = self._asked.pop(elicitation.id, None)
                watch = self._watches.get(asked.call_id) if asked is not None else None
            if watch is not None:
                watch.wake()
            return
        with self._lock:
            running = [
                w for w in self._watches.values()
                if w.server == elicitation.server and elicitation.tool is not None and w.function == elicitation.tool
            ]
            if len(running) == 1:
                self._asked[elicitation.id] = _Asked(elicitation, running[0].call_id)
        if len(running) == 1:
            running[0].wake()
        elif running or elicitation.tool is None:
            # Two conversations run this tool (or the server runs several): no way to know whose question it is.
            log.info("MCP server %s asked a question Callcard cannot tie to one call; declined", elicitation.server)
            self._settle(elicitation.id, "decline")
        # No running call of this app's: another app on the same servers (a test, a script) may own it.
