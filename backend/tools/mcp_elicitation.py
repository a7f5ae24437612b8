"""Elicitation: an MCP server asks the person for input during a call; the request waits here for their answer.

The MCP connections publish each request with `ask` (on their own loop) and wait; the UI `subscribe`s (which
says a person can be asked at all), lists `pending()` and settles one with `answer` from any thread. No answer in
time means decline, and so does a request while nobody has subscribed: a server is never kept waiting for nobody.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import re
import threading
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from backend.core.specs import FunctionSpec
from backend.core.validation import validate_arguments
from backend.errors import InvalidInputError, NotFoundError, SpecError

__all__ = [
    "DEFAULT_ELICITATION_TIMEOUT_S",
    "Elicitation",
    "ElicitationAction",
    "ElicitationAnswer",
    "ElicitationBroker",
    "ElicitationListener",
]

logger = logging.getLogger(__name__)

DEFAULT_ELICITATION_TIMEOUT_S = 600.0
ElicitationAction = Literal["accept", "decline", "cancel"]
# The spec forbids form requests for passwords or keys; a field named like one earns the person a warning.
_SECRET_FIELD = re.compile(
    r"pass(word|phrase)?|secret|token|api[_-]?key|private[_-]?key|credential|pin\b", re.IGNORECASE
)
_SECRET_WARNING = (
    "This form asks for something that looks like a password or key. MCP servers must not ask for those in a "
    "form: decline unless you are sure."
)


@dataclasses.dataclass(frozen=True)
class Elicitation:
    """One request for input: a form (`spec` gives its typed fields) or a URL for the person to open themselves."""

    id: str
    server: str
    message: str
    mode: Literal["form", "url"]
    schema: dict[str, Any] | None
    spec: FunctionSpec | None
    url: str | None
    tool: str | None  # the Callcard tool that was running on the server when it asked, when only one was
    asked_at: datetime
    expires_at: datetime
    warning: str | None = None


@dataclasses.dataclass(frozen=True)
class ElicitationAnswer:
    """The person's answer; `content` only with accept in form mode."""

    action: ElicitationAction
    content: dict[str, Any] | None = None


ElicitationListener = Callable[[Elicitation, ElicitationAnswer | None], None]


class ElicitationBroker:
    """The requests waiting for a person, and the way their answers reach the server that asked."""

    def __init__(self, *, timeout_s: float = DEFAULT_ELICITATION_TIMEOUT_S) -> None:
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._waiting: dict[str, tuple[Elicitation, concurrent.futures.Future[ElicitationAnswer]]] = {}
        self._listeners: list[ElicitationListener] = []

    def pending(self) -> list[Elicitation]:
        """The requests still waiting for an answer, oldest first."""
        with self._lock:
            return [elicitation for elicitation, _ in self._waiting.values()]

    def get(self, elicitation_id: str) -> Elicitation | None:
        """The waiting request with this id, if it is still waiting."""
        with self._lock:
            entry = self._waiting.get(elicitation_id)
        return entry[0] if entry else None

    def subscribe(self, listener: ElicitationListener) -> Callable[[], None]:
        """Call `listener(elicitation, None)` when a request arrives and `(elicitation, answer)` when it is settled.

        Listeners run on the MCP connections' thread and must return quickly. Returns a function that unsubscribes.
        """
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def answer(
        self, elicitation_id: str, action: ElicitationAction, content: Mapping[str, Any] | None = None
    ) -> ElicitationAnswer:
        """Settle a request; accept checks `content` against the form (InvalidInputError names the fields).

        NotFoundError when it is no longer waiting (answered, timed out, or its call ended).
        """
        if action not in ("accept", "decline", "cancel"):
            raise InvalidInputError(f"Unknown answer {action!r}: use accept, decline or cancel.")
        with self._lock:
            entry = self._waiting.get(elicitation_id)
        if entry is None:
            raise NotFoundError("This request for input is no longer waiting for an answer.")
        elicitation, future = entry
        answer = ElicitationAnswer(action=action)
        if action == "accept" and elicitation.mode == "form":
            answer = ElicitationAnswer(action="accept", content=_checked(elicitation, content or {}))
        with self._lock:
            if future.done():
                raise NotFoundError("This request for input is no longer waiting for an answer.")
            future.set_result(answer)
        return answer

    async def ask(
        self,
        *,
        server: str,
        message: str,
        mode: Literal["form", "url"],
        schema: dict[str, Any] | None = None,
        url: str | None = None,
        tool: str | None = None,
    ) -> ElicitationAnswer:
        """Publish a request and wait for the person; decline when nobody answers within `timeout_s`."""
        with self._lock:
            attended = bool(self._listeners)
        if not attended:
            logger.info("MCP server %s asked for input, but no one can be asked here; declined", server)
            return ElicitationAnswer(action="decline")
        spec = None
        warning = None
        if mode == "form":
            try:
                spec = FunctionSpec.from_any({"name": "elicitation", "parameters": schema or {}})
            except SpecError as exc:
                logger.warning("MCP server %s asked for a form Callcard cannot show (%s); declined", server, exc)
                return ElicitationAnswer(action="decline")
            if any(_SECRET_FIELD.search(field.name) for field in spec.arguments):
                warning = _SECRET_WARNING
        now = datetime.now(UTC)
        elicitation = Elicitation(
            id=uuid.uuid4().hex, server=server, message=message, mode=mode, schema=schema, spec=spec, url=url,
            tool=tool, asked_at=now, expires_at=now + timedelta(seconds=self.timeout_s), warning=warning,
        )
        future: concurrent.futures.Future[ElicitationAnswer] = concurrent.futures.Future()
        with self._lock:
            self._waiting[elicitation.id] = (elicitation, future)
        logger.info("MCP server %s asks the person for input (%s)", server, mode)
        self._tell(elicitation, None)
        answer = ElicitationAnswer(action="cancel")  # what the server hears if the call ends first
        try:
            answer = await asyncio.wait_for(asyncio.wrap_future(future), timeout=self.timeout_s)
        except TimeoutError:
            answer = ElicitationAnswer(action="decline")
            logger.info("Nobody answered MCP server %s within %g s; declined", server, self.timeout_s)
        finally:
            with self._lock:
                self._waiting.pop(elicitation.id, None)
                if not future.done():
                    future.set_result(answer)
            self._tell(elicitation, answer)
        return answer

    def _tell(self, elicitation: Elicitation, answer: ElicitationAnswer | None) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(elicitation, answer)
            except Exception:  # a listener's bug must not stall the server that asked
                logger.exception("An elicitation listener failed")


def _checked(elicitation: Elicitation, content: Mapping[str, Any]) -> dict[str, Any]:
    assert elicitation.spec is not None  # every form request that is published has one
    values, errors, missing = validate_arguments(elicitation.spec, content)
    problems = [f"{field}: {message}" for field, message in errors.items()]
    problems += [f"{field}: is required" for field in missing if field not in errors]
    if problems:
        raise InvalidInputError("Check the answer: " + "; ".join(problems))
    return values
