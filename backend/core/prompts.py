"""Prompt formats: a conversation and its functions rendered as the text a completion model was trained on."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from backend.core.history import Turn
from backend.core.specs import FunctionSpec, function_list_text, load_functions
from backend.errors import PromptTooLongError

__all__ = [
    "PromptStyle",
    "PROMPT_STYLES",
    "FUNCTION_RESULT_TEMPLATE",
    "format_prompt",
    "stop_sequences",
    "estimate_tokens",
    "NATIVE_CALLS_OPEN",
    "NATIVE_CALLS_CLOSE",
    "native_messages",
    "native_calls_text",
    "native_tools_prompt",
]

PromptStyle = Literal["llama2", "mistral"]
PROMPT_STYLES: tuple[PromptStyle, ...] = ("llama2", "mistral")

# The v2 model card documents no way to return a result; Trelis' v3 templates use this user turn.
FUNCTION_RESULT_TEMPLATE = "Here is the response to the function call. If helpful, use it to respond to my question:\n\n{result}"


@dataclass(frozen=True)
class _Markers:
    turn_end: str  # after an assistant answer, before the next [INST]
    system_in_sys_block: bool  # Llama-2 has <<SYS>>; Mistral v0.1 has no system role


_STYLES: dict[str, _Markers] = {
    "llama2": _Markers(turn_end=" </s><s>", system_in_sys_block=True),
    "mistral": _Markers(turn_end="</s>", system_in_sys_block=False),
}


def stop_sequences(style: str) -> list[str]:
    """Strings that end the model's turn in `style` (beyond the end-of-sequence token the server stops on)."""
    _markers(style)
    return ["</s>", "[INST]"]


def estimate_tokens(text: str) -> int:
    """A deliberately high token estimate for servers whose tokenizer we do not have (about 3 characters per token)."""
    return len(text) // 3 + 1


def format_prompt(
    conversation: Sequence[Turn],
    functions: Iterable[FunctionSpec | dict[str, Any]] = (),
    *,
    system: str | None = None,
    style: str = "llama2",
    max_input_tokens: int | None = None,
    count_tokens: Callable[[str], int] | None = None,
) -> str:
    """Render `conversation` for a Trelis function-calling model, dropping the oldest turns to fit `max_input_tokens`."""
    markers = _markers(style)
    specs = load_functions(functions)
    turns = _group_turns(conversation)
    if not turns:
        raise ValueError("format_prompt needs at least one message.")
    prompt = _render(turns, specs, system, markers)
    if max_input_tokens is None:
        return prompt
    count = count_tokens or estimate_tokens
    # Drop whole exchanges from the oldest; the function block, the system prompt and the newest exchange always stay.
    # The whole conversation is tried first even when it opens with a function result (history cut by the caller).
    exchange_starts = [0, *(i for i, turn in enumerate(turns) if turn.starts_exchange and i > 0)]
    for first_kept in exchange_starts:
        prompt = _render(turns[first_kept:], specs, system, markers)
        if count(prompt) <= max_input_tokens:
            return prompt
    raise PromptTooLongError(
        f"This message is too long for the model (it needs about {count(prompt)} tokens; its input limit is "
        f"{max_input_tokens}). Shorten it, or start a new conversation."
    )


@dataclass
class _Turn:
    """One [INST] block: what the user side said (messages or function results) and the assistant's answer, if any."""

    user: list[str]
    assistant: list[str]
    starts_exchange: bool  # begins with a user message, not a function result: a safe place to cut history


def _group_turns(conversation: Sequence[Turn]) -> list[_Turn]:
    turns: list[_Turn] = []
    for message in conversation:
        role = message.role
        if role in ("user", "function_result"):
            text = FUNCTION_RESULT_TEMPLATE.format(result=message.text) if role == "function_result" else message.text
            if not turns or turns[-1].assistant:
                turns.append(_Turn(user=[], assistant=[], starts_exchange=role == "user"))
            turns[-1].user.append(text)
        else:
            if not turns:
                turns.append(_Turn(user=[], assistant=[], starts_exchange=True))
            turns[-1].assistant.append(message.call.to_trelis_json() if message.call is not None else message.text)
    return turns


def _render(turns: list[_Turn], specs: list[FunctionSpec], system: str | None, markers: _Markers) -> str:
    parts: list[str] = []
    system = (system or "").strip()  # a blank system prompt would leave an empty <<SYS>> block
    if specs:
        parts.append(f"<FUNCTIONS>{function_list_text(specs)}</FUNCTIONS>\n\n")
    for index, turn in enumerate(turns):
        user = "\n\n".join(t.strip() for t in turn.user)
        if index == 0 and system:
            if markers.system_in_sys_block:
                user = f"<<SYS>>\n{system}\n<</SYS>>\n\n{user}"
            else:
                user = f"{system}\n\n{user}"
        parts.append(f"[INST] {user} [/INST]\n\n")
        if turn.assistant:
            parts.append("\n".join(a.strip() for a in turn.assistant))
            if index < len(turns) - 1:
                parts.append(markers.turn_end)
    return "".join(parts)


def _markers(style: str) -> _Markers:
    try:
        return _STYLES[style]
    except KeyError:
        raise ValueError(f"Unknown prompt style {style!r}; use one of {', '.join(PROMPT_STYLES)}.") from None


# The "native" style: a model's own chat template (the backend renders it), with the functions in the system message
# and calls written as a JSON list in <tool_call> tags, the convention SmolLM2 and many small models were tuned on.
NATIVE_CALLS_OPEN = "<tool_call>["
NATIVE_CALLS_CLOSE = "]</tool_call>"

# Worded after the tool prompt SmolLM2 was tuned with (its format example, the empty list for "no call"): the small
# model follows this one better than a plainer wording (BFCL held-out cases: 60/32/8% against 56/24/8% on
# simple/multiple/live_simple).
_NATIVE_TOOLS_PROMPT = """You are an expert at composing function calls. You get a question and a set of possible \
functions. Based on the question, make one or more function/tool calls that achieve its purpose.
If none of the functions can be used, say so and do not answer.
If the question lacks the parameters a function requires, say so as well.

Your output MUST follow this format exactly, with NO other text. Make sure each parameter has the right type. \
If no function call is needed, make the tool calls an empty list '[]'.
<tool_call>[
{{"name": "func_name1", "arguments": {{"argument1": "value1", "argument2": "value2"}}}},
... (more tool calls as required)
]</tool_call>

You have access to the following tools:
<tools>{tools}</tools>"""


def native_tools_prompt(functions: Iterable[FunctionSpec | dict[str, Any]]) -> str:
    """The system text that offers `functions` in the native style: instructions first, the list of tools last."""
    tools = [
        {"name": spec.name, "description": spec.description, "parameters": spec.to_json_schema()}
        for spec in load_functions(list(functions))
    ]
    return _NATIVE_TOOLS_PROMPT.format(tools=json.dumps(tools, ensure_ascii=False))


def native_calls_text(calls: Iterable[tuple[str, dict[str, Any]]]) -> str:
    """Calls as the native style writes them: `<tool_call>[` one JSON object per line `]</tool_call>`."""
    lines = ",\n".join(json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False) for name, arguments in calls)
    return f"{NATIVE_CALLS_OPEN}\n{lines}\n{NATIVE_CALLS_CLOSE}"


def native_messages(
    conversation: Sequence[Turn],
    functions: Iterable[FunctionSpec | dict[str, Any]] = (),
    *,
    system: str | None = None,
) -> list[dict[str, str]]:
    """`conversation` as chat messages for a model's own template: calls in <tool_call> tags, results as user turns."""
    specs = load_functions(list(functions))
    parts = [native_tools_prompt(specs)] if specs else []
    if system and system.strip():
        parts.append(system.strip())
    messages: list[dict[str, str]] = [{"role": "system", "content": "\n\n".join(parts)}] if parts else []
    for message in conversation:
        role, content = message.role, message.text
        if message.call is not None:
            role, content = "assistant", native_calls_text([(message.call.name, message.call.arguments)])
        elif role == "function_result":
            role, content = "user", f"<tool_response>\n{content.strip()}\n</tool_response>"
        if messages and messages[-1]["role"] == role and role != "system":
            messages[-1] = {"role": role, "content": _join_native(messages[-1]["content"], content)}
        else:
            messages.append({"role": role, "content": content.strip()})
    return messages


def _join_native(previous: str, content: str) -> str:
    """Two messages of one role merged; consecutive calls become one <tool_call> list."""
    suffix = f"\n{NATIVE_CALLS_CLOSE}"
    if previous.endswith(suffix) and content.startswith(f"{NATIVE_CALLS_OPEN}\n"):
        return previous[: -len(suffix)] + ",\n" + content[len(NATIVE_CALLS_OPEN) + 1 :]
    return f"{previous}\n{content.strip()}"
