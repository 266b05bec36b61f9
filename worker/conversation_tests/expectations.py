"""One step's expectations against what happened: each that does not hold is a `Mismatch`
(what, expected, got), which the report prints as a diff."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from extraction.patterns import compile_pattern
from worker.conversation_tests.model import ActionExpectation, Expect, FieldExpectation


class Mismatch(BaseModel):
    what: str
    expected: str
    got: str


class Observed(BaseModel):
    """What the worker did for one line: its reply, its state after it, the calls it made."""

    reply: str | None
    fields: dict[str, dict[str, Any]]
    task: str | None
    outcome: str | None
    escalation: str | None
    notified: list[str]
    turns: int
    calls: list[dict[str, Any]]


def show(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return json.dumps(value, ensure_ascii=False, default=str, sort_keys=True)


def same(expected: Any, got: Any) -> bool:
    """Equal, or equal as text (YAML `19:30` and a stored time, `5` and 5.0)."""
    if expected == got:
        return True
    if expected is None or got is None or isinstance(expected, bool) or isinstance(got, bool):
        return False
    return str(expected) == str(got)


def check(expect: Expect, seen: Observed) -> list[Mismatch]:
    given = expect.given()
    out: list[Mismatch] = []
    reply = seen.reply or ""
    if "reply_contains" in given and expect.reply_contains is not None:
        wanted = [expect.reply_contains] if isinstance(expect.reply_contains, str) else expect.reply_contains
        for text in wanted:
            if text.casefold() not in reply.casefold():
                out.append(Mismatch(what="reply contains", expected=show(text), got=show(seen.reply)))
    if "reply_matches" in given and expect.reply_matches is not None:
        if compile_pattern(expect.reply_matches).search(reply) is None:
            out.append(Mismatch(what="reply matches", expected=f"/{expect.reply_matches}/", got=show(seen.reply)))
    for name, wanted in (expect.fields or {}).items():
        out += _field(name, wanted, seen.fields.get(name))
    for key in ("task", "outcome"):
        if key in given and getattr(expect, key) != getattr(seen, key):
            out.append(Mismatch(what=key, expected=show(getattr(expect, key)), got=show(getattr(seen, key))))
    if "escalation" in given:
        wanted = expect.escalation
        held = wanted == seen.escalation or (wanted is not None and wanted in seen.notified)
        if not held:
            got = seen.escalation
            if seen.notified:
                got = f"{show(got)} (team notified by: {', '.join(seen.notified)})"
                out.append(Mismatch(what="escalation", expected=show(wanted), got=got))
            else:
                out.append(Mismatch(what="escalation", expected=show(wanted), got=show(got)))
    if "actions" in given and expect.actions is not None:
        out += _actions(expect.actions, seen.calls)
    if "turns" in given and expect.turns != seen.turns:
        out.append(Mismatch(what="turns", expected=show(expect.turns), got=show(seen.turns)))
    return out


def _field(name: str, wanted: FieldExpectation | Any, stored: dict[str, Any] | None) -> list[Mismatch]:
    value = stored.get("value") if stored else None
    if not isinstance(wanted, FieldExpectation):
        if (wanted is None and stored is None) or (stored is not None and same(wanted, value)):
            return []
        return [Mismatch(what=f"fields.{name}", expected=show(wanted), got=show(value))]
    out = []
    if stored is None or not same(wanted.value, value):
        out.append(Mismatch(what=f"fields.{name}", expected=show(wanted.value), got=show(value)))
    if wanted.span is not None and (stored is None or stored.get("text") != wanted.span):
        out.append(Mismatch(what=f"fields.{name}.span", expected=show(wanted.span),
                            got=show(stored.get("text") if stored else None)))
    return out


def describe_call(call: dict[str, Any]) -> str:
    sent = {**call.get("query", {}), **(call["body"] if isinstance(call.get("body"), dict) else {})}
    return f"{call['name']} {show(sent)}" if sent else str(call["name"])


def _actions(wanted: list[ActionExpectation], calls: list[dict[str, Any]]) -> list[Mismatch]:
    got = "; ".join(describe_call(c) for c in calls) or "no action called"
    expected = "; ".join(f"{w.name} {show(w.with_)}" if w.with_ else w.name for w in wanted) or "no action called"
    if len(wanted) != len(calls):
        return [Mismatch(what="actions", expected=expected, got=got)]
    for w, call in zip(wanted, calls):
        sent = {**call.get("query", {}), **(call["body"] if isinstance(call.get("body"), dict) else {})}
        if w.name != call["name"] or any(k not in sent or not same(v, sent[k]) for k, v in w.with_.items()):
            return [Mismatch(what="actions", expected=expected, got=got)]
    return []
