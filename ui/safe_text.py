"""Text from people, models and tools made safe for the chat's Markdown renderer.

People's text is shown literally: every Markdown and HTML character is escaped, so "my order <A1001>" reads exactly
as typed. Model and tool text keeps its Markdown (lists, emphasis, code) but never becomes HTML and never loads
anything: outside code, `<` is written as an entity, and images become links a person may click. The page's
Content-Security-Policy (ui/security.py) is the second line of defence: it forbids loading from other hosts at all.
"""

from __future__ import annotations

import re

from markdown_it import MarkdownIt

__all__ = ["literal_markdown", "inert_markdown", "literal_line"]

_ASCII_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")
_LEADING_BLANKS = re.compile(r"^[ \t]+", re.MULTILINE)
_SPACE_RUN = re.compile(r"(?<= ) ")
_BACKTICK_RUN = re.compile(r"`+")
_IMAGE_MARK = "🖼️ "
# CommonMark, as the chat's renderer (marked) reads it; only used to find code blocks and raw HTML blocks.
_PARSER = MarkdownIt("commonmark").enable("table")


def literal_markdown(text: str) -> str:
    """Markdown that shows `text` exactly as written: no emphasis, links, lists, headings, code or HTML."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    escaped = _ASCII_PUNCTUATION.sub(r"\\\1", text)
    # Leading blanks would start a code block, and runs of spaces collapse in HTML: keep both as typed.
    escaped = _LEADING_BLANKS.sub(lambda m: m.group(0).replace("\t", "    ").replace(" ", "\u00a0"), escaped)
    return _SPACE_RUN.sub("\u00a0", escaped)


def literal_line(text: str) -> str:
    """`text` on one line, shown literally (for titles and labels)."""
    return _ASCII_PUNCTUATION.sub(r"\\\1", " ".join(str(text).split()))


def inert_markdown(text: str) -> str:
    """Model or tool Markdown that renders without HTML and without loading anything (images become links)."""
    if "<" not in text and "![" not in text:
        return text  # the common case: nothing to neutralise, no parse
    result = _neutralised(text, spans=True)
    if _renders_raw(result):
        # Rare and odd (a code span whose backticks pair up across lines differently): neutralise inside code spans
        # too; such a span then shows `&lt;` for `<`, which is better than live HTML.
        result = _neutralised(text, spans=False)
    return result


def _neutralised(text: str, *, spans: bool) -> str:
    lines = text.split("\n")
    # Code is left as written only if it is still code once the text around it is neutralised: turning an HTML
    # block into a paragraph can make the "indented code" after it a plain continuation line, with live HTML in it.
    code = _code_lines(text, len(lines))
    while True:
        result = "\n".join(
            line if index in code else _inert_line(line) if spans else _neutralise(line)
            for index, line in enumerate(lines)
        )
        still_code = code & _code_lines(result, len(lines))
        if still_code == code:
            return result
        code = still_code


def _renders_raw(markdown: str) -> bool:
    """Whether CommonMark reads raw HTML or an image anywhere in `markdown`."""
    tokens = _PARSER.parse(markdown)
    for token in tokens:
        if token.type == "html_block":
            return True
        if any(child.type in ("html_inline", "image") for child in token.children or ()):
            return True
    return False


def _code_lines(text: str, count: int) -> set[int]:
    """Indexes of the lines CommonMark reads as code blocks (fenced or indented)."""
    lines: set[int] = set()
    for token in _PARSER.parse(text):
        if token.type in ("fence", "code_block") and token.map:
            lines.update(range(token.map[0], min(token.map[1], count)))
    return lines


def _inert_line(text: str) -> str:
    """One line outside code blocks: `<` as an entity and images as links, except inside code spans.

    Code spans are looked for within the line only: one across lines is rare, and one across a paragraph break is
    not a span at all, so treating it as one could leave raw HTML behind.
    """
    pieces: list[str] = []
    position = 0
    for start, end in _code_spans(text):
        pieces.append(_neutralise(text[position:start]))
        pieces.append(text[start:end])
        position = end
    pieces.append(_neutralise(text[position:]))
    return "".join(pieces)


def _neutralise(text: str) -> str:
    """`<` as an entity and `![` as a link marked as an image (bangs before it escaped), so no image can form.

    Backslash escapes are copied as pairs: `\\<` and `\\!` already show literally.
    """
    out: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text):
            out.append(text[index : index + 2])
            index += 2
            continue
        if char == "<":
            out.append("&lt;")
        elif char == "!":
            if text.startswith("[", index + 1):
                out.append("[" + _IMAGE_MARK)
                index += 1
            else:  # a bang before another bang would meet the next `[` once that one becomes a link
                out.append("\\!" if text.startswith("!", index + 1) else "!")
        else:
            out.append(char)
        index += 1
    return "".join(out)


def _code_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each code span: a run of n backticks up to the next run of exactly n (CommonMark)."""
    spans: list[tuple[int, int]] = []
    runs = [m for m in _BACKTICK_RUN.finditer(text) if not _escaped(text, m.start())]
    index = 0
    while index < len(runs):
        opener = runs[index]
        width = len(opener.group(0))
        closer = next((j for j in range(index + 1, len(runs)) if len(runs[j].group(0)) == width), None)
        if closer is None:
            index += 1  # an unmatched run is literal backticks
            continue
        spans.append((opener.start(), runs[closer].end()))
        index = closer + 1
    return spans


def _escaped(text: str, position: int) -> bool:
    """Whether the character at `position` follows an odd number of backslashes."""
    backslashes = 0
    while position - backslashes - 1 >= 0 and text[position - backslashes - 1] == "\\":
        backslashes += 1
    return backslashes % 2 == 1
