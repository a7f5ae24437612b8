"""Python functions as tools: schemas from type hints and docstrings, sync and async, loading a tools file."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import enum
import ipaddress
import textwrap
import uuid
from pathlib import Path
from typing import Annotated, Any, Literal, NotRequired, Optional, TypedDict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import AnyUrl, BaseModel, Field, HttpUrl

from backend.core.specs import ArgumentSpec
from backend.errors import ToolConfigError
from backend.tools import Format, ToolPolicy, ToolRegistry, load_python_tools, tool, tool_from_function
from backend.tools.python_tools import parse_docstring


def _run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


class Address(BaseModel):
    """A postal address."""

    street: str = Field(description="Street and number")
    city: str
    postal_code: str | None = None


class Filters(TypedDict):
    status: Literal["open", "closed"]
    tags: NotRequired[list[str]]


class Colour(enum.Enum):
    RED = "red"
    GREEN = "green"


def _args(func: Any) -> dict[str, ArgumentSpec]:
    return {a.name: a for a in tool_from_function(func).spec.arguments}


def test_scalar_types_defaults_and_nullable() -> None:
    def f(
        text: str, count: int, ratio: float, flag: bool, limit: int = 10, note: str | None = None,
        maybe: Optional[float] = 1.5,
    ) -> None:
        """Do things."""

    args = _args(f)
    assert {n: a.type for n, a in args.items()} == {
        "text": "string", "count": "integer", "ratio": "number", "flag": "boolean", "limit": "integer",
        "note": "string", "maybe": "number",
    }
    assert all(args[n].required for n in ("text", "count", "ratio", "flag"))
    assert not args["limit"].required and args["limit"].has_default and args["limit"].default == 10
    assert args["note"].nullable and not args["note"].required and args["note"].default is None
    assert args["maybe"].nullable and args["maybe"].default == 1.5


def test_collections_literal_and_enum() -> None:
    def f(
        names: list[str], ids: list[int], pairs: tuple[float, ...], anything: list, data: dict,
        mapping: dict[str, int], mode: Literal["fast", "slow"], level: Literal[1, 2, 3], colour: Colour,
    ) -> None:
        """Do things."""

    args = _args(f)
    assert args["names"].type == "array" and args["names"].items.type == "string"
    assert args["ids"].items.type == "integer"
    assert args["pairs"].items.type == "number"
    assert args["anything"].type == "array" and args["anything"].items is None
    assert args["data"].type == "object" and args["mapping"].type == "object"
    assert (args["mode"].type, args["mode"].enum) == ("string", ["fast", "slow"])
    assert (args["level"].type, args["level"].enum) == ("integer", [1, 2, 3])
    assert (args["colour"].type, args["colour"].enum) == ("string", ["red", "green"])


def test_pydantic_model_and_typeddict_become_objects() -> None:
    def f(address: Address, filters: Filters) -> None:
        """Do things."""

    args = _args(f)
    address = {p.name: p for p in args["address"].properties}
    assert args["address"].type == "object"
    assert address["street"].description == "Street and number" and address["street"].required
    assert address["postal_code"].nullable and not address["postal_code"].required
    filters = {p.name: p for p in args["filters"].properties}
    assert filters["status"].enum == ["open", "closed"] and filters["status"].required
    assert filters["tags"].type == "array" and not filters["tags"].required
    schema = tool_from_function(f).spec.to_json_schema()
    assert schema["properties"]["address"]["required"] == ["street", "city"]


def test_model_and_typeddict_arguments_arrive_as_python_objects() -> None:
    received: dict[str, Any] = {}

    def ship(address: Address, filters: Filters, when: datetime.date) -> str:
        """Ship."""
        received.update(address=address, filters=filters, when=when)
        return address.city

    registry = ToolRegistry([tool_from_function(ship)])
    result = _run(registry.execute("ship", {
        "address": {"street": "1 Main St", "city": "Oslo"}, "filters": {"status": "open"}, "when": "2026-11-02",
    }))
    assert result.ok and result.value == "Oslo"
    assert received["address"] == Address(street="1 Main St", city="Oslo")
    assert received["filters"] == {"status": "open"}
    assert received["when"] == datetime.date(2026, 11, 2)


def test_annotated_descriptions_and_docstring_descriptions() -> None:
    def f(a: Annotated[str, "From Annotated"], b: Annotated[int, Field(description="From Field")], c: str) -> None:
        """Summary line.

        More detail on
        two lines.

        Args:
            a: Ignored, Annotated wins.
            c (str): From the docstring,
                continued.

        Returns:
            Nothing.
        """

    built = tool_from_function(f)
    args = {a.name: a for a in built.spec.arguments}
    assert built.spec.description == "Summary line. More detail on two lines."
    assert args["a"].description == "From Annotated"
    assert args["b"].description == "From Field"
    assert args["c"].description == "From the docstring, continued."


@pytest.mark.parametrize(
    "doc",
    [
        """Find orders.

        Args:
            email: The customer's e-mail.
            limit (int, optional): At most this many.
        """,
        """Find orders.

        Parameters
        ----------
        email : str
            The customer's e-mail.
        limit : int, optional
            At most this many.

        Returns
        -------
        list
            The orders.
        """,
        """Find orders.

        :param email: The customer's e-mail.
        :param int limit: At most this many.
        :returns: The orders.
        """,
    ],
    ids=["google", "numpy", "sphinx"],
)
def test_docstring_styles(doc: str) -> None:
    summary, arguments = parse_docstring(doc)
    assert summary == "Find orders."
    assert arguments == {"email": "The customer's e-mail.", "limit": "At most this many."}


def test_sync_and_async_functions_run() -> None:
    @tool
    def add(a: int, b: int = 2) -> int:
        """Add two numbers."""
        return a + b

    @tool(policy="auto", timeout_s=5)
    async def shout(text: str) -> str:
        """Shout."""
        await asyncio.sleep(0)
        return text.upper()

    assert add(1) == 3  # the decorated function is still an ordinary function
    registry = ToolRegistry([add.__callcard_tool__, shout.__callcard_tool__])
    assert _run(registry.execute("add", {"a": 1})).value == 3
    assert _run(registry.execute("shout", {"text": "hi"})).value == "HI"
    shout_tool = registry.get("shout")
    assert shout_tool.policy is ToolPolicy.AUTO and shout_tool.read_only and shout_tool.timeout_s == 5


def test_decorator_refuses_auto_for_a_declared_write_tool_and_bad_signatures() -> None:
    with pytest.raises(ToolConfigError, match="not read-only"):
        @tool(policy="auto", read_only=False)
        def delete(x: str) -> None:
            """Delete."""

    def star(*args: str) -> None:
        """Star."""

    def mixed(x: int | str) -> None:
        """Mixed."""

    def unknown(x: complex) -> None:
        """Unknown."""

    for func, message in ((star, "named arguments only"), (mixed, "several types"), (unknown, "unsupported type")):
        with pytest.raises(ToolConfigError, match=message):
            tool_from_function(func)


# Property: for every annotation the converter supports, the schema accepts every value of that type and the
# function receives it unchanged.
_SCALAR_CASES = [
    (str, st.text(min_size=1).filter(str.strip), "string"),
    (int, st.integers(-(2**53), 2**53), "integer"),
    (float, st.floats(allow_nan=False, allow_infinity=False), "number"),
    (bool, st.booleans(), "boolean"),
    (Literal["a", "b", "c"], st.sampled_from(["a", "b", "c"]), "string"),
    (Literal[1, 2], st.sampled_from([1, 2]), "integer"),
]


@st.composite
def _annotations(draw: st.DrawFn) -> tuple[Any, Any, str]:
    annotation, values, kind = draw(st.sampled_from(_SCALAR_CASES))
    wrapper = draw(st.sampled_from(["plain", "list", "optional", "dict"]))
    if wrapper == "list":
        return list[annotation], st.lists(values, max_size=4), "array"
    if wrapper == "optional":
        return annotation | None, st.none() | values, kind
    if wrapper == "dict":
        return dict[str, annotation], st.dictionaries(st.text(min_size=1, max_size=5), values, max_size=3), "object"
    return annotation, values, kind


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_generated_schema_accepts_every_value_of_the_type(data: st.DataObject) -> None:
    annotation, values, kind = data.draw(_annotations())
    value = data.draw(values)
    received: list[Any] = []

    def probe(x: Any) -> str:
        """Record the argument."""
        received.append(x)
        return "ok"

    probe.__annotations__ = {"x": annotation, "return": str}
    built = tool_from_function(probe)
    argument = built.spec.arguments[0]
    assert argument.type == kind
    assert argument.nullable == (type(None) in getattr(annotation, "__args__", ()))
    result = _run(ToolRegistry([built]).execute("probe", {"x": value}))
    assert result.ok, result.error
    assert received == [value]
    assert type(received[0]) is type(value)


@settings(max_examples=40, deadline=None)
@given(
    names=st.lists(st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True), min_size=1, max_size=4, unique=True),
    descriptions=st.lists(st.text(alphabet=st.characters(categories=["L", "N"]), min_size=1, max_size=20), min_size=4),
)
def test_google_docstrings_round_trip(names: list[str], descriptions: list[str]) -> None:
    lines = ["Summary.", "", "Args:"] + [f"    {n}: {d}" for n, d in zip(names, descriptions)]
    summary, arguments = parse_docstring("\n".join(lines))
    assert summary == "Summary."
    assert arguments == dict(zip(names, descriptions))


def test_load_python_tools_from_a_file(tmp_path: Path) -> None:
    module = tmp_path / "my_tools.py"
    module.write_text(textwrap.dedent('''
        from __future__ import annotations
        from pydantic import BaseModel
        from backend.tools import tool

        class Item(BaseModel):
            name: str
            quantity: int = 1

        @tool(policy="auto")
        def price(item: Item) -> float:
            """Price an item.

            Args:
                item: What to price.
            """
            return 2.5 * item.quantity

        @tool
        async def order(items: list[Item], express: bool = False) -> dict:
            """Order items."""
            return {"count": len(items), "express": express}

        def helper() -> None:
            """Not a tool."""
    '''))
    tools = load_python_tools(module)
    assert [t.name for t in tools] == ["price", "order"]
    assert {t.source for t in tools} == {"python: my_tools.py"}
    registry = ToolRegistry(tools)
    assert _run(registry.execute("price", {"item": {"name": "pen", "quantity": 4}})).value == 10.0
    assert _run(registry.execute("order", {"items": [{"name": "pen"}]})).value == {"count": 1, "express": False}


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("def broken(:\n    pass\n", r"broken_tools.py line 1: SyntaxError"),
        ("import os\n\nraise RuntimeError('boom')\n", r"broken_tools.py line 3: RuntimeError: boom"),
        ("from backend.tools import tool\n\n@tool\ndef f(x: complex) -> None:\n    pass\n", r"line 3: .*unsupported"),
        ("X = 1\n", r"broken_tools.py defines no tools"),
    ],
    ids=["syntax", "import-time-error", "bad-type", "no-tools"],
)
def test_load_python_tools_errors_name_the_file(tmp_path: Path, source: str, message: str) -> None:
    module = tmp_path / "broken_tools.py"
    module.write_text(source)
    with pytest.raises(ToolConfigError, match=message):
        load_python_tools(module)


def test_load_python_tools_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ToolConfigError, match="no such Python tools file"):
        load_python_tools(tmp_path / "nope.py")


# -- string formats ------------------------------------------------------------------------------------------------


class Contact(BaseModel):
    email: Annotated[str, Format("email")]
    site: str = Field(default="https://example.com", json_schema_extra={"format": "uri"})


class Recipient(TypedDict):
    email: Annotated[str, Format("email")]


@dataclasses.dataclass
class Visit:
    on: datetime.date
    contact: Annotated[str, Format("Email ")]


def test_formats_come_from_format_markers_fields_and_typed_values() -> None:
    def f(
        email: Annotated[str, Format("email")], cc: list[Annotated[str, Format("email")]],
        reply_to: Annotated[str, Format("email")] | None, backup: Annotated[str | None, Format("email")],
        day: datetime.date, at: datetime.datetime, clock: datetime.time, ticket: uuid.UUID,
        host: ipaddress.IPv4Address, host6: ipaddress.IPv6Address, page: HttpUrl, site: AnyUrl,
        explicit: Annotated[datetime.date, Format("date-time")],
        field: Annotated[str, Field(description="When.", json_schema_extra={"format": "time"})],
        contact: Contact, recipient: Recipient, visit: Visit, plain: str, path: Path,
    ) -> None:
        """Format everything."""

    args = _args(f)
    assert {name: arg.format for name, arg in args.items() if arg.format} == {
        "email": "email", "reply_to": "email", "backup": "email", "day": "date", "at": "date-time", "clock": "time",
        "ticket": "uuid", "host": "ipv4", "host6": "ipv6", "page": "uri", "site": "uri", "explicit": "date-time",
        "field": "time",
    }
    assert args["cc"].items == ArgumentSpec(format="email")
    assert args["reply_to"].nullable and args["backup"].nullable and args["field"].description == "When."
    assert [(p.name, p.format) for p in args["contact"].properties] == [("email", "email"), ("site", "uri")]
    assert [(p.name, p.format) for p in args["recipient"].properties] == [("email", "email")]
    assert [(p.name, p.format) for p in args["visit"].properties] == [("on", "date"), ("contact", "email")]
    assert args["page"].description == "(a URL)"


def test_a_format_needs_a_name() -> None:
    with pytest.raises(ToolConfigError, match="Format needs a name"):
        Format(" ")


def test_formatted_arguments_are_checked_and_trimmed_before_the_function_runs() -> None:
    received: list[tuple[str, datetime.date]] = []

    def remind(email: Annotated[str, Format("email")], on: datetime.date) -> str:
        """Send a reminder."""
        received.append((email, on))
        return "sent"

    registry = ToolRegistry([tool_from_function(remind)])
    refused = _run(registry.execute("remind", {"email": "ana.silva(at)example", "on": "2026-02-30"}))
    assert refused.error == (
        "Invalid arguments for remind: email: Expected an e-mail address like name@example.com.; "
        "on: There is no date 2026-02-30 in the calendar."
    )
    assert received == []
    assert _run(registry.execute("remind", {"email": " ana.silva@example.com ", "on": "2026-03-01"})).ok
    assert received == [("ana.silva@example.com", datetime.date(2026, 3, 1))]


def test_a_tools_file_declares_formats_with_backend_tools_format(tmp_path: Path) -> None:
    module = tmp_path / "formatted_tools.py"
    module.write_text(textwrap.dedent('''
        from __future__ import annotations
        from typing import Annotated
        from backend.tools import Format, tool

        @tool
        def invite(email: Annotated[str, Format("email")]) -> str:
            """Invite someone."""
            return email
    '''))
    (invite,) = load_python_tools(module)
    assert invite.spec.to_json_schema()["properties"]["email"] == {"type": "string", "format": "email"}
