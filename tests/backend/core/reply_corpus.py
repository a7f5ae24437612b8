"""Model replies as the model families write them, with what `parse_reply` must read out of each.

Each case: the reply, the calls in it as (name, arguments), the prose left (pieces joined by newlines), substrings
of the expected problems (one per problem), and whether the reply was cut off in the middle of a call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["CASES", "ReplyCase"]

CUT = "cut off in the middle of a function call"


@dataclass(frozen=True)
class ReplyCase:
    """One reply and what it says."""

    id: str
    family: str
    reply: str
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    text: str = ""
    problems: list[str] = field(default_factory=list)
    truncated: bool = False


CASES: list[ReplyCase] = [
    # Trelis function-calling v2 (Llama 2 / Mistral fine-tunes): {"function": name, "arguments": {...}}
    ReplyCase(
        "trelis-bare", "trelis",
        '{"function": "get_weather", "arguments": {"city": "Paris"}}',
        [("get_weather", {"city": "Paris"})],
    ),
    ReplyCase(
        "trelis-whitespace", "trelis",
        '\n\n  {"function": "get_time", "arguments": {"timezone": "UTC"}}  \n',
        [("get_time", {"timezone": "UTC"})],
    ),
    ReplyCase(
        "trelis-prose-before", "trelis",
        'Sure, let me look that up. {"function": "lookup_order", "arguments": {"order_number": "12345"}}',
        [("lookup_order", {"order_number": "12345"})],
        "Sure, let me look that up.",
    ),
    ReplyCase(
        "trelis-prose-after", "trelis",
        '{"function": "lookup_order", "arguments": {"order_number": "A-17"}}\nI will check the order for you.',
        [("lookup_order", {"order_number": "A-17"})],
        "I will check the order for you.",
    ),
    ReplyCase(
        "trelis-prose-around", "trelis",
        'To find that out:\n\n{"function": "search_bing", "arguments": {"query": "Irish stew recipe"}}\n\nOne moment.',
        [("search_bing", {"query": "Irish stew recipe"})],
        "To find that out:\nOne moment.",
    ),
    ReplyCase(
        "trelis-jsonl", "trelis",
        '{"function": "get_weather", "arguments": {"city": "Paris"}}\n'
        '{"function": "get_weather", "arguments": {"city": "Rome"}}',
        [("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Rome"})],
    ),
    ReplyCase(
        "trelis-list", "trelis",
        '[{"function": "get_weather", "arguments": {"city": "Oslo"}}, '
        '{"function": "get_time", "arguments": {"timezone": "Europe/Oslo"}}]',
        [("get_weather", {"city": "Oslo"}), ("get_time", {"timezone": "Europe/Oslo"})],
    ),
    ReplyCase(
        "trelis-nested-arguments", "trelis",
        '{"function": "create_event", "arguments": {"title": "Standup", "attendees": ["ana", "bo"], '
        '"when": {"day": "Monday", "hour": 9.5}, "remote": true, "room": null}}',
        [("create_event", {
            "title": "Standup", "attendees": ["ana", "bo"], "when": {"day": "Monday", "hour": 9.5},
            "remote": True, "room": None,
        })],
    ),
    ReplyCase(
        "trelis-braces-and-quotes-in-strings", "trelis",
        '{"function": "run_query", "arguments": {"sql": "SELECT \\"name\\" FROM t WHERE x = \'}{\' -- ]["}}',
        [("run_query", {"sql": "SELECT \"name\" FROM t WHERE x = '}{' -- ]["})],
    ),
    ReplyCase(
        "trelis-unicode", "trelis",
        '{"function": "translate", "arguments": {"text": "Grüße aus Köln ☕", "target": "日本語", "e": "\\u00e9"}}',
        [("translate", {"text": "Grüße aus Köln ☕", "target": "日本語", "e": "é"})],
    ),
    ReplyCase(
        "trelis-string-arguments", "trelis",
        '{"function": "get_stock_price", "arguments": "{\\"ticker\\": \\"AAPL\\"}"}',
        [("get_stock_price", {"ticker": "AAPL"})],
    ),
    ReplyCase(
        "trelis-python-literal", "trelis",
        "{'function': 'set_alarm', 'arguments': "
        "{'time': '07:30', 'repeat': True, 'label': None, 'note': 'it\\'s early'}}",
        [("set_alarm", {"time": "07:30", "repeat": True, "label": None, "note": "it's early"})],
    ),
    ReplyCase(
        "trelis-trailing-commas", "trelis",
        '{"function": "add_items", "arguments": {"items": ["milk", "eggs",], "count": 2,},}',
        [("add_items", {"items": ["milk", "eggs"], "count": 2})],
    ),
    ReplyCase(
        "trelis-empty-arguments", "trelis",
        '{"function": "get_current_time", "arguments": {}}',
        [("get_current_time", {})],
    ),
    ReplyCase(
        "trelis-raw-newline-in-string", "trelis",
        '{"function": "send_email", "arguments": {"to": "a@b.c", "body": "Hi,\nsee you\ttomorrow"}}',
        [("send_email", {"to": "a@b.c", "body": "Hi,\nsee you\ttomorrow"})],
    ),
    ReplyCase(
        "trelis-pretty-printed", "trelis",
        'Here is the call:\n{\n    "function": "get_weather",\n    "arguments": {\n        "city": "Lima",\n'
        '        "days": 3\n    }\n}\n',
        [("get_weather", {"city": "Lima", "days": 3})],
        "Here is the call:",
    ),
    ReplyCase(
        "trelis-numbers", "trelis",
        '{"function": "convert", "arguments": {"amount": -12.5e2, "precision": 0, "big": 12345678901234567890}}',
        [("convert", {"amount": -1250.0, "precision": 0, "big": 12345678901234567890})],
    ),
    # {"name": ..., "arguments"|"parameters": ...} (Llama 3.1 JSON tool calling, Hermes, many fine-tunes)
    ReplyCase(
        "name-arguments", "name",
        '{"name": "get_weather", "arguments": {"city": "Berlin"}}',
        [("get_weather", {"city": "Berlin"})],
    ),
    ReplyCase(
        "name-parameters", "name",
        '{"name": "get_weather", "parameters": {"city": "Madrid", "unit": "celsius"}}',
        [("get_weather", {"city": "Madrid", "unit": "celsius"})],
    ),
    ReplyCase(
        "name-python-tag", "name",
        '<|python_tag|>{"name": "brave_search", "parameters": {"query": "weather in Lisbon"}}<|eom_id|>',
        [("brave_search", {"query": "weather in Lisbon"})],
    ),
    ReplyCase(
        "name-keys-reversed", "name",
        '{"arguments": {"city": "Quito"}, "name": "get_weather"}',
        [("get_weather", {"city": "Quito"})],
    ),
    ReplyCase(
        "name-prose-before", "name",
        'I need the weather first.\n{"name": "get_weather", "parameters": {"city": "Cairo"}}',
        [("get_weather", {"city": "Cairo"})],
        "I need the weather first.",
    ),
    ReplyCase(
        "name-dotted", "name",
        '{"name": "functions.get_weather", "arguments": {"city": "Kyiv"}}',
        [("functions.get_weather", {"city": "Kyiv"})],
    ),
    # OpenAI-style tool calls: arguments are a JSON string
    ReplyCase(
        "openai-tool-calls", "openai",
        '{"tool_calls": [{"id": "call_1", "type": "function", '
        '"function": {"name": "get_weather", "arguments": "{\\"city\\": \\"Paris\\"}"}}]}',
        [("get_weather", {"city": "Paris"})],
    ),
    ReplyCase(
        "openai-item", "openai",
        '{"type": "function", "function": {"name": "get_time", "arguments": "{\\"timezone\\": \\"Asia/Tokyo\\"}"}}',
        [("get_time", {"timezone": "Asia/Tokyo"})],
    ),
    ReplyCase(
        "openai-item-object-arguments", "openai",
        '{"id": "c9", "type": "function", "function": {"name": "get_time", "arguments": {"timezone": "UTC"}}}',
        [("get_time", {"timezone": "UTC"})],
    ),
    ReplyCase(
        "openai-list-of-items", "openai",
        '[{"type": "function", "function": {"name": "a", "arguments": "{}"}}, '
        '{"type": "function", "function": {"name": "b", "arguments": "{\\"x\\": [1, 2]}"}}]',
        [("a", {}), ("b", {"x": [1, 2]})],
    ),
    ReplyCase(
        "openai-legacy-function-call", "openai",
        '{"function_call": {"name": "get_weather", "arguments": "{\\"city\\": \\"Nairobi\\"}"}}',
        [("get_weather", {"city": "Nairobi"})],
    ),
    ReplyCase(
        "openai-empty-string-arguments", "openai",
        '{"tool_calls": [{"type": "function", "function": {"name": "get_current_time", "arguments": ""}}]}',
        [("get_current_time", {})],
    ),
    ReplyCase(
        "openai-bad-string-arguments", "openai",
        '{"tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": "city=Paris"}}]}',
        [],
        problems=["arguments of the call to get_weather are not a JSON object"],
    ),
    ReplyCase(
        "openai-two-tool-calls", "openai",
        '{"tool_calls": [{"type": "function", "function": {"name": "a", "arguments": "{\\"n\\": 1}"}}, '
        '{"type": "function", "function": {"name": "b", "arguments": "{\\"n\\": 2}"}}]}',
        [("a", {"n": 1}), ("b", {"n": 2})],
    ),
    # Hermes / Qwen: <tool_call>...</tool_call>
    ReplyCase(
        "toolcall-tag", "tool_call",
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Seoul"}}\n</tool_call>',
        [("get_weather", {"city": "Seoul"})],
    ),
    ReplyCase(
        "toolcall-two-tags", "tool_call",
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Seoul"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "get_time", "arguments": {"timezone": "Asia/Seoul"}}\n</tool_call>',
        [("get_weather", {"city": "Seoul"}), ("get_time", {"timezone": "Asia/Seoul"})],
    ),
    ReplyCase(
        "toolcall-prose-before", "tool_call",
        "I'll check both.\n<tool_call>\n"
        '{"name": "get_weather", "arguments": {"city": "Lagos"}}\n</tool_call>',
        [("get_weather", {"city": "Lagos"})],
        "I'll check both.",
    ),
    ReplyCase(
        "toolcall-unclosed", "tool_call",
        '<tool_call>{"name": "get_weather", "arguments": {"city": "Dakar"}}',
        [("get_weather", {"city": "Dakar"})],
    ),
    ReplyCase(
        "toolcall-no-arguments", "tool_call",
        '<tool_call>\n{"name": "get_current_time"}\n</tool_call>',
        [("get_current_time", {})],
    ),
    ReplyCase(
        "toolcall-not-a-call", "tool_call",
        '<tool_call>\n{"city": "Paris"}\n</tool_call>',
        [],
        '{"city": "Paris"}\n</tool_call>',
        problems=["<tool_call> but what follows is not a function call"],
    ),
    ReplyCase(
        "toolcall-mentioned-in-prose", "tool_call",
        "Wrap each call in a <tool_call> tag, like the docs say.",
        [],
        "Wrap each call in a <tool_call> tag, like the docs say.",
    ),
    ReplyCase(
        "toolcall-list-inside", "tool_call",
        '<tool_calls>[{"name": "a", "arguments": {"x": 1}}, {"name": "b", "arguments": {"y": 2}}]</tool_calls>',
        [("a", {"x": 1}), ("b", {"y": 2})],
    ),
    # Mistral: [TOOL_CALLS] [...] (v3) and [TOOL_CALLS]name[ARGS]{...} (v11+)
    ReplyCase(
        "mistral-list", "mistral",
        '[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Lyon"}}]',
        [("get_weather", {"city": "Lyon"})],
    ),
    ReplyCase(
        "mistral-list-two", "mistral",
        '[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Lyon"}}, '
        '{"name": "get_weather", "arguments": {"city": "Nice"}}]',
        [("get_weather", {"city": "Lyon"}), ("get_weather", {"city": "Nice"})],
    ),
    ReplyCase(
        "mistral-args", "mistral",
        '[TOOL_CALLS]get_weather[ARGS]{"city": "Bordeaux"}',
        [("get_weather", {"city": "Bordeaux"})],
    ),
    ReplyCase(
        "mistral-call-id", "mistral",
        '[TOOL_CALLS]get_weather[CALL_ID]a1b2c3d4e[ARGS]{"city": "Lille"}',
        [("get_weather", {"city": "Lille"})],
    ),
    ReplyCase(
        "mistral-args-two", "mistral",
        '[TOOL_CALLS]get_weather[ARGS]{"city": "Metz"}[TOOL_CALLS]get_time[ARGS]{"timezone": "CET"}',
        [("get_weather", {"city": "Metz"}), ("get_time", {"timezone": "CET"})],
    ),
    # Pythonic (Llama 3.2 / 4): [name(key=value, ...)]
    ReplyCase(
        "pythonic-single", "pythonic",
        '[get_weather(city="Paris", days=3)]',
        [("get_weather", {"city": "Paris", "days": 3})],
    ),
    ReplyCase(
        "pythonic-two", "pythonic",
        "[get_weather(city='Paris'), get_time(timezone='Europe/Paris')]",
        [("get_weather", {"city": "Paris"}), ("get_time", {"timezone": "Europe/Paris"})],
    ),
    ReplyCase(
        "pythonic-values", "pythonic",
        '[book(seats=[1, 2], meta={"vip": True, "note": None}, price=-4.5, tags=("a", "b"), ok=true, x=null)]',
        [("book", {
            "seats": [1, 2], "meta": {"vip": True, "note": None}, "price": -4.5, "tags": ["a", "b"],
            "ok": True, "x": None,
        })],
    ),
    ReplyCase(
        "pythonic-dotted", "pythonic",
        '[functions.get_weather(city="Bern")]',
        [("functions.get_weather", {"city": "Bern"})],
    ),
    ReplyCase(
        "pythonic-prose-before", "pythonic",
        'Let me check.\n[get_weather(city="Oslo")]',
        [("get_weather", {"city": "Oslo"})],
        "Let me check.",
    ),
    ReplyCase(
        "pythonic-no-arguments", "pythonic",
        "[get_current_time()]",
        [("get_current_time", {})],
    ),
    ReplyCase(
        "pythonic-positional", "pythonic",
        '[get_weather("Paris")]',
        [],
        problems=["passes arguments by position"],
    ),
    ReplyCase(
        "pythonic-not-a-literal", "pythonic",
        '[get_weather(city=__import__("os").system("ls"))]',
        [],
        problems=["city is not a plain value"],
    ),
    ReplyCase(
        "pythonic-code-in-prose", "pythonic",
        "In Python, [len(x)] is a one-element list.",
        [],
        "In Python, [len(x)] is a one-element list.",
    ),
    ReplyCase(
        "pythonic-tool-code-fence", "pythonic",
        '```tool_code\nget_weather(city="Accra")\n```',
        [("get_weather", {"city": "Accra"})],
    ),
    ReplyCase(
        "pythonic-python-fence", "pythonic",
        'Calling:\n```python\n[get_weather(city="Lima")]\n```',
        [("get_weather", {"city": "Lima"})],
        "Calling:",
    ),
    # JSON in code fences
    ReplyCase(
        "fence-json", "fence",
        '```json\n{"function": "get_weather", "arguments": {"city": "Porto"}}\n```',
        [("get_weather", {"city": "Porto"})],
    ),
    ReplyCase(
        "fence-no-language", "fence",
        '```\n{"name": "get_weather", "arguments": {"city": "Faro"}}\n```',
        [("get_weather", {"city": "Faro"})],
    ),
    ReplyCase(
        "fence-list", "fence",
        '```json\n[\n  {"function": "a", "arguments": {}},\n  {"function": "b", "arguments": {"k": "v"}}\n]\n```',
        [("a", {}), ("b", {"k": "v"})],
    ),
    ReplyCase(
        "fence-prose-around", "fence",
        'I will call the tool:\n```json\n{"function": "get_weather", "arguments": {"city": "Split"}}\n```\n'
        "Then answer.",
        [("get_weather", {"city": "Split"})],
        "I will call the tool:\nThen answer.",
    ),
    ReplyCase(
        "fence-data", "fence",
        'The result looks like this:\n```json\n{"city": "Paris", "temperature": 21}\n```',
        [],
        'The result looks like this:\n```json\n{"city": "Paris", "temperature": 21}\n```',
    ),
    # functools / Glaive / Llama 3.1 custom tags
    ReplyCase(
        "glaive-functioncall", "functools",
        '<functioncall> {"name": "calculate_bmi", "arguments": \'{"weight": 70, "height": 1.75}\'}',
        [("calculate_bmi", {"weight": 70, "height": 1.75})],
    ),
    ReplyCase(
        "glaive-prose-after", "functools",
        '<functioncall> {"name": "get_news", "arguments": \'{"topic": "sports"}\'} <|endoftext|>',
        [("get_news", {"topic": "sports"})],
        "<|endoftext|>",
    ),
    ReplyCase(
        "function-tag", "functools",
        '<function=get_weather>{"city": "Tunis"}</function>',
        [("get_weather", {"city": "Tunis"})],
    ),
    # Not calls: prose, code and data that merely contain braces
    ReplyCase("prose", "none", "The capital of France is Paris.", [], "The capital of France is Paris."),
    ReplyCase("prose-empty-braces", "none", "An empty dict is written {} in Python.", [],
              "An empty dict is written {} in Python."),
    ReplyCase(
        "prose-json-example", "none",
        'A weather report looks like {"city": "Paris", "temp": 21}.',
        [],
        'A weather report looks like {"city": "Paris", "temp": 21}.',
    ),
    ReplyCase("name-alone", "none", '{"name": "Alice", "age": 31}', [], '{"name": "Alice", "age": 31}'),
    ReplyCase(
        "js-snippet", "none",
        'Try this:\nfunction f(a) { if (a) { return {"ok": true}; } return {}; }',
        [],
        'Try this:\nfunction f(a) { if (a) { return {"ok": true}; } return {}; }',
    ),
    ReplyCase(
        "arguments-null", "none",
        '{"name": "get_weather", "arguments": null}',
        [],
        '{"name": "get_weather", "arguments": null}',
    ),
    ReplyCase(
        "arguments-plain-string", "none",
        '{"name": "Bob", "arguments": "he always wins them"}',
        [],
        '{"name": "Bob", "arguments": "he always wins them"}',
    ),
    ReplyCase(
        "name-not-an-identifier", "none",
        '{"name": "John Smith", "parameters": {"age": 40}}',
        [],
        '{"name": "John Smith", "parameters": {"age": 40}}',
    ),
    ReplyCase(
        "function-metadata-echo", "none",
        '{"function": "get_weather", "description": "Weather for a city", '
        '"arguments": [{"name": "city", "type": "string"}]}',
        [],
        '{"function": "get_weather", "description": "Weather for a city", '
        '"arguments": [{"name": "city", "type": "string"}]}',
    ),
    ReplyCase(
        "markdown-links", "none",
        "See [the docs](https://example.com) and note [1] <b>bold</b>.",
        [],
        "See [the docs](https://example.com) and note [1] <b>bold</b>.",
    ),
    ReplyCase(
        "data-list", "none",
        'Orders: [{"id": 1, "total": 9.5}, {"id": 2, "total": 3}]',
        [],
        'Orders: [{"id": 1, "total": 9.5}, {"id": 2, "total": 3}]',
    ),
    ReplyCase(
        "call-inside-data", "none",
        'The log said {"result": {"function": "get_weather", "arguments": {"city": "Paris"}}}.',
        [],
        'The log said {"result": {"function": "get_weather", "arguments": {"city": "Paris"}}}.',
    ),
    ReplyCase(
        "prose-apostrophes-and-sets", "none",
        "Use {'a', 'b'} for a set; it's faster than ['a', 'b'] for lookups.",
        [],
        "Use {'a', 'b'} for a set; it's faster than ['a', 'b'] for lookups.",
    ),
    ReplyCase("whitespace-only", "none", "  \n\t ", [], ""),
    # Cut off in the middle of a call (a stream stopped by max_new_tokens)
    ReplyCase(
        "cut-trelis", "truncated",
        '{"function": "lookup_order", "arguments": {"order_number": "12',
        [],
        problems=["The model's reply was cut off in the middle of a function call (lookup_order)."],
        truncated=True,
    ),
    ReplyCase(
        "cut-after-prose", "truncated",
        'Sure, let me look that up. {"function": "lookup_order", "arguments": {"order_',
        [],
        "Sure, let me look that up.",
        [f"{CUT} (lookup_order)"],
        True,
    ),
    ReplyCase(
        "cut-in-name", "truncated",
        '{"function": "looku',
        [],
        problems=[CUT],
        truncated=True,
    ),
    ReplyCase(
        "cut-just-closing-brace", "truncated",
        '{"function": "get_weather", "arguments": {"city": "Paris"}',
        [],
        problems=[f"{CUT} (get_weather)"],
        truncated=True,
    ),
    ReplyCase(
        "cut-list-second-call", "truncated",
        '[{"function": "a", "arguments": {}}, {"function": "b", "argu',
        [],
        problems=["cut off in the middle of its function calls (a, b)"],
        truncated=True,
    ),
    ReplyCase(
        "cut-jsonl-second", "truncated",
        '{"function": "a", "arguments": {"x": 1}}\n{"function": "b", "arguments": {"y": ',
        [("a", {"x": 1})],
        problems=[f"{CUT} (b)"],
        truncated=True,
    ),
    ReplyCase(
        "cut-pythonic", "truncated",
        '[get_weather(city="Par',
        [],
        problems=[f"{CUT} (get_weather)"],
        truncated=True,
    ),
    ReplyCase(
        "cut-tool-call-tag", "truncated",
        '<tool_call>\n{"name": "get_weather", "arguments": {"ci',
        [],
        problems=[f"{CUT} (get_weather)"],
        truncated=True,
    ),
    ReplyCase(
        "cut-right-after-marker", "truncated",
        "Checking now.\n<tool_call>\n",
        [],
        "Checking now.",
        [CUT],
        True,
    ),
    ReplyCase(
        "cut-in-fence", "truncated",
        'Calling it:\n```json\n{"function": "get_weather", "arguments": {"city": "Ber',
        [],
        "Calling it:",
        [f"{CUT} (get_weather)"],
        True,
    ),
    ReplyCase(
        "cut-openai", "truncated",
        '{"tool_calls": [{"id": "call_1", "type": "function", '
        '"function": {"name": "get_weather", "arguments": "{\\"ci',
        [],
        problems=[f"{CUT} (get_weather)"],
        truncated=True,
    ),
    ReplyCase(
        "cut-mistral-args", "truncated",
        '[TOOL_CALLS]get_weather[ARGS]{"city": "Ly',
        [],
        problems=[f"{CUT} (get_weather)"],
        truncated=True,
    ),
    ReplyCase(
        "cut-python-literal", "truncated",
        "{'function': 'set_alarm', 'arguments': {'time': '07:",
        [],
        problems=[f"{CUT} (set_alarm)"],
        truncated=True,
    ),
    ReplyCase(
        "cut-data-is-not-a-call", "none",
        'An example record: {"city": "Par',
        [],
        'An example record: {"city": "Par',
    ),
]
