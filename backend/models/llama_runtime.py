"""The one place that reaches into llama-cpp-python's private internals, checked when a model is loaded.

The embedded backend needs three things llama-cpp-python has no public API for: dropping the end of the KV cache
(to reuse a cached prompt prefix), decoding a batch with every position's logits (to score a message's likelihood
without keeping the whole context's logits, hundreds of MB), and asking whether a token ends the generation. They lean
on attributes that may change in any release, so `LlamaRuntime` checks them all up front: a missing one is a
ConfigError at start-up naming the version, not an AttributeError in the middle of a reply.
"""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Sequence
from typing import Any

import llama_cpp
import numpy as np

from backend.errors import ConfigError

__all__ = ["REQUIRED_INTERNALS", "WRITTEN_FOR", "LlamaRuntime", "missing_internals"]

_log = logging.getLogger(__name__)

_DISTRIBUTION = "llama-cpp-python"
# The release these internals were read from (requirements.txt pins it).
WRITTEN_FOR = "0.3.36"
# Dotted paths on a `llama_cpp.Llama`, then on the `llama_cpp` module, that this module uses.
REQUIRED_INTERNALS: tuple[str, ...] = (
    "_ctx.kv_cache_seq_rm",
    "_ctx.decode",
    "_ctx.get_logits",
    "_batch.set_batch",
    "_model.vocab",
    "_requires_eval",
)
_REQUIRED_MODULE_FUNCTIONS: tuple[str, ...] = ("llama_vocab_is_eog",)


def _has_path(obj: object, dotted: str) -> bool:
    for name in dotted.split("."):
        if not hasattr(obj, name):
            return False
        obj = getattr(obj, name)
    return True


def missing_internals(llm: object, module: Any = llama_cpp) -> list[str]:
    """The internals of `llm` (a loaded `llama_cpp.Llama`) and of `module` that are not there, by dotted name."""
    missing = [f"Llama.{path}" for path in REQUIRED_INTERNALS if not _has_path(llm, path)]
    missing += [f"llama_cpp.{name}" for name in _REQUIRED_MODULE_FUNCTIONS if not hasattr(module, name)]
    return missing


def _installed_version() -> str:
    try:
        return importlib.metadata.version(_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:  # imported from a source tree rather than installed
        return "unknown"


class LlamaRuntime:
    """llama-cpp-python's internals for one loaded model, behind methods that say what they are for."""

    def __init__(self, llm: llama_cpp.Llama, *, version: str | None = None) -> None:
        """Check that `llm` has every internal this class uses; ConfigError if not.

        `version` is the installed llama-cpp-python's (read from its metadata unless given). A release other than
        WRITTEN_FOR whose internals are all present only logs a warning: attributes that exist with the same names
        have kept their meaning in every 0.3 release so far, and the embedded tests exercise each of them.
        """
        installed = version or _installed_version()
        missing = missing_internals(llm)
        if missing:
            raise ConfigError(
                f"The installed llama-cpp-python {installed} lacks internals the embedded model needs "
                f"({', '.join(missing)}); Callcard was written for llama-cpp-python {WRITTEN_FOR}: "
                f"install that version (pip install llama-cpp-python=={WRITTEN_FOR})."
            )
        if installed != WRITTEN_FOR:
            _log.warning(
                "llama-cpp-python %s is installed; Callcard's embedded model was written for %s. The internals it "
                "uses are present, so it goes on; if replies look wrong, install %s.",
                installed, WRITTEN_FOR, WRITTEN_FOR,
            )
        self._llm = llm

    def truncate_cache(self, keep: int) -> None:
        """Forget every cached position from `keep` on, so the next evaluation continues after the first `keep`."""
        self._llm._ctx.kv_cache_seq_rm(-1, keep, -1)
        self._llm.n_tokens = keep

    def decode_with_logits(self, tokens: Sequence[int]) -> np.ndarray:
        """Evaluate `tokens` (at most one batch) after the cache, like `Llama.eval`; their logits, one row each.

        `Llama.eval` keeps only the last position's logits unless the model was loaded keeping every position's
        for the whole context; this requests them for this batch alone.
        """
        llm = self._llm
        count = len(tokens)
        llm._batch.set_batch(batch=tokens, n_past=llm.n_tokens, logits_all=True)
        llm._ctx.decode(llm._batch)
        llm.input_ids[llm.n_tokens : llm.n_tokens + count] = tokens
        llm.n_tokens += count
        # Llama.eval clears this after each decode too: the context's logits are fresh, so generate() may sample
        # from them without evaluating again.
        llm._requires_eval = False
        return np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(count, llm.n_vocab())).astype(np.float64)

    def is_end_of_generation(self, token: int) -> bool:
        """Whether the model's vocabulary marks `token` as ending a generation (EOS, end of turn...)."""
        return bool(llama_cpp.llama_vocab_is_eog(self._llm._model.vocab, token))
