"""The shape of a function call, shared by the parser, the validator, the backends and the engine."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, Field

__all__ = ["FunctionCall"]


class FunctionCall(BaseModel):
    """A call the model asked for: a function name and its arguments, not yet validated.

    `id` is set once the call is stored (its record's id); a call just parsed from a reply has none.
    """

    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    id: str | None = None

    def to_trelis_json(self) -> str:
        """The call as the Trelis models write it: `{"function": name, "arguments": {...}}`."""
        return json.dumps({"function": self.name, "arguments": self.arguments}, ensure_ascii=False)
