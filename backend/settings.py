"""Callcard's settings: read once at start-up from the environment (and `.env`), validated, then passed to constructors."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from backend.errors import ConfigError

__all__ = ["Settings", "load_settings", "split_names"]

Backend = Literal["embedded", "tgi", "openai"]


class Settings(BaseSettings):
    """Every setting Callcard reads; environment variables are `CALLCARD_<NAME>` unless an alias says otherwise."""

    model_config = SettingsConfigDict(env_prefix="CALLCARD_", env_file=".env", extra="ignore", populate_by_name=True)

    # The model
    backend: Backend | None = None
    endpoint: str | None = None
    model_path: Path | None = None
    model_name: str | None = None
    prompt_style: Literal["llama2", "mistral", "native"] | None = None
    call_mode: Literal["grammar", "parse"] = "grammar"
    hf_token: str | None = Field(default=None, validation_alias=AliasChoices("HF_TOKEN", "CALLCARD_HF_TOKEN"))
    api_key: str | None = None
    timeout_s: float = Field(default=120.0, gt=0)
    connect_timeout_s: float = Field(default=10.0, gt=0)
    retries: int = Field(default=2, ge=0, le=10)

    # Generation defaults (Trelis' own TGI setup for these models)
    max_new_tokens: int = Field(default=1024, ge=1)
    temperature: float = Field(default=0.2, ge=0)
    top_p: float = Field(default=0.95, gt=0, le=1)
    top_k: int = Field(default=50, ge=0)
    repetition_penalty: float = Field(default=1.2, gt=0)
    system_prompt: str | None = None

    # Storage (on Hugging Face Spaces the default is the persistent /data volume when one is attached)
    data_dir: Path = Field(default_factory=lambda: _default_data_dir())
    database_url: str | None = None

    # Tools
    tools: Path | None = None
    http_tools: Path | None = None
    functions: Path | None = None
    mcp_servers: Path | None = None  # an mcpServers file (JSON or YAML)
    auto_tools: str = ""
    disabled_tools: str = ""

    # Limits
    max_message_chars: int = Field(default=8000, ge=1)
    max_calls_per_reply: int = Field(default=5, ge=1)
    max_calls_per_turn: int = Field(default=8, ge=1)
    max_result_bytes: int = Field(default=16_384, ge=256)

    # People
    auth: str | None = None
    leads: str = ""

    # Values found nowhere in the conversation: ask the person for them, only flag them, or do nothing
    ungrounded: Literal["ask", "flag", "off"] | None = None  # None: ask for the bundled demo model, flag otherwise

    # A public demo that cannot be flooded (None: the default, which is on only on Hugging Face Spaces; 0: off)
    rate_messages_per_minute: int | None = Field(default=None, ge=0)
    rate_concurrent_replies: int | None = Field(default=None, ge=0)

    # Records: conversations last changed more than this many days ago are purged with their audit rows (None: keep)
    retention_days: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _resolve_backend(self) -> Settings:
        if self.backend is None:
            self.backend = "tgi" if self.endpoint else "embedded"
        if self.backend in ("tgi", "openai") and not self.endpoint:
            raise ValueError(
                f"CALLCARD_BACKEND={self.backend} needs a server: set CALLCARD_ENDPOINT "
                "(for example http://localhost:8080)."
            )
        if self.backend == "embedded" and self.endpoint:
            raise ValueError(
                "CALLCARD_ENDPOINT is set but CALLCARD_BACKEND=embedded: unset one of them, "
                "or set CALLCARD_BACKEND to tgi or openai."
            )
        if self.model_path is not None and self.backend != "embedded":
            raise ValueError("CALLCARD_MODEL_PATH is for the embedded backend: unset it, or unset CALLCARD_ENDPOINT.")
        if self.model_path is not None and not self.model_path.is_file():
            raise ValueError(f"CALLCARD_MODEL_PATH={self.model_path} is not a file: give the path of a .gguf model.")
        return self

    @property
    def on_spaces(self) -> bool:
        """Running on Hugging Face Spaces (Gradio detects it the same way)."""
        return bool(os.environ.get("SPACE_ID"))

    @property
    def storage_is_ephemeral(self) -> bool:
        """On Spaces without persistent storage, everything stored is lost when the Space restarts."""
        return self.on_spaces and self.database_url is None and not _is_under(self.data_dir, _SPACES_PERSISTENT_DIR)

    @property
    def ungrounded_mode(self) -> Literal["ask", "flag", "off"]:
        """The bundled demo model invents values, so it asks by default; a real model's values are flagged."""
        if self.ungrounded is not None:
            return self.ungrounded
        return "ask" if self.backend == "embedded" and self.model_path is None else "flag"

    @property
    def messages_per_minute(self) -> int | None:
        """Each person's limit of messages a minute: 12 on Spaces unless set; None when off."""
        value = self.rate_messages_per_minute if self.rate_messages_per_minute is not None else (
            _SPACES_MESSAGES_PER_MINUTE if self.on_spaces else 0)
        return value or None

    @property
    def concurrent_replies(self) -> int | None:
        """Each person's limit of replies streaming at once: 2 on Spaces unless set; None when off."""
        value = self.rate_concurrent_replies if self.rate_concurrent_replies is not None else (
            _SPACES_CONCURRENT_REPLIES if self.on_spaces else 0)
        return value or None

    @property
    def database(self) -> str:
        """The SQLAlchemy URL of the store: CALLCARD_DATABASE_URL, or a SQLite file in the data directory."""
        return self.database_url or f"sqlite:///{self.data_dir / 'callcard.db'}"

    @property
    def token(self) -> str | None:
        """The bearer token for the model server."""
        return self.api_key or self.hf_token

    @property
    def auto_tool_names(self) -> list[str]:
        return split_names(self.auto_tools)

    @property
    def disabled_tool_names(self) -> list[str]:
        return split_names(self.disabled_tools)

    @property
    def lead_names(self) -> list[str]:
        return split_names(self.leads)


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment and `overrides` (command-line flags), or a ConfigError saying what to set."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as error:
        problems = "; ".join(_describe(e) for e in error.errors())
        raise ConfigError(f"Invalid settings: {problems}") from None


def _describe(error: dict) -> str:
    location = ".".join(str(part) for part in error.get("loc", ()))
    message = error.get("msg", "").removeprefix("Value error, ")
    return f"CALLCARD_{location.upper()}: {message}" if location else message


_SPACES_PERSISTENT_DIR = Path("/data")
_SPACES_MESSAGES_PER_MINUTE = 12  # one message every five seconds, more than a person types
_SPACES_CONCURRENT_REPLIES = 2  # two tabs at once; the embedded model answers one reply at a time anyway


def _default_data_dir() -> Path:
    if os.environ.get("SPACE_ID") and _SPACES_PERSISTENT_DIR.is_dir() and os.access(_SPACES_PERSISTENT_DIR, os.W_OK):
        return _SPACES_PERSISTENT_DIR / "callcard"
    return Path("data")


def _is_under(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder)


def split_names(value: str | Iterable[str]) -> list[str]:
    """Names from comma-separated text (as in CALLCARD_AUTO_TOOLS) or a list, stripped, blanks left out."""
    items = value.split(",") if isinstance(value, str) else value
    return [name.strip() for name in items if name.strip()]
