"""Tests for backend/core/detector.py: prose shown at once, a call never, whatever the chunking."""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.core.detector import CallDetector
from tests.backend.core.reply_corpus import CASES, ReplyCase
from tests.backend.core.strategies import reply_fragments


def _properties(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _feed_all(text: str, chunks: list[int] | None = None) -> CallDetector:
    detector = CallDetector()
    if chunks is None:
        detector.feed(text)
        return detector
    start = 0
    for size in chunks:
        detector.feed(text[start : start + size])
        start += size
    detector.feed(text[start:])
    return detector


@pytest.mark.parametrize(
    ("reply", "state", "shown"),
    [
        ("", "undecided", ""),
        ("   \n", "undecided", ""),
        ("Hello", "text", "Hello"),
        ("  Hello there", "text", "Hello there"),
        ("{", "call", ""),
        ('{"function": "f"', "call", ""),
        ("[", "undecided", ""),
        ("[{", "call", ""),
        ("[TOOL", "undecided", ""),
        ("[TOOL_CALLS]", "call", ""),
        ("[see the docs](x)", "text", "[see the docs](x)"),
        ("[get_weather", "undecided", ""),
        ("[get_weather(", "call", ""),
        ("<tool_", "undecided", ""),
        ("<tool_call>", "call", ""),
        ("<b>bold</b>", "text", "<b>bold</b>"),
        ("```", "undecided", ""),
        ("```json\n", "undecided", ""),
        ('```json\n{"na', "undecided", ""),
        ('```json\n{"name"', "call", ""),
        ('```json\n{"city"', "text", '```json\n{"city"'),
        ("```python\nprint(1)", "text", "```python\nprint(1)"),
        ("```tool_code\nget_weather(", "call", ""),
        ("Sure, let me look that up. {", "text", "Sure, let me look that up. "),
        ('Sure, let me look that up. {"func', "text", "Sure, let me look that up. "),
        ('Sure, let me look that up. {"function": "f"}', "call", "Sure, let me look that up. "),
        ('Sure. {"city": "Paris"} ok', "text", 'Sure. {"city": "Paris"} ok'),
        ("Sure. <tool_call>", "call", "Sure. "),
        ("Sure. [TOOL_CALLS]", "call", "Sure. "),
        ('Sure.\n```json\n{"function": "f"', "call", "Sure.\n"),
        ('Sure. [ {"name": "f"', "call", "Sure. "),
        ("Let me check.\n[get_weather(city='Paris')]", "call", "Let me check.\n"),
        ("An empty dict {} and a list [] and a tag <b>.", "text", "An empty dict {} and a list [] and a tag <b>."),
        ("Sure. <function=get_weather>", "call", "Sure. "),
    ],
)
def test_detector(reply: str, state: str, shown: str) -> None:
    whole = _feed_all(reply)
    by_char = _feed_all(reply, [1] * len(reply))
    assert (whole.state, whole.text_so_far) == (state, shown)
    assert (by_char.state, by_char.text_so_far) == (state, shown)


def test_detector_stays_in_call_state_and_shows_nothing_more() -> None:
    detector = CallDetector()
    assert detector.feed("Sure. ") == "text"
    assert detector.feed('{"function": "f", ') == "call"
    assert detector.feed('"arguments": {}} And more prose.') == "call"
    assert detector.text_so_far == "Sure. "


def test_detector_releases_held_back_text_once_it_is_prose() -> None:
    detector = CallDetector()
    detector.feed("Use {")
    assert detector.text_so_far == "Use "
    detector.feed(" braces")
    assert detector.state == "text"
    assert detector.text_so_far == "Use { braces"


_stream_text = st.sampled_from([case.reply for case in CASES]) | st.lists(reply_fragments, max_size=40).map("".join)


@_properties(300)
@given(text=_stream_text, sizes=st.lists(st.integers(min_value=0, max_value=12), max_size=80))
def test_detector_does_not_depend_on_chunking(text: str, sizes: list[int]) -> None:
    whole = _feed_all(text)
    chunked = _feed_all(text, sizes)
    by_char = _feed_all(text, [1] * len(text))
    assert (chunked.state, chunked.text_so_far) == (whole.state, whole.text_so_far)
    assert (by_char.state, by_char.text_so_far) == (whole.state, whole.text_so_far)


@_properties(200)
@given(text=_stream_text, sizes=st.lists(st.integers(min_value=1, max_value=12), max_size=80))
def test_shown_text_only_grows_and_never_shows_a_call_opener(text: str, sizes: list[int]) -> None:
    detector = CallDetector()
    shown = ""
    start = 0
    for size in [*sizes, len(text)]:
        detector.feed(text[start : start + size])
        start += size
        assert detector.text_so_far.startswith(shown)
        shown = detector.text_so_far
    assert text.lstrip().startswith(shown)
    for opener in ('{"function"', '{"name"', "<tool_call>", "[TOOL_CALLS]"):
        assert opener not in shown


@pytest.mark.parametrize("case", [case for case in CASES if case.calls], ids=lambda case: case.id)
def test_detector_sees_every_corpus_call(case: ReplyCase) -> None:
    assert _feed_all(case.reply, [3] * len(case.reply)).state == "call"


# While it streams, a reply that starts with `{` or holds a call-shaped object looks like a call; parse_reply has
# the last word once the reply is complete.
_LOOK_LIKE_CALLS = {"call-inside-data"}


@pytest.mark.parametrize("case", [case for case in CASES if case.family == "none"], ids=lambda case: case.id)
def test_detector_shows_prose_replies(case: ReplyCase) -> None:
    detector = _feed_all(case.reply, [3] * len(case.reply))
    looks_like_a_call = case.reply.lstrip().startswith("{") or case.id in _LOOK_LIKE_CALLS
    assert detector.state == ("call" if looks_like_a_call else "text" if case.reply.strip() else "undecided")
    if not looks_like_a_call:
        assert detector.text_so_far == case.reply.lstrip()


@pytest.mark.parametrize("chunk_size", [1, 4, 4096])
def test_detector_is_linear_on_hostile_streams(chunk_size: int) -> None:
    text = ("Sure {[<` " * 5_000) + ('{ "a" ' * 5_000) + ("plain prose " * 10_000)
    detector = CallDetector()
    started = time.perf_counter()
    detector.feed("Prose first. ")
    for start in range(0, len(text), chunk_size):
        detector.feed(text[start : start + chunk_size])
    assert time.perf_counter() - started < 3.0
    assert detector.state == "text"
