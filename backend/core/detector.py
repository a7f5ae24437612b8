"""Spotting a function call while a reply streams in, so prose is shown at once and a call never is."""

from __future__ import annotations

import re
from typing import Literal

from backend.core.openers import (
    JSON_FENCE_LANGUAGES,
    MARKERS,
    MAX_GAP,
    MAX_NAME,
    NAME_KEYS,
    NAMED_CALL_OPENER,
    PYTHONIC_FENCE_LANGUAGES,
)

__all__ = ["CallDetector", "DetectorState"]

DetectorState = Literal["undecided", "text", "call"]


# Openers the detector looks for, as sequences of parts: a tuple of literal alternatives, _GAP (a little
# whitespace) or _IDENT (a function name).
_GAP = "gap"
_IDENT = "ident"
_Pattern = tuple[tuple[str, ...] | str, ...]
_KEY_PARTS = tuple(f"{quote}{key}{quote}" for key in NAME_KEYS for quote in "\"'")
_OPENERS_ANYWHERE: tuple[_Pattern, ...] = (
    (("{",), _GAP, _KEY_PARTS),
    (("[",), _GAP, ("{",), _GAP, _KEY_PARTS),
    (MARKERS,),
    ((NAMED_CALL_OPENER,), _IDENT, (">",)),
    (("```",), JSON_FENCE_LANGUAGES, _GAP, ("{", "["), _GAP, ("{", ""), _GAP, _KEY_PARTS),
    (("```",), PYTHONIC_FENCE_LANGUAGES, _GAP, _IDENT, ("(",)),
    (("[",), _GAP, _IDENT, ("(",)),
)
# A reply that starts with `{` or a list of objects is a call as far as anyone can tell while it streams.
_OPENERS_AT_START: tuple[_Pattern, ...] = ((("{",),), (("[",), _GAP, ("{",)), *_OPENERS_ANYWHERE)
_NO, _PREFIX, _FULL = 0, 1, 2


def _by_first_char(patterns: tuple[_Pattern, ...]) -> dict[str, tuple[_Pattern, ...]]:
    """The patterns grouped by the character they start with, so each place is tried against few of them."""
    groups: dict[str, list[_Pattern]] = {}
    for pattern in patterns:
        for first in {literal[0] for literal in pattern[0]}:
            groups.setdefault(first, []).append(pattern)
    return {first: tuple(group) for first, group in groups.items()}


_WINDOW = 256  # longer than any opener can be, so a window decides every pattern
_TRIGGER_RE = re.compile(r"[{\[<`]")
_START_GROUPS = _by_first_char(_OPENERS_AT_START)
_ANYWHERE_GROUPS = _by_first_char(_OPENERS_ANYWHERE)


def _progress(text: str, pattern: _Pattern, pos: int = 0, part: int = 0) -> int:
    """How far `text` (from `pos`) gets through an opener: _NO, _PREFIX (so far so good) or _FULL."""
    while part < len(pattern):
        step = pattern[part]
        if step is _GAP:
            end = pos
            while end < len(text) and text[end] in " \t\r\n" and end - pos <= MAX_GAP:
                end += 1
            if end - pos > MAX_GAP:
                return _NO
            if end == len(text):
                return _PREFIX
            pos = end
        elif step is _IDENT:
            end = pos
            while end < len(text) and (text[end].isalnum() or text[end] in "_.") and end - pos <= MAX_NAME:
                end += 1
            if end == pos:
                return _PREFIX if pos == len(text) else _NO
            if text[pos].isdigit() or end - pos > MAX_NAME:
                return _NO
            if end == len(text):
                return _PREFIX
            pos = end
        else:
            best = _NO
            for literal in step:
                if text.startswith(literal, pos):
                    best = max(best, _progress(text, pattern, pos + len(literal), part + 1))
                elif literal.startswith(text[pos:]):
                    best = max(best, _PREFIX)
                if best == _FULL:
                    break
            return best
        part += 1
    return _FULL


def _verdict(text: str, patterns: dict[str, tuple[_Pattern, ...]]) -> int:
    best = _NO
    for pattern in patterns.get(text[:1], ()):
        best = max(best, _progress(text, pattern))
        if best == _FULL:
            break
    return best


class CallDetector:
    """Tells, while a reply streams in, whether it is prose or a function call, and which prose is safe to show.

    Feed it the chunks as they come. "undecided" while the reply could still go either way, "call" as soon as it
    plausibly starts a call (then it stays "call"), "text" otherwise. Prose that may be the start of a call
    (`Sure. {"func...`) is held back from `text_so_far` until it is clearly prose; once a call starts, `text_so_far`
    stops before it. Work is linear in the reply's length.
    """

    def __init__(self) -> None:
        self._state: DetectorState = "undecided"
        self._shown: list[str] = []
        self._tail = ""  # text not yet shown: leading whitespace or a possible call opener and what follows it
        self._pending: list[int] = []  # offsets in _tail where an opener may be starting
        self._scanned = 0  # offset in _tail up to which openers have been looked for

    @property
    def state(self) -> DetectorState:
        """What the reply is so far: "undecided", "text" or "call"."""
        return self._state

    @property
    def text_so_far(self) -> str:
        """The prose that is safe to show: never the start of a call."""
        if len(self._shown) > 1:
            self._shown = ["".join(self._shown)]
        return self._shown[0] if self._shown else ""

    def feed(self, chunk: str) -> DetectorState:
        """Take the next chunk of the reply and say what the reply is so far."""
        if self._state == "call" or not chunk:
            return self._state
        if self._state == "text" and not self._tail and _TRIGGER_RE.search(chunk) is None:
            self._shown.append(chunk)  # plain prose, the common case
            return self._state
        tail = self._tail + chunk
        if self._state == "undecided":
            tail = tail.lstrip()
            verdict = _verdict(tail[:_WINDOW], _START_GROUPS) if tail else _PREFIX
            if verdict != _NO:
                self._tail = tail
                if verdict == _FULL:
                    self._enter_call()
                return self._state
            self._state = "text"
        self._scan(tail)
        return self._state

    def _scan(self, tail: str) -> None:
        starts = self._pending + [found.start() for found in _TRIGGER_RE.finditer(tail, self._scanned)]
        pending: list[int] = []
        for start in starts:
            verdict = _verdict(tail[start : start + _WINDOW], _ANYWHERE_GROUPS)
            if verdict == _FULL:
                self._shown.append(tail[: pending[0] if pending else start])
                self._enter_call()
                return
            if verdict == _PREFIX:
                pending.append(start)
        keep = pending[0] if pending else len(tail)
        if keep:
            self._shown.append(tail[:keep])
        self._tail = tail[keep:]
        self._pending = [start - keep for start in pending]
        self._scanned = len(self._tail)

    def _enter_call(self) -> None:
        self._state = "call"
        self._tail = ""
        self._pending = []
