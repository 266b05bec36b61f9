"""Turn script templates into text, with collected fields as typed values so that
`{date:%A %d %B}` and `{time:%H:%M}` work as a spec author expects.

Templates are filled by `dialogue.template.fill`, never `str.format`: a placeholder can
only name a value, not reach through it. A line that still fails to render is logged
and said without its placeholders rather than failing the turn."""

from __future__ import annotations

import logging
from datetime import date, datetime, time
from typing import Any

from dialogue.template import SafeValue, fill, literal_text
from extraction.durations import describe as describe_duration
from extraction.fields import FieldSpec, FieldType

log = logging.getLogger(__name__)


class _Money(SafeValue):
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
        if spec.type is FieldType.duration:
            return describe_duration(value)  # "P3D" reads back as "3 days"
    except (TypeError, ValueError, KeyError):
        return value
    return value


# What a value of each type looks like to `spec check`, which formats one to test a format spec.
SAMPLES: dict[FieldType, Any] = {
    FieldType.date: date(2026, 1, 2),
    FieldType.time: time(19, 30),
    FieldType.datetime: datetime(2026, 1, 2, 19, 30),
    FieldType.money: _Money(12.5, "USD"),
    FieldType.integer: 3,
    FieldType.count: 3,
}


def sample_value(field_type: FieldType) -> Any:
    return SAMPLES.get(field_type, "text")


_DISPLAY = {FieldType.date: "{v:%A %d %B}", FieldType.time: "{v:%H:%M}", FieldType.datetime: "{v:%A %d %B at %H:%M}"}


def _safely(template: str, context: dict[str, Any]) -> str:
    try:
        return fill(template, context)
    except Exception:  # defence in depth: a reply line must never fail a turn
        log.exception("could not render template %r; saying it without its placeholders", template)
        return literal_text(template)


def display(spec: FieldSpec, value: Any) -> str:
    """How a value reads aloud when no template says otherwise."""
    typed = typed_value(spec, value)
    if spec.confirm_as:
        return _safely(spec.confirm_as, {spec.name: typed})
    return _safely(_DISPLAY.get(spec.type, "{v}"), {"v": typed})


def render(template: str, fields: list[FieldSpec], values: dict[str, dict[str, Any]], **extra: Any) -> str:
    context: dict[str, Any] = {}
    for spec in fields:
        if spec.name in values:
            try:
                typed = typed_value(spec, values[spec.name]["value"])
            except Exception:  # a stored value of an unexpected shape: leave the field out
                log.exception("could not read the stored value of %s", spec.name)
                continue
            context[spec.name] = _safely(spec.confirm_as, {spec.name: typed}) if spec.confirm_as else typed
    context.update({k: v for k, v in extra.items() if v is not None})
    return " ".join(_safely(template, context).split())
