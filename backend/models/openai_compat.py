"""The OpenAI-compatible backend: `/v1/chat/completions` with tools (vLLM, llama.cpp's server, TGI's Messages API, ...).

The server applies the model's own chat template and returns calls as structured `tool_calls`; they are assembled
from the streamed fragments into `ReplyDone.calls`. Arguments that do not parse are passed on as text in the Trelis
shape, so the parser reports them instead of anything running with made-up arguments.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from backend.core.calls import FunctionCall
from backend.core.history import Turn
from backend.core.prompts import FUNCTION_RESULT_TEMPLATE
from backend.core.specs import FunctionSpec
from backend.errors import ModelError, ModelUnavailableError
from backend.models.hf_client import Connection, retrying, with_retries
from backend.models.protocol import (
    FailureTracker,
    GenerationParams,
    ModelInfo,
    ReplyDone,
    ReplyEvent,
    TextDelta,
)

__all__ = ["OpenAIBackend", "chat_messages"]

log = logging.getLogger(__name__)

# TGI answers tool_choice="auto" with a synthetic tool when the model chose to talk instead of calling.
_NO_TOOL_NAMES = ("no_tool", "notify_error")
_UNANSWERED_CALL = "(no result: the call was not run)"


@dataclass
class _PartialCall:
    """A tool call being assembled from stream fragments."""

    id: str = ""
    name: str = ""
    arguments: str = ""
    arguments_object: dict[str, Any] | None = None


@dataclass
class _Usage:
    prompt_tokens: int | None = None
    generated_tokens: int | None = None


class OpenAIBackend(FailureTracker):
    """An OpenAI-compatible chat completions server."""

    def __init__(
        self,
        endpoint: str,
        *,
        api_key: str | None = None,
        model: str | None = None,
        timeout: float = 120.0,
        connect_timeout: float = 10.0,
        params: GenerationParams | None = None,
        retries: int = 2,
        retry_backoff: float = 0.5,
    ) -> None:
        endpoint = endpoint.rstrip("/").removesuffix("/chat/completions")
        self._connection = Connection(endpoint, token=api_key, timeout=timeout, connect_timeout=connect_timeout)
        self._models_path = "/models" if endpoint.endswith("/v1") else "/v1/models"
        self._model = model
        self._params = params or GenerationParams()
        self._retries = retries
        self._backoff = retry_backoff
        self._info: ModelInfo | None = None
        self._request_model = model or ""  # what requests name; "" until info() has read the models list

    async def info(self) -> ModelInfo:
        """The served model: the configured one, else the first that `/v1/models` lists."""
        if self._info is not None:
            return self._info
        entry: dict[str, Any] = {}
        try:
            listing = await retrying(
                lambda: self._connection.get_json(self._models_path), retries=self._retries, backoff=self._backoff
            )
            models = listing.get("data") if isinstance(listing, dict) else None
            if isinstance(models, list):
                entries = [m for m in models if isinstance(m, dict)]
                named = [m for m in entries if m.get("id") == self._model]
                entry = (named or entries or [{}])[0]
        except ModelUnavailableError as error:
            if error.status != 404 or self._model is None:
                raise
        context = entry.get("max_model_len")  # vLLM reports the context length here
        name = self._model or entry.get("id")
        # A server that lists no model gets its own address as the model, which huggingface_hub posts to; people
        # see a plain name instead of the address.
        self._request_model = str(name or self._connection.endpoint)
        self._info = ModelInfo(
            backend="openai",
            model_id=str(name or "unnamed model"),
            max_total_tokens=context if isinstance(context, int) else None,
            call_mode="parse",
        )
        return self._info

    async def health(self) -> bool:
        """Whether the server lists its models."""
        error = await self._connection.probe(self._models_path)
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
        """Stream the reply to `conversation`: `TextDelta`s, then one `ReplyDone` with any tool calls.

        Closing the stream (or cancelling the task reading it) closes the connection, so the server stops too.
        """
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
        await self.info()
        model = self._request_model
        request: dict[str, Any] = {
            "model": model,
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "seed": params.seed,
            "stop": params.stop or None,
            "stream_options": {"include_usage": True},
        }
        if functions:
            request["tools"] = [spec.to_openai_tool() for spec in functions]
            request["tool_choice"] = "auto"
        messages = chat_messages(conversation, system=system)
        known = {spec.name for spec in functions}
        calls: dict[int, _PartialCall] = {}
        usage = _Usage()
        finish_reason = "stop"
        chunks = with_retries(
            lambda: self._attempt(messages, request),
            self._connection,
            retries=self._retries,
            backoff=self._backoff,
        )
        async with aclosing(chunks) as chunks:
            async for chunk in chunks:
                if chunk.usage:
                    usage = _Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
                for choice in chunk.choices or []:
                    if choice.index not in (0, None):
                        continue
                    delta = choice.delta
                    if delta is not None and delta.content:
                        yield TextDelta(text=delta.content)
                    for fragment in (delta.tool_calls if delta is not None else None) or []:
                        _merge(calls, fragment)
                    if choice.finish_reason:
                        finish_reason = choice.finish_reason
        finished: list[FunctionCall] = []
        for index in sorted(calls):
            call, text = _finish_call(calls[index], known)
            if text:
                yield TextDelta(text=text)
            if call is not None:
                finished.append(call)
        yield ReplyDone(
            finish_reason=finish_reason,
            prompt_tokens=usage.prompt_tokens,
            generated_tokens=usage.generated_tokens,
            calls=finished,
        )

    async def _attempt(self, messages: list[dict[str, Any]], request: dict[str, Any]) -> AsyncGenerator[Any, None]:
        """One streamed chat completion request; closing the client ends it on the server too."""
        finished = False
        async with self._connection.client() as client:
            stream = await client.chat_completion(messages, stream=True, **request)
            iterator = aiter(stream)
            while True:
                try:
                    chunk = await anext(iterator)
                except StopAsyncIteration:
                    return
                except json.JSONDecodeError:
                    # huggingface_hub only knows `data: [DONE]`; servers may write `data:[DONE]` (the space is
                    # optional in SSE). After the finish reason it can only be the end marker.
                    if finished:
                        return
                    raise
                finished = finished or any(choice.finish_reason for choice in chunk.choices or [])
                yield chunk


def chat_messages(conversation: Sequence[Turn], *, system: str | None = None) -> list[dict[str, Any]]:
    """The conversation as chat messages: calls become assistant `tool_calls` with their ids, results `tool` messages
    naming the call they answer."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    unanswered: dict[str, None] = {}  # ids of the calls with no result yet, oldest first
    for message in conversation:
        if message.call is not None:
            call_id = str(message.call.id)
            unanswered[call_id] = None
            tool_call = {
                "id": call_id,
                "type": "function",
                "function": {"name": message.call.name, "arguments": json.dumps(message.call.arguments, ensure_ascii=False)},
            }
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(tool_call)
            else:
                messages.append({"role": "assistant", "content": "", "tool_calls": [tool_call]})
        elif message.call_id is not None:
            if message.call_id in unanswered:
                del unanswered[message.call_id]
                messages.append({"role": "tool", "tool_call_id": message.call_id, "content": message.text})
            else:  # a result whose call is not in this history (cut off with older turns): plain text
                messages.append({"role": "user", "content": FUNCTION_RESULT_TEMPLATE.format(result=message.text)})
        else:
            # Servers refuse a conversation that leaves a tool call unanswered (a call the person declined
            # without a result, say), so close each one before the conversation moves on.
            for call_id in unanswered:
                messages.append({"role": "tool", "tool_call_id": call_id, "content": _UNANSWERED_CALL})
            unanswered.clear()
            messages.append({"role": message.role, "content": message.text})
    return messages


def _merge(calls: dict[int, _PartialCall], fragment: Any) -> None:
    """Add one streamed `tool_calls` fragment to the call it belongs to."""
    index = fragment.index if isinstance(fragment.index, int) else 0
    part = calls.setdefault(index, _PartialCall())
    if fragment.id:
        part.id = fragment.id
    function = fragment.function
    if function is None:
        return
    if function.name:
        part.name = function.name
    arguments = function.arguments
    if isinstance(arguments, dict):
        part.arguments_object = arguments
    elif isinstance(arguments, str):
        part.arguments += arguments


def _finish_call(part: _PartialCall, known: set[str]) -> tuple[FunctionCall | None, str]:
    """The assembled call, or the text to show instead (a talk-instead-of-call answer, unreadable arguments)."""
    arguments: Any = part.arguments_object
    if arguments is None:
        try:
            arguments = json.loads(part.arguments) if part.arguments.strip() else {}
        except ValueError:
            log.info("tool call %r has arguments that are not JSON; passing them on as text", part.name)
            return None, f'{{"function": {json.dumps(part.name)}, "arguments": {part.arguments}'
    if part.name in _NO_TOOL_NAMES and part.name not in known:
        said = arguments.get("content") or arguments.get("error") if isinstance(arguments, dict) else None
        return None, str(said or "")
    if not isinstance(arguments, dict):
        return None, f'{{"function": {json.dumps(part.name)}, "arguments": {json.dumps(arguments)}}}'
    return FunctionCall(name=part.name, arguments=arguments), ""
