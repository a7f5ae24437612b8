"""One MCP server connection, through the official `mcp` SDK: connect, keep it up, list tools, call them.

Everything here runs on the MCP loop (see mcp_servers.py); SDK types and errors do not leave this module: tools
leave as `RemoteTool`, results as JSON values, failures as `ToolFailure` / `ToolInterrupted` with plain words.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime
from typing import Any, Literal, Self, TextIO, TypeVar

import anyio
import httpx2
import mcp_types as types
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from pydantic import ValidationError

from backend.errors import ToolConfigError
from backend.tools.mcp_config import McpServerConfig, expand_secrets
from backend.tools.mcp_content import RemoteTool, remote_tool, result_value
from backend.tools.mcp_elicitation import ElicitationBroker
from backend.tools.registry import ToolFailure, ToolInterrupted

__all__ = ["CONNECT_TIMEOUT_S", "McpConnection", "ServerState"]

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 30.0  # start the process (or reach the URL), shake hands and list the tools
_CLIENT_INFO = types.Implementation(name="callcard", version="0.1.0")
_MAX_PAGES = 50  # a server whose tool list never ends cannot hang a refresh
_T = TypeVar("_T")

ServerState = Literal["connecting", "connected", "unavailable", "disabled", "stopped"]


ToolsListener = Callable[["McpConnection", list[RemoteTool]], Awaitable[None]]


class McpConnection:
    """Keeps one server connected (reconnecting with backoff), and runs calls on it, each sent exactly once."""

    def __init__(
        self,
        config: McpServerConfig,
        *,
        broker: ElicitationBroker,
        on_tools: ToolsListener,
        environ: Mapping[str, str] | None = None,
        backoff: tuple[float, float] = (1.0, 60.0),
    ) -> None:
        self.config = config
        self.name = config.name
        self.state: ServerState = "disabled" if config.disabled else "connecting"
        self.reason: str | None = None
        self.connected_at: datetime | None = None
        self.connections = 0
        self.failures = 0
        self._broker = broker
        self._on_tools = on_tools
        self._environ = environ
        self._backoff = backoff
        self._client: Client | None = None
        self._connected = asyncio.Event()
        self.attempted = asyncio.Event()  # set when a connection attempt (or connection) has ended
        self._wake = asyncio.Event()  # ends a backoff sleep early (a call is waiting, or Callcard stops)
        self._stopping = False
        self._scope: anyio.CancelScope | None = None
        self._lost: asyncio.Event | None = None
        self._broken = False  # the connection ended because a call found it broken, not because the server said so
        self._running: dict[int, str] = {}  # call number -> Callcard tool name, to say which call a question is for
        self._numbers = itertools.count()
        self._asking = 0
        self._paused_s = 0.0  # time spent waiting for a person to answer this server's questions
        self._paused_since = 0.0
        self._errlog: TextIO | None = None

    async def run(self) -> None:
        """Connect, serve until the connection is lost, wait, and connect again, until `stop`."""
        delay = self._backoff[0]
        try:
            while not self._stopping:
                self.state = "connecting"
                connections = self.connections
                reason = await self._session()
                self._client = None
                self._connected.clear()
                self.connected_at = None
                self.attempted.set()
                if self._stopping:
                    break
                if self.connections > connections:  # it was up: start the backoff again from the shortest wait
                    delay = self._backoff[0]
                self.failures += 1
                self.state, self.reason = "unavailable", reason
                logger.warning("MCP server %s is unavailable: %s; retrying in %g s", self.name, reason, delay)
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=delay)
                except TimeoutError:
                    pass
                delay = min(delay * 2, self._backoff[1])
        finally:
            self.state = "stopped"
            self._close_errlog()

    def stop(self) -> None:
        """End the connection (a stdio server's process stops with it); call on the MCP loop."""
        self._stopping = True
        self._wake.set()
        if self._scope is not None:
            self._scope.cancel()

    def nudge(self) -> None:
        """Skip the rest of the backoff: a call is waiting for this server."""
        self._wake.set()

    async def call(self, tool: str, arguments: dict[str, Any], *, label: str) -> Any:
        """Run `tool` once and return its result as JSON; ToolFailure when it failed, ToolInterrupted if cut off."""
        client = await self._ready()
        number = next(self._numbers)
        self._running[number] = label
        try:
            result = await self._within(client.call_tool(tool, arguments), self.config.timeout)
        except TimeoutError:
            raise ToolFailure(
                f"The MCP server {self.name} did not answer within {self.config.timeout:g} s; "
                "Callcard asked it to stop the call."
            ) from None
        except MCPError as exc:
            if exc.code == types.CONNECTION_CLOSED:
                raise self._cut_off() from None
            raise ToolFailure(f"The MCP server {self.name} refused the call: {_clip(exc.message)}") from None
        except ValidationError:
            raise ToolFailure(f"The MCP server {self.name} answered with something that is not an MCP result.") from None
        except (httpx2.ConnectError, httpx2.ConnectTimeout) as exc:  # the request never left: not sent, not run
            self._drop()
            raise ToolFailure(
                f"The MCP server {self.name} cannot be reached ({type(exc).__name__}); the call was not sent."
            ) from None
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, httpx2.HTTPError, OSError):
            raise self._cut_off() from None
        finally:
            del self._running[number]
        return result_value(result, self.name)

    # The connection

    async def _session(self) -> str:
        """One connection's life; returns why it ended."""
        lost = self._lost = asyncio.Event()
        changed = asyncio.Event()
        self._broken = False
        try:
            # The deadline covers starting and listing; once connected it is lifted (deadline = inf).
            with anyio.CancelScope(deadline=anyio.current_time() + CONNECT_TIMEOUT_S) as scope:
                self._scope = scope
                if self._stopping:
                    scope.cancel()
                async with AsyncExitStack() as stack:
                    client = await stack.enter_async_context(self._client_for(stack, lost, changed))
                    tools = await self._list_tools(client)
                    scope.deadline = math.inf
                    self._client, self.state, self.reason = client, "connected", None
                    self.connected_at = datetime.now(UTC)
                    self.connections += 1
                    self.failures = 0
                    self._connected.set()
                    logger.info("MCP server %s connected with %d tool(s)", self.name, len(tools))
                    await self._on_tools(self, tools)
                    await self._serve(client, lost, changed)
            if scope.cancelled_caught and not self._stopping:
                return f"it did not start and list its tools within {CONNECT_TIMEOUT_S:g} s"
            if self._broken:
                return "a call found the connection broken"
            return "the server closed the connection" + (" (its process exited)" if self._stdio else "")
        except ToolConfigError as exc:
            return str(exc)
        except Exception as exc:  # whatever the server or the SDK does, Callcard carries on: the reason is the news
            logger.debug("MCP server %s connection ended", self.name, exc_info=True)
            return _plain(exc)
        finally:
            self._scope = self._lost = None

    async def _serve(self, client: Client, lost: asyncio.Event, changed: asyncio.Event) -> None:
        """Wait until the connection is lost, refreshing the tool list whenever the server says it changed."""
        while not lost.is_set():
            waits = [asyncio.ensure_future(lost.wait()), asyncio.ensure_future(changed.wait())]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiting in waits:
                    waiting.cancel()
            if changed.is_set() and not lost.is_set():
                changed.clear()
                try:
                    tools = await asyncio.wait_for(self._list_tools(client), timeout=CONNECT_TIMEOUT_S)
                except (MCPError, TimeoutError, ValidationError) as exc:
                    logger.warning("MCP server %s: could not refresh its tools: %s", self.name, _plain(exc))
                    continue
                logger.info("MCP server %s changed its tools: now %d", self.name, len(tools))
                await self._on_tools(self, tools)

    @asynccontextmanager
    async def _client_for(
        self, stack: AsyncExitStack, lost: asyncio.Event, changed: asyncio.Event
    ) -> AsyncIterator[Client]:
        async def on_message(message: Any) -> None:
            if isinstance(message, types.ToolListChangedNotification):
                changed.set()
            elif isinstance(message, Exception):
                logger.warning("MCP server %s sent a message that is not MCP (%s)", self.name, type(message).__name__)

        # Protocol 2025-11-25 (the initialize handshake), which every server speaks today and the SDK's servers
        # still serve: in 2026-07-28 servers no longer send tools/list_changed or elicitation requests on their own.
        client = Client(
            _watched(await self._transport(stack), lost), mode="legacy", cache=None, client_info=_CLIENT_INFO,
            message_handler=on_message, elicitation_callback=self._elicit,
        )
        async with client:
            yield client

    async def _transport(self, stack: AsyncExitStack) -> Any:
        """The SDK transport for this server; `${VAR}` secrets are read now and go nowhere else."""
        config = self.config
        if config.command is not None:
            env = expand_secrets(config.env, self._environ)
            parameters = StdioServerParameters(command=config.command, args=config.args, env=env, cwd=config.cwd)
            return stdio_client(parameters, errlog=self._stderr())
        headers = expand_secrets(config.headers, self._environ)
        http = await stack.enter_async_context(httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=300)))
        return streamable_http_client(config.url or "", http_client=http)

    async def _list_tools(self, client: Client) -> list[RemoteTool]:
        tools: list[RemoteTool] = []
        cursor: str | None = None
        for _ in range(_MAX_PAGES):
            page = await client.list_tools(cursor=cursor)
            tools.extend(remote_tool(tool) for tool in page.tools)
            cursor = page.next_cursor
            if not cursor:
                break
        return tools

    async def _ready(self) -> Client:
        """The live client; if there is none, try to connect now (the call is not sent until there is one)."""
        if self.config.disabled:
            raise ToolFailure(f"The MCP server {self.name} is disabled.")
        if self._client is None:
            self.nudge()
            try:
                await asyncio.wait_for(self._connected.wait(), timeout=min(self.config.timeout, CONNECT_TIMEOUT_S))
            except TimeoutError:
                pass
        if self._client is None:
            reason = f": {self.reason}" if self.reason else ""
            raise ToolFailure(
                f"The MCP server {self.name} is unavailable{reason}. Callcard keeps trying to reconnect; "
                "the call was not sent."
            )
        return self._client

    def _cut_off(self) -> ToolInterrupted:
        self._drop()
        return ToolInterrupted(
            f"The MCP server {self.name} stopped during the call, so it may or may not have taken effect. "
            "Callcard does not send it again; check before asking for it again."
        )

    def _drop(self) -> None:
        """End the current connection: a call found it broken (an HTTP server that went away says nothing)."""
        if self._lost is not None and not self._lost.is_set():
            self._broken = True
            self._lost.set()

    # Calls and questions

    async def _within(self, call: Coroutine[Any, Any, _T], timeout: float) -> _T:
        """`call`'s result within `timeout` seconds of the server's time: time waiting for a person does not count."""
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(call)
        started, paused = loop.time(), self._paused()
        try:
            while True:
                left = started + timeout + (self._paused() - paused) - loop.time()
                if left <= 0:
                    raise TimeoutError
                await asyncio.wait({task}, timeout=left)
                if task.done():
                    return task.result()
        finally:
            if not task.done():
                task.cancel()  # the SDK tells the server the request is cancelled
                await asyncio.gather(task, return_exceptions=True)

    def _paused(self) -> float:
        ongoing = asyncio.get_running_loop().time() - self._paused_since if self._asking else 0.0
        return self._paused_s + ongoing

    async def _elicit(self, context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        running = set(self._running.values())
        if self._asking == 0:
            self._paused_since = asyncio.get_running_loop().time()
        self._asking += 1
        tool = running.pop() if len(running) == 1 else None
        try:
            if isinstance(params, types.ElicitRequestURLParams):
                answer = await self._broker.ask(
                    server=self.name, message=params.message, mode="url", url=params.url, tool=tool
                )
            else:
                answer = await self._broker.ask(
                    server=self.name, message=params.message, mode="form", schema=params.requested_schema, tool=tool
                )
        finally:
            self._asking -= 1
            if self._asking == 0:
                self._paused_s += asyncio.get_running_loop().time() - self._paused_since
        return types.ElicitResult(action=answer.action, content=answer.content)

    # stderr

    @property
    def _stdio(self) -> bool:
        return self.config.command is not None

    def _stderr(self) -> TextIO:
        """A pipe whose lines go to the log under the server's name; one per server, for all its processes."""
        if self._errlog is None:
            read_fd, write_fd = os.pipe()
            self._errlog = open(write_fd, "w", encoding="utf-8", closefd=True)  # noqa: SIM115 - lives with the server
            threading.Thread(target=_log_lines, args=(read_fd, self.name), name=f"mcp-{self.name}-stderr",
                             daemon=True).start()
        return self._errlog

    def _close_errlog(self) -> None:
        if self._errlog is not None:
            self._errlog.close()
            self._errlog = None


@asynccontextmanager
async def _watched(transport: Any, lost: asyncio.Event) -> AsyncIterator[tuple[Any, Any]]:
    """`transport`, with `lost` set when its read stream ends: a process that exits, a server that hangs up."""
    async with transport as (read_stream, write_stream):
        yield _WatchedStream(read_stream, lost), write_stream


class _WatchedStream:
    """A read stream that sets `lost` when the SDK's reader finishes with it (its `async with` exits)."""

    def __init__(self, stream: Any, lost: asyncio.Event) -> None:
        self._stream = stream
        self._lost = lost

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Any:
        return await self._stream.__anext__()

    async def __aenter__(self) -> Self:
        await self._stream.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> Any:
        self._lost.set()
        return await self._stream.__aexit__(*exc_info)


def _log_lines(read_fd: int, name: str) -> None:
    server_log = logging.getLogger(f"{__name__}.{name}")
    with open(read_fd, encoding="utf-8", errors="replace", closefd=True) as lines:
        for line in lines:
            if line.strip():
                server_log.info("[%s stderr] %s", name, line.rstrip())


def _plain(exc: BaseException) -> str:
    """A one-line reason for the Tools tab and /healthz, from whatever ended a connection."""
    if isinstance(exc, BaseExceptionGroup):
        return _plain(exc.exceptions[0])
    if isinstance(exc, FileNotFoundError):
        return f"the command was not found ({exc.filename or exc})"
    if isinstance(exc, MCPError):
        return _clip(exc.message)
    if isinstance(exc, httpx2.HTTPStatusError):
        return f"the server answered HTTP {exc.response.status_code}"
    if isinstance(exc, httpx2.HTTPError):
        return f"the HTTP connection failed ({type(exc).__name__})"
    if isinstance(exc, ValidationError):
        return "the server answered with something that is not MCP"
    detail = _clip(str(exc))
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


def _clip(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"

