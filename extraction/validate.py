"""Check a normalised value against its field's constraints; say why in words a person understands."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from extraction.fields import FieldSpec, FieldType
from extraction.patterns import fullmatch


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def validate(spec: FieldSpec, value: Any, now: datetime) -> str | None:
    """None when `value` is acceptable, else a short sentence saying what is wrong."""
    c = spec.constraints
    t = spec.type
    if t in (FieldType.integer, FieldType.count):
        if c.min is not None and value < c.min:
            return f"That's fewer than {c.min:g}."
        if c.max is not None and value > c.max:
            return f"That's more than {c.max:g}."
    elif t is FieldType.money:
        amount = value["amount"]
        if c.min is not None and amount < c.min:
            return f"That's less than {c.min:g}."
        if c.max is not None and amount > c.max:
            return f"That's more than {c.max:g}."
    elif t is FieldType.time:
        if c.earliest and value < c.earliest or c.latest and value > c.latest:
            return f"That's outside {c.earliest or '00:00'} to {c.latest or '23:59'}."
    elif t is FieldType.date:
        day = date.fromisoformat(value)
        offset = (day - now.date()).days
        if c.not_in_past and offset < 0:
            return "That date has already passed."
        if c.min is not None and offset < c.min:
            return "That date is too soon."
        if c.max is not None and offset > c.max:
            return "That date is too far ahead."
    elif t in (FieldType.digits, FieldType.text, FieldType.free_text, FieldType.first_name, FieldType.last_name,
               FieldType.name, FieldType.full_name):
        length = len(value)
        unit = "digits" if t is FieldType.digits else "characters"
        if c.min_length is not None and length < c.min_length:
            return f"That has {length} {unit}; I need at least {c.min_length}."
        if c.max_length is not None and length > c.max_length:
            return f"That has {length} {unit}; I need at most {c.max_length}."
        if c.checksum == "luhn" and t is FieldType.digits and not luhn_ok(value):
            return "That number doesn't look right."
    if c.pattern is not None and isinstance(value, str) and not fullmatch(c.pattern, value):
        return "That isn't in the expected format."
    return None
