"""A stored conversation as the console shows it: turns in order with each stored value marked
in the person's own words, escalations and audit rows in line, email subjects and quoted parts
apart, a call's turns placed in its recording with their timings (worker/review/calls.py), and
everything masked for viewers.

Values are read from the field records the events carry (`value`, `text`, `start`, `end`,
`turn`, `confidence`): `turn` is the person's turn the words came from (1 = their first
message), `start`/`end` a span of that message. Every value the conversation ever held is shown,
so a corrected one is marked too (as replaced).
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel

from escalation.audit import AuditEntry
from extraction.redact import ConversationRedactor, Redactor
from transcripts.labels import FieldLabel
from transcripts.store import ConversationRecord, Event
from worker.review import calls

_QUOTE_START = re.compile(r"^\s*(>|On .{3,200} wrote:\s*$|-----\s*Original Message\s*-----)", re.I)
# Audit rows that only repeat what the timeline already says (each line the worker said).
_QUIET = {("action_taken", "say")}


class Value(BaseModel):
    key: str  # an anchor: field-turn-start
    field: str
    value: Any
    text: str | None
    start: int | None
    end: int | None
    turn: int | None
    confidence: float | None
    current: bool
    label: FieldLabel | None = None


class Segment(BaseModel):
    text: str
    value: Value | None = None
    tip_id: str | None = None


class Item(BaseModel):
    kind: str  # in, out, system, audit
    time: str
    turn: int | None = None
    segments: list[Segment] = []
    quoted: str | None = None
    subject: str | None = None
    note: str | None = None
    rule: str | None = None
    reason: str | None = None
    action: str | None = None
    by: str | None = None  # a person's reply from the queue page: who sent it
    delivery: str | None = None  # and how far it got: queued, sent or failed (the channel's outbox)
    delivery_detail: str | None = None
    at: float | None = None  # a call: seconds into the recording where this line is
    at_label: str | None = None
    timing: calls.TurnTiming | None = None  # a call: where the time of this turn went
    transcribed: str | None = None  # a call: plain transcription, where the digit re-read changed it


class Missed(BaseModel):
    """A value the worker missed, as a reviewer labelled it."""

    field: str
    value: str | None
    words: str | None
    turn: int | None
    by: str
    at: str


class Timeline(BaseModel):
    conversation_id: str
    shown_id: str
    record: dict[str, Any]
    items: list[Item]
    values: list[Value]
    masked: bool
    call: calls.Call | None = None
    missed: list[Missed] = []


def _values(record: ConversationRecord, events: list[Event]) -> list[Value]:
    seen: dict[tuple[Any, ...], Value] = {}
    for event in events:
        for name, stored in (event.fields or {}).items():
            if not isinstance(stored, dict) or "value" not in stored:
                continue
            key = (name, stored.get("turn"), stored.get("start"), stored.get("end"), repr(stored.get("value")))
            if key not in seen:
                seen[key] = Value(key=f"{name}-{stored.get('turn')}-{stored.get('start')}", field=name,
                                  value=stored.get("value"), text=stored.get("text"), start=stored.get("start"),
                                  end=stored.get("end"), turn=stored.get("turn"), confidence=stored.get("confidence"),
                                  current=False)
    for name, stored in (record.fields or {}).items():
        if isinstance(stored, dict):
            key = (name, stored.get("turn"), stored.get("start"), stored.get("end"), repr(stored.get("value")))
            if key in seen:
                seen[key].current = True
    return sorted(seen.values(), key=lambda v: (v.turn or 0, v.start or 0, v.field))


def _split_quote(text: str) -> tuple[str, str | None]:
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if i > 0 and _QUOTE_START.match(line):
            return "\n".join(lines[:i]).rstrip(), "\n".join(lines[i:])
    return text, None


def _segments(text: str, values: list[Value], counter: list[int]) -> list[Segment]:
    marks = []
    for v in values:
        start, end = v.start, v.end
        if start is None or end is None or not 0 <= start < end <= len(text) or text[start:end] != (v.text or text[start:end]):
            found = text.find(v.text) if v.text else -1
            if found < 0:
                continue
            start, end = found, found + len(v.text or "")
        marks.append((start, end, v))
    marks.sort(key=lambda m: (m[0], -(m[1] - m[0]), not m[2].current))
    out, at = [], 0
    for start, end, value in marks:
        if start < at:  # overlapping spans: the first (longest, current) one is marked
            continue
        if start > at:
            out.append(Segment(text=text[at:start]))
        counter[0] += 1
        out.append(Segment(text=text[start:end], value=value, tip_id=f"tip-{counter[0]}"))
        at = end
    if at < len(text):
        out.append(Segment(text=text[at:]))
    return out


def build(record: ConversationRecord, events: list[Event], audit: list[AuditEntry],
          labels: dict[str, FieldLabel], redactor: Redactor | None, missed: list[FieldLabel] | None = None,
          deliveries: dict[str, tuple[str, str | None]] | None = None) -> Timeline:
    """`redactor`: mask personal data (viewers); None shows everything (reviewers, admins).
    `missed`: the labels of values the worker missed. `deliveries`: dedupe key -> (status, detail)
    of the people's replies from the queue page (worker/review/reply.py, `statuses`)."""
    values = _values(record, events)
    call = calls.call_of(events) if record.channel == "voice" else None
    at = calls.offsets(events, call) if call is not None else {}
    for v in values:
        if v.current:
            v.label = labels.get(v.field)
    said = [e.text for e in events if e.direction == "in" and e.text is not None]
    masker: ConversationRedactor | None = redactor.conversation(said, record.fields) if redactor else None
    by_turn: dict[int, list[Value]] = {}
    for v in values:
        by_turn.setdefault(v.turn or 0, []).append(v)
    items: list[Item] = []
    turn, counter = 0, [0]
    for index, event in enumerate(events):
        time = str(event.time)
        place = {"at": round(at[index], 1), "at_label": calls.clock(at[index])} if index in at else {}
        if event.direction == "in" and event.text is not None:
            turn += 1
            visible, quoted = _split_quote(event.text) if event.channel == "email" else (event.text, None)
            segments = _segments(visible, by_turn.get(turn, []), counter)
            subject = event.metadata.get("subject") if isinstance(event.metadata, dict) else None
            if masker:
                segments = [s.model_copy(update={"text": masker.said(s.text) or ""}) for s in segments]
                quoted, subject = masker.said(quoted), masker.said(subject)
            transcribed = (event.metadata or {}).get("transcribed") if call is not None else None
            if not isinstance(transcribed, str) or transcribed == event.text:
                transcribed = None
            elif masker:
                transcribed = masker.said(transcribed)
            items.append(Item(kind="in", time=time, turn=turn, segments=segments, quoted=quoted, subject=subject,
                              timing=calls.timing_of(call.timings.get(turn)) if call else None,
                              transcribed=transcribed, **place))
        elif event.text is not None:
            text = masker.worker_said(event.text) if masker else event.text
            subject = event.metadata.get("subject") if event.channel == "email" else None
            human = bool((event.metadata or {}).get("human"))
            items.append(Item(kind="out" if event.direction == "out" else "system", time=time,
                              segments=[Segment(text=text or "")], subject=masker.said(subject) if masker and subject else subject,
                              note=None if human else (event.metadata or {}).get("event"),
                              by=str(event.metadata.get("by")) if human else None,
                              delivery=(deliveries or {}).get(event.dedupe_key or "", (None, None))[0] if human else None,
                              delivery_detail=(deliveries or {}).get(event.dedupe_key or "", (None, None))[1] if human else None,
                              # the greeting's timings go with the greeting (no turn of the person's)
                              timing=calls.timing_of(call.timings.get(0)) if call and turn == 0
                              and not any(i.kind == "out" for i in items) else None,
                              **place))
        elif (event.metadata or {}).get("event"):
            items.append(Item(kind="system", time=time, note=str(event.metadata["event"])))
    # Turns stay in the order they were stored; each audit row goes in before the first turn
    # stored after it (turn times can come from the channel's clock, audit times are the server's).
    rows: list[Item] = []
    for entry in audit:
        if (entry.kind, entry.action) in _QUIET:
            continue
        detail = masker.said(entry.detail) if masker and entry.detail else entry.detail
        rows.append(Item(kind="audit", time=str(entry.time), note=entry.kind, rule=entry.rule, action=entry.action,
                         reason=detail))
    merged: list[Item] = []
    for item in items:
        while rows and rows[0].time[:26] < item.time[:26]:
            merged.append(rows.pop(0))
        merged.append(item)
    items = merged + rows
    if masker:
        masked_values = []
        for v in values:
            stored = {v.field: {"value": v.value, "text": v.text}}
            shown = masker.fields(stored)[v.field]
            label = v.label
            if label is not None and label.correct_value:  # a reviewer's right value is personal data too
                label = label.model_copy(update={"correct_value": str(masker.fields({v.field: label.correct_value})[v.field])})
            masked_values.append(v.model_copy(update={"value": shown["value"], "text": shown.get("text"), "label": label}))
        values = masked_values
        for item in items:
            for s in item.segments:
                if s.value is not None:
                    s.value = next((m for m in values if m.key == s.value.key), s.value)
    rec = record.model_dump()
    if masker:
        rec["escalation"] = masker.value(rec.get("escalation"))
    return Timeline(conversation_id=record.id, shown_id=redactor.conversation_id(record.id) if redactor else record.id,
                    record=rec, items=items, values=values, masked=redactor is not None, call=call,
                    missed=[_missed(label, said, masker) for label in missed or []])


def _missed(label: FieldLabel, said: list[str], masker: ConversationRedactor | None) -> Missed:
    text = said[label.turn - 1] if label.turn and 1 <= label.turn <= len(said) else ""
    words = text[label.span_start:label.span_end] if label.span_start is not None and label.span_end is not None else None
    value = label.correct_value
    if masker:
        words = masker.said(words) if words else words
        value = str(masker.fields({label.field: value})[label.field]) if value else value
    return Missed(field=label.field, value=value, words=words or None, turn=label.turn, by=label.labelled_by,
                  at=str(label.labelled_at))
