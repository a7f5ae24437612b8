"""The openers table: every opener it lists starts a call for the reply scanner and for the streaming detector."""

from __future__ import annotations

import pytest

from backend.core.detector import CallDetector
from backend.core.openers import MARKERS, NAMED_CALL_OPENER, PYTHONIC_FENCE_LANGUAGES
from backend.core.parsing import parse_reply

_CALL = '{"name": "f", "arguments": {"x": 1}}'


def _seen_by_both(reply: str) -> None:
    parsed = parse_reply(reply)
    assert [(call.name, call.arguments) for call in parsed.calls] == [("f", {"x": 1})]
    assert parsed.text == "Sure."
    detector = CallDetector()
    detector.feed(reply)
    assert detector.state == "call" and detector.text_so_far == "Sure. "


@pytest.mark.parametrize("marker", MARKERS)
def test_every_marker_starts_a_call(marker: str) -> None:
    _seen_by_both(f"Sure. {marker}{_CALL}")


def test_the_named_call_opener_starts_a_call() -> None:
    _seen_by_both(f'Sure. {NAMED_CALL_OPENER}f>{{"x": 1}}')


@pytest.mark.parametrize("language", PYTHONIC_FENCE_LANGUAGES)
def test_a_pythonic_fence_starts_a_call(language: str) -> None:
    _seen_by_both(f"Sure. ```{language}\nf(x=1)\n```")
