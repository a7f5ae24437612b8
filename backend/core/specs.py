"""Function specs: load every form users paste in (Trelis v2 metadata, OpenAI tools, JSON Schema) and convert between them."""

from __future__ import annotations

import json
import re
from collections.abc import Container, Iterable
from typing import Any, Literal

from pydantic import BaseModel, Field

from backend.errors import SpecError

__all__ = [
    "ArgType",
    "ArgumentSpec",
    "GRAMMAR_FORMATS",
    "FunctionSpec",
    "load_functions",
    "function_list_text",
    "calls_schema",
    "common_type",
]

ArgType = Literal["string", "number", "integer", "boolean", "array", "object"]

# Type names seen in the wild (Trelis cards, Python-flavoured specs such as BFCL's) mapped to JSON Schema types.
_TYPE_NAMES: dict[str, ArgType] = {
    "string": "string", "str": "string", "text": "string",
    "number": "number", "float": "number", "double": "number", "decimal": "number",
    "integer": "integer", "int": "integer",
    "boolean": "boolean", "bool": "boolean",
    "array": "array", "list": "array", "tuple": "array",
    "object": "object", "dict": "object",
}
_NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,127}")
# The string formats a schema may carry into a grammar. TGI compiles its `grammar` parameter, and the tools of its
# OpenAI-compatible route, with Outlines, which raises NotImplementedError on any other format; llama.cpp's schema
# converter constrains these four and writes any other as a plain string.
GRAMMAR_FORMATS = frozenset({"date", "date-time", "time", "uuid"})


class ArgumentSpec(BaseModel):
    """One argument of a function (or one field of an object argument, or the item type of an array)."""

    name: str = ""
    type: ArgType = "string"
    description: str = ""
    required: bool = True
    nullable: bool = False
    enum: list[Any] | None = None
    has_default: bool = False
    default: Any = None
    items: ArgumentSpec | None = None
    properties: list[ArgumentSpec] | None = None
    format: str | None = None  # JSON Schema's `format` ("email", "date"...): what kind of text a string holds

    def to_json_schema(self, *, formats: Container[str] | None = None) -> dict[str, Any]:
        """This argument as a JSON Schema fragment; `formats`: the string formats to keep (default: every one)."""
        schema: dict[str, Any] = {"type": [self.type, "null"] if self.nullable else self.type}
        if self.description:
            schema["description"] = self.description
        if self.format is not None and (formats is None or (self.type == "string" and self.format in formats)):
            schema["format"] = self.format
        if self.enum is not None:
            schema["enum"] = [*self.enum, None] if self.nullable and None not in self.enum else list(self.enum)
        if self.items is not None:
            schema["items"] = self.items.to_json_schema(formats=formats)
        if self.properties is not None:
            schema.update(_object_schema(self.properties, formats=formats))
        if self.has_default:
            schema["default"] = self.default
        return schema

    def to_trelis(self) -> dict[str, Any]:
        """This argument in Trelis v2 form: name, type, description, then only the richer fields that are set."""
        meta: dict[str, Any] = {"name": self.name, "type": self.type, "description": self.description}
        if not self.required:
            meta["required"] = False
        if self.nullable:
            meta["nullable"] = True
        if self.format is not None:
            meta["format"] = self.format
        if self.enum is not None:
            meta["enum"] = list(self.enum)
        if self.has_default:
            meta["default"] = self.default
        if self.items is not None:
            meta["items"] = self.items.to_json_schema()
        if self.properties is not None:
            meta["properties"] = [p.to_trelis() for p in self.properties]
        return meta


class FunctionSpec(BaseModel):
    """A function the model may call: its name, what it does, and its arguments."""

    name: str
    description: str = ""
    arguments: list[ArgumentSpec] = Field(default_factory=list)

    @classmethod
    def from_any(cls, obj: Any) -> FunctionSpec:
        """Load one function from any supported form (Trelis v2, functionMetadata, OpenAI tool, plain schema)."""
        if isinstance(obj, FunctionSpec):
            return obj
        if not isinstance(obj, dict):
            raise SpecError(f"A function spec must be a JSON object, got {type(obj).__name__}.")
        if "functionMetadata" in obj:
            return cls.from_any(obj["functionMetadata"])
        if obj.get("type") == "function" and isinstance(obj.get("function"), dict):
            return cls.from_any(obj["function"])
        if "function" in obj and isinstance(obj["function"], str):
            return _from_trelis(obj)
        if "name" in obj:
            return _from_openai(obj)
        raise SpecError(
            "A function spec needs a name: a 'function' key (Trelis form) or a 'name' key (OpenAI form); "
            f"got keys {sorted(obj)}."
        )

    def argument(self, name: str) -> ArgumentSpec | None:
        """The argument called `name`, if there is one."""
        return next((a for a in self.arguments if a.name == name), None)

    def to_json_schema(self, *, formats: Container[str] | None = None) -> dict[str, Any]:
        """The arguments as a JSON Schema object (OpenAI's `parameters`); `formats`: the string formats to keep."""
        return {"type": "object", **_object_schema(self.arguments, formats=formats)}

    def to_openai_tool(self, *, formats: Container[str] | None = GRAMMAR_FORMATS) -> dict[str, Any]:
        """This function as an OpenAI `tools` entry; by default only with the formats any grammar engine takes.

        Servers may compile tools into a grammar (TGI's OpenAI-compatible route does, with Outlines).
        """
        parameters = self.to_json_schema(formats=formats)
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": parameters},
        }

    def to_trelis(self) -> dict[str, Any]:
        """This function as Trelis v2 metadata."""
        return {
            "function": self.name,
            "description": self.description,
            "arguments": [a.to_trelis() for a in self.arguments],
        }

    def to_trelis_json(self) -> str:
        """Trelis v2 metadata as the model card prints it (indented JSON)."""
        return json.dumps(self.to_trelis(), indent=4, ensure_ascii=False)


def load_functions(source: Any) -> list[FunctionSpec]:
    """Load functions from a spec, a dict or list in any supported form, or text (JSON or a Trelis functionList)."""
    if isinstance(source, FunctionSpec):
        return [source]
    if isinstance(source, str):
        return load_functions(_parse_spec_text(source))
    if isinstance(source, dict):
        if isinstance(source.get("tools"), list):
            return load_functions(source["tools"])
        if isinstance(source.get("functions"), list):
            return load_functions(source["functions"])
        return [FunctionSpec.from_any(source)]
    if isinstance(source, Iterable):
        specs: list[FunctionSpec] = []
        for item in source:
            specs.extend(load_functions(item))
        _reject_duplicates((s.name for s in specs), "function", where="the function list")
        return specs
    raise SpecError(f"Cannot read functions from {type(source).__name__}.")


def function_list_text(specs: Iterable[FunctionSpec]) -> str:
    """The Trelis functionList: each function's metadata as indented JSON, separated by a blank line."""
    return "\n\n".join(spec.to_trelis_json() for spec in specs)


def calls_schema(specs: Iterable[FunctionSpec]) -> dict[str, Any]:
    """JSON Schema of one Trelis call `{"function": name, "arguments": {...}}` to any of `specs`, for a grammar.

    Only the GRAMMAR_FORMATS are kept: the validator checks every format after the call is made.
    """
    options = [
        {
            "type": "object",
            "properties": {
                "function": {"const": spec.name},
                "arguments": spec.to_json_schema(formats=GRAMMAR_FORMATS),
            },
            "required": ["function", "arguments"],
            "additionalProperties": False,
        }
        for spec in specs
    ]
    if len(options) == 1:
        return options[0]
    return {"anyOf": options}


def _object_schema(fields: list[ArgumentSpec], *, formats: Container[str] | None) -> dict[str, Any]:
    return {
        "properties": {f.name: f.to_json_schema(formats=formats) for f in fields},
        "required": [f.name for f in fields if f.required],
        "additionalProperties": False,
    }


def _parse_spec_text(text: str) -> Any:
    """JSON, or several JSON objects one after another (the model card's functionList)."""
    text = text.strip()
    if not text:
        return []
    decoder = json.JSONDecoder()
    values: list[Any] = []
    position = 0
    while position < len(text):
        try:
            value, position = decoder.raw_decode(text, position)
        except json.JSONDecodeError as error:
            line = text.count("\n", 0, error.pos) + 1
            raise SpecError(f"The function list is not valid JSON at line {line}: {error.msg}.") from None
        values.append(value)
        while position < len(text) and text[position] in " \t\r\n,":
            position += 1
    return values[0] if len(values) == 1 else values


def _check_name(name: Any, what: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise SpecError(f"{what} has no name.")
    if not _NAME_PATTERN.fullmatch(name):
        raise SpecError(f"{what} has an invalid name {name!r}: use letters, digits, '_', '.' or '-'.")
    return name


def _reject_duplicates(names: Iterable[str], what: str, *, where: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise SpecError(f"Duplicate {what} {name!r} in {where}.")
        seen.add(name)


def _from_trelis(meta: dict[str, Any]) -> FunctionSpec:
    name = _check_name(meta.get("function"), "A function")
    raw_arguments = meta.get("arguments", [])
    if isinstance(raw_arguments, dict):  # some users write {"name": {...}} or {"name": "type"} instead of a list
        raw_arguments = [
            {"name": key, **value} if isinstance(value, dict) else {"name": key, "type": value}
            for key, value in raw_arguments.items()
        ]
    if not isinstance(raw_arguments, list):
        raise SpecError(f"Function {name!r}: 'arguments' must be a list of argument objects.")
    arguments = [_trelis_argument(raw, where=f"function {name!r}") for raw in raw_arguments]
    _reject_duplicates((a.name for a in arguments), "argument", where=f"function {name!r}")
    return FunctionSpec(name=name, description=_text(meta.get("description")), arguments=arguments)


def _trelis_argument(raw: Any, *, where: str, is_item: bool = False) -> ArgumentSpec:
    if isinstance(raw, str) and is_item:
        raw = {"type": raw}
    if not isinstance(raw, dict):
        raise SpecError(f"In {where}: an argument must be an object with name, type and description.")
    name = "" if is_item else _check_name(raw.get("name"), f"An argument of {where}")
    here = f"{where}, argument {name!r}" if name else where
    # In a JSON Schema fragment `required` lists the object's fields; only a boolean is this argument's own flag.
    required = raw["required"] if isinstance(raw.get("required"), bool) else True
    if "anyOf" in raw or "oneOf" in raw or ("properties" in raw and isinstance(raw["properties"], dict)):
        return _schema_argument(name, raw, required=required, where=here)
    arg_type, nullable = _resolve_type(raw.get("type"), raw.get("enum"), where=here)
    enum, null_in_enum = _split_null(_enum(raw.get("enum"), where=here))
    fields: dict[str, Any] = {
        "name": name,
        "type": arg_type,
        "description": _text(raw.get("description")),
        "required": required,
        "nullable": nullable or null_in_enum or bool(raw.get("nullable", False)),
        "enum": enum,
        "format": _format(raw.get("format"), where=here),
    }
    if "default" in raw:
        fields.update(has_default=True, default=raw["default"])
    if raw.get("items") is not None:
        fields["items"] = _trelis_argument(raw["items"], where=f"{here} items", is_item=True)
    if raw.get("properties") is not None:
        if not isinstance(raw["properties"], list):
            raise SpecError(f"In {here}: 'properties' must be a list of field objects.")
        properties = [_trelis_argument(p, where=here) for p in raw["properties"]]
        _reject_duplicates((p.name for p in properties), "field", where=here)
        fields["properties"] = properties
    return ArgumentSpec(**fields)


def _from_openai(obj: dict[str, Any]) -> FunctionSpec:
    name = _check_name(obj.get("name"), "A function")
    parameters = obj.get("parameters") or obj.get("input_schema") or {"type": "object", "properties": {}}
    if not isinstance(parameters, dict):
        raise SpecError(f"Function {name!r}: 'parameters' must be a JSON Schema object.")
    where = f"function {name!r}"
    properties = parameters.get("properties") or {}
    if not isinstance(properties, dict):
        raise SpecError(f"In {where}: 'parameters.properties' must be an object.")
    required = _required_names(parameters.get("required"), where=where)
    unknown = required - set(properties)
    if unknown:
        raise SpecError(f"In {where}: required argument(s) {sorted(unknown)} are not in 'properties'.")
    arguments = [
        _schema_argument(_check_name(key, f"An argument of {where}"), schema, required=key in required, where=where)
        for key, schema in properties.items()
    ]
    return FunctionSpec(name=name, description=_text(obj.get("description")), arguments=arguments)


def _schema_argument(name: str, schema: Any, *, required: bool, where: str) -> ArgumentSpec:
    """An argument from a JSON Schema fragment."""
    here = f"{where}, argument {name!r}" if name else where
    if not isinstance(schema, dict):
        raise SpecError(f"In {here}: the schema must be an object.")
    nullable = False
    variants = schema.get("anyOf") or schema.get("oneOf")
    if variants:
        if not isinstance(variants, list) or not all(isinstance(v, dict) for v in variants):
            raise SpecError(f"In {here}: 'anyOf' / 'oneOf' must be a list of schema objects.")
        non_null = [v for v in variants if not (isinstance(v, dict) and v.get("type") == "null")]
        nullable = len(non_null) < len(variants)
        if len(non_null) != 1:
            raise SpecError(f"In {here}: a choice between several types is not supported; use one type.")
        schema = {**{k: v for k, v in schema.items() if k not in ("anyOf", "oneOf")}, **non_null[0]}
    if "const" in schema and "enum" not in schema:
        schema = {**schema, "enum": [schema["const"]]}
    raw_type = schema.get("type")
    if raw_type is None:
        raw_type = "object" if "properties" in schema else "array" if "items" in schema else None
    arg_type, type_nullable = _resolve_type(raw_type, schema.get("enum"), where=here)
    enum, null_in_enum = _split_null(_enum(schema.get("enum"), where=here))
    fields: dict[str, Any] = {
        "name": name,
        "type": arg_type,
        "description": _text(schema.get("description")),
        "required": required,
        "nullable": nullable or type_nullable or null_in_enum or bool(schema.get("nullable", False)),
        "enum": enum,
        "format": _format(schema.get("format"), where=here),
    }
    if "default" in schema:
        fields.update(has_default=True, default=schema["default"])
    if isinstance(schema.get("items"), dict):
        fields["items"] = _schema_argument("", schema["items"], required=True, where=f"{here} items")
    if arg_type == "object" and isinstance(schema.get("properties"), dict):
        marks = {
            key: value["required"]
            for key, value in schema["properties"].items()
            if isinstance(value, dict) and isinstance(value.get("required"), bool)
        }
        if isinstance(schema.get("required"), list):
            inner_required = _required_names(schema["required"], where=here)
        elif marks:  # Trelis-style objects mark each field instead, required unless marked otherwise
            inner_required = {key for key in schema["properties"] if marks.get(key, True)}
        else:  # JSON Schema: without a `required` list every field is optional
            inner_required = set()
        fields["properties"] = [
            _schema_argument(key, value, required=key in inner_required, where=here)
            for key, value in schema["properties"].items()
        ]
    return ArgumentSpec(**fields)


def _resolve_type(raw_type: Any, enum: Any, *, where: str) -> tuple[ArgType, bool]:
    """(JSON type, nullable) from a type name, a list of names, or an enum's values."""
    nullable = False
    if isinstance(raw_type, list):
        names = [t for t in raw_type if t != "null"]
        nullable = len(names) < len(raw_type)
        if len(names) != 1:
            raise SpecError(f"In {where}: give exactly one type besides null, got {raw_type}.")
        raw_type = names[0]
    if isinstance(raw_type, str):
        lowered = raw_type.strip().lower()
        if lowered.endswith("|null") or lowered.endswith("| null"):
            nullable, lowered = True, lowered.rsplit("|", 1)[0].strip()
        if lowered.startswith("optional[") and lowered.endswith("]"):
            nullable, lowered = True, lowered[len("optional["):-1]
        if lowered == "enum" or (lowered == "" and enum):
            return _enum_type(enum, where=where), nullable
        if lowered in _TYPE_NAMES:
            return _TYPE_NAMES[lowered], nullable
        known = ", ".join(sorted(set(_TYPE_NAMES.values())) + ["enum"])
        raise SpecError(f"In {where}: unknown type {raw_type!r}; use one of {known}.")
    if raw_type is None and enum:
        return _enum_type(enum, where=where), nullable
    raise SpecError(f"In {where}: the argument has no type.")


def common_type(values: list[Any]) -> ArgType | None:
    """The one JSON type all `values` share (ints count as numbers beside floats), or None when they mix."""
    if all(isinstance(v, bool) for v in values):
        return "boolean"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return "integer"
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return "number"
    if all(isinstance(v, str) for v in values):
        return "string"
    return None


def _enum_type(enum: Any, *, where: str) -> ArgType:
    values = [v for v in _enum(enum, where=where) or [] if v is not None]
    if not values:
        raise SpecError(f"In {where}: type 'enum' needs a non-empty 'enum' list of values.")
    return common_type(values) or "string"  # mixed choices are offered as text, as users wrote them


def _required_names(required: Any, *, where: str) -> set[str]:
    if not required:
        return set()
    if not isinstance(required, list) or not all(isinstance(name, str) for name in required):
        raise SpecError(f"In {where}: 'required' must be a list of argument names.")
    return set(required)


def _split_null(enum: list[Any] | None) -> tuple[list[Any] | None, bool]:
    """(enum without null, whether null was listed): JSON Schema lists null among a nullable field's values."""
    if enum is None or None not in enum:
        return enum, False
    return [v for v in enum if v is not None], True


def _enum(enum: Any, *, where: str) -> list[Any] | None:
    if enum is None:
        return None
    if not isinstance(enum, list) or not enum:
        raise SpecError(f"In {where}: 'enum' must be a non-empty list of values.")
    return enum


def _format(value: Any, *, where: str) -> str | None:
    """A `format` as JSON Schema names them (lower case); formats are open-ended, so any name is kept."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise SpecError(f"In {where}: 'format' must be a name such as \"email\" or \"date\", got {value!r}.")
    return value.strip().lower() or None


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""
