"""Callcard's error types. Each message is written for the person using the app; `ui/` shows it as is."""

from __future__ import annotations

__all__ = [
    "CallcardError",
    "ConfigError",
    "SpecError",
    "PromptTooLongError",
    "ModelError",
    "ModelUnavailableError",
    "ModelTimeoutError",
    "ModelOverloadedError",
    "ModelInputError",
    "GenerationError",
    "NotFoundError",
    "PermissionDeniedError",
    "InvalidStateError",
    "LimitExceededError",
    "InvalidInputError",
    "ToolConfigError",
    "RateLimitedError",
]


class CallcardError(Exception):
    """Base of every error Callcard reports to a person; `str(error)` is the message to show."""

    retryable: bool = False


class ConfigError(CallcardError):
    """The settings are inconsistent: set what the message names and start again."""


class SpecError(CallcardError, ValueError):
    """A function spec is malformed: fix the function and field the message names."""


class PromptTooLongError(CallcardError):
    """Even the newest message does not fit the model's context: shorten it or start a new conversation."""


class ModelError(CallcardError):
    """The model server failed; the conversation is kept and the turn can be retried.

    Messages are for the person chatting: no server addresses or setting names (the clients log those).
    """

    retryable = True

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ModelUnavailableError(ModelError):
    """The model server cannot be reached or refuses Callcard: try again in a moment, or tell whoever runs Callcard."""


class ModelTimeoutError(ModelError):
    """The model server took too long to answer: try again."""


class ModelOverloadedError(ModelError):
    """The model server is overloaded: try again in a moment."""


class ModelInputError(ModelError):
    """The model server rejected the request (too long, or invalid parameters): shorten or change it."""

    retryable = False


class GenerationError(ModelError):
    """The model server failed while generating: try again."""


class NotFoundError(CallcardError, LookupError):
    """The conversation or call does not exist (or is not yours)."""


class PermissionDeniedError(CallcardError):
    """The acting user may not read or change this conversation."""


class InvalidStateError(CallcardError):
    """The call is not in a state that allows this action (already confirmed, rejected or finished)."""


class LimitExceededError(CallcardError):
    """A size or count limit was exceeded: shorten the input; nothing was lost."""


class InvalidInputError(CallcardError, ValueError):
    """The input is not valid (a setting out of range, a damaged import): fix what the message says."""


class ToolConfigError(CallcardError):
    """A tools file or module is invalid: fix the file, line and field the message names."""


class RateLimitedError(CallcardError):
    """This person is sending faster than this Callcard allows: wait a moment, then send again; nothing was lost."""
