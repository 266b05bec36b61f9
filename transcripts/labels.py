"""Reviewers' labels (table `field_labels`, migrations 15 and 20).

Two kinds, both appended, never changed (a trigger refuses UPDATE):
- `stored`: whether the value the worker stored for a field was right, and if not, the right
  value (and where in the person's words it is, as a span). A later label of the same field
  replaces an earlier one when they are read; both stay.
- `missed`: a value the person gave in one of their turns that the worker did not store: the
  field, the right value and its span in that turn (verdict `wrong`, no stored value). The latest
  such label of a field in a turn is the one that counts.

`dataset()` writes them in the span format of the project's benchmarks (Restaurants-8k / DSTC8:
`userInput.text`, `labels[].slot`, `labels[].valueSpan`), one record per labelled turn.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel

from storage.clock import utcnow
from transcripts.store import TranscriptStore

Verdict = Literal["right", "wrong"]
Kind = Literal["stored", "missed"]


class FieldLabel(BaseModel):
    id: int | None = None
    conversation_id: str
    field: str
    turn: int | None = None
    stored_value: Any = None
    verdict: Verdict
    correct_value: str | None = None
    span_start: int | None = None
    span_end: int | None = None
    labelled_by: str
    labelled_at: datetime | str = ""
    kind: Kind = "stored"


def missed_value(conversation_id: str, field: str, turn: int, value: str, span: tuple[int, int],
                 labelled_by: str) -> FieldLabel:
    """A label for a value the worker missed: `value` said at `span` of the person's `turn`."""
    return FieldLabel(conversation_id=conversation_id, field=field, turn=turn, stored_value=None, verdict="wrong",
                      correct_value=value, span_start=span[0], span_end=span[1], labelled_by=labelled_by,
                      kind="missed")


async def fields_seen(store: TranscriptStore, worker: str, conversations: int = 200) -> set[str]:
    """The names of the fields the worker's latest conversations hold (the fields a missed value
    may be given for, when the spec is not at hand)."""
    rows = await store.db.fetchall("SELECT fields FROM conversations WHERE worker = ? ORDER BY started_at DESC LIMIT ?",
                                   (worker, conversations), ("fields",))
    return {name for r in rows if isinstance(r["fields"], dict) for name in r["fields"]}


class LabelStore:
    def __init__(self, store: TranscriptStore):
        self.db = store.db
        self.store = store

    async def add(self, label: FieldLabel) -> FieldLabel:
        at = label.labelled_at or utcnow()
        await self.db.execute(
            "INSERT INTO field_labels (conversation_id, field, turn, stored_value, verdict, correct_value, span_start, "
            "span_end, labelled_by, labelled_at, kind) VALUES (?, ?, ?, J?, ?, ?, ?, ?, ?, ?, ?)",
            (label.conversation_id, label.field, label.turn, {"v": label.stored_value}, label.verdict,
             label.correct_value, label.span_start, label.span_end, label.labelled_by, at, label.kind))
        return label.model_copy(update={"labelled_at": at})

    async def for_conversation(self, conversation_id: str) -> list[FieldLabel]:
        """Every label of the conversation, both kinds, oldest first."""
        rows = await self.db.fetchall("SELECT * FROM field_labels WHERE conversation_id = ? ORDER BY id",
                                      (conversation_id,), ("stored_value",))
        return [_label(r) for r in rows]

    async def latest(self, conversation_id: str) -> dict[str, FieldLabel]:
        """The label that counts for each stored field: the latest."""
        return {label.field: label for label in await self.for_conversation(conversation_id) if label.kind == "stored"}

    async def missed(self, conversation_id: str) -> list[FieldLabel]:
        """The values the worker missed, as labelled: the latest per field and turn, in turn order."""
        latest = {(label.field, label.turn): label for label in await self.for_conversation(conversation_id)
                  if label.kind == "missed"}
        return sorted(latest.values(), key=lambda label: (label.turn or 0, label.span_start or 0, label.field))

    async def all_latest(self) -> list[FieldLabel]:
        """The labels that count: the latest of each stored field, and the latest missed value of
        each field in each turn."""
        rows = await self.db.fetchall(
            "SELECT * FROM field_labels l WHERE l.id = (SELECT MAX(m.id) FROM field_labels m "
            "WHERE m.conversation_id = l.conversation_id AND m.field = l.field AND m.kind = l.kind "
            "AND (l.kind = 'stored' OR m.turn = l.turn)) ORDER BY l.conversation_id, l.id",
            (), ("stored_value",))
        return [_label(r) for r in rows]

    async def dataset(self) -> list[dict[str, Any]]:
        """The labels as a span dataset: per labelled user turn, its text and every field labelled in
        it with the right value and its span (a value marked right keeps the stored span; a
        correction with no span gives the value only; a missed value has its span and
        `"missed": true`). Wrong values with no right one given (the field should have stayed
        empty) are listed under `absent`."""
        out: dict[tuple[str, int], dict[str, Any]] = {}
        turns: dict[str, list[str]] = {}
        for label in await self.all_latest():
            if label.conversation_id not in turns:
                events = await self.store.events(label.conversation_id)
                turns[label.conversation_id] = [e.text for e in events if e.direction == "in" and e.text is not None]
            said = turns[label.conversation_id]
            turn = label.turn or 0
            if not 1 <= turn <= len(said):
                continue
            text = said[turn - 1]
            record = out.setdefault((label.conversation_id, turn), {
                "userInput": {"text": text}, "labels": [], "absent": [],
                "conversation_id": label.conversation_id, "turn": turn})
            if label.verdict == "wrong" and not label.correct_value:
                if label.kind == "stored":
                    record["absent"].append(label.field)
                continue
            value = label.correct_value if label.verdict == "wrong" else label.stored_value
            item: dict[str, Any] = {"slot": label.field, "value": value,
                                    "labelled_by": label.labelled_by, "labelled_at": str(label.labelled_at)}
            if label.span_start is not None and label.span_end is not None and 0 <= label.span_start < label.span_end <= len(text):
                item["valueSpan"] = {"startIndex": label.span_start, "endIndex": label.span_end}
            if label.kind == "missed":
                item["missed"] = True
            record["labels"].append(item)
        return sorted(out.values(), key=lambda r: (r["conversation_id"], r["turn"]))


def _label(row: dict[str, Any]) -> FieldLabel:
    stored = row.pop("stored_value")
    row.setdefault("kind", "stored")
    return FieldLabel(**row, stored_value=stored.get("v") if isinstance(stored, dict) else stored)
