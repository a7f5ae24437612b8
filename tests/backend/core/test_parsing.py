"""Tests for backend/core/parsing.py: a corpus of real-looking replies, round-trip properties, hostile input."""

from __future__ import annotations

import json
import keyword
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.core.calls import FunctionCall
from backend.core.parsing import ParsedReply, parse_reply
from tests.backend.core.reply_corpus import CASES, ReplyCase
from tests.backend.core.strategies import reply_fragments

_CAUGHT = "The reply could not be read for function calls."  # parse_reply's answer when it caught a bug of its own


def _properties(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _pairs(reply: ParsedReply) -> list[tuple[str, dict[str, Any]]]:
    return [(call.name, call.arguments) for call in reply.calls]


# ---- the corpus -------------------------------------------------------------------------------------------------


def test_corpus_covers_every_family() -> None:
    families = {case.family for case in CASES}
    assert len(CASES) >= 60
    assert len({case.id for case in CASES}) == len(CASES)
    assert {"trelis", "name", "openai", "tool_call", "mistral", "pythonic", "fence", "functools", "none",
            "truncated"} <= families


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_corpus(case: ReplyCase) -> None:
    parsed = parse_reply(case.reply)
    assert _pairs(parsed) == case.calls
    assert parsed.text == case.text
    assert len(parsed.problems) == len(case.problems), parsed.problems
    for expected, problem in zip(case.problems, parsed.problems):
        assert expected in problem
    assert parsed.truncated is case.truncated


def test_truncation_message_names_the_function() -> None:
    parsed = parse_reply('{"function": "lookup_order", "arguments": {"order_number": "12')
    assert parsed.calls == []
    assert parsed.truncated
    assert parsed.problems == ["The model's reply was cut off in the middle of a function call (lookup_order)."]


def test_calls_are_function_calls() -> None:
    parsed = parse_reply('{"function": "get_weather", "arguments": {"city": "Paris"}}')
    assert parsed.calls == [FunctionCall(name="get_weather", arguments={"city": "Paris"})]
    assert parsed.calls[0].to_trelis_json() == '{"function": "get_weather", "arguments": {"city": "Paris"}}'


def test_trelis_round_trip_through_function_call() -> None:
    call = FunctionCall(name="search", arguments={"q": "a \"quoted\" {brace}", "n": [1, 2.5, None, True]})
    assert parse_reply(call.to_trelis_json()).calls == [call]


def test_pythonic_is_never_evaluated(tmp_path: Path) -> None:
    target = tmp_path / "pwned"
    reply = f'[touch(path=open("{target}", "w").write("x"))]'
    parsed = parse_reply(reply)
    assert not target.exists()
    assert parsed.calls == []
    assert parsed.problems


# ---- round trips: every call, in every style, reads back ----------------------------------------------------------

_identifiers = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,24}", fullmatch=True).filter(
    lambda name: not keyword.iskeyword(name)
)
# Strings full of what trips parsers: quotes, braces, backslashes, markers, and any unicode.
_tricky_text = st.text(
    st.one_of(st.characters(codec="utf-8"), st.sampled_from(list('{}[]()"\'\\<>`,:=\n\t '))), max_size=20
) | st.sampled_from(['{"function": "x", "arguments": {}}', "<tool_call>", "[TOOL_CALLS]", "```json", "[f(a=1)]"])
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _tricky_text
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_tricky_text, inner, max_size=4),
    max_leaves=12,
)
_json_calls = st.builds(
    FunctionCall, name=_identifiers, arguments=st.dictionaries(_tricky_text, _values, max_size=5)
)
_keyword_calls = st.builds(
    FunctionCall, name=_identifiers, arguments=st.dictionaries(_identifiers, _values, max_size=5)
)
_prose = st.from_regex(r"[A-Za-z][A-Za-z0-9 .,!?:()'-]{0,40}", fullmatch=True) | st.just("")


def _dumps(value: Any, ascii_only: bool) -> str:
    return json.dumps(value, ensure_ascii=ascii_only)


def _trailing_commas(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + "".join(f"{json.dumps(key)}: {_trailing_commas(item)}," for key, item in value.items()) + "}"
    if isinstance(value, list):
        return "[" + "".join(f"{_trailing_commas(item)}," for item in value) + "]"
    return json.dumps(value)


def _openai_item(call: FunctionCall, ascii_only: bool) -> dict[str, Any]:
    arguments = _dumps(call.arguments, ascii_only)
    return {"id": "call_0", "type": "function", "function": {"name": call.name, "arguments": arguments}}


# Each style renders a call as (text before the call ends, text after it): a strict prefix of the first part is
# a call cut off, the second part (closing tags, fences) may be missing without losing the call.
_Style = Callable[[FunctionCall, bool], tuple[str, str]]
_JSON_STYLES: dict[str, _Style] = {
    "trelis": lambda c, a: (_dumps({"function": c.name, "arguments": c.arguments}, a), ""),
    "trelis-string-arguments": lambda c, a: (
        _dumps({"function": c.name, "arguments": _dumps(c.arguments, a)}, a), ""
    ),
    "name-arguments": lambda c, a: (_dumps({"name": c.name, "arguments": c.arguments}, a), ""),
    "name-parameters": lambda c, a: (_dumps({"name": c.name, "parameters": c.arguments}, a), ""),
    "openai-item": lambda c, a: (_dumps(_openai_item(c, a), a), ""),
    "openai-tool-calls": lambda c, a: (_dumps({"tool_calls": [_openai_item(c, a)]}, a), ""),
    "tool-call-tag": lambda c, a: (
        "<tool_call>\n" + _dumps({"name": c.name, "arguments": c.arguments}, a), "\n</tool_call>"
    ),
    "mistral-list": lambda c, a: ("[TOOL_CALLS] " + _dumps([{"name": c.name, "arguments": c.arguments}], a), ""),
    "mistral-args": lambda c, a: (f"[TOOL_CALLS]{c.name}[ARGS]" + _dumps(c.arguments, a), ""),
    "function-tag": lambda c, a: (f"<function={c.name}>" + _dumps(c.arguments, a), "</function>"),
    "fence": lambda c, a: ("```json\n" + _dumps({"function": c.name, "arguments": c.arguments}, a), "\n```"),
    "python-literal": lambda c, a: (repr({"function": c.name, "arguments": c.arguments}), ""),
    "trailing-commas": lambda c, a: (_trailing_commas({"function": c.name, "arguments": c.arguments}), ""),
    "glaive": lambda c, a: (
        "<functioncall> " + '{"name": ' + json.dumps(c.name) + ', "arguments": ' + repr(_dumps(c.arguments, a)) + "}",
        "",
    ),
}
_PYTHONIC_STYLES: dict[str, _Style] = {
    "pythonic": lambda c, a: (
        "[" + c.name + "(" + ", ".join(f"{key}={value!r}" for key, value in c.arguments.items()) + ")]", ""
    ),
    "tool-code-fence": lambda c, a: (
        "```tool_code\n" + c.name + "(" + ", ".join(f"{k}={v!r}" for k, v in c.arguments.items()) + ")", "\n```"
    ),
}
_ALL_STYLES = {**_JSON_STYLES, **_PYTHONIC_STYLES}


def _joined(*pieces: str) -> str:
    return "\n".join(piece.strip() for piece in pieces if piece.strip())


@_properties(200)
@given(
    call=_json_calls,
    style=st.sampled_from(sorted(_JSON_STYLES)),
    ascii_only=st.booleans(),
    before=_prose,
    after=_prose,
)
def test_every_json_style_reads_back(call: FunctionCall, style: str, ascii_only: bool, before: str, after: str) -> None:
    body, closing = _JSON_STYLES[style](call, ascii_only)
    parsed = parse_reply(f"{before} {body}{closing}\n{after}")
    assert parsed.calls == [call]
    assert parsed.text == _joined(before, after)
    assert parsed.problems == []
    assert not parsed.truncated


@_properties(200)
@given(
    call=_keyword_calls,
    style=st.sampled_from(sorted(_ALL_STYLES)),
    ascii_only=st.booleans(),
    before=_prose,
    after=_prose,
)
def test_every_style_reads_back_with_identifier_keys(
    call: FunctionCall, style: str, ascii_only: bool, before: str, after: str
) -> None:
    body, closing = _ALL_STYLES[style](call, ascii_only)
    parsed = parse_reply(f"{before}\n{body}{closing}\n{after}")
    assert parsed.calls == [call]
    assert parsed.text == _joined(before, after)
    assert parsed.problems == []


@_properties(100)
@given(calls=st.lists(_json_calls, min_size=2, max_size=4), as_list=st.booleans())
def test_several_calls_as_a_list_or_one_per_line(calls: list[FunctionCall], as_list: bool) -> None:
    objects = [{"function": call.name, "arguments": call.arguments} for call in calls]
    reply = json.dumps(objects) if as_list else "\n".join(json.dumps(obj) for obj in objects)
    assert parse_reply(reply).calls == calls


@_properties(200)
@given(call=_keyword_calls, style=st.sampled_from(sorted(_ALL_STYLES)), before=_prose, data=st.data())
def test_a_cut_off_call_is_never_a_call(call: FunctionCall, style: str, before: str, data: st.DataObject) -> None:
    body, _ = _ALL_STYLES[style](call, False)
    prefix = (before + "\n" if before else "") + body
    cut = data.draw(st.integers(min_value=len(prefix) - len(body), max_value=len(prefix) - 1), label="cut")
    parsed = parse_reply(prefix[:cut])
    assert call not in parsed.calls
    assert _CAUGHT not in parsed.problems


@_properties(200)
@given(call=_json_calls, style=st.sampled_from(sorted(_JSON_STYLES)), data=st.data())
def test_a_cut_off_json_call_is_never_a_call(call: FunctionCall, style: str, data: st.DataObject) -> None:
    body, _ = _JSON_STYLES[style](call, False)
    cut = data.draw(st.integers(min_value=0, max_value=len(body) - 1), label="cut")
    assert call not in parse_reply(body[:cut]).calls


def test_every_prefix_of_a_cut_off_call_is_reported_once_it_is_recognisable() -> None:
    body = '{"function": "lookup_order", "arguments": {"order_number": "12345", "express": true}}'
    for cut in range(len('{"function": "lookup_order"'), len(body)):
        parsed = parse_reply(body[:cut])
        assert parsed.calls == [], body[:cut]
        assert parsed.truncated, body[:cut]
        assert parsed.problems == [
            "The model's reply was cut off in the middle of a function call (lookup_order)."
        ], body[:cut]


# ---- anything at all: never raises, bounded time ------------------------------------------------------------------

@_properties(300)
@given(text=st.text() | st.lists(reply_fragments, max_size=60).map("".join))
def test_any_text_never_raises(text: str) -> None:
    parsed = parse_reply(text)
    assert isinstance(parsed, ParsedReply)
    assert _CAUGHT not in parsed.problems
    for call in parsed.calls:
        assert call.name
        assert isinstance(call.arguments, dict)


_MB = 1_000_000
_HOSTILE = {
    "open-brackets": "{[" * (_MB // 2),
    "open-string-keys": '{"' * (_MB // 2),
    "deep-objects": '{"a": ' * (_MB // 6),
    "deep-lists": "[" * _MB,
    "deep-list-of-objects": '[{"a": ' * (_MB // 7),
    "unterminated-argument": '{"function": "f", "arguments": {"a": "' + "x" * _MB,
    "backslashes": '{"a": "' + "\\" * _MB,
    "single-quotes": "{'" * (_MB // 2),
    "pythonic-openers": "[f(" * (_MB // 3),
    "pythonic-strings": '[f(a="' * (_MB // 6),
    "markers": "<tool_call>" * (_MB // 11),
    "marker-then-brace": "<tool_call>{" * (_MB // 12),
    "fences": "```json\n{" * (_MB // 9),
    "mismatched": '{"a": [' * (_MB // 7) + "}" * 1000,
    "long-valid-prefix-then-junk": '{"a": [' + "1, " * (_MB // 3) + "x",
    "nested-invalid": '{"a" x ' * (_MB // 7),
    "braces-in-prose": "word {x} " * (_MB // 9),
    "mistral": "[TOOL_CALLS]f[ARGS]" * (_MB // 19),
    "function-tags": "<function=f>{" * (_MB // 13),
    "random-ish": ("{\"a\": [1, {'b': \"c\\\"}, (x=" * (_MB // 25)),
}


@pytest.mark.parametrize("name", sorted(_HOSTILE))
def test_hostile_input_is_answered_quickly(name: str) -> None:
    text = _HOSTILE[name]
    started = time.perf_counter()
    parsed = parse_reply(text)
    elapsed = time.perf_counter() - started
    assert elapsed < 2.0, f"{name}: {elapsed:.2f} s"
    assert _CAUGHT not in parsed.problems


def test_many_real_calls_in_a_long_reply_are_all_found() -> None:
    reply = '{"function": "f", "arguments": {"x": 1}}\n' * 20_000
    started = time.perf_counter()
    parsed = parse_reply(reply)
    assert time.perf_counter() - started < 2.0
    assert len(parsed.calls) == 20_000
    assert parsed.problems == []


def test_a_call_after_a_megabyte_of_prose_is_found() -> None:
    reply = "Some words, (parenthesised) and {braced} and [bracketed]. " * 17_000
    reply += '{"function": "f", "arguments": {"x": 1}}'
    started = time.perf_counter()
    parsed = parse_reply(reply)
    assert time.perf_counter() - started < 2.0
    assert _pairs(parsed) == [("f", {"x": 1})]


def test_deep_but_sane_arguments_are_read() -> None:
    nested: Any = "leaf"
    for _ in range(25):
        nested = {"n": [nested]}
    call = FunctionCall(name="f", arguments={"deep": nested})
    assert parse_reply(call.to_trelis_json()).calls == [call]
    assert parse_reply(repr({"function": "f", "arguments": {"deep": nested}})).calls == [call]


@pytest.mark.parametrize("style", ["json", "python", "tool_call", "mistral"])
def test_absurdly_deep_arguments_are_not_a_call(style: str) -> None:
    deep = "[" * 500 + "]" * 500
    reply = {
        "json": '{"function": "f", "arguments": {"x": %s}}',
        "python": "{'function': 'f', 'arguments': {'x': %s}}",
        "tool_call": '<tool_call>{"name": "f", "arguments": {"x": %s}}</tool_call>',
        "mistral": '[TOOL_CALLS]f[ARGS]{"x": %s}',
    }[style] % deep
    parsed = parse_reply(reply)
    assert parsed.calls == []
    assert _CAUGHT not in parsed.problems
