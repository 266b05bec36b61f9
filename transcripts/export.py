"""Export conversations: JSON lines (one conversation per line, turns nested) or CSV
(one row per event, conversation columns repeated), for reviewers and spreadsheets.

CSV cells are made safe to open in a spreadsheet (OWASP's CSV-injection advice): a cell that
starts with = + - @, a tab or a carriage return (also after leading spaces) gets a leading
single quote, so it is shown as text and never run as a formula. That includes negative
numbers ("-5" is written '-5): safety comes first. JSON lines are data, not a spreadsheet,
and keep every text as stored.

With a `Redactor`, personal data is masked everywhere it is written: what was said, field
values, metadata (SMS from/to, email senders), escalations and the audit trail's inputs,
and conversation ids that carry a phone number or an address (see extraction/redact.py).
The redactor is passed in (anything shaped like `Redactor` below): redaction is built on the
extractors, which sit above storage, so this module does not import it.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable
from typing import IO, Any, Literal, Protocol

from transcripts.store import ConversationRecord, Event, ExportFilter, TranscriptStore

ExportFormat = Literal["jsonl", "csv"]

CSV_COLUMNS = [
    "conversation_id", "worker", "conversation_channel", "started_at", "conversation_outcome",
    "spec_version", "spec_hash",
    "event_id", "time", "channel", "direction", "text", "fields", "outcome", "escalation_rule", "escalation_reason",
    "metadata",
]

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """A CSV cell a spreadsheet shows as text: formula triggers get a leading single quote."""
    if isinstance(value, str) and (value.startswith(_FORMULA_STARTS) or value.lstrip().startswith(_FORMULA_STARTS)):
        return "'" + value
    return value


def _role(direction: str) -> str:
    return "user" if direction == "in" else "worker" if direction == "out" else "system"


class ConversationRedactor(Protocol):
    """Masks one conversation's texts and values."""

    def said(self, text: str | None) -> str | None: ...
    def worker_said(self, text: str | None) -> str | None: ...
    def value(self, value: Any, key: str | None = None) -> Any: ...
    def fields(self, fields: dict[str, Any] | None) -> dict[str, Any]: ...


class Redactor(Protocol):
    """What export asks of a redactor (`channel-worker export --redact` passes one)."""

    def conversation(self, person_texts: Iterable[str | None], fields: dict[str, Any] | None) -> ConversationRedactor: ...
    def conversation_id(self, conversation_id: str) -> str: ...


class _Plain:
    """The no-redaction stand-in for ConversationRedactor: everything as stored."""

    def said(self, text: str | None) -> str | None:
        return text

    worker_said = said

    def value(self, value: Any, key: str | None = None) -> Any:
        return value

    def fields(self, fields: dict[str, Any] | None) -> dict[str, Any]:
        return dict(fields or {})


def _for(redactor: Redactor | None, conv: ConversationRecord, events: list[Event]) -> ConversationRedactor | _Plain:
    if redactor is None:
        return _Plain()
    person = [e.text for e in events if e.direction == "in"]
    person += [str(v) for e in events if e.direction == "in" for v in e.metadata.values() if isinstance(v, str)]
    return redactor.conversation(person, conv.fields)


def _text(r: ConversationRedactor | _Plain, event: Event) -> str | None:
    return r.said(event.text) if event.direction == "in" else r.worker_said(event.text)


async def export(
    store: TranscriptStore,
    out: IO[str],
    fmt: ExportFormat,
    flt: ExportFilter,
    progress: Callable[[int], None] | None = None,
    redactor: Redactor | None = None,
) -> int:
    """Write every matching conversation to `out`; returns how many were written."""
    writer = None
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS)
        writer.writeheader()
    n = 0
    async for conv, events in store.iter_conversations(flt):
        r = _for(redactor, conv, events)
        conversation_id = redactor.conversation_id(conv.id) if redactor else conv.id
        if writer is None:
            record = conv.model_dump(exclude={"min_confidence"})  # spec_version and spec_hash included: the spec that ran it
            record["id"] = conversation_id
            record["fields"] = r.fields(conv.fields)
            record["escalation"] = r.value(conv.escalation)
            record["turns"] = [
                {"role": _role(e.direction), "text": _text(r, e), "time": e.time, "outcome": e.outcome,
                 "escalation": r.value(e.escalation), "metadata": r.value(e.metadata)}
                for e in events if e.text is not None
            ]
            record["user_turns"] = conv.turns
            # The audit trail travels with the transcript: rules that fired, actions taken or refused.
            audit = await store.db.fetchall(
                "SELECT time, kind, rule, action, inputs, detail FROM audit WHERE conversation_id = ? ORDER BY id",
                (conv.id,), ("inputs",),
            )
            record["audit"] = [{**a, "inputs": r.value(a["inputs"]), "detail": r.said(a["detail"])} for a in audit]
            out.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
        else:
            for e in events:
                escalation = r.value(e.escalation) or {}
                fields = r.fields(e.fields)
                row = {
                    "conversation_id": conversation_id, "worker": conv.worker, "conversation_channel": conv.channel,
                    "started_at": conv.started_at, "conversation_outcome": conv.outcome or "",
                    "spec_version": conv.spec_version or "", "spec_hash": conv.spec_hash or "",
                    "event_id": e.id, "time": e.time, "channel": e.channel, "direction": e.direction,
                    "text": _text(r, e) or "",
                    "fields": json.dumps({k: v.get("value") if isinstance(v, dict) else v for k, v in fields.items()},
                                         ensure_ascii=False),
                    "outcome": e.outcome or "", "escalation_rule": escalation.get("rule", ""),
                    "escalation_reason": escalation.get("reason", ""),
                    "metadata": json.dumps(r.value(e.metadata), ensure_ascii=False, default=str),
                }
                writer.writerow({k: safe_cell(v) for k, v in row.items()})
        n += 1
        if progress:
            progress(1)
    return n
