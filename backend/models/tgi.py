"""The text-generation-inference backend: Trelis prompts, streamed tokens, and calls made valid by a grammar.

With functions on offer, a reply is first generated freely. Prose streams as it comes; as soon as the model starts a
call, that request is cancelled and the call is asked for again under a JSON grammar of the offered calls, after the
prose already shown. Free text therefore stays free, and calls come out valid by construction. Servers that refuse
grammars are remembered, and their calls are left to the parser.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterable, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, cast

from backend.core.detector import CallDetector
from backend.core.history import Turn
from backend.core.prompts import PromptStyle, format_prompt, stop_sequences
from backend.core.specs import FunctionSpec, calls_schema
from backend.errors import ModelError, ModelInputError, ModelUnavailableError
from backend.models.hf_client import Connection, IncompleteReplyError, retrying, with_retries
from backend.models.protocol import (
    CallMode,
    FailureTracker,
    GenerationParams,
    ModelInfo,
    ReplyDone,
    ReplyEvent,
    TextDelta,
)

__all__ = ["TGIBackend"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _ServerInfo:
    model_id: str
    max_input_tokens: int | None
    max_total_tokens: int | None
    max_stop_sequences: int | None


@dataclass(frozen=True)
class _Request:
    """One reply's settings, shared by the requests it takes (the free probe and the grammar re-request)."""

    params: GenerationParams
    stop: list[str]


@dataclass(frozen=True)
class _End:
    finish_reason: str
    prompt_tokens: int | None
    generated_tokens: int | None


class TGIBackend(FailureTracker):
    """A text-generation-inference server reached over HTTP (`/generate_stream`, `/info`, `/health`)."""

    def __init__(
        self,
        endpoint: str,
        *,
        token: str | None = None,
        timeout: float = 120.0,
        connect_timeout: float = 10.0,
        style: PromptStyle = "llama2",
        params: GenerationParams | None = None,
        call_mode: CallMode = "grammar",
        retries: int = 2,
        retry_backoff: float = 0.5,
        count_tokens: Callable[[str], int] | None = None,
    ) -> None:
        self._connection = Connection(endpoint, token=token, timeout=timeout, connect_timeout=connect_timeout)
        self._style = style
        self._params = params or GenerationParams()
        self._call_mode: CallMode = call_mode
        self._retries = retries
        self._backoff = retry_backoff
        self._count_tokens = count_tokens
        self._server: _ServerInfo | None = None

    async def info(self) -> ModelInfo:
        """The served model (from `/info`, read once) and how calls are made valid."""
        server = await self._server_info()
        return ModelInfo(
            backend="tgi",
            model_id=server.model_id,
            max_input_tokens=server.max_input_tokens,
            max_total_tokens=server.max_total_tokens,
            call_mode=self._call_mode,
            prompt_style=self._style,
        )

    async def health(self) -> bool:
        """Whether `/health` says the server can generate."""
        error = await self._connection.probe("/health")
        self.note(error)
        return error is None

    async def stream(
        self,
        conversation: Sequence[Turn],
        functions: Sequence[FunctionSpec],
        *,
        system: str | None = None,
        params: GenerationParams | None = None,
    ) -> AsyncGenerator[ReplyEvent, None]:
        """Stream the reply to `conversation`: `TextDelta`s, then one `ReplyDone`; closing it closes the connection."""
        try:
            async with aclosing(self._stream(conversation, functions, system, params or self._params)) as events:
                async for event in events:
                    if isinstance(event, ReplyDone):
                        self.note(None)
                    yield event
        except ModelError as error:
            self.note(error)
            raise

    async def _stream(
        self, conversation: Sequence[Turn], functions: Sequence[FunctionSpec], system: str | None,
        params: GenerationParams,
    ) -> AsyncGenerator[ReplyEvent, None]:
        server = await self._server_info()
        input_budget = _input_budget(server, params)
        prompt = format_prompt(
            conversation,
            functions,
            system=system,
            style=self._style,
            max_input_tokens=input_budget,
            count_tokens=self._count_tokens,
        )
        request = _Request(params=params, stop=self._stops(server, params))
        if functions and self._call_mode == "grammar":
            events = self._guided(prompt, request, list(functions))
        else:
            events = self._free(prompt, request)
        async with aclosing(events) as events:
            async for event in events:
                yield event

    # -- the two ways of answering ----------------------------------------------------------------------------

    async def _free(self, prompt: str, request: _Request, *, spent_tokens: int = 0) -> AsyncGenerator[ReplyEvent, None]:
        """Stream one unconstrained generation as the reply."""
        async with aclosing(self._generate(prompt, request, grammar=None)) as items:
            async for item in items:
                if isinstance(item, _End):
                    yield _done(item, spent_tokens)
                else:
                    yield TextDelta(text=item)

    async def _guided(
        self, prompt: str, request: _Request, functions: list[FunctionSpec]
    ) -> AsyncGenerator[ReplyEvent, None]:
        """Generate freely; if the model starts a call, ask for the call again under the calls grammar."""
        detector = CallDetector()
        raw, shown, probe_tokens = "", "", 0
        async with aclosing(self._generate(prompt, request, grammar=None)) as probe:
            async for item in probe:
                if isinstance(item, _End):
                    # No call: the free reply is the reply. Flush what the detector was still holding back (it
                    # shows prose without the reply's leading whitespace, so find where the shown part ends).
                    end = raw.find(shown)
                    rest = raw[end + len(shown) :] if end != -1 else ""
                    if rest:
                        yield TextDelta(text=rest)
                    yield _done(item)
                    return
                raw += item
                probe_tokens += 1
                state = detector.feed(item)
                safe = detector.text_so_far
                if len(safe) > len(shown) and safe.startswith(shown):
                    yield TextDelta(text=safe[len(shown) :])
                    shown = safe
                if state == "call":
                    break
        # Leaving the `async with` closed the probe's connection, so the server stops generating it.
        guided_prompt = prompt + shown
        grammar = {"type": "json", "value": calls_schema(functions)}
        try:
            async with aclosing(self._generate(guided_prompt, request, grammar=grammar)) as items:
                async for item in items:
                    yield _done(item, probe_tokens) if isinstance(item, _End) else TextDelta(text=item)
            return
        except ModelInputError as error:
            # Input errors come before the first token (later failures are GenerationErrors): since the same
            # request without a grammar was accepted, the grammar is what the server refused.
            self._call_mode = "parse"
            log.warning(
                "%s refused a grammar (%s); its calls will be parsed from free text from now on",
                self._connection.endpoint,
                error,
            )
        async with aclosing(self._free(guided_prompt, request, spent_tokens=probe_tokens)) as events:
            async for event in events:
                yield event

    # -- one generation ---------------------------------------------------------------------------------------

    async def _generate(
        self, prompt: str, request: _Request, *, grammar: dict[str, Any] | None
    ) -> AsyncGenerator[str | _End, None]:
        """Text pieces of one generation (retried until its first token), stop sequences removed, then its `_End`."""
        trimmer = _StopTrimmer(request.stop)
        attempts = with_retries(
            lambda: self._attempt(prompt, request, grammar),
            self._connection,
            retries=self._retries,
            backoff=self._backoff,
        )
        async with aclosing(attempts) as items:
            async for item in items:
                if isinstance(item, _End):
                    tail = trimmer.finish(item.finish_reason)
                    if tail:
                        yield tail
                    yield item
                    return
                text = trimmer.feed(item)
                if text:
                    yield text

    async def _attempt(
        self, prompt: str, request: _Request, grammar: dict[str, Any] | None
    ) -> AsyncGenerator[str | _End, None]:
        """One HTTP request to `/generate_stream`'s equivalent; closing the client ends it on the server too."""
        params = request.params
        sampling = _Sampling.of(params)
        async with self._connection.client() as client:
            # With stream=True and details=True this is a stream of TextGenerationStreamOutput; the library's overloads
            # cannot say so for a grammar given as the plain dict that goes on the wire.
            stream = cast(
                AsyncIterable[Any],
                await client.text_generation(  # type: ignore[call-overload, misc]
                    prompt,
                    stream=True,
                    details=True,
                    max_new_tokens=params.max_new_tokens,
                    repetition_penalty=params.repetition_penalty,
                    stop=request.stop,
                    seed=params.seed,
                    grammar=grammar,  # type: ignore[arg-type]  # the plain dict is what goes on the wire
                    do_sample=sampling.do_sample,
                    temperature=sampling.temperature,
                    top_p=sampling.top_p,
                    top_k=sampling.top_k,
                ),
            )
            async for event in stream:
                token = event.token
                if token is not None and not token.special and token.text:
                    yield token.text
                if event.details is not None:
                    details = event.details
                    yield _End(
                        finish_reason=str(details.finish_reason),
                        prompt_tokens=details.input_length,
                        generated_tokens=details.generated_tokens,
                    )
                    return
        raise IncompleteReplyError

    # -- server facts -----------------------------------------------------------------------------------------

    async def _server_info(self) -> _ServerInfo:
        if self._server is not None:
            return self._server
        try:
            raw = await retrying(
                lambda: self._connection.get_json("/info"), retries=self._retries, backoff=self._backoff
            )
        except ModelUnavailableError as error:
            if error.status != 404:
                raise
            # Some proxies and TGI-compatible servers have no /info: generate without knowing the limits.
            log.warning("%s has no /info; the model's limits are unknown", self._connection.endpoint)
            raw = {}
        self._server = _ServerInfo(
            model_id=str(raw.get("model_id") or "unnamed TGI model"),  # not the address: people see this name
            max_input_tokens=_int(raw.get("max_input_tokens", raw.get("max_input_length"))),
            max_total_tokens=_int(raw.get("max_total_tokens")),
            max_stop_sequences=_int(raw.get("max_stop_sequences")),
        )
        return self._server

    def _stops(self, server: _ServerInfo, params: GenerationParams) -> list[str]:
        stops = list(dict.fromkeys([*stop_sequences(self._style), *params.stop]))
        limit = server.max_stop_sequences
        if limit is not None and len(stops) > limit:
            log.warning("the server accepts %d stop sequences; ignoring %s", limit, stops[limit:])
            stops = stops[:limit]
        return stops


def _input_budget(server: _ServerInfo, params: GenerationParams) -> int | None:
    """The prompt's token budget, leaving room for `max_new_tokens` in the model's context (TGI checks the sum)."""
    total = server.max_total_tokens
    if total is None:
        return server.max_input_tokens
    room = total - params.max_new_tokens
    if room <= 0:
        raise ModelInputError(
            f"Max new tokens ({params.max_new_tokens:,}) leaves no room for the message in the model's "
            f"{total:,}-token context: lower it in the conversation's settings."
        )
    return room if server.max_input_tokens is None else min(server.max_input_tokens, room)


@dataclass(frozen=True)
class _Sampling:
    """Sampling parameters as TGI validates them (None: not sent)."""

    do_sample: bool
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None

    @classmethod
    def of(cls, params: GenerationParams) -> _Sampling:
        """Temperature 0 means greedy decoding; TGI refuses top_p >= 1, which means no nucleus filtering anyway."""
        if params.temperature == 0:
            return cls(do_sample=False)
        top_p = params.top_p if params.top_p < 1 else None
        return cls(do_sample=True, temperature=params.temperature, top_p=top_p, top_k=params.top_k)


def _done(end: _End, spent_tokens: int = 0) -> ReplyDone:
    generated = None if end.generated_tokens is None else end.generated_tokens + spent_tokens
    return ReplyDone(finish_reason=end.finish_reason, prompt_tokens=end.prompt_tokens, generated_tokens=generated)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class _StopTrimmer:
    """Holds back text that may be the start of a stop sequence, and drops the stop sequence that ended the reply.

    TGI streams the stop sequence's tokens and keeps it in `generated_text`; it is not part of the answer.
    """

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = [stop for stop in stops if stop]
        self._held = ""

    def feed(self, text: str) -> str:
        """The part of everything fed so far that can be shown now."""
        self._held += text
        cut = len(self._held)
        for stop in self._stops:
            found = self._held.find(stop)
            if found != -1:
                cut = min(cut, found)
            for size in range(min(len(stop) - 1, len(self._held)), 0, -1):
                if self._held.endswith(stop[:size]):
                    cut = min(cut, len(self._held) - size)
                    break
        shown, self._held = self._held[:cut], self._held[cut:]
        return shown

    def finish(self, finish_reason: str) -> str:
        """The held-back rest, without the stop sequence if one ended the reply."""
        text, self._held = self._held, ""
        if finish_reason in ("stop_sequence", "eos_token"):
            found = [index for stop in self._stops if (index := text.find(stop)) != -1]
            if found:
                text = text[: min(found)]
        return text
