"""A lenient reader of JSON and Python literals, as models write them: either quote, True/None, trailing commas.

It reads a value at a position of a longer text and says where it ends; when the text ends inside a value it says
what had been read (a cut-off call is reported, not taken). A budget keeps hostile text cheap.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = [
    "CUT_SCALAR",
    "DQ_STRING",
    "JSON_DECODER",
    "MAX_DEPTH",
    "SQ_STRING",
    "WORDS",
    "Bad",
    "Cut",
    "CutScalar",
    "OutOfBudget",
    "PartialDict",
    "PartialList",
    "Reader",
    "lenient_loads",
    "skip_ws",
]

MAX_DEPTH = 64  # nesting a call may reach; anything deeper is treated as data
_BASE_BUDGET = 20_000  # values the reader may read in a text, plus one per 16 characters
_KEY_PREFIX = 32  # characters of a cut-off key kept: enough to tell whether it could be a call's key

# `strict=False`: models put raw newlines and tabs inside strings.
JSON_DECODER = json.JSONDecoder(strict=False)

_WS_RE = re.compile(r"[ \t\r\n]*")
_COLON_RE = re.compile(r"[ \t\r\n]*:[ \t\r\n]*")
_COMMA_RE = re.compile(r"[ \t\r\n]*,[ \t\r\n]*")

# The reader's tokens. Possessive quantifiers keep a failed string match linear: a quoted string that does not match
# runs to the end of the text, so it was cut off.
DQ_STRING = re.compile(r'"((?:[^"\\]++|\\.)*+)"', re.DOTALL)
SQ_STRING = re.compile(r"'((?:[^'\\]++|\\.)*+)'", re.DOTALL)
_NUMBER_RE = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
_WORD_RE = re.compile(r"[A-Za-z]+")
WORDS: dict[str, Any] = {"true": True, "false": False, "null": None, "True": True, "False": False, "None": None}
_ESCAPE_RE = re.compile(r"\\(?:x([0-9a-fA-F]{2})|u([0-9a-fA-F]{4})|U([0-9a-fA-F]{8})|([0-7]{1,3})|(.))", re.DOTALL)
_SIMPLE_ESCAPES = {
    "n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "v": "\v", "a": "\a",
    "\\": "\\", "'": "'", '"': '"', "/": "/", "\n": "",
}


class Cut(Exception):
    """The text ended inside a value; `partial` is what had been read."""

    def __init__(self, partial: Any) -> None:
        super().__init__()
        self.partial = partial


class Bad(Exception):
    """The text is not a value at `pos`; `deep` when it nests deeper than any call would."""

    def __init__(self, pos: int, deep: bool = False) -> None:
        super().__init__()
        self.pos = pos
        self.deep = deep


class OutOfBudget(Exception):
    """The reader spent what a reply may cost."""


class PartialDict(dict[str, Any]):
    """An object the text ended inside; `pending` is the key being written when it ended, if any."""

    def __init__(self, items: dict[str, Any], pending: str | None = None) -> None:
        super().__init__(items)
        self.pending = pending


class PartialList(list[Any]):
    """An array the text ended inside."""


class CutScalar:
    """A string, number or word the text ended inside."""


CUT_SCALAR = CutScalar()


class Reader:
    """A lenient reader of JSON and Python literals (quotes of both kinds, True/None, trailing commas)."""

    __slots__ = ("budget", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.budget = _BASE_BUDGET + len(text) // 16

    def read(self, pos: int) -> tuple[Any, int]:
        """The value starting at `pos` and where it ends; raises Cut, Bad or OutOfBudget."""
        return self._value(pos, 0)

    def spend(self) -> None:
        """Count one token against the reply's budget."""
        self.budget -= 1
        if self.budget < 0:
            raise OutOfBudget

    def _value(self, pos: int, depth: int) -> tuple[Any, int]:
        self.budget -= 1
        if self.budget < 0:
            raise OutOfBudget
        text = self.text
        if pos >= len(text):
            raise Cut(CUT_SCALAR)
        char = text[pos]
        if char == '"' or char == "'":
            return self._string(pos)
        if char == "{":
            return self._object(pos, depth + 1)
        if char == "[":
            return self._array(pos, depth + 1)
        number = _NUMBER_RE.match(text, pos)
        if number:
            return _to_number(number.group()), number.end()
        word = _WORD_RE.match(text, pos)
        if word:
            if word.group() in WORDS:
                return WORDS[word.group()], word.end()
            if word.end() == len(text) and any(known.startswith(word.group()) for known in WORDS):
                raise Cut(CUT_SCALAR)
        elif pos + 1 == len(text) and char in "+-.":
            raise Cut(CUT_SCALAR)
        raise Bad(pos)

    def _string(self, pos: int) -> tuple[str, int]:
        match = (DQ_STRING if self.text[pos] == '"' else SQ_STRING).match(self.text, pos)
        if match is None:
            raise Cut(CUT_SCALAR)
        body = match.group(1)
        return (_unescape(body) if "\\" in body else body), match.end()

    def _object(self, pos: int, depth: int) -> tuple[dict[str, Any], int]:
        if depth > MAX_DEPTH:
            raise Bad(pos, deep=True)
        text = self.text
        end = len(text)
        result: dict[str, Any] = {}
        pos = skip_ws(text, pos + 1)
        if pos < end and text[pos] == "}":
            return result, pos + 1
        while True:
            if pos >= end:
                raise Cut(PartialDict(result, ""))
            if text[pos] != '"' and text[pos] != "'":
                raise Bad(pos)
            try:
                key, pos = self._string(pos)
            except Cut:
                raise Cut(PartialDict(result, text[pos + 1 : pos + 1 + _KEY_PREFIX])) from None
            colon = _COLON_RE.match(text, pos)
            if colon is None:
                pos = skip_ws(text, pos)
                if pos >= end:
                    raise Cut(PartialDict(result, key))
                raise Bad(pos)
            try:
                result[key], pos = self._value(colon.end(), depth)
            except Cut as cut:
                result[key] = cut.partial
                raise Cut(PartialDict(result)) from None
            comma = _COMMA_RE.match(text, pos)
            if comma is None:
                pos = skip_ws(text, pos)
                if pos >= end:
                    raise Cut(PartialDict(result))
                if text[pos] == "}":
                    return result, pos + 1
                raise Bad(pos)
            pos = comma.end()
            if pos < end and text[pos] == "}":  # a trailing comma
                return result, pos + 1

    def _array(self, pos: int, depth: int) -> tuple[list[Any], int]:
        if depth > MAX_DEPTH:
            raise Bad(pos, deep=True)
        text = self.text
        end = len(text)
        result: list[Any] = []
        pos = skip_ws(text, pos + 1)
        if pos < end and text[pos] == "]":
            return result, pos + 1
        while True:
            try:
                value, pos = self._value(pos, depth)
            except Cut as cut:
                if cut.partial is not CUT_SCALAR:
                    result.append(cut.partial)
                raise Cut(PartialList(result)) from None
            result.append(value)
            comma = _COMMA_RE.match(text, pos)
            if comma is None:
                pos = skip_ws(text, pos)
                if pos >= end:
                    raise Cut(PartialList(result))
                if text[pos] == "]":
                    return result, pos + 1
                raise Bad(pos)
            pos = comma.end()
            if pos < end and text[pos] == "]":  # a trailing comma
                return result, pos + 1


def skip_ws(text: str, pos: int, gap: re.Pattern[str] = _WS_RE) -> int:
    """The first position at or after `pos` past whitespace (or what `gap` matches; it matches the empty string)."""
    match = gap.match(text, pos)
    return match.end() if match else pos


def _to_number(token: str) -> int | float:
    if "." in token or "e" in token or "E" in token:
        return float(token)
    try:
        return int(token)
    except ValueError:  # more digits than Python converts to int
        return float(token)


def _unescape(body: str) -> str:
    """A string body with its JSON or Python escapes resolved; unknown escapes are kept as written."""
    try:
        return JSON_DECODER.decode(f'"{body}"')
    except ValueError:  # Python escapes such as \' or \x41, or a raw " in a single-quoted string
        return _python_unescape(body)


def _python_unescape(body: str) -> str:
    def one(match: re.Match[str]) -> str:
        hex_digits = match.group(1) or match.group(2) or match.group(3)
        if hex_digits:
            code = int(hex_digits, 16)
            return chr(code) if code <= 0x10FFFF else match.group()
        if match.group(4):
            return chr(int(match.group(4), 8))
        return _SIMPLE_ESCAPES.get(match.group(5), match.group())

    return _ESCAPE_RE.sub(one, body)


def lenient_loads(text: str) -> Any:
    """A whole string read as JSON, or failing that leniently; None when it is neither."""
    try:
        return JSON_DECODER.decode(text)
    except (ValueError, RecursionError):
        pass
    start = skip_ws(text, 0)
    if start >= len(text) or text[start] not in "{[":
        return None
    try:
        value, end = Reader(text).read(start)
    except (Cut, Bad, OutOfBudget):
        return None
    return value if not text[end:].strip() else None
