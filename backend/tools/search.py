"""The model card's example functions, made real: `search_arxiv` (arXiv's export API) and `search_bing` (Bing)."""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping
from typing import Any

from backend.tools.fetch import fetch
from backend.tools.python_tools import tool_from_function
from backend.tools.registry import Tool, ToolFailure

__all__ = ["ARXIV_API_URL", "BING_API_URL", "ArxivSearch", "BingSearch", "arxiv_query", "search_tools"]

ARXIV_API_URL = "https://export.arxiv.org/api/query"
BING_API_URL = "https://api.bing.microsoft.com/v7.0/search"
BING_KEY_VARIABLE = "BING_SEARCH_KEY"
SOURCE = "builtin: model card example"
# The model card's own descriptions: the Trelis models were trained on them.
_ARXIV_DESCRIPTION = (
    "Search for research papers on ArXiv. Make use of AND, OR and NOT operators as appropriate to join terms "
    "within the query."
)
_BING_DESCRIPTION = (
    "Search the web for content on Bing. This allows users to search online/the internet/the web for content."
)
_ATOM = "{http://www.w3.org/2005/Atom}"
_OPERATORS = {"AND": "AND", "OR": "OR", "NOT": "ANDNOT", "ANDNOT": "ANDNOT"}
_FIELD_PREFIX = re.compile(r"\b(?:ti|au|abs|co|jr|cat|rn|id|all):", re.IGNORECASE)
_MAX_SUMMARY_CHARS = 600


def arxiv_query(text: str) -> str:
    """arXiv's query syntax from plain words: `all:` before each term, AND between terms unless an operator is given."""
    text = text.strip()
    if _FIELD_PREFIX.search(text) or "(" in text:  # already written in arXiv's syntax
        return text
    parts: list[str] = []
    operator = "AND"
    for token in re.findall(r'"[^"]+"|\S+', text):
        if token.upper() in _OPERATORS:
            operator = _OPERATORS[token.upper()]
            continue
        if parts:
            parts.append(operator)
        parts.append(f"all:{token}")
        operator = "AND"
    return " ".join(parts)


class ArxivSearch:
    """Searches arXiv through its export API (Atom XML)."""

    def __init__(self, base_url: str = ARXIV_API_URL, *, max_results: int = 5, timeout_s: float = 10.0) -> None:
        self.base_url = base_url
        self.max_results = max_results
        self.timeout_s = timeout_s

    async def search_arxiv(self, query: str) -> dict[str, Any]:
        """Search for research papers on ArXiv.

        Args:
            query: The search query string
        """
        search_query = arxiv_query(query)
        params = {"search_query": search_query, "start": 0, "max_results": self.max_results, "sortBy": "relevance"}
        fetched = await fetch(
            "search_arxiv", "GET", self.base_url, params=params, timeout_s=self.timeout_s, follow_redirects=True
        )
        papers = _parse_atom(fetched.content)
        result: dict[str, Any] = {"query": search_query, "papers": papers}
        if not papers:
            result["note"] = "No papers on arXiv match this query; try fewer or broader terms."
        return result


class BingSearch:
    """Searches the web with the Bing Web Search API; the key is read from the environment at each call."""

    def __init__(
        self, base_url: str = BING_API_URL, *, environ: Mapping[str, str] | None = None, count: int = 5,
        timeout_s: float = 10.0,
    ) -> None:
        self.base_url = base_url
        self.environ = environ
        self.count = count
        self.timeout_s = timeout_s

    async def search_bing(self, query: str) -> dict[str, Any]:
        """Search the web for content on Bing.

        Args:
            query: The search query string
        """
        key = (os.environ if self.environ is None else self.environ).get(BING_KEY_VARIABLE, "")
        if not key:
            raise ToolFailure(f"search_bing is not configured: set {BING_KEY_VARIABLE}.")
        fetched = await fetch(
            "search_bing", "GET", self.base_url, params={"q": query, "count": self.count},
            headers={"Ocp-Apim-Subscription-Key": key}, timeout_s=self.timeout_s, secrets=[key],
        )
        try:
            pages = fetched.json().get("webPages", {}).get("value", [])
        except (ValueError, AttributeError):
            raise ToolFailure("search_bing failed: the answer was not Bing's JSON.") from None
        results = [
            {"title": page.get("name", ""), "url": page.get("url", ""), "snippet": page.get("snippet", "")}
            for page in pages[: self.count]
            if isinstance(page, dict)
        ]
        return {"query": query, "results": results}


def search_tools(
    *, arxiv_url: str = ARXIV_API_URL, bing_url: str = BING_API_URL, environ: Mapping[str, str] | None = None,
    timeout_s: float = 10.0,
) -> list[Tool]:
    """The two model card examples; they reach the network, so a person confirms each call by default."""
    arxiv = ArxivSearch(arxiv_url, timeout_s=timeout_s)
    bing = BingSearch(bing_url, environ=environ, timeout_s=timeout_s)
    return [
        tool_from_function(bing.search_bing, description=_BING_DESCRIPTION, read_only=True, timeout_s=timeout_s + 1,
                           source=SOURCE),
        tool_from_function(arxiv.search_arxiv, description=_ARXIV_DESCRIPTION, read_only=True,
                           timeout_s=timeout_s + 1, source=SOURCE),
    ]


def _parse_atom(content: bytes) -> list[dict[str, Any]]:
    try:
        root = ElementTree.fromstring(content)
    except ElementTree.ParseError:
        raise ToolFailure("search_arxiv failed: arXiv's answer was not the expected Atom XML.") from None
    papers = []
    for entry in root.findall(f"{_ATOM}entry"):
        link = entry.findtext(f"{_ATOM}id", "").strip()
        summary = _squash(entry.findtext(f"{_ATOM}summary", ""))
        if "/api/errors" in link:  # arXiv reports a malformed query as an entry
            raise ToolFailure(f"search_arxiv failed: arXiv rejected the query: {summary}")
        papers.append({
            "title": _squash(entry.findtext(f"{_ATOM}title", "")),
            "authors": [_squash(a.findtext(f"{_ATOM}name", "")) for a in entry.findall(f"{_ATOM}author")],
            "published": entry.findtext(f"{_ATOM}published", "").strip()[:10],
            "summary": summary if len(summary) <= _MAX_SUMMARY_CHARS else summary[: _MAX_SUMMARY_CHARS - 1] + "…",
            "link": link,
        })
    return papers


def _squash(text: str) -> str:
    return " ".join(text.split())
