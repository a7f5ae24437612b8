"""Reading function calls out of a model's reply, whatever the model family, and spotting them while it streams."""

from __future__ import annotations

import ast
import json
import logging
import re
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, Field

from backend.core.calls import FunctionCall

__all__ = ["CallDetector", "DetectorState", "ParsedReply", "parse_reply"]

_log = logging.getLogger(__name__)

DetectorState = Literal["undecided", "text", "call"]


class ParsedReply(BaseModel):
    """A reply as read: the prose to show, the calls it asks for, and what could not be read."""

    text: str = ""
    calls: list[FunctionCall] = Field(default_factory=list)
    problems: list[str] = Field(default_factory=list)
    truncated: bool = False


# Limits that keep hostile replies cheap; real calls stay far below them.
_MAX_DEPTH = 64  # nesting a call may reach; anything deeper is treated as data
_MAX_GAP = 40  # whitespace allowed inside an opener such as `{  "function"`
_MAX_NAME = 128  # characters in a function name
_MAX_PYTHONIC = 100_000  # characters of a pythonic call list handed to `ast`
_BASE_BUDGET = 20_000  # values the lenient reader may read in a reply, plus one per 16 characters
_BASE_ATTEMPTS = 1_000  # places that look like a call start but are none, per reply, plus one per 100 characters
_MAX_PROBLEMS = 20  # distinct problems reported for one reply
_MAX_JSON_FAILURES = 32  # failed attempts of the C JSON decoder on one reply
_KEY_PREFIX = 32  # characters of a cut-off key kept: enough to tell whether it could be a call's key

_GAVE_UP = "The reply is too long or irregular to search completely for function calls."

# `strict=False`: models put raw newlines and tabs inside strings.
_JSON = json.JSONDecoder(strict=False)

# Where a call may start: a marker some model family writes before its calls, a code fence, a JSON object with a
# string key, a list of such objects, or a pythonic list `[name(`. Anything else is prose.
_CANDIDATE_RE = re.compile(
    r"(?P<marker><tool_call>|<tool_calls>|<functioncall>|<\|python_tag\|>|<\|tool_call\|>|\[TOOL_CALLS\])"
    r"|<function=(?P<tagname>[^\W\d][\w.\-]{0,127})>"
    r"|```(?P<lang>[\w\-]{0,20})"
    r"|\{[ \t\r\n]{0,40}[\"']"
    r"|\[[ \t\r\n]{0,40}(?:\{[ \t\r\n]{0,40}[\"']|(?P<pyname>[^\W\d][\w.]{0,127})[ \t]{0,8}\()"
)
_PY_LIST_RE = re.compile(r"\[[ \t\r\n]{0,40}(?P<pyname>[^\W\d][\w.]{0,127})[ \t]{0,8}\(")
_PY_BARE_RE = re.compile(r"(?P<pyname>[^\W\d][\w.]{0,127})[ \t]{0,8}\(")
_MISTRAL_RE = re.compile(r"(?P<name>[^\W\d][\w.\-]{0,127})(?:\[CALL_ID\][\w\-]{0,64})?\[ARGS\]")
_MISTRAL_CUT_RE = re.compile(r"[\w.\-\[\]]{0,300}")
_CLOSER_RE = re.compile(
    r"[ \t\r\n]*(?:</tool_call>|</tool_calls>|</functioncall>|</function>|<\|/tool_call\|>|<\|eom_id\|>|<\|eot_id\|>)"
)
_FENCE_END_RE = re.compile(r"[ \t\r\n]*(?:```|\Z)")
_SEPARATOR_RE = re.compile(r"[ \t\r\n,]*")
_WS_RE = re.compile(r"[ \t\r\n]*")
_COLON_RE = re.compile(r"[ \t\r\n]*:[ \t\r\n]*")
_COMMA_RE = re.compile(r"[ \t\r\n]*,[ \t\r\n]*")
_NAME_RE = re.compile(r"[^\W\d][\w.\-:/]{0,127}")

# The lenient reader's tokens. Possessive quantifiers keep a failed string match linear: a quoted string that does
# not match runs to the end of the text, so it was cut off.
_DQ_RE = re.compile(r'"((?:[^"\\]++|\\.)*+)"', re.DOTALL)
_SQ_RE = re.compile(r"'((?:[^'\\]++|\\.)*+)'", re.DOTALL)
_NUMBER_RE = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
_WORD_RE = re.compile(r"[A-Za-z]+")
_WORDS: dict[str, Any] = {"true": True, "false": False, "null": None, "True": True, "False": False, "None": None}
_ESCAPE_RE = re.compile(r"\\(?:x([0-9a-fA-F]{2})|u([0-9a-fA-F]{4})|U([0-9a-fA-F]{8})|([0-7]{1,3})|(.))", re.DOTALL)
_SIMPLE_ESCAPES = {
    "n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "v": "\v", "a": "\a",
    "\\": "\\", "'": "'", '"': '"', "/": "/", "\n": "",
}
_PY_STRUCT_RE = re.compile(r"[()\[\]{}\"']")
_PY_CLOSING = {"(": ")", "[": "]", "{": "}"}

# Keys that make a cut-off object look like a call, not data.
_CALL_KEYS = ("function", "name", "tool_calls", "function_call", "arguments", "parameters")
_ARGUMENT_KEYS = ("arguments", "parameters")

_MISS, _SKIP, _BLOCK = 0, 1, 2


class _Cut(Exception):
    """The text ended inside a value; `partial` is what had been read."""

    def __init__(self, partial: Any) -> None:
        super().__init__()
        self.partial = partial


class _Bad(Exception):
    """The text is not a value at `pos`; `deep` when it nests deeper than any call would."""

    def __init__(self, pos: int, deep: bool = False) -> None:
        super().__init__()
        self.pos = pos
        self.deep = deep


class _OutOfBudget(Exception):
    """The reader spent what a reply may cost."""


class _PartialDict(dict[str, Any]):
    """An object the text ended inside; `pending` is the key being written when it ended, if any."""

    def __init__(self, items: dict[str, Any], pending: str | None = None) -> None:
        super().__init__(items)
        self.pending = pending


class _PartialList(list[Any]):
    """An array the text ended inside."""


class _CutScalar:
    """A string, number or word the text ended inside."""


_CUT_SCALAR = _CutScalar()


class _Outcome(NamedTuple):
    """What one place in the reply turned out to be: nothing (_MISS), data (_SKIP) or a call block (_BLOCK)."""

    kind: int
    start: int
    end: int
    calls: tuple[FunctionCall, ...] = ()
    problems: tuple[str, ...] = ()
    truncated: bool = False


def parse_reply(text: str) -> ParsedReply:
    """Split a model's reply into prose and function calls; never raises."""
    if "{" not in text and "[" not in text and "<" not in text and "```" not in text:
        return ParsedReply(text=text.strip())
    try:
        return _Scanner(text).run()
    except Exception:  # the engine must get an answer whatever the model wrote
        _log.exception("Could not parse a model reply of %d characters", len(text))
        return ParsedReply(text=text.strip(), problems=["The reply could not be read for function calls."])


class _Reader:
    """A lenient reader of JSON and Python literals (quotes of both kinds, True/None, trailing commas)."""

    __slots__ = ("budget", "text")

    def __init__(self, text: str, budget: int) -> None:
        self.text = text
        self.budget = budget

    def read(self, pos: int) -> tuple[Any, int]:
        """The value starting at `pos` and where it ends; raises _Cut, _Bad or _OutOfBudget."""
        return self._value(pos, 0)

    def spend(self) -> None:
        """Count one token against the reply's budget."""
        self.budget -= 1
        if self.budget < 0:
            raise _OutOfBudget

    def _value(self, pos: int, depth: int) -> tuple[Any, int]:
        self.budget -= 1
        if self.budget < 0:
            raise _OutOfBudget
        text = self.text
        if pos >= len(text):
            raise _Cut(_CUT_SCALAR)
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
            if word.group() in _WORDS:
                return _WORDS[word.group()], word.end()
            if word.end() == len(text) and any(known.startswith(word.group()) for known in _WORDS):
                raise _Cut(_CUT_SCALAR)
        elif pos + 1 == len(text) and char in "+-.":
            raise _Cut(_CUT_SCALAR)
        raise _Bad(pos)

    def _string(self, pos: int) -> tuple[str, int]:
        match = (_DQ_RE if self.text[pos] == '"' else _SQ_RE).match(self.text, pos)
        if match is None:
            raise _Cut(_CUT_SCALAR)
        body = match.group(1)
        return (_unescape(body) if "\\" in body else body), match.end()

    def _object(self, pos: int, depth: int) -> tuple[dict[str, Any], int]:
        if depth > _MAX_DEPTH:
            raise _Bad(pos, deep=True)
        text = self.text
        end = len(text)
        result: dict[str, Any] = {}
        pos = _skip_ws(text, pos + 1)
        if pos < end and text[pos] == "}":
            return result, pos + 1
        while True:
            if pos >= end:
                raise _Cut(_PartialDict(result, ""))
            if text[pos] != '"' and text[pos] != "'":
                raise _Bad(pos)
            try:
                key, pos = self._string(pos)
            except _Cut:
                raise _Cut(_PartialDict(result, text[pos + 1 : pos + 1 + _KEY_PREFIX])) from None
            colon = _COLON_RE.match(text, pos)
            if colon is None:
                pos = _skip_ws(text, pos)
                if pos >= end:
                    raise _Cut(_PartialDict(result, key))
                raise _Bad(pos)
            try:
                result[key], pos = self._value(colon.end(), depth)
            except _Cut as cut:
                result[key] = cut.partial
                raise _Cut(_PartialDict(result)) from None
            comma = _COMMA_RE.match(text, pos)
            if comma is None:
                pos = _skip_ws(text, pos)
                if pos >= end:
                    raise _Cut(_PartialDict(result))
                if text[pos] == "}":
                    return result, pos + 1
                raise _Bad(pos)
            pos = comma.end()
            if pos < end and text[pos] == "}":  # a trailing comma
                return result, pos + 1

    def _array(self, pos: int, depth: int) -> tuple[list[Any], int]:
        if depth > _MAX_DEPTH:
            raise _Bad(pos, deep=True)
        text = self.text
        end = len(text)
        result: list[Any] = []
        pos = _skip_ws(text, pos + 1)
        if pos < end and text[pos] == "]":
            return result, pos + 1
        while True:
            try:
                value, pos = self._value(pos, depth)
            except _Cut as cut:
                if cut.partial is not _CUT_SCALAR:
                    result.append(cut.partial)
                raise _Cut(_PartialList(result)) from None
            result.append(value)
            comma = _COMMA_RE.match(text, pos)
            if comma is None:
                pos = _skip_ws(text, pos)
                if pos >= end:
                    raise _Cut(_PartialList(result))
                if text[pos] == "]":
                    return result, pos + 1
                raise _Bad(pos)
            pos = comma.end()
            if pos < end and text[pos] == "]":  # a trailing comma
                return result, pos + 1


def _skip_ws(text: str, pos: int, gap: re.Pattern[str] = _WS_RE) -> int:
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
        return _JSON.decode(f'"{body}"')
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


def _lenient_loads(text: str) -> Any:
    """A whole string read as JSON, or failing that leniently; None when it is neither."""
    try:
        return _JSON.decode(text)
    except (ValueError, RecursionError):
        pass
    start = _skip_ws(text, 0)
    if start >= len(text) or text[start] not in "{[":
        return None
    try:
        value, end = _Reader(text, _BASE_BUDGET + len(text) // 16).read(start)
    except (_Cut, _Bad, _OutOfBudget):
        return None
    return value if not text[end:].strip() else None


def _clean_name(name: Any) -> str | None:
    """The function name a call object gives, when it looks like one."""
    if not isinstance(name, str):
        return None
    name = name.strip()
    return name if _NAME_RE.fullmatch(name) else None


def _call_from(obj: dict[str, Any], lenient: bool, nested: bool = False) -> FunctionCall | str | None:
    """The call an object describes, a problem when it is a call that cannot be taken, or None when it is data.

    A call needs a name ("function" or "name") and its arguments ("arguments" or "parameters") as an object or a
    JSON string holding one. `lenient` (after a call marker, or inside tool_calls) also accepts missing arguments.
    """
    function = obj.get("function")
    if isinstance(function, dict):
        # OpenAI's {"type": "function", "function": {"name": ..., "arguments": "..."}}
        return None if nested else _call_from(function, lenient=True, nested=True)
    name = _clean_name(function if isinstance(function, str) else obj.get("name"))
    if name is None:
        return None
    lenient = lenient or obj.get("type") == "function"
    for key in _ARGUMENT_KEYS:
        if key in obj:
            arguments = obj[key]
            break
    else:
        return FunctionCall(name=name) if lenient else None
    if isinstance(arguments, str):
        arguments = {} if lenient and not arguments.strip() else _lenient_loads(arguments)
    if isinstance(arguments, dict):
        if _shallow(arguments):
            return FunctionCall(name=name, arguments=arguments)
        return f"The arguments of the call to {name} are nested too deeply to be taken." if lenient else None
    if lenient:
        return f"The arguments of the call to {name} are not a JSON object, so the call was not taken."
    return None


def _shallow(value: Any, depth: int = 1) -> bool:
    """Whether a value nests no deeper than a call may (the C decoder reads far deeper than that)."""
    if depth > _MAX_DEPTH:
        return False
    if isinstance(value, dict):
        return all(_shallow(item, depth + 1) for item in value.values())
    if isinstance(value, list):
        return all(_shallow(item, depth + 1) for item in value)
    return True


def _calls_in(value: Any, lenient: bool) -> tuple[tuple[FunctionCall, ...], tuple[str, ...]] | None:
    """The calls a complete value holds and the problems met; None when the value is data."""
    items = value if isinstance(value, list) else [value]
    if not items:
        return None
    calls: list[FunctionCall] = []
    problems: list[str] = []
    for item in items:
        if not isinstance(item, dict):
            return None
        tool_calls = item.get("tool_calls")
        if isinstance(tool_calls, list):
            for entry in tool_calls:
                found = _call_from(entry, lenient=True) if isinstance(entry, dict) else None
                _add(found or "An entry in tool_calls is not a function call.", calls, problems)
            continue
        legacy = item.get("function_call")
        found = _call_from(legacy if isinstance(legacy, dict) else item, lenient or isinstance(legacy, dict))
        if found is None:
            return None
        _add(found, calls, problems)
    return tuple(calls), tuple(problems)


def _add(found: FunctionCall | str, calls: list[FunctionCall], problems: list[str]) -> None:
    if isinstance(found, FunctionCall):
        calls.append(found)
    else:
        problems.append(found)


def _partial_names(partial: Any, lenient: bool) -> list[str] | None:
    """Names of the calls in a value the reply ended inside; None when that value looks like data, not a call."""
    if isinstance(partial, _PartialList):
        names: list[str] = []
        callish = lenient
        for item in partial:
            item_names = _partial_names(item, lenient) if _is_partial(item) else _complete_names(item)
            if item_names is not None:
                callish = True
                names += item_names
        return names if callish else None
    if not isinstance(partial, _PartialDict):
        return None
    callish = lenient or any(key in _CALL_KEYS for key in partial)
    if partial.pending is not None and (partial.pending or not partial):
        callish = callish or any(key.startswith(partial.pending) for key in _CALL_KEYS)
    names = []
    tool_calls = partial.get("tool_calls")
    if isinstance(tool_calls, list):
        names += (_partial_names(tool_calls, True) if _is_partial(tool_calls) else _complete_names(tool_calls)) or []
    function = partial.get("function")
    if isinstance(function, dict):
        function = function.get("name")
    name = _clean_name(function if isinstance(function, str) else partial.get("name"))
    if name is not None:
        names.append(name)
    return names if callish else None


def _is_partial(value: Any) -> bool:
    return isinstance(value, (_PartialDict, _PartialList, _CutScalar))


def _complete_names(value: Any) -> list[str] | None:
    found = _calls_in(value, lenient=True)
    return None if found is None else [call.name for call in found[0]]


def _cut_message(names: list[str]) -> str:
    if not names:
        return "The model's reply was cut off in the middle of a function call."
    if len(names) == 1:
        return f"The model's reply was cut off in the middle of a function call ({names[0]})."
    return f"The model's reply was cut off in the middle of its function calls ({', '.join(names)}); none was taken."


def _literal(node: ast.expr, depth: int = 0) -> Any:
    """The plain value an expression spells (JSON-like literals only); raises ValueError for anything else."""
    if depth > _MAX_DEPTH:
        raise ValueError("too deep")
    if isinstance(node, ast.Constant) and (node.value is None or type(node.value) in (str, int, float, bool)):
        return node.value
    if (
        isinstance(node, ast.UnaryOp)
        and isinstance(node.op, (ast.USub, ast.UAdd))
        and isinstance(node.operand, ast.Constant)
        and type(node.operand.value) in (int, float)
    ):
        return -node.operand.value if isinstance(node.op, ast.USub) else node.operand.value
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_literal(item, depth + 1) for item in node.elts]
    if isinstance(node, ast.Dict):
        result = {}
        for key, item in zip(node.keys, node.values):
            if not (isinstance(key, ast.Constant) and isinstance(key.value, str)):
                raise ValueError("a key is not a string")
            result[key.value] = _literal(item, depth + 1)
        return result
    if isinstance(node, ast.Name) and node.id in _WORDS:  # models write JSON's true/false/null here too
        return _WORDS[node.id]
    raise ValueError("not a plain value")


def _dotted_name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        owner = _dotted_name(node.value)
        return None if owner is None else f"{owner}.{node.attr}"
    return None


def _pythonic_call(node: ast.Call, name: str) -> FunctionCall | str:
    if node.args:
        return f"The call to {name} passes arguments by position, so they cannot be matched to parameter names."
    arguments: dict[str, Any] = {}
    for keyword in node.keywords:
        if keyword.arg is None:
            return f"The call to {name} unpacks arguments (**), which cannot be read without running code."
        try:
            arguments[keyword.arg] = _literal(keyword.value)
        except ValueError:
            return f"The call to {name} could not be taken: {keyword.arg} is not a plain value."
    return FunctionCall(name=name, arguments=arguments)


class _Scanner:
    """One pass over a reply: finds each call block and keeps the prose between them."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.reader = _Reader(text, _BASE_BUDGET + len(text) // 16)
        self.json_failures = 0

    def run(self) -> ParsedReply:
        """Read the whole reply."""
        text = self.text
        pieces: list[str] = []
        calls: list[FunctionCall] = []
        problems: list[str] = []
        truncated = False
        prose_start = pos = 0
        misses = _BASE_ATTEMPTS + len(text) // 100
        try:
            while (match := _CANDIDATE_RE.search(text, pos)) is not None:
                outcome = self._block(match)
                if not outcome.calls:
                    misses -= 1
                    if misses < 0:
                        raise _OutOfBudget
                if outcome.kind == _BLOCK:
                    pieces.append(text[prose_start : outcome.start])
                    calls += outcome.calls
                    problems += outcome.problems
                    truncated = truncated or outcome.truncated
                    prose_start = pos = max(outcome.end, match.start() + 1)
                elif outcome.kind == _SKIP:
                    pos = max(outcome.end, match.start() + 1)
                else:
                    pos = match.start() + 1
        except _OutOfBudget:
            problems.append(_GAVE_UP)
        pieces.append(text[prose_start:])
        prose = (piece.strip() for piece in pieces)
        return ParsedReply(
            text="\n".join(piece for piece in prose if piece.strip(" \t\r\n,;")),
            calls=calls,
            problems=list(dict.fromkeys(problems))[:_MAX_PROBLEMS],
            truncated=truncated,
        )

    def _block(self, match: re.Match[str]) -> _Outcome:
        kind = match.lastgroup  # the alternative that matched: "lang" for a fence, None for a bare `{`
        if kind is None:
            return self._json(match.start(), lenient=False)
        if kind == "marker":
            return self._after_marker(match)
        if kind == "tagname":
            return self._named_arguments(match.start(), match.group("tagname"), match.end())
        if kind == "lang":
            return self._fence(match)
        return self._pythonic(match.start(), match.group("pyname"), bracketed=True, explicit=False)

    def _read(self, pos: int) -> tuple[Any, int]:
        # The C decoder first; but its error costs time in proportion to `pos` (the message counts lines), so after
        # a few failures only the lenient reader, which has a budget, is used.
        if self.json_failures < _MAX_JSON_FAILURES:
            try:
                return _JSON.raw_decode(self.text, pos)
            except (ValueError, RecursionError):
                self.json_failures += 1
        return self.reader.read(pos)

    def _json(self, start: int, lenient: bool) -> _Outcome:
        try:
            value, end = self._read(start)
        except _Cut as cut:
            names = _partial_names(cut.partial, lenient)
            if names is None:
                return _Outcome(_MISS, start, start)
            return _Outcome(_BLOCK, start, len(self.text), (), (_cut_message(names),), True)
        except _Bad as bad:
            return _Outcome(_SKIP, start, bad.pos) if bad.deep else _Outcome(_MISS, start, start)
        found = _calls_in(value, lenient)
        if found is None:
            return _Outcome(_SKIP, start, end)
        return _Outcome(_BLOCK, start, end, *found)

    def _payload(self, pos: int, lenient: bool) -> _Outcome:
        """A JSON call, list or wrapper, or a pythonic call list, at `pos`."""
        if self.text[pos] == "[" and (pythonic := _PY_LIST_RE.match(self.text, pos)):
            return self._pythonic(pos, pythonic.group("pyname"), bracketed=True, explicit=lenient)
        if self.text[pos] in "{[":
            return self._json(pos, lenient)
        return _Outcome(_MISS, pos, pos)

    def _payloads(self, start: int, lenient: bool) -> _Outcome:
        """One or more payloads in a row (separated by whitespace or commas), as one block."""
        text = self.text
        calls: list[FunctionCall] = []
        problems: list[str] = []
        pos = end = start
        while True:
            outcome = self._payload(pos, lenient)
            if outcome.kind != _BLOCK:
                if end == start:
                    return outcome
                break
            calls += outcome.calls
            problems += outcome.problems
            end = outcome.end
            if outcome.truncated:
                return _Outcome(_BLOCK, start, end, tuple(calls), tuple(problems), True)
            pos = _skip_ws(text, end, _SEPARATOR_RE)
            if pos >= len(text) or text[pos] not in "{[":
                break
        return _Outcome(_BLOCK, start, end, tuple(calls), tuple(problems))

    def _after_marker(self, match: re.Match[str]) -> _Outcome:
        """Calls after `<tool_call>`, `[TOOL_CALLS]` and the like: the marker says a call follows, so read leniently."""
        text = self.text
        marker = match.group("marker")
        pos = _skip_ws(text, match.end())
        if pos >= len(text):
            return _Outcome(_BLOCK, match.start(), pos, (), (_cut_message([]),), True)
        if marker == "[TOOL_CALLS]":
            mistral = _MISTRAL_RE.match(text, pos)
            if mistral:
                return self._named_arguments(match.start(), mistral.group("name"), mistral.end())
            if text[pos] not in "{[" and _MISTRAL_CUT_RE.fullmatch(text, pos):
                return _Outcome(_BLOCK, match.start(), len(text), (), (_cut_message([]),), True)
        if text[pos] not in "{[":
            return _Outcome(_MISS, match.start(), match.start())
        outcome = self._payloads(pos, lenient=True)
        if outcome.kind != _BLOCK:
            problem = f"The model wrote {marker} but what follows is not a function call that can be read."
            return _Outcome(_BLOCK, match.start(), match.end(), (), (problem,))
        closer = _CLOSER_RE.match(text, outcome.end)
        return outcome._replace(start=match.start(), end=closer.end() if closer else outcome.end)

    def _named_arguments(self, start: int, name: str, pos: int) -> _Outcome:
        """A call whose name is written outside its arguments: `<function=name>{...}`, `name[ARGS]{...}`."""
        text = self.text
        pos = _skip_ws(text, pos)
        if pos >= len(text):
            return _Outcome(_BLOCK, start, pos, (), (_cut_message([name]),), True)
        if text[pos] != "{":
            return _Outcome(_MISS, start, start)
        try:
            arguments, end = self._read(pos)
        except _Cut:
            return _Outcome(_BLOCK, start, len(text), (), (_cut_message([name]),), True)
        except _Bad:
            return _Outcome(_BLOCK, start, pos, (), (f"The arguments of the call to {name} could not be read.",))
        closer = _CLOSER_RE.match(text, end)
        end = closer.end() if closer else end
        if not isinstance(arguments, dict) or not _shallow(arguments):
            problem = f"The arguments of the call to {name} are not a JSON object of reasonable depth."
            return _Outcome(_BLOCK, start, end, (), (problem,))
        return _Outcome(_BLOCK, start, end, (FunctionCall(name=name, arguments=arguments),))

    def _fence(self, match: re.Match[str]) -> _Outcome:
        """A code fence holding nothing but calls is one block, fence included; any other fence is prose."""
        text = self.text
        pos = _skip_ws(text, match.end())
        if pos >= len(text):
            return _Outcome(_MISS, match.start(), match.start())
        if text[pos] in "{[":
            outcome = self._payloads(pos, lenient=False)
        elif match.group("lang").lower() in ("tool_code", "tool_call") and (bare := _PY_BARE_RE.match(text, pos)):
            outcome = self._pythonic(pos, bare.group("pyname"), bracketed=False, explicit=True)
        else:
            return _Outcome(_MISS, match.start(), match.start())
        if outcome.kind != _BLOCK:
            return _Outcome(_MISS, match.start(), match.start())
        fence_end = _FENCE_END_RE.match(text, outcome.end)
        return outcome._replace(start=match.start(), end=fence_end.end() if fence_end else outcome.end)

    def _pythonic(self, start: int, name: str, bracketed: bool, explicit: bool) -> _Outcome:
        """`[name(key=value, ...), ...]` (or one bare call in a tool_code fence), read with `ast`, never run.

        A list with a call that cannot be taken (positional arguments, a value that is not a literal) is reported
        only when something says it is meant as calls (`explicit`: a marker or a tool_code fence) or it is the
        whole reply; elsewhere it is more likely code in prose, such as `[len(x)]`.
        """
        try:
            end = self._python_span(start)
        except _Cut:
            return _Outcome(_BLOCK, start, len(self.text), (), (_cut_message([name]),), True)
        except _Bad as bad:
            return _Outcome(_SKIP, start, bad.pos) if bad.deep else _Outcome(_MISS, start, start)
        if end - start > _MAX_PYTHONIC:
            return _Outcome(_SKIP, start, end)
        try:
            tree = ast.parse(self.text[start:end], mode="eval")
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            return _Outcome(_MISS, start, start)
        body = tree.body
        nodes = body.elts if bracketed and isinstance(body, ast.List) else [body] if not bracketed else []
        if not nodes:
            return _Outcome(_MISS, start, start)
        calls: list[FunctionCall] = []
        problems: list[str] = []
        for node in nodes:
            if not isinstance(node, ast.Call) or (call_name := _dotted_name(node.func)) is None:
                return _Outcome(_MISS, start, start)
            _add(_pythonic_call(node, call_name), calls, problems)
        if problems and not explicit and not self._stands_alone(start, end):
            return _Outcome(_MISS, start, start)
        return _Outcome(_BLOCK, start, end, tuple(calls), tuple(problems))

    def _stands_alone(self, start: int, end: int) -> bool:
        """Whether text[start:end] is the whole reply but for whitespace."""
        return _skip_ws(self.text, 0) >= start and _skip_ws(self.text, end) == len(self.text)

    def _python_span(self, start: int) -> int:
        """Where the bracketed Python expression opening at (or after) `start` ends; raises _Cut or _Bad."""
        text = self.text
        stack: list[str] = []
        pos = start
        while True:
            token = _PY_STRUCT_RE.search(text, pos)
            if token is None:
                raise _Cut(None)
            self.reader.spend()
            char = token.group()
            pos = token.start()
            if char in _PY_CLOSING:
                stack.append(_PY_CLOSING[char])
                if len(stack) > _MAX_DEPTH:
                    raise _Bad(pos, deep=True)
                pos += 1
            elif char in ")]}":
                if not stack or stack.pop() != char:
                    raise _Bad(pos)
                pos += 1
                if not stack:
                    return pos
            else:
                string = (_DQ_RE if char == '"' else _SQ_RE).match(text, pos)
                if string is None:
                    raise _Cut(None)
                pos = string.end()


# Openers the detector looks for, as sequences of parts: a tuple of literal alternatives, _GAP (a little
# whitespace) or _IDENT (a function name).
_GAP = "gap"
_IDENT = "ident"
_Pattern = tuple[tuple[str, ...] | str, ...]
_KEY_PARTS = ('"function"', "'function'", '"name"', "'name'", '"tool_calls"', "'tool_calls'")
_MARKER_PARTS = ("<tool_call>", "<tool_calls>", "<functioncall>", "<|python_tag|>", "<|tool_call|>", "[TOOL_CALLS]")
_OPENERS_ANYWHERE: tuple[_Pattern, ...] = (
    (("{",), _GAP, _KEY_PARTS),
    (("[",), _GAP, ("{",), _GAP, _KEY_PARTS),
    (_MARKER_PARTS,),
    (("<function=",), _IDENT, (">",)),
    (("```",), ("", "json", "JSON", "tool_call"), _GAP, ("{", "["), _GAP, ("{", ""), _GAP, _KEY_PARTS),
    (("```",), ("tool_code", "tool_call"), _GAP, _IDENT, ("(",)),
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
            while end < len(text) and text[end] in " \t\r\n" and end - pos <= _MAX_GAP:
                end += 1
            if end - pos > _MAX_GAP:
                return _NO
            if end == len(text):
                return _PREFIX
            pos = end
        elif step is _IDENT:
            end = pos
            while end < len(text) and (text[end].isalnum() or text[end] in "_.") and end - pos <= _MAX_NAME:
                end += 1
            if end == pos:
                return _PREFIX if pos == len(text) else _NO
            if text[pos].isdigit() or end - pos > _MAX_NAME:
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
