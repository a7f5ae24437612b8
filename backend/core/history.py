"""A conversation as the models see it: typed turns, each call with its id and each result with its call's id."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, model_validator

from backend.core.calls import FunctionCall

__all__ = ["Turn", "TurnRole"]

TurnRole = Literal["user", "assistant", "function_call", "function_result"]


class Turn(BaseModel):
    """One message of a conversation: text from a person or the model, a call (with its id), or a call's result."""

    model_config = ConfigDict(frozen=True)

    role: TurnRole
    text: str = ""
    call: FunctionCall | None = None  # role "function_call": the call, whose `id` its result names
    call_id: str | None = None  # role "function_result": the id of the call this is the result of

    @model_validator(mode="after")
    def _shape(self) -> Self:
        if (self.role == "function_call") != (self.call is not None):
            raise ValueError("A function_call turn carries a call, and only it does.")
        if self.call is not None and not self.call.id:
            raise ValueError("A call in the history needs its id, which its result names.")
        if (self.role == "function_result") != (self.call_id is not None):
            raise ValueError("A function_result turn names the call it answers, and only it does.")
        return self

    @classmethod
    def user(cls, text: str) -> Turn:
        return cls(role="user", text=text)

    @classmethod
    def assistant(cls, text: str) -> Turn:
        return cls(role="assistant", text=text)

    @classmethod
    def function_call(cls, call: FunctionCall) -> Turn:
        return cls(role="function_call", call=call)

    @classmethod
    def function_result(cls, call_id: str, text: str) -> Turn:
        return cls(role="function_result", call_id=call_id, text=text)
