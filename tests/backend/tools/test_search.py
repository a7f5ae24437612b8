"""The model card examples against a local fake server: arXiv's Atom feed and Bing's JSON."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from backend.tools import ToolRegistry, search_tools
from backend.tools.search import arxiv_query
from tests.backend.tools.conftest import FakeServer, Reply

ATOM = """<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <title>ArXiv Query</title>
  <entry>
    <id>http://arxiv.org/abs/1706.03762v7</id>
    <published>2017-06-12T17:57:34Z</published>
    <title>Attention Is All
      You Need</title>
    <summary>  The dominant sequence transduction models are based on complex recurrent networks.  </summary>
    <author><name>Ashish Vaswani</name></author>
    <author><name>Noam Shazeer</name></author>
  </entry>
</feed>
"""
EMPTY_FEED = '<feed xmlns="http://www.w3.org/2005/Atom"><title>ArXiv Query</title></feed>'
ERROR_FEED = """<feed xmlns="http://www.w3.org/2005/Atom"><entry><id>http://arxiv.org/api/errors#incorrect_id</id>
<title>Error</title><summary>incorrect id format</summary></entry></feed>"""


def _run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def _registry(base: str, environ: dict[str, str] | None = None) -> ToolRegistry:
    tools = search_tools(arxiv_url=f"{base}/api/query", bing_url=f"{base}/v7.0/search", environ=environ or {})
    return ToolRegistry(tools)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("transformers", "all:transformers"),
        ("protein folding", "all:protein AND all:folding"),
        ("llama OR alpaca NOT vision", "all:llama OR all:alpaca ANDNOT all:vision"),
        ('"function calling" agents', 'all:"function calling" AND all:agents'),
        ("ti:attention AND au:vaswani", "ti:attention AND au:vaswani"),
    ],
)
def test_arxiv_query(text: str, expected: str) -> None:
    assert arxiv_query(text) == expected


def test_search_arxiv_parses_the_atom_feed(fake_server: FakeServer) -> None:
    fake_server.reply("/api/query", Reply(body=ATOM, content_type="application/atom+xml"))
    result = _run(_registry(fake_server.url).execute("search_arxiv", {"query": "attention mechanisms"}))
    assert result.ok, result.error
    assert result.value == {
        "query": "all:attention AND all:mechanisms",
        "papers": [{
            "title": "Attention Is All You Need",
            "authors": ["Ashish Vaswani", "Noam Shazeer"],
            "published": "2017-06-12",
            "summary": "The dominant sequence transduction models are based on complex recurrent networks.",
            "link": "http://arxiv.org/abs/1706.03762v7",
        }],
    }
    assert fake_server.requests[0].query["search_query"] == ["all:attention AND all:mechanisms"]
    assert fake_server.requests[0].query["max_results"] == ["5"]


def test_search_arxiv_empty_error_and_garbage(fake_server: FakeServer) -> None:
    registry = _registry(fake_server.url)
    fake_server.reply("/api/query", Reply(body=EMPTY_FEED, content_type="application/atom+xml"))
    empty = _run(registry.execute("search_arxiv", {"query": "zzzz"}))
    assert empty.ok and empty.value["papers"] == [] and "No papers" in empty.value["note"]
    fake_server.reply("/api/query", Reply(body=ERROR_FEED, content_type="application/atom+xml"))
    rejected = _run(registry.execute("search_arxiv", {"query": "id:bad"}))
    assert rejected.error == "search_arxiv failed: arXiv rejected the query: incorrect id format"
    fake_server.reply("/api/query", Reply(body="not xml", content_type="text/plain"))
    assert "not the expected Atom XML" in _run(registry.execute("search_arxiv", {"query": "x"})).error


def test_search_arxiv_without_network(closed_port_url: str) -> None:
    result = _run(_registry(closed_port_url).execute("search_arxiv", {"query": "x"}))
    assert not result.ok and result.error.startswith("search_arxiv could not reach 127.0.0.1")


def test_search_bing_needs_a_key(fake_server: FakeServer) -> None:
    result = _run(_registry(fake_server.url).execute("search_bing", {"query": "callcard"}))
    assert result.error == "search_bing is not configured: set BING_SEARCH_KEY."
    assert fake_server.requests == []


def test_search_bing_with_a_key(fake_server: FakeServer) -> None:
    key = "bing-key-123456"
    fake_server.reply("/v7.0/search", Reply(body={"webPages": {"value": [
        {"name": "Callcard", "url": "https://example.org", "snippet": "A chat app", "id": "x"},
    ]}}))
    registry = _registry(fake_server.url, {"BING_SEARCH_KEY": key})
    result = _run(registry.execute("search_bing", {"query": "callcard"}))
    assert result.value == {"query": "callcard", "results": [
        {"title": "Callcard", "url": "https://example.org", "snippet": "A chat app"},
    ]}
    assert fake_server.requests[0].headers["ocp-apim-subscription-key"] == key
    fake_server.reply("/v7.0/search", Reply(status=401, body={"error": f"bad key {key}"}))
    failed = _run(registry.execute("search_bing", {"query": "callcard"}))
    assert "HTTP 401" in failed.error and key not in failed.error
