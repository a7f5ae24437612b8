"""Settings: one place reads the environment, and a wrong combination says what to set."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.errors import ConfigError
from backend.settings import load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    for name in ("CALLCARD_BACKEND", "CALLCARD_ENDPOINT", "CALLCARD_MODEL_PATH", "HF_TOKEN", "SPACE_ID",
                 "CALLCARD_API_KEY", "CALLCARD_DATA_DIR", "CALLCARD_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)


def test_no_server_means_the_embedded_model() -> None:
    settings = load_settings()
    assert settings.backend == "embedded"
    assert settings.database == "sqlite:///data/callcard.db"


def test_an_endpoint_alone_means_tgi(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLCARD_ENDPOINT", "http://gpu-box:8080")
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    settings = load_settings()
    assert settings.backend == "tgi" and settings.token == "hf_secret"


def test_flags_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLCARD_ENDPOINT", "http://gpu-box:8080")
    assert load_settings(endpoint="http://other:80", backend="openai").endpoint == "http://other:80"


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        ({"backend": "tgi"}, "set CALLCARD_ENDPOINT"),
        ({"backend": "openai"}, "set CALLCARD_ENDPOINT"),
        ({"backend": "embedded", "endpoint": "http://x:1"}, "unset one of them"),
        ({"model_path": "/nonexistent/model.gguf"}, "is not a file"),
        ({"temperature": -1}, "CALLCARD_TEMPERATURE"),
    ],
)
def test_invalid_combinations_say_what_to_set(overrides: dict[str, object], says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        load_settings(**overrides)


def test_on_spaces_without_persistent_storage_the_ui_is_told(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPACE_ID", "callcard/demo")
    settings = load_settings()
    assert settings.on_spaces
    assert settings.storage_is_ephemeral == (not Path("/data").is_dir())
    monkeypatch.setenv("CALLCARD_DATABASE_URL", "postgresql+psycopg://db/callcard")
    assert not load_settings().storage_is_ephemeral


def test_the_mcp_servers_file_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().mcp_servers is None
    monkeypatch.setenv("CALLCARD_MCP_SERVERS", "mcp.json")
    assert load_settings().mcp_servers == Path("mcp.json")


def test_the_demo_model_asks_for_values_nobody_wrote_and_a_real_server_flags_them(tmp_path: Path) -> None:
    assert load_settings().ungrounded_mode == "ask"
    assert load_settings(endpoint="http://gpu-box:8080").ungrounded_mode == "flag"
    model = tmp_path / "other.gguf"
    model.write_bytes(b"GGUF")
    assert load_settings(model_path=str(model)).ungrounded_mode == "flag"
    assert load_settings(ungrounded="off").ungrounded_mode == "off"


def test_rate_limits_are_on_by_default_only_on_spaces(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert (settings.messages_per_minute, settings.concurrent_replies) == (None, None)
    monkeypatch.setenv("SPACE_ID", "callcard/demo")
    settings = load_settings()
    assert (settings.messages_per_minute, settings.concurrent_replies) == (12, 2)
    monkeypatch.setenv("CALLCARD_RATE_MESSAGES_PER_MINUTE", "0")  # 0 turns a limit off
    monkeypatch.setenv("CALLCARD_RATE_CONCURRENT_REPLIES", "5")
    settings = load_settings()
    assert (settings.messages_per_minute, settings.concurrent_replies) == (None, 5)
