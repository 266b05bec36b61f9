"""Turn script templates into text, with collected fields as typed values so that
`{date:%A %d %B}` and `{time:%H:%M}` work as a spec author expects."""

from __future__ import annotations

import string
from datetime import date, datetime, time
from typing import Any

from extraction.fields import FieldSpec, FieldType


class _Missing:
    """Stands in for a field not collected yet: renders as nothing, whatever the format."""

    def __format__(self, spec: str) -> str:
        return ""

    def __str__(self) -> str:
        return ""

    def __getattr__(self, name: str) -> _Missing:
        return self


class _Money:
    def __init__(self, amount: float, currency: str | None):
        self.amount, self.currency = amount, currency

    def __format__(self, spec: str) -> str:
        symbol = {"USD": "$", "GBP": "£", "EUR": "€"}.get(self.currency or "", "")
        number = format(self.amount, spec or (",.2f" if self.amount % 1 else ",.0f"))
        return f"{symbol}{number}" if symbol else f"{number} {self.currency or ''}".strip()

    __str__ = lambda self: format(self, "")  # noqa: E731


def typed_value(spec: FieldSpec, value: Any) -> Any:
    """The Python object a template formats: date, time, datetime, money or the raw value."""
    try:
        if spec.type is FieldType.date:
            return date.fromisoformat(value)
        if spec.type is FieldType.time:
            return time.fromisoformat(value)
        if spec.type is FieldType.datetime:
            return datetime.fromisoformat(value)
        if spec.type is FieldType.money:
            return _Money(value["amount"], value.get("currency"))
        if spec.type is FieldType.choice:
            return str(value).replace("_", " ")
        if spec.type is FieldType.yes_no:
            return "yes" if value else "no"
    except (TypeError, ValueError, KeyError):
        return value
    return value


class _Formatter(string.Formatter):
    def get_value(self, key: Any, args: Any, kwargs: dict[str, Any]) -> Any:
        return kwargs.get(key, _Missing()) if isinstance(key, str) else _Missing()

    def format_field(self, value: Any, format_spec: str) -> str:
        try:
            return super().format_field(value, format_spec)
        except (ValueError, TypeError):
            return str(value)


_FORMATTER = _Formatter()


_DISPLAY = {FieldType.date: "{v:%A %d %B}", FieldType.time: "{v:%H:%M}", FieldType.datetime: "{v:%A %d %B at %H:%M}"}


def display(spec: FieldSpec, value: Any) -> str:
    """How a value reads aloud when no template says otherwise."""
    typed = typed_value(spec, value)
    if spec.confirm_as:
        return _FORMATTER.format(spec.confirm_as, **{spec.name: typed})
    return _FORMATTER.format(_DISPLAY.get(spec.type, "{v}"), v=typed)


def render(template: str, fields: list[FieldSpec], values: dict[str, dict[str, Any]], **extra: Any) -> str:
    context: dict[str, Any] = {}
    for spec in fields:
        if spec.name in values:
            typed = typed_value(spec, values[spec.name]["value"])
            context[spec.name] = _FORMATTER.format(spec.confirm_as, **{spec.name: typed}) if spec.confirm_as else typed
    context.update({k: v for k, v in extra.items() if v is not None})
    return " ".join(_FORMATTER.format(template, **context).split())
