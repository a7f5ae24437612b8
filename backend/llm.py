"""The model backends' shared interface: generation parameters, model info, the events a reply streams, the protocol."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel, Field

from backend.calls import FunctionCall
from backend.specs import FunctionSpec

__all__ = [
    "BackendKind",
    "CallMode",
    "GenerationParams",
    "ModelInfo",
    "TextDelta",
    "ReplyDone",
    "ReplyEvent",
    "Message",
    "ModelBackend",
]

BackendKind = Literal["embedded", "tgi", "openai"]
CallMode = Literal["grammar", "parse"]
Message = dict[str, str]


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


@runtime_checkable
class ModelBackend(Protocol):
    """A model that streams replies; every failure raises a `backend.errors.ModelError` with a readable message."""

    async def info(self) -> ModelInfo:
        """What the backend serves."""
        ...

    async def health(self) -> bool:
        """Whether the model can answer now."""
        ...

    def stream(
        self,
        conversation: Sequence[Message],
        functions: Sequence[FunctionSpec],
        *,
        system: str | None = None,
        params: GenerationParams | None = None,
    ) -> AsyncIterator[ReplyEvent]:
        """Stream the reply to `conversation`: `TextDelta`s, then one `ReplyDone`."""
        ...
