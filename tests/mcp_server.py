"""A real MCP server for the tests, written with the SDK's server side: `python -m tests.mcp_server [--http]`.

Over stdio by default; with `--http` it serves Streamable HTTP on a free loopback port and prints
`listening on <url>` once it accepts connections; with `--garbage` it is a hand-written stdio server whose answers
to calls are not MCP. Its tools cover what Callcard must handle: plain and
structured results, errors, a crash, a slow call, elicitation, images, and a tool list that changes.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import socket
import sys

from mcp.server.mcpserver import Context, Image, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import BaseModel, Field

__all__ = ["build_server"]

# A 1x1 transparent PNG: an image result the client must describe, never render or fetch.
_PIXEL = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


class _Name(BaseModel):
    name: str = Field(description="Your name")


def build_server() -> MCPServer:
    """The test server and its tools."""
    server = MCPServer("callcard-test")

    @server.tool(annotations=ToolAnnotations(read_only_hint=True))
    def echo(text: str) -> str:
        """Say `text` back."""
        return text

    @server.tool(annotations=ToolAnnotations(read_only_hint=True))
    def add(a: int, b: int) -> dict[str, int]:
        """Add two integers."""
        return {"sum": a + b}

    @server.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True))
    def wipe(table: str) -> str:
        """Pretend to delete every row of a table."""
        return f"wiped {table}"

    @server.tool()
    def fail(reason: str) -> str:
        """Fail with `reason`."""
        raise ToolError(reason)

    @server.tool()
    def crash(marker: str = "") -> str:
        """Stop the whole server process in the middle of the call, after adding a line to the file `marker`."""
        if marker:
            with open(marker, "a", encoding="utf-8") as file:
                file.write("crashed\n")
        os._exit(3)

    @server.tool()
    def pid() -> int:
        """The server's process id."""
        return os.getpid()

    @server.tool()
    async def slow(seconds: float) -> str:
        """Answer after `seconds`."""
        await asyncio.sleep(seconds)
        return "done"

    @server.tool()
    def picture() -> Image:
        """A tiny image."""
        return Image(data=_PIXEL, format="png")

    @server.tool()
    def env(name: str) -> str:
        """The value of environment variable `name` in the server's process."""
        return os.environ.get(name, "")

    @server.tool()
    def header(name: str, ctx: Context) -> str:
        """The value of HTTP request header `name` (empty over stdio)."""
        return (ctx.headers or {}).get(name.lower(), "")

    @server.tool()
    async def greet(ctx: Context) -> str:
        """Ask the user for their name, then greet them."""
        answer = await ctx.elicit("What is your name?", _Name)
        if answer.action == "accept":
            return f"Hello, {answer.data.name}!"
        return f"No name given ({answer.action})."

    @server.tool()
    async def grow(ctx: Context) -> str:
        """Add a tool called `extra` and tell the client the tool list changed."""

        def extra(word: str) -> str:
            """A tool that appeared later."""
            return word.upper()

        if "extra" not in {tool.name for tool in await server.list_tools()}:
            server.add_tool(extra)
        await ctx.request_context.session.send_tool_list_changed()
        return "grown"

    @server.tool()
    async def shrink(ctx: Context) -> str:
        """Remove the tool `extra` and tell the client the tool list changed."""
        server.remove_tool("extra")
        await ctx.request_context.session.send_tool_list_changed()
        return "shrunk"

    return server


def _serve_garbage() -> None:
    """A stdio server that shakes hands and lists one tool properly, then answers calls with what is not MCP."""
    for line in sys.stdin:
        message = json.loads(line)
        if "id" not in message:  # a notification
            continue
        if message.get("method") == "initialize":
            result: dict = {"protocolVersion": message["params"]["protocolVersion"], "capabilities": {"tools": {}},
                            "serverInfo": {"name": "garbage", "version": "0"}}
        elif message.get("method") == "tools/list":
            result = {"tools": [{"name": "answer", "inputSchema": {"type": "object", "properties": {}}}]}
        else:
            print("this is not JSON", flush=True)
            result = {"content": "not a list", "isError": "perhaps"}
        print(json.dumps({"jsonrpc": "2.0", "id": message["id"], "result": result}), flush=True)


async def _serve_http(server: MCPServer) -> None:
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(server.streamable_http_app(), log_level="warning")
    http = uvicorn.Server(config)
    serving = asyncio.create_task(http.serve(sockets=[sock]))
    while not http.started:
        await asyncio.sleep(0.05)
    print(f"listening on http://127.0.0.1:{port}/mcp", flush=True)
    await serving


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--http", action="store_true", help="serve Streamable HTTP on a free loopback port")
    parser.add_argument("--garbage", action="store_true", help="answer every call with something that is not MCP")
    flags = parser.parse_args(argv)
    if flags.garbage:
        _serve_garbage()
        return
    server = build_server()
    if flags.http:
        asyncio.run(_serve_http(server))
    else:
        print("test server starting", file=sys.stderr, flush=True)  # a line of stderr for the client's log
        server.run("stdio")


if __name__ == "__main__":
    main(sys.argv[1:])
