"""Evaluate escalation conditions against the facts of one turn. Pure functions, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from escalation.rules import (
    AllCondition,
    AnyCondition,
    BusinessHours,
    ChannelCondition,
    CountCondition,
    EscalationRule,
    FieldCondition,
    HoursCondition,
    IntentCondition,
    NotCondition,
)

_DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


@dataclass
class Facts:
    """Everything a condition may look at, gathered by the dialogue for one turn."""

    intents: set[str]
    fields: dict[str, dict[str, Any]]
    turns: int
    reasks: dict[str, int]
    elapsed_seconds: float
    channel: str
    local_time: datetime
    extra: dict[str, Any] = field(default_factory=dict)


def _compare(value: Any, c: Any) -> bool:
    checks = [
        (c.gt, lambda v, x: v > x),
        (c.gte, lambda v, x: v >= x),
        (c.lt, lambda v, x: v < x),
        (c.lte, lambda v, x: v <= x),
    ]
    results = []
    for limit, op in checks:
        if limit is None:
            continue
        try:
            results.append(op(float(value), limit))
        except (TypeError, ValueError):
            return False
    return all(results) if results else True


def _numeric(value: Any) -> Any:
    if isinstance(value, dict) and "amount" in value:
        return value["amount"]
    return value


def _within(hours: BusinessHours, when: datetime) -> bool:
    if _DAYS[when.weekday()] not in hours.days:
        return False
    hhmm = when.strftime("%H:%M")
    return hours.start <= hhmm < hours.end


def holds(condition: Any, facts: Facts) -> bool:
    if isinstance(condition, IntentCondition):
        wanted = condition.intent if isinstance(condition.intent, list) else [condition.intent]
        return any(i.value in facts.intents for i in wanted)
    if isinstance(condition, FieldCondition):
        stored = facts.fields.get(condition.field)
        if condition.present is not None:
            return (stored is not None) == condition.present
        if stored is None:
            return False
        value = _numeric(stored["value"])
        if condition.confidence_below is not None and not stored["confidence"] < condition.confidence_below:
            return False
        if condition.equals is not None and str(value).lower() != str(condition.equals).lower():
            return False
        if condition.in_ is not None and str(value).lower() not in {str(x).lower() for x in condition.in_}:
            return False
        return _compare(value, condition)
    if isinstance(condition, CountCondition):
        if condition.count == "turns":
            value: float = facts.turns
        elif condition.count == "elapsed_seconds":
            value = facts.elapsed_seconds
        else:
            value = facts.reasks.get(condition.field, 0) if condition.field else max(facts.reasks.values(), default=0)
        return _compare(value, condition)
    if isinstance(condition, ChannelCondition):
        wanted = condition.channel if isinstance(condition.channel, list) else [condition.channel]
        return facts.channel in wanted
    if isinstance(condition, HoursCondition):
        if condition.outside_hours is not None:
            return not _within(condition.outside_hours, facts.local_time)
        if condition.inside_hours is not None:
            return _within(condition.inside_hours, facts.local_time)
        return False
    if isinstance(condition, AllCondition):
        return all(holds(c, facts) for c in condition.all)
    if isinstance(condition, AnyCondition):
        return any(holds(c, facts) for c in condition.any)
    if isinstance(condition, NotCondition):
        return not holds(condition.not_, facts)
    raise TypeError(f"unknown condition {condition!r}")


def fired_rules(rules: list[EscalationRule], facts: Facts) -> list[EscalationRule]:
    """Every rule whose condition holds, in spec order; the first one wins."""
    return [r for r in rules if holds(r.when, facts)]
