"""Prompt formats: golden strings from the Trelis model card, multi-turn history, function results, token budgets."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backend.core.calls import FunctionCall
from backend.core.history import Turn
from backend.core.prompts import (
    FUNCTION_RESULT_TEMPLATE,
    PROMPT_STYLES,
    estimate_tokens,
    format_prompt,
    native_messages,
    stop_sequences,
)
from backend.core.specs import FunctionSpec
from backend.errors import CallcardError, PromptTooLongError

SEARCH_BING = {
    "function": "search_bing",
    "description": (
        "Search the web for content on Bing. This allows users to search online/the internet/the web for content."
    ),
    "arguments": [{"name": "query", "type": "string", "description": "The search query string"}],
}
SEARCH_ARXIV = {
    "function": "search_arxiv",
    "description": (
        "Search for research papers on ArXiv. Make use of AND, OR and NOT operators as appropriate to join terms "
        "within the query."
    ),
    "arguments": [{"name": "query", "type": "string", "description": "The search query string"}],
}

# The model card's sample functionList, written out by hand: indent 4, a blank line between the objects.
FUNCTIONS_BLOCK = """<FUNCTIONS>{
    "function": "search_bing",
    "description": "Search the web for content on Bing. This allows users to search online/the internet/the web for content.",
    "arguments": [
        {
            "name": "query",
            "type": "string",
            "description": "The search query string"
        }
    ]
}

{
    "function": "search_arxiv",
    "description": "Search for research papers on ArXiv. Make use of AND, OR and NOT operators as appropriate to join terms within the query.",
    "arguments": [
        {
            "name": "query",
            "type": "string",
            "description": "The search query string"
        }
    ]
}</FUNCTIONS>

"""

USER = "Search for the latest news on AI."
SYSTEM = "You are a helpful research assistant."
RESULT_LEAD = "Here is the response to the function call. If helpful, use it to respond to my question:\n\n"


_user = Turn.user
_assistant = Turn.assistant


def _call(name: str, **arguments: Any) -> Turn:
    return Turn.function_call(FunctionCall(id=f"id-{name}", name=name, arguments=arguments))


def _result(text: str) -> Turn:
    return Turn.function_result("id-result", text)


# --- golden strings ---------------------------------------------------------------------------------------------


def test_model_card_prompt_without_system() -> None:
    prompt = format_prompt([_user(USER)], [SEARCH_BING, SEARCH_ARXIV])
    assert prompt == FUNCTIONS_BLOCK + "[INST] Search for the latest news on AI. [/INST]\n\n"


def test_model_card_prompt_with_system() -> None:
    prompt = format_prompt([_user(USER)], [SEARCH_BING, SEARCH_ARXIV], system=SYSTEM)
    assert prompt == (
        FUNCTIONS_BLOCK
        + "[INST] <<SYS>>\nYou are a helpful research assistant.\n<</SYS>>\n\n"
        + "Search for the latest news on AI. [/INST]\n\n"
    )


def test_no_functions_means_no_function_block() -> None:
    assert format_prompt([_user("Hi there")]) == "[INST] Hi there [/INST]\n\n"
    assert format_prompt([_user("Hi there")], []) == "[INST] Hi there [/INST]\n\n"
    assert format_prompt([_user("Hi")], system="Be brief.") == "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST]\n\n"


def test_one_function_block() -> None:
    prompt = format_prompt([_user("hi")], [{"function": "now", "description": "The time.", "arguments": []}])
    assert prompt == (
        '<FUNCTIONS>{\n    "function": "now",\n    "description": "The time.",\n    "arguments": []\n}</FUNCTIONS>\n\n'
        "[INST] hi [/INST]\n\n"
    )


def test_messages_and_system_are_stripped_and_blank_system_is_left_out() -> None:
    assert format_prompt([_user("  Hi \n")], system="\n Be brief. ") == (
        "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST]\n\n"
    )
    assert format_prompt([_user("Hi")], system=" \n ") == "[INST] Hi [/INST]\n\n"
    assert format_prompt([_user("Hi")], system="") == "[INST] Hi [/INST]\n\n"


@pytest.mark.parametrize(
    "functions",
    [
        [SEARCH_BING, SEARCH_ARXIV],
        [{"functionMetadata": SEARCH_BING}, {"functionMetadata": SEARCH_ARXIV}],
        [
            {
                "type": "function",
                "function": {
                    "name": "search_bing",
                    "description": SEARCH_BING["description"],
                    "parameters": {
                        "type": "object",
                        "properties": {"query": {"type": "string", "description": "The search query string"}},
                        "required": ["query"],
                    },
                },
            },
            {
                "name": "search_arxiv",
                "description": SEARCH_ARXIV["description"],
                "parameters": {
                    "type": "object",
                    "properties": {"query": {"type": "string", "description": "The search query string"}},
                    "required": ["query"],
                },
            },
        ],
        [FunctionSpec.from_any(SEARCH_BING), SEARCH_ARXIV],
        (f for f in [SEARCH_BING, SEARCH_ARXIV]),
    ],
    ids=["trelis", "functionMetadata", "openai-and-plain", "spec-and-dict", "generator"],
)
def test_functions_in_any_form_give_the_same_block(functions: Any) -> None:
    expected = FUNCTIONS_BLOCK + "[INST] Search for the latest news on AI. [/INST]\n\n"
    assert format_prompt([_user(USER)], functions) == expected


# --- multi-turn history -----------------------------------------------------------------------------------------


def test_llama2_multi_turn() -> None:
    conversation = [_user("Hi"), _assistant("Hello! How can I help?"), _user("Tell me a joke.")]
    assert format_prompt(conversation, system="Be kind.") == (
        "[INST] <<SYS>>\nBe kind.\n<</SYS>>\n\nHi [/INST]\n\n"
        "Hello! How can I help? </s><s>"
        "[INST] Tell me a joke. [/INST]\n\n"
    )


def test_function_call_and_result_turns() -> None:
    conversation = [
        _user("Find papers on llamas"),
        _call("search_arxiv", query="llamas"),
        _result('{"titles": ["Llama 2", "Lama glama"]}'),
        _assistant("I found two papers."),
        _user("Thanks!"),
    ]
    assert format_prompt(conversation, [SEARCH_BING, SEARCH_ARXIV]) == (
        FUNCTIONS_BLOCK
        + "[INST] Find papers on llamas [/INST]\n\n"
        + '{"function": "search_arxiv", "arguments": {"query": "llamas"}} </s><s>'
        + "[INST] Here is the response to the function call. If helpful, use it to respond to my question:\n\n"
        + '{"titles": ["Llama 2", "Lama glama"]} [/INST]\n\n'
        + "I found two papers. </s><s>"
        + "[INST] Thanks! [/INST]\n\n"
    )


def test_prompt_ends_open_after_a_function_result() -> None:
    conversation = [_user("Weather in Oslo?"), _call("get_weather", city="Oslo"), _result("-3 C, snow")]
    assert format_prompt(conversation) == (
        "[INST] Weather in Oslo? [/INST]\n\n"
        '{"function": "get_weather", "arguments": {"city": "Oslo"}} </s><s>'
        "[INST] Here is the response to the function call. If helpful, use it to respond to my question:\n\n"
        "-3 C, snow [/INST]\n\n"
    )


def test_several_calls_and_results_share_a_turn() -> None:
    conversation = [
        _user("Oslo and Rome?"),
        _call("get_weather", city="Oslo"),
        _call("get_weather", city="Rome"),
        _result("snow"),
        _result("sun"),
    ]
    assert format_prompt(conversation) == (
        "[INST] Oslo and Rome? [/INST]\n\n"
        '{"function": "get_weather", "arguments": {"city": "Oslo"}}\n'
        '{"function": "get_weather", "arguments": {"city": "Rome"}} </s><s>'
        f"[INST] {RESULT_LEAD}snow\n\n{RESULT_LEAD}sun [/INST]\n\n"
    )


def test_a_call_without_a_result_is_followed_by_the_users_own_turn() -> None:
    # A skipped call (the user wrote a new message instead of confirming) keeps its call and gets no result.
    conversation = [_user("Weather in Oslo?"), _call("get_weather", city="Oslo"), _user("Actually, what time is it?")]
    call = '{"function": "get_weather", "arguments": {"city": "Oslo"}}'
    assert format_prompt(conversation) == (
        f"[INST] Weather in Oslo? [/INST]\n\n{call} </s><s>[INST] Actually, what time is it? [/INST]\n\n"
    )
    assert format_prompt(conversation, style="mistral") == (
        f"[INST] Weather in Oslo? [/INST]\n\n{call}</s>[INST] Actually, what time is it? [/INST]\n\n"
    )
    assert native_messages(conversation) == [
        {"role": "user", "content": "Weather in Oslo?"},
        {
            "role": "assistant",
            "content": '<tool_call>[\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n]</tool_call>',
        },
        {"role": "user", "content": "Actually, what time is it?"},
    ]


def test_consecutive_user_messages_share_a_turn() -> None:
    # The engine never sends two in a row (a message the model never answered is left out); other callers may.
    assert format_prompt([_user("Hi"), _user("Are you there?")]) == "[INST] Hi\n\nAre you there? [/INST]\n\n"


def test_function_result_template() -> None:
    assert FUNCTION_RESULT_TEMPLATE == RESULT_LEAD + "{result}"


def test_mistral_style() -> None:
    conversation = [_user("Hi"), _assistant("Hello!"), _user(USER)]
    assert format_prompt(conversation, [SEARCH_BING, SEARCH_ARXIV], system=SYSTEM, style="mistral") == (
        FUNCTIONS_BLOCK
        + "[INST] You are a helpful research assistant.\n\nHi [/INST]\n\n"
        + "Hello!</s>"
        + "[INST] Search for the latest news on AI. [/INST]\n\n"
    )
    assert format_prompt([_user("Hi")], style="mistral") == "[INST] Hi [/INST]\n\n"


def test_mistral_function_result() -> None:
    conversation = [_user("Weather?"), _call("get_weather", city="Oslo"), _result("snow")]
    assert format_prompt(conversation, style="mistral") == (
        "[INST] Weather? [/INST]\n\n"
        '{"function": "get_weather", "arguments": {"city": "Oslo"}}</s>'
        f"[INST] {RESULT_LEAD}snow [/INST]\n\n"
    )


def test_system_only_in_the_first_turn() -> None:
    for style in PROMPT_STYLES:
        prompt = format_prompt([_user("a"), _assistant("b"), _user("c")], system="SYSTEM TEXT", style=style)
        assert prompt.count("SYSTEM TEXT") == 1
        assert prompt.index("SYSTEM TEXT") < prompt.index("a [/INST]")


# --- styles and bad input ---------------------------------------------------------------------------------------


def test_styles_and_stop_sequences() -> None:
    assert PROMPT_STYLES == ("llama2", "mistral")
    assert stop_sequences("llama2") == ["</s>", "[INST]"]
    assert stop_sequences("mistral") == ["</s>", "[INST]"]


def test_unknown_style() -> None:
    with pytest.raises(ValueError, match="chatml") as caught:
        format_prompt([_user("hi")], style="chatml")
    assert "llama2" in str(caught.value) and "mistral" in str(caught.value)
    with pytest.raises(ValueError, match="llama3"):
        stop_sequences("llama3")


def test_empty_conversation_and_unknown_role() -> None:
    with pytest.raises(ValueError):
        format_prompt([])
    with pytest.raises(ValueError, match="'tool'"):
        Turn(role="tool", text="x")  # type: ignore[arg-type]


# --- token budget -----------------------------------------------------------------------------------------------

HISTORY = [
    _user("first question"),
    _assistant("first answer"),
    _user("second question"),
    _assistant("second answer"),
    _user("third question"),
]
HEAD = "[INST] <<SYS>>\nSYS\n<</SYS>>\n\n"
NOW_FN = {"function": "now", "description": "", "arguments": []}
NOW_BLOCK = '<FUNCTIONS>{\n    "function": "now",\n    "description": "",\n    "arguments": []\n}</FUNCTIONS>\n\n'
ALL_THREE = (
    NOW_BLOCK
    + HEAD
    + "first question [/INST]\n\nfirst answer </s><s>"
    + "[INST] second question [/INST]\n\nsecond answer </s><s>"
    + "[INST] third question [/INST]\n\n"
)
LAST_TWO = (
    NOW_BLOCK + HEAD + "second question [/INST]\n\nsecond answer </s><s>" + "[INST] third question [/INST]\n\n"
)
LAST_ONE = NOW_BLOCK + HEAD + "third question [/INST]\n\n"


def _fit(conversation: list[dict[str, str]], budget: int, functions: Any = (NOW_FN,)) -> str:
    """The prompt for `budget` characters (one character, one token), system "SYS"."""
    return format_prompt(conversation, functions, system="SYS", max_input_tokens=budget, count_tokens=len)


def test_budget_that_fits_changes_nothing() -> None:
    assert format_prompt(HISTORY, [NOW_FN], system="SYS") == ALL_THREE
    assert _fit(HISTORY, len(ALL_THREE)) == ALL_THREE
    assert format_prompt(HISTORY, [NOW_FN], system="SYS", max_input_tokens=10_000) == ALL_THREE


def test_oldest_exchanges_are_dropped_first() -> None:
    assert _fit(HISTORY, len(ALL_THREE) - 1) == LAST_TWO
    assert _fit(HISTORY, len(LAST_TWO)) == LAST_TWO
    assert _fit(HISTORY, len(LAST_TWO) - 1) == LAST_ONE
    assert _fit(HISTORY, len(LAST_ONE)) == LAST_ONE


def test_newest_message_that_does_not_fit() -> None:
    with pytest.raises(PromptTooLongError) as caught:
        _fit(HISTORY, len(LAST_ONE) - 1)
    message = str(caught.value)
    assert message.startswith("This message is too long for the model")
    assert f"input limit is {len(LAST_ONE) - 1}" in message
    assert f"about {len(LAST_ONE)} tokens" in message
    assert "Shorten" in message
    assert isinstance(caught.value, CallcardError) and not caught.value.retryable


def test_function_result_is_never_kept_without_the_user_message_behind_it() -> None:
    conversation = [
        _user("Weather in Oslo?"),
        _call("get_weather", city="Oslo"),
        _result("snow"),
        _assistant("It snows in Oslo."),
        _user("And tomorrow?"),
    ]
    whole = _fit(conversation, 10_000)
    newest = NOW_BLOCK + HEAD + "And tomorrow? [/INST]\n\n"
    # Cutting before the result would fit this budget, but would orphan it: the whole exchange goes instead.
    assert _fit(conversation, len(whole) - 1) == newest
    assert "snow" not in _fit(conversation, len(whole) - 1)


def test_newest_exchange_with_its_call_and_result_is_kept_whole() -> None:
    conversation = [
        _user("Hi"),
        _assistant("Hello!"),
        _user("Weather in Oslo?"),
        _call("get_weather", city="Oslo"),
        _result("snow"),
    ]
    newest = (
        NOW_BLOCK
        + HEAD
        + "Weather in Oslo? [/INST]\n\n"
        + '{"function": "get_weather", "arguments": {"city": "Oslo"}} </s><s>'
        + f"[INST] {RESULT_LEAD}snow [/INST]\n\n"
    )
    assert _fit(conversation, len(newest)) == newest
    with pytest.raises(PromptTooLongError):
        _fit(conversation, len(newest) - 1)


def test_history_opening_with_a_function_result_is_kept_when_it_fits() -> None:
    conversation = [_result("snow"), _assistant("It snows."), _user("Thanks")]
    whole = format_prompt(conversation)
    assert whole.startswith(f"[INST] {RESULT_LEAD}snow [/INST]\n\nIt snows. </s><s>")
    assert format_prompt(conversation, max_input_tokens=10_000) == whole
    assert format_prompt(conversation, max_input_tokens=len(whole) - 1, count_tokens=len) == "[INST] Thanks [/INST]\n\n"


def test_custom_count_tokens_is_used() -> None:
    seen: list[str] = []

    def count_words(text: str) -> int:
        seen.append(text)
        return len(text.split())

    budget = len(ALL_THREE.split())
    prompt = format_prompt(HISTORY, [NOW_FN], system="SYS", max_input_tokens=budget, count_tokens=count_words)
    assert prompt == ALL_THREE and seen == [ALL_THREE]
    assert format_prompt(HISTORY, max_input_tokens=0, count_tokens=lambda text: 0).startswith("[INST] first question")
    with pytest.raises(PromptTooLongError):
        format_prompt(HISTORY, max_input_tokens=10**6, count_tokens=lambda text: 10**9)


def test_default_estimate_is_generous() -> None:
    assert estimate_tokens("") == 1
    assert estimate_tokens("abc") == 2
    assert estimate_tokens("x" * 300) == 101
    # About 3 characters per token: a 30 000-character prompt does not fit 4 000 tokens.
    with pytest.raises(PromptTooLongError):
        format_prompt([_user("x" * 30_000)], max_input_tokens=4_000)


_messages = st.lists(
    st.tuples(
        st.sampled_from(["user", "assistant", "function_call", "function_result"]),
        st.text(st.characters(codec="ascii", categories=("L", "N")), min_size=1, max_size=8),
    ).map(lambda pair: _call(pair[1]) if pair[0] == "function_call" else
          _result(pair[1]) if pair[0] == "function_result" else Turn(role=pair[0], text=pair[1])),
    min_size=1,
    max_size=8,
)


@settings(max_examples=100, deadline=None)
@given(_messages, st.integers(min_value=0, max_value=200), st.sampled_from(PROMPT_STYLES))
def test_budget_keeps_the_longest_fitting_history_cut_at_a_user_message(
    conversation: list[Turn], budget: int, style: str
) -> None:
    def render(messages: list[Turn]) -> str:
        return format_prompt(messages, system="S", style=style)

    # History may only be cut where a user message opens a new [INST] block.
    cuts = [0] + [
        k
        for k in range(1, len(conversation))
        if conversation[k].role == "user" and conversation[k - 1].role in ("assistant", "function_call")
    ]
    fitting = [k for k in cuts if len(render(conversation[k:])) <= budget]
    try:
        prompt = format_prompt(conversation, system="S", style=style, max_input_tokens=budget, count_tokens=len)
    except PromptTooLongError:
        assert not fitting
    else:
        assert prompt == render(conversation[fitting[0]:])
