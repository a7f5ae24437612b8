"""Where a function call may start in a model's reply: the one table the reply scanner and the streaming detector read.

Model families announce their calls differently: a marker before the call (`<tool_call>`, `[TOOL_CALLS]`), a tag that
names the function (`<function=name>`), a code fence, a JSON object whose first key names the function, or a pythonic
list `[name(...)]`. The scanner (`parsing.py`) finds calls in a whole reply from these; the detector (`detector.py`)
spots them while the reply streams in.
"""

from __future__ import annotations

__all__ = [
    "CLOSERS",
    "JSON_FENCE_LANGUAGES",
    "MARKERS",
    "MAX_GAP",
    "MAX_NAME",
    "MISTRAL_MARKER",
    "NAMED_CALL_OPENER",
    "NAME_KEYS",
    "PYTHONIC_FENCE_LANGUAGES",
]

MISTRAL_MARKER = "[TOOL_CALLS]"
# Written just before a call (or a list of calls) by some model family.
MARKERS = ("<tool_call>", "<tool_calls>", "<functioncall>", "<|python_tag|>", "<|tool_call|>", MISTRAL_MARKER)
# Written after a call; part of the call's block, not prose.
CLOSERS = ("</tool_call>", "</tool_calls>", "</functioncall>", "</function>", "<|/tool_call|>", "<|eom_id|>", "<|eot_id|>")
# `<function=name>{arguments}`: the function named in the tag.
NAMED_CALL_OPENER = "<function="
# A fence in one of these languages holds pythonic calls: ```tool_code\nname(...)```.
PYTHONIC_FENCE_LANGUAGES = ("tool_code", "tool_call")
# While a reply streams, a fence in one of these languages that opens a call object starts a call (once the whole
# reply is in, the scanner reads a fence of any language that holds nothing but calls).
JSON_FENCE_LANGUAGES = ("", "json", "JSON", "tool_call")
# Keys that open a call object: `{"function": ...`, `{"name": ...`, `{"tool_calls": [...`.
NAME_KEYS = ("function", "name", "tool_calls")

MAX_GAP = 40  # whitespace allowed inside an opener such as `{  "function"`
MAX_NAME = 128  # characters in a function name
