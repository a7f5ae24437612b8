"""The page's Content-Security-Policy, on the real app over a real socket: nothing may load from another host."""

from __future__ import annotations

import httpx

from tests.ui.conftest import RunningApp
from ui.security import CONTENT_SECURITY_POLICY


def directives(policy: str) -> dict[str, list[str]]:
    parsed: dict[str, list[str]] = {}
    for part in policy.split(";"):
        name, *values = part.split()
        parsed[name] = values
    return parsed


def test_the_page_forbids_loading_from_other_hosts(app: RunningApp) -> None:
    response = httpx.get(app.url, timeout=10)
    assert response.status_code == 200
    policy = directives(response.headers["content-security-policy"])
    assert policy["default-src"] == ["'self'"]
    for directive in ("img-src", "media-src", "font-src", "connect-src", "style-src", "script-src", "frame-src"):
        assert all(source.startswith("'") or source in ("data:", "blob:") for source in policy[directive]), directive
    assert policy["object-src"] == ["'none'"]
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-content-type-options"] == "nosniff"


def test_the_policy_is_one_line_of_known_directives() -> None:
    assert "\n" not in CONTENT_SECURITY_POLICY
    assert set(directives(CONTENT_SECURITY_POLICY)) >= {"default-src", "img-src", "connect-src", "base-uri", "form-action"}
