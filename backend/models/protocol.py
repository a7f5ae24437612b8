"""The model backends' shared interface: generation parameters, model info, the events a reply streams, the protocol."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from datetime import UTC, datetime
from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel, Field

from backend.core.calls import FunctionCall
from backend.core.history import Turn
from backend.core.specs import FunctionSpec
from backend.errors import CallcardError, ModelError, ModelInputError

__all__ = [
    "BackendKind",
    "CallMode",
    "GenerationParams",
    "ModelInfo",
    "TextDelta",
    "ReplyDone",
    "ReplyEvent",
    "ModelFailure",
    "FailureTracker",
    "ModelBackend",
]

BackendKind = Literal["embedded", "tgi", "openai"]
CallMode = Literal["grammar", "parse"]


class GenerationParams(BaseModel):
    """Sampling settings for one reply (the defaults are those Trelis used for its function-calling models)."""

    max_new_tokens: int = Field(default=1024, ge=1)
    temperature: float = Field(default=0.2, ge=0.0)
    top_p: float = Field(default=0.95, gt=0.0, le=1.0)
    top_k: int = Field(default=50, ge=1)
    repetition_penalty: float = Field(default=1.2, gt=0.0)
    stop: list[str] = Field(default_factory=list)
    seed: int | None = None


class ModelInfo(BaseModel):
    """What a backend serves and how it makes function calls valid."""

    backend: BackendKind
    model_id: str
    max_input_tokens: int | None = None
    max_total_tokens: int | None = None
    call_mode: CallMode = "parse"
    prompt_style: str | None = None  # the Trelis format used, or None where the server applies its own template
    demo: bool = False


class TextDelta(BaseModel):
    """The next piece of the reply's text."""

    text: str


class ReplyDone(BaseModel):
    """The reply is complete; `calls` is filled only by servers that return structured tool calls."""

    finish_reason: str
    prompt_tokens: int | None = None
    generated_tokens: int | None = None
    calls: list[FunctionCall] = Field(default_factory=list)


ReplyEvent = TextDelta | ReplyDone

_REASON_LIMIT = 200


class ModelFailure(BaseModel):
    """The latest failed model request: the plain reason a person was shown, and when (UTC)."""

    reason: str
    at: datetime


class FailureTracker:
    """Keeps a backend's `last_failure`, so a status line can turn red at once instead of at its next poll.

    Set when a request fails on the server's side; input the model refuses (too long, bad settings) says nothing
    about the server and leaves it as it is. Cleared by the next reply or health check that succeeds.
    """

    last_failure: ModelFailure | None = None

    def note(self, error: CallcardError | None) -> None:
        """Record how a request ended: None for success, else the error it raised."""
        if error is None:
            self.last_failure = None
        elif isinstance(error, ModelError) and not isinstance(error, ModelInputError):
            reason = str(error)
            if len(reason) > _REASON_LIMIT:
                reason = reason[: _REASON_LIMIT - 1] + "…"
            self.last_failure = ModelFailure(reason=reason, at=datetime.now(UTC))


@runtime_checkable
class ModelBackend(Protocol):
    """A model that streams replies; every failure raises a `backend.errors.ModelError` with a readable message."""

    async def info(self) -> ModelInfo:
        """What the backend serves."""
        ...

    async def health(self) -> bool:
        """Whether the model can answer now."""
        ...

    @property
    def last_failure(self) -> ModelFailure | None:
        """The latest failed request, or None once one has succeeded since; cheap (no request is made)."""
        ...

    def stream(
        self,
        conversation: Sequence[Turn],
        functions: Sequence[FunctionSpec],
        *,
        system: str | None = None,
        params: GenerationParams | None = None,
    ) -> AsyncGenerator[ReplyEvent, None]:
        """Stream the reply to `conversation`: `TextDelta`s, then one `ReplyDone`; closing it ends the request."""
        ...
