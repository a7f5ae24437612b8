"""Text made safe for the chat's Markdown: people's text literal, model text inert. Checked by rendering with a real
CommonMark renderer (markdown-it-py, raw HTML allowed, as the chat's renderer allows it)."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from ui.safe_text import inert_markdown, literal_markdown

RENDERER = MarkdownIt("commonmark", {"html": True}).enable("table")
MARKDOWN_TAGS = {
    "p", "em", "strong", "a", "code", "pre", "ul", "ol", "li", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote",
    "hr", "br", "table", "thead", "tbody", "tr", "th", "td",
}
TAG = re.compile(r"<\s*/?\s*([A-Za-z][A-Za-z0-9-]*)")

# Text that looks like what models and injected pages write: markup, HTML, images, code, in any order.
pieces = st.sampled_from([
    "<img src=x onerror=alert(1)>", "<script>alert(1)</script>", "![a](http://evil/x.png)", "![b][r]",
    "\n[r]: http://evil/y.png\n", "`code <b>`", "``a`b``", "\n```\n<b>x</b>\n```\n", "\n    <i>indented</i>\n",
    "<http://evil/z>", "*em*", "**strong**", "[link](https://example.org)", "\n\n", "\n", " ", "<", ">", "!", "[",
    "]", "(", ")", "`", "\\", "&lt;", "<!-- c -->", "<a href='http://evil'>x</a>", "plain words", "# head\n", "- item\n",
])
documents = st.lists(pieces, max_size=12).map("".join)


def rendered_tags(html: str) -> set[str]:
    return {match.group(1).lower() for match in TAG.finditer(html)}


@settings(max_examples=400, deadline=None)
@given(documents)
def test_model_text_never_renders_html_or_images(text: str) -> None:
    html = RENDERER.render(inert_markdown(text))
    assert rendered_tags(html) <= MARKDOWN_TAGS, html
    assert "<img" not in html


@settings(max_examples=300, deadline=None)
@given(documents | st.text(st.characters(exclude_characters="\x00", exclude_categories=("Cs",))))
def test_peoples_text_renders_as_exactly_the_text(text: str) -> None:
    # (NUL is the one character CommonMark replaces, as browsers do.)
    html = RENDERER.render(literal_markdown(text))
    assert rendered_tags(html) <= {"p", "br"}, html
    shown = re.sub(r"<[^>]+>", "", html).replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"')
    shown = shown.replace("&amp;", "&").replace("\u00a0", " ")
    assert " ".join(shown.split()) == " ".join(text.replace("\t", "    ").split())


def test_code_keeps_its_angle_brackets_and_plain_text_is_untouched() -> None:
    text = "Compare `a < b` here:\n\n```python\nif a < b:\n    print('<ok>')\n```\nand <b>bold</b>"
    inert = inert_markdown(text)
    assert "`a < b`" in inert and "if a < b:" in inert and "print('<ok>')" in inert
    assert inert.endswith("and &lt;b>bold&lt;/b>")
    assert inert_markdown("Order A1001 has **shipped**.") == "Order A1001 has **shipped**."


def test_an_image_becomes_a_link_a_person_may_follow() -> None:
    html = RENDERER.render(inert_markdown("See ![the logo](https://example.org/logo.png)."))
    assert '<a href="https://example.org/logo.png">🖼️ the logo</a>' in html
