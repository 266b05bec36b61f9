"""The declared shape of an action's response: a small subset of JSON Schema.

    result:
      type: object
      required: [available]
      properties:
        available: {type: boolean}
        times: {type: array, items: {type: string, format: time}}
        area: {type: string, enum: [inside, terrace]}

Types: object (with `properties` and `required`), array (with `items`), string (optionally
`enum` and `format`: date, time or date-time), integer, number, boolean. Nothing else: no
`$ref`, no `oneOf`, no patterns. A response is read through its schema only: a value it does not
declare is dropped, so nothing undeclared is ever said or tested.

Named results are the top-level properties under the action's name (`availability.available`),
nested objects joined with dots (`booking.table.number`).
"""

from __future__ import annotations

import re
from datetime import date, datetime, time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, model_validator

from extraction.fields import IDENTIFIER

Scalar = StrictStr | StrictInt | StrictFloat | StrictBool
_SCALARS = ("string", "integer", "number", "boolean")
_JSON_TYPE = {"string": str, "integer": int, "number": (int, float), "boolean": bool}


class ResultSchema(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["object", "array", "string", "integer", "number", "boolean"]
    description: str = ""
    properties: dict[str, ResultSchema] | None = Field(None, description="object: its named values.")
    required: list[str] | None = Field(None, description="object: properties a response must have.")
    items: ResultSchema | None = Field(None, description="array: the schema of every item.")
    enum: list[Scalar] | None = Field(None, min_length=1, description="scalar: the only values allowed.")
    format: Literal["date", "time", "date-time"] | None = Field(None, description="string: read as a date or time.")

    @model_validator(mode="after")
    def _coherent(self) -> ResultSchema:
        kind = self.type
        if kind == "object":
            if not self.properties:
                raise ValueError("an object needs `properties` (the values it declares)")
            bad = [name for name in self.properties if not re.match(IDENTIFIER, name)]
            if bad:
                raise ValueError(f"property names are lowercase identifiers (a-z, 0-9, _): {', '.join(map(repr, bad))}")
            unknown = [name for name in self.required or [] if name not in self.properties]
            if unknown:
                raise ValueError(f"`required` names {', '.join(map(repr, unknown))}, not in `properties`")
        elif self.properties is not None or self.required is not None:
            raise ValueError(f"`properties` and `required` belong to an object, not a {kind}")
        if kind == "array" and self.items is None:
            raise ValueError("an array needs `items` (the schema of every item)")
        if kind != "array" and self.items is not None:
            raise ValueError(f"`items` belongs to an array, not a {kind}")
        if self.enum is not None:
            if kind not in _SCALARS:
                raise ValueError(f"`enum` belongs to a string, integer, number or boolean, not a {kind}")
            wrong = [v for v in self.enum if not _is_type(v, kind)]
            if wrong:
                raise ValueError(f"`enum` values must be of type {kind}: {', '.join(map(repr, wrong))}")
        if self.format is not None and kind != "string":
            raise ValueError(f"`format` belongs to a string, not a {kind}")
        return self

    def names(self, prefix: str) -> dict[str, ResultSchema]:
        """The named results this schema gives under `prefix` (an action's name), with their schemas."""
        out: dict[str, ResultSchema] = {}
        for name, sub in (self.properties or {}).items():
            out[f"{prefix}.{name}"] = sub
            if sub.type == "object":
                out.update(sub.names(f"{prefix}.{name}"))
        return out


    def usage_problem(self, name: str, test: str, operand: Any = None) -> str | None:
        """Why a condition test (`equals`, `in`, `gt`, `present`...) cannot apply to the named
        result this schema describes, or None when it can: for `spec check`, so a condition on
        `availability.times` with `gt: 3` is refused at the line that says it."""
        allowed = _TESTS[self.type]
        if test not in allowed:
            return (f"{name} is {'an' if self.type[0] in 'aeiou' else 'a'} {self.type}; `{test}` does not apply "
                    f"to it (use {', '.join(sorted(allowed))})")
        operands = operand if test == "in" and isinstance(operand, list) else [operand]
        if test in ("equals", "in"):
            wrong = [v for v in operands if not _is_type(v, self.type)]
            if wrong:
                return f"{name} is {'an' if self.type[0] in 'aeiou' else 'a'} {self.type}; {wrong[0]!r} is not one"
            never = [v for v in operands if self.enum is not None and v not in self.enum]
            if never:
                return f"{name} is one of {self.enum}; {never[0]!r} never matches"
        return None


ResultSchema.model_rebuild()

# Which condition tests each kind of result allows.
_NUMBER_TESTS = frozenset({"equals", "in", "gt", "gte", "lt", "lte", "present"})
_TESTS = {
    "boolean": frozenset({"equals", "present"}),
    "integer": _NUMBER_TESTS,
    "number": _NUMBER_TESTS,
    "string": frozenset({"equals", "in", "present"}),
    "array": frozenset({"present"}),
    "object": frozenset({"present"}),
}


class SchemaViolation(Exception):
    """A response outside its declared schema; the message names the place (`times.2`)."""


def _is_type(value: Any, kind: str) -> bool:
    if kind in ("integer", "number") and isinstance(value, bool):
        return False
    if kind == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, _JSON_TYPE[kind])


_READERS = {"date": date.fromisoformat, "time": time.fromisoformat, "date-time": datetime.fromisoformat}


def read(value: Any, schema: ResultSchema, where: str = "response") -> Any:
    """`value` (parsed JSON) as the typed value its schema declares: integers as int, numbers as
    float, formatted strings as date/time/datetime, objects with only their declared properties
    (an optional one that is absent or null reads as None). Raises SchemaViolation."""
    kind = schema.type
    if kind == "object":
        if not isinstance(value, dict):
            raise SchemaViolation(f"{where}: expected an object, got {_describe(value)}")
        out: dict[str, Any] = {}
        required = set(schema.required or [])
        for name, sub in (schema.properties or {}).items():
            item = value.get(name)
            if item is None:
                if name in required:
                    raise SchemaViolation(f"{where}.{name}: required, but {'null' if name in value else 'missing'}")
                out[name] = None
                continue
            out[name] = read(item, sub, f"{where}.{name}")
        return out
    if kind == "array":
        if not isinstance(value, list):
            raise SchemaViolation(f"{where}: expected an array, got {_describe(value)}")
        return [read(item, schema.items, f"{where}.{i}") for i, item in enumerate(value)]  # type: ignore[arg-type]
    if not _is_type(value, kind):
        raise SchemaViolation(f"{where}: expected {kind}, got {_describe(value)}")
    if schema.enum is not None and value not in schema.enum:
        raise SchemaViolation(f"{where}: {value!r} is not one of {schema.enum}")
    if kind == "integer":
        return int(value)
    if kind == "number":
        return float(value)
    if schema.format is not None:
        try:
            return _READERS[schema.format](value)
        except ValueError:
            raise SchemaViolation(f"{where}: {value!r} is not a {schema.format}") from None
    return value


def named(prefix: str, value: dict[str, Any], schema: ResultSchema) -> dict[str, Any]:
    """The typed response as named results: `availability.available`, nested objects by dots
    (and each object itself too, so `{booking.table}` can be passed on whole)."""
    out: dict[str, Any] = {}
    for name, sub in (schema.properties or {}).items():
        key = f"{prefix}.{name}"
        out[key] = value.get(name)
        if sub.type == "object" and isinstance(value.get(name), dict):
            out.update(named(key, value[name], sub))
    return out


def to_json(value: Any) -> Any:
    """A typed value back in JSON form (dates and times as ISO text), for storing."""
    if isinstance(value, (date, datetime, time)):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_json(v) for v in value]
    return value


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    kind = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object"}.get(
        type(value), type(value).__name__)
    text = repr(value)
    return f"{kind} {text[:40]}{'...' if len(text) > 40 else ''}"
