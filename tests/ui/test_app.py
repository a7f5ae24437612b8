"""The page as build_app lays it out, without a browser: what it shows depends on how the app is deployed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import gradio as gr
import pytest

from backend.engine import Engine
from backend.models.protocol import ModelInfo
from backend.models.tgi import TGIBackend
from backend.storage.store import Store
from backend.tools import ToolRegistry
from ui.app import EPHEMERAL_NOTE, build_app

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    store = Store(f"sqlite:///{tmp_path / 'callcard.db'}")
    # Laying the page out asks the model server nothing: no server listens here.
    yield Engine(store=store, backend=TGIBackend("http://127.0.0.1:9", retries=0), registry=ToolRegistry([]))
    store.close()


def notes(demo: gr.Blocks) -> list[str]:
    return [block.value for block in demo.blocks.values() if getattr(block, "elem_id", None) == "cc-ephemeral"]


@pytest.mark.parametrize("ephemeral", [True, False])
def test_the_sidebar_says_conversations_are_not_kept_only_where_storage_is_ephemeral(
    engine: Engine, ephemeral: bool,
) -> None:
    demo = build_app(engine=engine, backend_info=ModelInfo(backend="tgi", model_id="m"), ephemeral_storage=ephemeral)
    try:
        assert notes(demo) == ([EPHEMERAL_NOTE] if ephemeral else [])
    finally:
        demo.close()


def test_the_readme_quotes_the_note_the_sidebar_shows() -> None:
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    assert EPHEMERAL_NOTE.removeprefix("ℹ️ ") in readme
