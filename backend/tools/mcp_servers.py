"""The configured MCP servers: their connections, the tools they add to the registry, and their status.

Why a thread of its own: the SDK's sessions are anyio task groups tied to the loop and task that opened them,
and a stdio server's process lives as long as its session. Gradio runs each event on its own loop (and tests and
scripts on theirs), so no request's loop can own a session that outlives it. One background thread runs one
loop that opens, watches and closes every session; tool handlers hand their call to that loop
(`run_coroutine_threadsafe`) and await it from wherever they run (`wrap_future`), and a cancelled call is
cancelled there too, which the SDK passes on to the server.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Coroutine, Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Self, TypeVar

from pydantic import BaseModel

from backend.errors import SpecError
from backend.settings import split_names
from backend.tools.mcp_client import CONNECT_TIMEOUT_S, McpConnection, ServerState
from backend.tools.mcp_config import McpServerConfig, load_mcp_config
from backend.tools.mcp_content import RemoteTool
from backend.tools.mcp_elicitation import ElicitationBroker
from backend.tools.mcp_tools import callcard_name, mcp_tool
from backend.tools.registry import ToolFailure, ToolRegistry

__all__ = ["START_WAIT_S", "McpServers", "ServerStatus"]

logger = logging.getLogger(__name__)

START_WAIT_S = 30.0  # how long start-up waits for the servers before the app opens without the slow ones
_STOP_WAIT_S = 15.0
_T = TypeVar("_T")


class ServerStatus(BaseModel):
    """One server as the Tools tab and /healthz show it; `reason` says why it is unavailable."""

    name: str
    transport: Literal["stdio", "http"]
    where: str  # the command or URL (secrets live in env and headers, which are never shown)
    state: ServerState
    reason: str | None = None
    trusted: bool = False
    tools: list[str] = []  # the Callcard names of the tools it offers now
    skipped: dict[str, str] = {}  # its tools Callcard cannot offer, with why
    connected_at: datetime | None = None
    connections: int = 0
    failures: int = 0  # failed attempts since it was last connected


class McpServers:
    """Every configured server; `start` connects them and registers their tools, `close` stops them."""

    def __init__(
        self,
        configs: Iterable[McpServerConfig],
        *,
        environ: Mapping[str, str] | None = None,
        elicitations: ElicitationBroker | None = None,
        backoff: tuple[float, float] = (1.0, 60.0),
    ) -> None:
        self.elicitations = elicitations or ElicitationBroker()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="mcp-servers", daemon=True)
        self._lock = threading.Lock()
        self._connections = [
            McpConnection(config, broker=self.elicitations, on_tools=self._publish, environ=environ, backoff=backoff)
            for config in configs
        ]
        self._registry: ToolRegistry | None = None
        self._auto: set[str] = set()
        self._disabled: set[str] = set()
        self._names: dict[str, dict[str, str]] = {c.name: {} for c in self._connections}  # server: remote -> ours
        self._owners: dict[str, tuple[str, str]] = {}  # our name -> (server, remote name), kept across refreshes
        self._skipped: dict[str, dict[str, str]] = {c.name: {} for c in self._connections}
        self._turns: dict[str, asyncio.Event] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False

    @classmethod
    def from_file(cls, path: str | Path, *, environ: Mapping[str, str] | None = None, **options: Any) -> McpServers:
        """The servers of an MCP servers file; a ToolConfigError names the file, line and field of any mistake."""
        return cls(load_mcp_config(path, environ=environ), environ=environ, **options)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def names(self) -> list[str]:
        """The servers' names, in file order."""
        return [connection.name for connection in self._connections]

    def start(
        self,
        registry: ToolRegistry,
        *,
        auto: str | Iterable[str] = (),
        disabled: str | Iterable[str] = (),
        wait_s: float = START_WAIT_S,
    ) -> None:
        """Connect every server and add its tools to `registry`, in file order, waiting at most `wait_s` for them.

        A server that is not up by then joins when it connects; one that fails is retried with backoff.
        `auto` / `disabled` are the operator's tool names (CALLCARD_AUTO_TOOLS, CALLCARD_DISABLED_TOOLS).
        """
        if self._registry is not None:
            raise RuntimeError("McpServers.start was already called.")
        self._registry = registry
        self._auto, self._disabled = set(split_names(auto)), set(split_names(disabled))
        self._thread.start()
        started = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        try:
            started.result(timeout=wait_s)
        except concurrent.futures.TimeoutError:
            slow = [c.name for c in self._connections if c.state == "connecting"]
            logger.warning("MCP servers still starting after %g s: %s; their tools join when they connect",
                           wait_s, ", ".join(slow))

    def status(self) -> list[ServerStatus]:
        """Every server's state, in file order; safe to call from any thread."""
        with self._lock:
            return [
                ServerStatus(
                    name=c.name, transport=c.config.transport, where=c.config.where, state=c.state, reason=c.reason,
                    trusted=c.config.trusted, tools=list(self._names[c.name].values()),
                    skipped=dict(self._skipped[c.name]), connected_at=c.connected_at, connections=c.connections,
                    failures=c.failures,
                )
                for c in self._connections
            ]

    def all_connected(self) -> bool:
        """True when every enabled server is connected (so every tool name it offers is known)."""
        return all(c.state in ("connected", "disabled") for c in self._connections)

    def close(self, timeout_s: float = _STOP_WAIT_S) -> None:
        """Stop every connection (stdio servers' processes end) and the loop; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if not self._thread.is_alive():
            self._loop.close()
            return
        stopping = asyncio.run_coroutine_threadsafe(self._stop(), self._loop)
        try:
            stopping.result(timeout=timeout_s)
        except concurrent.futures.TimeoutError:
            logger.warning("MCP servers did not all stop within %g s", timeout_s)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=timeout_s)
        if not self._thread.is_alive():
            self._loop.close()

    async def _start(self) -> None:
        previous: asyncio.Event | None = None
        for connection in self._connections:
            turn = self._turns[connection.name] = asyncio.Event()
            if connection.config.disabled:
                turn.set()
            else:
                self._tasks.append(asyncio.create_task(self._supervise(connection, turn, previous)))
            previous = turn
        await asyncio.gather(*(turn.wait() for turn in self._turns.values()))

    async def _supervise(self, connection: McpConnection, turn: asyncio.Event, previous: asyncio.Event | None) -> None:
        """Run a connection; its turn to register tools ends with its tools registered or its first failure."""
        first_failure = asyncio.create_task(self._turn_on_failure(connection, turn, previous))
        try:
            await connection.run()
        finally:
            first_failure.cancel()
            turn.set()

    @staticmethod
    async def _turn_on_failure(connection: McpConnection, turn: asyncio.Event, previous: asyncio.Event | None) -> None:
        await connection.attempted.wait()
        if previous is not None:
            await previous.wait()
        turn.set()

    async def _stop(self) -> None:
        for connection in self._connections:
            connection.stop()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=_STOP_WAIT_S)

    async def _publish(self, connection: McpConnection, tools: list[RemoteTool]) -> None:
        """Bring the registry in line with the server's tool list (on connect and when it says the list changed)."""
        index = self._connections.index(connection)
        if index > 0:  # in file order at start-up: the earlier server's tools claim their plain names first
            await self._turns[self._connections[index - 1].name].wait()
        registry = self._registry
        assert registry is not None  # connections only run after start
        server = connection.name
        with self._lock:
            names = self._names[server]
            offered = {remote.name for remote in tools}
            for remote_name in [n for n in names if n not in offered]:
                ours = names.pop(remote_name)
                registry.remove(ours)
                logger.info("MCP server %s no longer offers %s", server, ours)
            skipped: dict[str, str] = {}
            for remote in tools:
                ours = names.get(remote.name) or callcard_name(server, remote.name, self._taken(server, remote.name))
                existing = registry.get(ours)
                kept = existing.policy if existing is not None and existing.server == server else None
                try:
                    tool = mcp_tool(
                        remote, name=ours, config=connection.config, handler=self._handler(connection, remote.name, ours),
                        timeout_s=self._backstop(connection), auto=self._auto, disabled=self._disabled, policy=kept,
                    )
                except SpecError as exc:
                    skipped[remote.name] = str(exc)
                    if names.pop(remote.name, None) is not None:
                        registry.remove(ours)
                    continue
                names[remote.name] = ours
                self._owners[ours] = (server, remote.name)
                registry.replace(tool)
            for remote_name, why in skipped.items():
                if self._skipped[server].get(remote_name) != why:
                    logger.warning("MCP server %s: tool %s is left out: %s", server, remote_name, why)
            self._skipped[server] = skipped
        self._turns[server].set()

    def _taken(self, server: str, remote_name: str) -> Any:
        registry = self._registry
        assert registry is not None

        def taken(name: str) -> bool:
            owner = self._owners.get(name)
            if owner is not None and owner != (server, remote_name):
                return owner[1] in self._names.get(owner[0], {})  # still offered by its server
            return owner is None and name in registry

        return taken

    def _backstop(self, connection: McpConnection) -> float:
        # The connection bounds the server's own time; the registry's limit is only a backstop that leaves room
        # for connecting first and for a person answering the server's questions.
        return min(3600.0, connection.config.timeout + CONNECT_TIMEOUT_S + self.elicitations.timeout_s)

    def _handler(self, connection: McpConnection, remote_name: str, ours: str) -> Any:
        async def run(arguments: dict[str, Any]) -> Any:
            return await self._submit(connection.call(remote_name, arguments, label=ours))

        return run

    async def _submit(self, call: Coroutine[Any, Any, _T]) -> _T:
        """Run `call` on the MCP loop and wait for it here; cancelling the wait cancels the call."""
        try:
            if asyncio.get_running_loop() is self._loop:
                return await call
            future = asyncio.run_coroutine_threadsafe(call, self._loop)
        except RuntimeError:  # the loop is closed: Callcard is stopping
            call.close()
            raise ToolFailure("The MCP servers are stopped.") from None
        return await asyncio.wrap_future(future)
