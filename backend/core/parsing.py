"""Reading function calls out of a model's whole reply, whatever the model family: prose and calls apart."""

from __future__ import annotations

import ast
import logging
import re
from typing import Any, NamedTuple

from pydantic import BaseModel, Field

from backend.core.call_forms import calls_in, collect, cut_message, dotted_name, partial_names, pythonic_call, shallow
from backend.core.calls import FunctionCall
from backend.core.lenient_json import (
    DQ_STRING,
    JSON_DECODER,
    MAX_DEPTH,
    SQ_STRING,
    Bad,
    Cut,
    OutOfBudget,
    Reader,
    skip_ws,
)
from backend.core.openers import (
    CLOSERS,
    MARKERS,
    MAX_GAP,
    MAX_NAME,
    MISTRAL_MARKER,
    NAMED_CALL_OPENER,
    PYTHONIC_FENCE_LANGUAGES,
)

__all__ = ["ParsedReply", "parse_reply"]

_log = logging.getLogger(__name__)


class ParsedReply(BaseModel):
    """A reply as read: the prose to show, the calls it asks for, and what could not be read."""

    text: str = ""
    calls: list[FunctionCall] = Field(default_factory=list)
    problems: list[str] = Field(default_factory=list)
    truncated: bool = False


# Limits that keep hostile replies cheap; real calls stay far below them.
_MAX_PYTHONIC = 100_000  # characters of a pythonic call list handed to `ast`
_BASE_ATTEMPTS = 1_000  # places that look like a call start but are none, per reply, plus one per 100 characters
_MAX_PROBLEMS = 20  # distinct problems reported for one reply
_MAX_JSON_FAILURES = 32  # failed attempts of the C JSON decoder on one reply

_GAVE_UP = "The reply is too long or irregular to search completely for function calls."

_GAP = rf"[ \t\r\n]{{0,{MAX_GAP}}}"
_NAME_TAIL = rf"{{0,{MAX_NAME - 1}}}"  # after the first character of a name
_PY_CALL = rf"(?P<pyname>[^\W\d][\w.]{_NAME_TAIL})[ \t]{{0,8}}\("
# Where a call may start: a marker some model family writes before its calls, a code fence, a JSON object with a
# string key, a list of such objects, or a pythonic list `[name(`. Anything else is prose.
_CANDIDATE_RE = re.compile(
    rf"(?P<marker>{'|'.join(re.escape(marker) for marker in MARKERS)})"
    rf"|{re.escape(NAMED_CALL_OPENER)}(?P<tagname>[^\W\d][\w.\-]{_NAME_TAIL})>"
    r"|```(?P<lang>[\w\-]{0,20})"
    rf"|\{{{_GAP}[\"']"
    rf"|\[{_GAP}(?:\{{{_GAP}[\"']|{_PY_CALL})"
)
_PY_LIST_RE = re.compile(rf"\[{_GAP}{_PY_CALL}")
_PY_BARE_RE = re.compile(_PY_CALL)
_MISTRAL_RE = re.compile(rf"(?P<name>[^\W\d][\w.\-]{_NAME_TAIL})(?:\[CALL_ID\][\w\-]{{0,64}})?\[ARGS\]")
_MISTRAL_CUT_RE = re.compile(r"[\w.\-\[\]]{0,300}")
_CLOSER_RE = re.compile(rf"[ \t\r\n]*(?:{'|'.join(re.escape(closer) for closer in CLOSERS)})")
_FENCE_END_RE = re.compile(r"[ \t\r\n]*(?:```|\Z)")
_SEPARATOR_RE = re.compile(r"[ \t\r\n,]*")
_PY_STRUCT_RE = re.compile(r"[()\[\]{}\"']")
_PY_CLOSING = {"(": ")", "[": "]", "{": "}"}

_MISS, _SKIP, _BLOCK = 0, 1, 2


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


class _Scanner:
    """One pass over a reply: finds each call block and keeps the prose between them."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.reader = Reader(text)
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
                        raise OutOfBudget
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
        except OutOfBudget:
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
                return JSON_DECODER.raw_decode(self.text, pos)
            except (ValueError, RecursionError):
                self.json_failures += 1
        return self.reader.read(pos)

    def _json(self, start: int, lenient: bool) -> _Outcome:
        try:
            value, end = self._read(start)
        except Cut as cut:
            names = partial_names(cut.partial, lenient)
            if names is None:
                return _Outcome(_MISS, start, start)
            return _Outcome(_BLOCK, start, len(self.text), (), (cut_message(names),), True)
        except Bad as bad:
            return _Outcome(_SKIP, start, bad.pos) if bad.deep else _Outcome(_MISS, start, start)
        found = calls_in(value, lenient)
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
            pos = skip_ws(text, end, _SEPARATOR_RE)
            if pos >= len(text) or text[pos] not in "{[":
                break
        return _Outcome(_BLOCK, start, end, tuple(calls), tuple(problems))

    def _after_marker(self, match: re.Match[str]) -> _Outcome:
        """Calls after `<tool_call>`, `[TOOL_CALLS]` and the like: the marker says a call follows, so read leniently."""
        text = self.text
        marker = match.group("marker")
        pos = skip_ws(text, match.end())
        if pos >= len(text):
            return _Outcome(_BLOCK, match.start(), pos, (), (cut_message([]),), True)
        if marker == MISTRAL_MARKER:
            mistral = _MISTRAL_RE.match(text, pos)
            if mistral:
                return self._named_arguments(match.start(), mistral.group("name"), mistral.end())
            if text[pos] not in "{[" and _MISTRAL_CUT_RE.fullmatch(text, pos):
                return _Outcome(_BLOCK, match.start(), len(text), (), (cut_message([]),), True)
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
        pos = skip_ws(text, pos)
        if pos >= len(text):
            return _Outcome(_BLOCK, start, pos, (), (cut_message([name]),), True)
        if text[pos] != "{":
            return _Outcome(_MISS, start, start)
        try:
            arguments, end = self._read(pos)
        except Cut:
            return _Outcome(_BLOCK, start, len(text), (), (cut_message([name]),), True)
        except Bad:
            return _Outcome(_BLOCK, start, pos, (), (f"The arguments of the call to {name} could not be read.",))
        closer = _CLOSER_RE.match(text, end)
        end = closer.end() if closer else end
        if not isinstance(arguments, dict) or not shallow(arguments):
            problem = f"The arguments of the call to {name} are not a JSON object of reasonable depth."
            return _Outcome(_BLOCK, start, end, (), (problem,))
        return _Outcome(_BLOCK, start, end, (FunctionCall(name=name, arguments=arguments),))

    def _fence(self, match: re.Match[str]) -> _Outcome:
        """A code fence holding nothing but calls is one block, fence included; any other fence is prose."""
        text = self.text
        pos = skip_ws(text, match.end())
        if pos >= len(text):
            return _Outcome(_MISS, match.start(), match.start())
        if text[pos] in "{[":
            outcome = self._payloads(pos, lenient=False)
        elif match.group("lang").lower() in PYTHONIC_FENCE_LANGUAGES and (bare := _PY_BARE_RE.match(text, pos)):
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
        except Cut:
            return _Outcome(_BLOCK, start, len(self.text), (), (cut_message([name]),), True)
        except Bad as bad:
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
            if not isinstance(node, ast.Call) or (call_name := dotted_name(node.func)) is None:
                return _Outcome(_MISS, start, start)
            collect(pythonic_call(node, call_name), calls, problems)
        if problems and not explicit and not self._stands_alone(start, end):
            return _Outcome(_MISS, start, start)
        return _Outcome(_BLOCK, start, end, tuple(calls), tuple(problems))

    def _stands_alone(self, start: int, end: int) -> bool:
        """Whether text[start:end] is the whole reply but for whitespace."""
        return skip_ws(self.text, 0) >= start and skip_ws(self.text, end) == len(self.text)

    def _python_span(self, start: int) -> int:
        """Where the bracketed Python expression opening at (or after) `start` ends; raises Cut or Bad."""
        text = self.text
        stack: list[str] = []
        pos = start
        while True:
            token = _PY_STRUCT_RE.search(text, pos)
            if token is None:
                raise Cut(None)
            self.reader.spend()
            char = token.group()
            pos = token.start()
            if char in _PY_CLOSING:
                stack.append(_PY_CLOSING[char])
                if len(stack) > MAX_DEPTH:
                    raise Bad(pos, deep=True)
                pos += 1
            elif char in ")]}":
                if not stack or stack.pop() != char:
                    raise Bad(pos)
                pos += 1
                if not stack:
                    return pos
            else:
                string = (DQ_STRING if char == '"' else SQ_STRING).match(text, pos)
                if string is None:
                    raise Cut(None)
                pos = string.end()
