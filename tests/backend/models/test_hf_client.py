"""The huggingface_hub seam: the start-up check of the client internal Callcard fills in."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from huggingface_hub import AsyncInferenceClient

from backend.errors import ConfigError
from backend.models.hf_client import HUB_WRITTEN_FOR, Connection, check_hub_internals

_REQUIREMENTS = Path(__file__).parents[3] / "requirements.txt"


def test_written_for_the_pinned_release() -> None:
    pinned = re.search(r"^huggingface_hub==(\S+)$", _REQUIREMENTS.read_text(encoding="utf-8"), re.MULTILINE)
    assert pinned is not None
    assert pinned.group(1) == HUB_WRITTEN_FOR, "a new pin: check _share_http_client in backend/models/hf_client.py"


def test_the_installed_release_has_the_client_slot(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="backend.models.hf_client"):
        check_hub_internals(AsyncInferenceClient(base_url="http://127.0.0.1"), version=HUB_WRITTEN_FOR)
    assert not caplog.records


def test_a_client_without_the_slot_is_a_clear_error() -> None:
    # A stand-in for an AsyncInferenceClient from a release that keeps its HTTP client somewhere else.
    renamed = SimpleNamespace(_http_client=None, _get_async_client=lambda: None)
    with pytest.raises(ConfigError) as raised:
        check_hub_internals(renamed, version="3.0.0")
    message = str(raised.value)
    assert "huggingface_hub 3.0.0" in message
    assert "AsyncInferenceClient._async_client" in message
    assert f"huggingface_hub=={HUB_WRITTEN_FOR}" in message


def test_another_release_with_the_slot_warns_and_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="backend.models.hf_client"):
        check_hub_internals(AsyncInferenceClient(base_url="http://127.0.0.1"), version="2.5.0")
    assert any("2.5.0" in r.getMessage() and HUB_WRITTEN_FOR in r.getMessage() for r in caplog.records)


def test_a_connection_is_made_with_the_installed_release() -> None:
    connection = Connection("http://127.0.0.1:9/", token=None, timeout=5, connect_timeout=1)
    assert connection.endpoint == "http://127.0.0.1:9"
