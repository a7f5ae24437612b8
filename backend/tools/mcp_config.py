"""The MCP servers file (`CALLCARD_MCP_SERVERS`): the common `mcpServers` shape plus Callcard's trust keys."""

from __future__ import annotations

import difflib
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from backend.errors import ToolConfigError
from backend.tools.config_file import FieldPath, Locator, read_document

__all__ = [
    "DEFAULT_CALL_TIMEOUT_S",
    "McpConfigFile",
    "McpServerConfig",
    "expand_secrets",
    "load_mcp_config",
    "secret_names",
]

logger = logging.getLogger(__name__)

DEFAULT_CALL_TIMEOUT_S = 60.0
_SECRET = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SECRET_SYNTAX = re.compile(r"\$\{")
# Server names become part of tool names (`time__get_current_time`) and log lines.
_SERVER_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]{0,31}$")


class McpServerConfig(BaseModel):
    """One server: a command Callcard starts (stdio) or a Streamable HTTP URL, and how far Callcard trusts it.

    `env` and `headers` keep their `${VAR}` references as written; they are expanded only at connect time.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = ""
    type: Literal["stdio", "http", "streamable-http", "streamableHttp"] | None = None
    command: str | None = None
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict, repr=False)
    cwd: str | None = None
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict, repr=False)
    trusted: bool = False
    disabled: bool = False
    timeout: float = Field(default=DEFAULT_CALL_TIMEOUT_S, gt=0, le=3600)

    @field_validator("type", mode="before")
    @classmethod
    def _no_sse(cls, value: Any) -> Any:
        if isinstance(value, str) and value.lower() == "sse":
            raise ValueError("the old SSE transport is not supported; use the server's Streamable HTTP URL")
        return value

    @property
    def transport(self) -> Literal["stdio", "http"]:
        """How Callcard talks to the server."""
        return "stdio" if self.command is not None else "http"

    @property
    def where(self) -> str:
        """The command or URL, for the Tools tab and logs (never with secrets: those live in env and headers)."""
        if self.command is not None:
            return " ".join([self.command, *self.args])
        return self.url or ""


class McpConfigFile(BaseModel):
    """The file: `mcpServers:` mapping each server's name to its settings."""

    model_config = ConfigDict(extra="forbid")

    mcpServers: dict[str, McpServerConfig]  # camelCase: the key every MCP client's file uses


def load_mcp_config(path: str | Path, *, environ: Mapping[str, str] | None = None) -> list[McpServerConfig]:
    """The servers in an MCP servers file (JSON or YAML), in file order; each error names the file, line and field.

    `environ` (default os.environ) is only asked which `${VAR}`s are unset, to warn early; no value is kept.
    """
    path = Path(path)
    if not path.is_file():
        raise ToolConfigError(f"{path}: there is no such MCP servers file.")
    data, lines = read_document(path)
    where = Locator(path.name, lines, McpConfigFile)
    if not isinstance(data, dict) or not isinstance(data.get("mcpServers"), dict):
        raise ToolConfigError(where.message((), 'expected a mapping with "mcpServers": {name: {command or url}}'))
    try:
        document = McpConfigFile.model_validate(data)
    except ValidationError as exc:
        raise ToolConfigError("\n".join(_describe(error, where) for error in exc.errors())) from None
    problems: list[str] = []
    servers: list[McpServerConfig] = []
    for name, config in document.mcpServers.items():
        at: FieldPath = ("mcpServers", name)
        before = len(problems)
        _check(name, config, at=at, where=where, problems=problems)
        if len(problems) == before:
            servers.append(config.model_copy(update={"name": name}))
    if problems:
        raise ToolConfigError("\n".join(problems))
    env = os.environ if environ is None else environ
    for server in servers:
        unset = [name for name in secret_names(server) if not env.get(name)]
        if unset:
            logger.warning("%s: MCP server %s needs %s, which is not set", path.name, server.name, ", ".join(unset))
    return servers


def secret_names(config: McpServerConfig) -> list[str]:
    """The environment variables a server's env and headers refer to, in order, once each."""
    names: list[str] = []
    for value in [*config.env.values(), *config.headers.values()]:
        names.extend(m.group(1) for m in _SECRET.finditer(value) if m.group(1) not in names)
    return names


def expand_secrets(values: Mapping[str, str], environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """`values` with every `${VAR}` replaced from `environ` (default os.environ); a ToolConfigError names unset ones.

    Call it only where the result is handed straight to the connection, so values never reach a logged object.
    """
    env = os.environ if environ is None else environ
    unset = sorted({m.group(1) for v in values.values() for m in _SECRET.finditer(v) if not env.get(m.group(1))})
    if unset:
        raise ToolConfigError(f"set {', '.join(unset)} in the environment")
    return {key: _SECRET.sub(lambda m: env[m.group(1)], value) for key, value in values.items()}


def _describe(error: Any, where: Locator) -> str:
    path = tuple(error["loc"])
    if error["type"] == "extra_forbidden" and len(path) == 3:  # a server's key: the Locator cannot see into the dict
        known = [name for name in McpServerConfig.model_fields if name != "name"]
        close = difflib.get_close_matches(str(path[-1]), known, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"known fields: {', '.join(known)}"
        return where.message(path, f"unknown field ({hint})")
    return where.pydantic_error(error)


def _check(name: str, config: McpServerConfig, *, at: FieldPath, where: Locator, problems: list[str]) -> None:
    if not _SERVER_NAME.match(name):
        problems.append(where.message(at, "a server name uses letters, digits, '_' or '-' (at most 32), "
                                          "starting with a letter"))
    if (config.command is None) == (config.url is None):
        problems.append(where.message(at, "give either command (a server Callcard starts) or url (Streamable HTTP)"))
        return
    if config.command is not None:
        if config.type not in (None, "stdio"):
            problems.append(where.message((*at, "type"), f"{config.type!r} needs url, not command"))
        if config.headers:
            problems.append(where.message((*at, "headers"), "headers are for url servers; use env for a command"))
        if not config.command.strip():
            problems.append(where.message((*at, "command"), "must not be empty"))
    else:
        if config.type == "stdio":
            problems.append(where.message((*at, "type"), "'stdio' needs command, not url"))
        for key in ("env", "cwd"):
            if getattr(config, key):
                problems.append(where.message((*at, key), f"{key} is for command servers; a url server gets headers"))
        if not re.match(r"^https?://[^/\s?#{}]+(?:[/?#]|$)", config.url or ""):
            problems.append(where.message((*at, "url"), "must start with http:// or https:// and a host name"))
    # Secrets belong where they are never logged or shown: a command line is both (ps, the Tools tab).
    plain: list[tuple[FieldPath, str | None]] = [((*at, "command"), config.command), ((*at, "url"), config.url),
                                                 ((*at, "cwd"), config.cwd)]
    plain += [((*at, "args", index), arg) for index, arg in enumerate(config.args)]
    for field, value in plain:
        if value is not None and _SECRET_SYNTAX.search(value):
            problems.append(where.message(field, "${...} secrets are only allowed in env and headers"))
    for key in ("env", "headers"):
        for item, value in getattr(config, key).items():
            if len(_SECRET_SYNTAX.findall(value)) != len(_SECRET.findall(value)):
                problems.append(where.message((*at, key, item), "write secrets as ${NAME} (letters, digits, '_')"))
