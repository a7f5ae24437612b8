"""GBNF grammars (llama.cpp's grammar format) that make a model's function calls valid by construction."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from backend.core.specs import ArgumentSpec, FunctionSpec

__all__ = ["arguments_grammar", "trelis_reply_grammar", "choice_grammar", "text_grammar", "literal"]

# JSON is written the way json.dumps writes it (", " and ": ", no newlines): the spelling models saw most in training,
# and a fixed spelling leaves a small model no room to wander into whitespace.
_PRIMITIVES = {
    "json-char": r'[^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F])',
    "json-string": r'"\"" json-char* "\""',
    "json-int": r'"-"? ("0" | [1-9] [0-9]{0,17})',
    "json-number": r'json-int ("." [0-9]{1,16})? ([eE] [-+]? [0-9]{1,3})?',
    "json-boolean": r'"true" | "false"',
    "json-null": r'"null"',
    "json-value": "json-object | json-array | json-string | json-number | json-boolean | json-null",
    "json-object": r'"{" (json-string ": " json-value (", " json-string ": " json-value)*)? "}"',
    "json-array": r'"[" (json-value (", " json-value)*)? "]"',
    # String formats with a fixed shape, in one spelling each; the validator accepts every value they allow but
    # days the month does not have (2026-02-30), which it reports.
    "format-date": r'[0-9] [0-9] [0-9] [0-9] "-" ("0" [1-9] | "1" [0-2]) "-" ("0" [1-9] | [12] [0-9] | "3" [01])',
    "format-time": r'format-hh ":" [0-5] [0-9] ":" [0-5] [0-9] ("Z" | [+-] format-hh ":" [0-5] [0-9])?',
    "format-hh": r'[01] [0-9] | "2" [0-3]',
    "json-date": r'"\"" format-date "\""',
    "json-time": r'"\"" format-time "\""',
    "json-date-time": r'"\"" format-date "T" format-time "\""',
    "json-uuid": r'"\"" [0-9a-f]{8} "-" [0-9a-f]{4} "-" [0-9a-f]{4} "-" [0-9a-f]{4} "-" [0-9a-f]{12} "\""',
}
_DEPENDENCIES = {
    "json-string": ["json-char"],
    "json-number": ["json-int"],
    "json-value": ["json-object", "json-array", "json-string", "json-number", "json-boolean", "json-null"],
    "json-object": ["json-string", "json-value"],
    "json-array": ["json-value"],
    "json-date": ["format-date"],
    "json-time": ["format-time"],
    "json-date-time": ["format-date", "format-time"],
    "format-time": ["format-hh"],
}
# Free text: starts with something visible and never opens a JSON object.
_TEXT = r'[^{ \t\r\n] [^{]*'
# As llama.cpp's own schema converter does, formats without a fixed shape (email, uri...) are written as any string:
# the validator checks them once the call is made.
_FORMAT_RULES = {"date": "json-date", "time": "json-time", "date-time": "json-date-time", "uuid": "json-uuid"}
_TYPE_RULES = {
    "string": "json-string",
    "integer": "json-int",
    "number": "json-number",
    "boolean": "json-boolean",
    "object": "json-object",
    "array": "json-array",
}


def literal(text: str) -> str:
    """`text` as a GBNF string literal."""
    escaped = (
        text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    )
    return f'"{escaped}"'


class _Rules:
    """An ordered set of named GBNF rules, with the JSON primitives pulled in as they are used."""

    def __init__(self) -> None:
        self._rules: dict[str, str] = {}

    def add(self, name: str, body: str) -> str:
        self._rules[name] = body
        return name

    def primitive(self, name: str) -> str:
        if name not in self._rules:
            self._rules[name] = _PRIMITIVES[name]
            for dependency in _DEPENDENCIES.get(name, []):
                self.primitive(dependency)
        return name

    def unique(self, base: str) -> str:
        name, counter = base, 1
        while name in self._rules:
            counter += 1
            name = f"{base}{counter}"
        return name

    def render(self) -> str:
        return "\n".join(f"{name} ::= {body}" for name, body in self._rules.items()) + "\n"


def _rule_name(text: str) -> str:
    cleaned = "".join(c if c.isascii() and c.isalnum() else "-" for c in text).strip("-").lower()
    return cleaned or "x"


def _value_rule(rules: _Rules, arg: ArgumentSpec, base: str) -> str:
    """The rule for one value of `arg`'s type (enum, nested object and typed array included)."""
    if arg.enum is not None:
        body = " | ".join(literal(json.dumps(v, ensure_ascii=False)) for v in arg.enum)
    elif arg.type == "object" and arg.properties is not None:
        body = _object_body(rules, arg.properties, base)
    elif arg.type == "array" and arg.items is not None:
        item = _value_rule(rules, arg.items, f"{base}-item")
        body = f'"[" ({item} (", " {item})*)? "]"'
    elif arg.type == "string" and arg.format in _FORMAT_RULES:
        body = rules.primitive(_FORMAT_RULES[arg.format])
    else:
        body = rules.primitive(_TYPE_RULES[arg.type])
    if arg.nullable:
        body = f"{body} | {rules.primitive('json-null')}"
    return rules.add(rules.unique(base), body)


def _object_body(rules: _Rules, fields: Sequence[ArgumentSpec], base: str) -> str:
    """`{...}`: every required field present, then each optional one present or left out (spec order otherwise).

    Required fields come first so that, once they are written, closing the object is one of the model's choices:
    small models fill in optional fields they were given no value for less often that way (measured on BFCL).
    """
    fields = [f for f in fields if f.required] + [f for f in fields if not f.required]
    pairs = [
        f"{literal(json.dumps(f.name, ensure_ascii=False) + ': ')} {_value_rule(rules, f, f'{base}-{_rule_name(f.name)}')}"
        for f in fields
    ]
    # tails[i][started]: the fields from i on, `started` saying whether one was written before (so ", " comes first).
    tails: list[tuple[str, str]] = [('""', '""')] * (len(fields) + 1)
    for index in range(len(fields) - 1, -1, -1):
        rest_fresh, rest_started = tails[index + 1]
        pair = pairs[index]
        if fields[index].required:
            fresh = f"{pair} {rest_started}"
            started = f'", " {pair} {rest_started}'
        else:
            fresh = f"({pair} {rest_started} | {rest_fresh})"
            started = f'(", " {pair} {rest_started} | {rest_started})'
        tails[index] = (
            rules.add(rules.unique(f"{base}-from{index}"), fresh),
            rules.add(rules.unique(f"{base}-more{index}"), started),
        )
    return f'"{{" {tails[0][0]} "}}"'


def arguments_grammar(spec: FunctionSpec) -> str:
    """GBNF for the arguments object of `spec`: exactly the JSON values its schema allows."""
    rules = _Rules()
    rules.add("root", "")
    rules.add("root", _object_body(rules, spec.arguments, _rule_name(spec.name) or "args"))
    return rules.render()


def trelis_reply_grammar(specs: Iterable[FunctionSpec], *, allow_text: bool = True) -> str:
    """GBNF for a whole reply in the Trelis format: free text (see `text_grammar`) or one schema-valid call."""
    rules = _Rules()
    rules.add("root", "call | text" if allow_text else "call")
    options = []
    for spec in specs:
        base = _rule_name(spec.name)
        arguments = rules.add(rules.unique(f"{base}-args"), _object_body(rules, spec.arguments, base))
        head = literal('{"function": ' + json.dumps(spec.name, ensure_ascii=False) + ', "arguments": ')
        options.append(f'{head} {arguments} "}}"')
    rules.add("call", " | ".join(options) if options else '"{}"')
    if allow_text:
        rules.add("text", _TEXT)
    return rules.render()


def choice_grammar(options: Iterable[str]) -> str:
    """GBNF that allows exactly one of the literal `options`."""
    alternatives = [literal(option) for option in options]
    if not alternatives:
        raise ValueError("choice_grammar needs at least one option.")
    return f"root ::= {' | '.join(alternatives)}\n"


def text_grammar() -> str:
    """GBNF for free text without `{`: the parser finds calls anywhere in a reply, so text must hold no JSON object."""
    return f"root ::= {_TEXT}\n"
