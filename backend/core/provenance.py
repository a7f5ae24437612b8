"""Where each argument value came from: the customer's words, an earlier tool result, the schema's default, or nowhere.

A pure function of the call and the conversation. Matching is tolerant where people are (case, spacing and
punctuation, 1,042 and 1042, "five", e-mail case, phone numbers written any way, dates written differently) and
strict where it matters: a value is only grounded when the whole of it is found, on word boundaries, in one message.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from backend.core.specs import ArgumentSpec, FunctionSpec

__all__ = ["Evidence", "Provenance", "SourceKind", "describe_source", "trace_arguments", "ungrounded_required"]

SourceKind = Literal["user", "tool", "default", "model", "person"]


class Provenance(BaseModel):
    """The source of one value: `user` (message and span), `tool` (call), `default`, `person` (edited) or `model`."""

    model_config = ConfigDict(frozen=True)

    kind: SourceKind
    message_id: int | None = None  # user: the message the value was found in
    span: tuple[int, int] | None = None  # user: where in that message (character offsets)
    call_id: str | None = None  # tool: the call whose result holds the value
    function: str | None = None  # tool: that call's function
    quote: str | None = None  # the text that matched, as written


@dataclass(frozen=True)
class Evidence:
    """Text a value may come from: a user's message, or the result of an earlier call."""

    kind: Literal["user", "tool"]
    text: str
    message_id: int | None = None
    call_id: str | None = None
    function: str | None = None

    @cached_property
    def _index(self) -> _Index:
        return _Index.of(self.text)


def trace_arguments(
    arguments: Mapping[str, Any], evidence: Sequence[Evidence], spec: FunctionSpec | None = None,
) -> dict[str, Provenance]:
    """Provenance of every leaf value of `arguments`, keyed as validation keys fields (`address.city`, `items[0]`).

    `evidence` in conversation order; a value found in several places is credited to the newest user message, else
    the newest tool result. `spec` supplies defaults. None values have no provenance.
    """
    fields = {a.name: a for a in spec.arguments} if spec is not None else {}
    newest_first = [*(e for e in reversed(evidence) if e.kind == "user"), *(e for e in reversed(evidence) if e.kind == "tool")]
    traced: dict[str, Provenance] = {}
    for name, value in arguments.items():
        for key, leaf, leaf_spec in _leaves(name, value, fields.get(name)):
            traced[key] = _trace(leaf, leaf_spec, newest_first)
    return traced


def describe_source(source: Provenance | dict[str, Any]) -> str:
    """A source in a few words, as the audit and its CSV give it."""
    if isinstance(source, dict):
        source = Provenance.model_validate(source)
    if source.kind == "user":
        return f"customer: \u201c{source.quote}\u201d"
    if source.kind == "tool":
        return f"from {source.function or 'an earlier call'}"
    return {"default": "default", "person": "edited by a person", "model": "not from the conversation"}[source.kind]


def ungrounded_required(spec: FunctionSpec, provenance: Mapping[str, Provenance]) -> list[str]:
    """The top-level required arguments holding a value found nowhere in the conversation (the model wrote it)."""
    required = {a.name for a in spec.arguments if a.required and not a.has_default}
    found: list[str] = []
    for key, source in provenance.items():
        name = re.split(r"[.\[]", key, maxsplit=1)[0]
        if source.kind == "model" and name in required and name not in found:
            found.append(name)
    return found


def _leaves(key: str, value: Any, spec: ArgumentSpec | None) -> Iterator[tuple[str, Any, ArgumentSpec | None]]:
    if isinstance(value, dict):
        fields = {f.name: f for f in (spec.properties or [])} if spec is not None else {}
        for name, inner in value.items():
            yield from _leaves(f"{key}.{name}", inner, fields.get(name))
    elif isinstance(value, (list, tuple)):
        item_spec = spec.items if spec is not None else None
        for index, inner in enumerate(value):
            yield from _leaves(f"{key}[{index}]", inner, item_spec)
    elif value is not None:
        yield key, value, spec


def _trace(value: Any, spec: ArgumentSpec | None, evidence: Sequence[Evidence]) -> Provenance:
    for source in evidence:
        found = _find(value, source._index)
        if found is not None:
            start, end = found
            quote = source.text[start:end]
            if source.kind == "user":
                return Provenance(kind="user", message_id=source.message_id, span=(start, end), quote=quote)
            return Provenance(kind="tool", call_id=source.call_id, function=source.function, quote=quote)
    if spec is not None and spec.has_default and _same(spec.default, value):
        return Provenance(kind="default")
    return Provenance(kind="model")


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    if isinstance(a, str) and isinstance(b, str):
        return _words(a) == _words(b)
    return bool(a == b)


# -- finding one value in one text ----------------------------------------------------------------------------------


def _find(value: Any, index: _Index) -> tuple[int, int] | None:
    """Where `value` is written in the indexed text, or None."""
    if isinstance(value, bool):
        return None  # a yes/no is the model's reading of the words, never a quote of them
    if isinstance(value, (int, float)):
        return index.number(float(value))
    text = str(value).strip()
    if not text:
        return None
    if _EMAIL.fullmatch(text):
        return index.email(text.casefold())
    day = _parse_date(text)
    if day is not None:
        found = index.date(day)
        if found is not None:
            return found
    if _PHONE.fullmatch(text) and len(_digits(text)) >= 7:
        found = index.phone(_digits(text))
        if found is not None:
            return found
    number = _as_number(text)
    if number is not None:
        found = index.number(number)
        if found is not None:
            return found
    return index.words(_words(text))


_TOKEN = re.compile(r"[^\W_]+")
_EMAIL = re.compile(r"[^\s@<>()\[\],;:\"']+@[^\s@<>()\[\],;:\"']+\.[^\s@<>()\[\],;:\"'.]+")
_PHONE = re.compile(r"\+?[\d\s().\-/]+")
_PHONE_IN_TEXT = re.compile(r"\+?\(?\d[\d\s().\-/]{5,}\d")
# 1042, 1,042, 1 042, 3.5, -2; a comma or space only between groups of three digits.
_NUMBER_IN_TEXT = re.compile(r"(?<![\w.,])-?\d{1,3}(?:[,\u202f\u00a0 ]\d{3})+(?:\.\d+)?(?![\w,]\d)|(?<![\w.,])-?\d+(?:\.\d+)?(?!\w)")
_NUMBER_WORDS = {
    word: float(n) for n, word in enumerate(
        ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty"]
    )
}
_MONTHS = {
    name: number for number, names in enumerate(
        [("jan", "january"), ("feb", "february"), ("mar", "march"), ("apr", "april"), ("may",), ("jun", "june"),
         ("jul", "july"), ("aug", "august"), ("sep", "sept", "september"), ("oct", "october"), ("nov", "november"),
         ("dec", "december")], start=1,
    ) for name in names
}
_MONTH = "(" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\.?"
_DAY = r"(\d{1,2})(?:st|nd|rd|th)?"
_YEAR = r"(\d{4})"
_DATE_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(rf"\b{_YEAR}-(\d{{1,2}})-(\d{{1,2}})\b"), "ymd"),
    (re.compile(rf"\b{_YEAR}/(\d{{1,2}})/(\d{{1,2}})\b"), "ymd"),
    (re.compile(rf"\b(\d{{1,2}})[/.](\d{{1,2}})[/.]{_YEAR}\b"), "either"),
    (re.compile(rf"\b{_DAY}(?:\s+of)?\s+{_MONTH},?\s+{_YEAR}\b", re.IGNORECASE), "dmy"),
    (re.compile(rf"\b{_MONTH}\s+{_DAY},?\s+{_YEAR}\b", re.IGNORECASE), "mdy"),
]


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def _words(text: str) -> tuple[str, ...]:
    return tuple(_TOKEN.findall(_fold(text)))


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def _as_number(text: str) -> float | None:
    word = _fold(text)
    if word in _NUMBER_WORDS:
        return _NUMBER_WORDS[word]
    match = _NUMBER_IN_TEXT.fullmatch(text.strip())
    return _number_value(match.group()) if match else None


def _number_value(written: str) -> float | None:
    try:
        return float(re.sub(r"[,\u202f\u00a0 ]", "", written))
    except ValueError:
        return None


def _parse_date(text: str) -> date | None:
    """The one date `text` is, when it is nothing but a date (a date-time's time was written by someone too)."""
    candidates = _dates_in(text)
    days = {day for day, (start, end) in candidates if start == 0 and end >= len(text.strip()) - 1}
    return days.pop() if len(days) == 1 else None


def _dates_in(text: str) -> list[tuple[date, tuple[int, int]]]:
    found: list[tuple[date, tuple[int, int]]] = []
    for pattern, order in _DATE_PATTERNS:
        for match in pattern.finditer(text):
            groups = match.groups()
            if order == "ymd":
                readings = [(groups[0], groups[1], groups[2])]
            elif order == "either":  # 05/03/2024: the fifth of March or the third of May, both as written
                readings = [(groups[2], groups[1], groups[0]), (groups[2], groups[0], groups[1])]
            elif order == "dmy":
                readings = [(groups[2], _MONTHS[groups[1].lower()], groups[0])]
            else:
                readings = [(groups[2], _MONTHS[groups[0].lower()], groups[1])]
            for year, month, day in readings:
                try:
                    found.append((date(int(year), int(month), int(day)), match.span()))
                except ValueError:
                    continue
    return found


class _Index:
    """A text read, lazily and once, for every way a value may be written in it."""

    def __init__(self, text: str) -> None:
        self.text = text

    @classmethod
    def of(cls, text: str) -> _Index:
        return cls(text)

    @cached_property
    def tokens(self) -> list[tuple[str, int, int]]:
        folded = _fold(self.text)
        # NFKC can change lengths (ligatures); offsets are only exact when it did not, so quote the whole text then.
        exact = len(folded) == len(self.text)
        return [(m.group(), *(m.span() if exact else (0, len(self.text)))) for m in _TOKEN.finditer(folded)]

    @cached_property
    def _starts(self) -> dict[str, list[int]]:
        starts: dict[str, list[int]] = {}
        for position, (token, _, _) in enumerate(self.tokens):
            starts.setdefault(token, []).append(position)
        return starts

    @cached_property
    def numbers(self) -> list[tuple[float, int, int]]:
        found = [(_NUMBER_WORDS[token], start, end) for token, start, end in self.tokens if token in _NUMBER_WORDS]
        for match in _NUMBER_IN_TEXT.finditer(self.text):
            value = _number_value(match.group())
            if value is not None:
                found.append((value, *match.span()))
        return found

    @cached_property
    def emails(self) -> list[tuple[str, int, int]]:
        return [(m.group().casefold(), *m.span()) for m in _EMAIL.finditer(self.text)]

    @cached_property
    def phones(self) -> list[tuple[str, int, int]]:
        return [(_digits(m.group()), *m.span()) for m in _PHONE_IN_TEXT.finditer(self.text)]

    @cached_property
    def dates(self) -> list[tuple[date, int, int]]:
        return [(day, *span) for day, span in _dates_in(self.text)]

    def words(self, wanted: tuple[str, ...]) -> tuple[int, int] | None:
        for start in self._starts.get(wanted[0], []) if wanted else []:
            end = start + len(wanted)
            if end <= len(self.tokens) and all(self.tokens[start + i][0] == w for i, w in enumerate(wanted)):
                return self.tokens[start][1], self.tokens[end - 1][2]
        return None

    def number(self, wanted: float) -> tuple[int, int] | None:
        return next(((start, end) for value, start, end in self.numbers if value == wanted), None)

    def email(self, wanted: str) -> tuple[int, int] | None:
        return next(((start, end) for value, start, end in self.emails if value == wanted), None)

    def phone(self, wanted: str) -> tuple[int, int] | None:
        # The same number with or without its country code (and a national number's leading 0): one ends with the
        # other, seven digits at least.
        for digits, start, end in self.phones:
            shorter, longer = sorted((digits.lstrip("0"), wanted.lstrip("0")), key=len)
            if len(shorter) >= 7 and longer.endswith(shorter) and len(longer) - len(shorter) <= 3:
                return start, end
        return None

    def date(self, wanted: date) -> tuple[int, int] | None:
        return next(((start, end) for day, start, end in self.dates if day == wanted), None)
