"""The conversation store: every turn appended as an event, one summary row per conversation."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from storage.db import Database, Statement
from storage.migrations import migrate

_JSON_EVENT = ("fields", "escalation", "actions", "metadata")
_JSON_CONV = ("fields", "escalation")


class Event(BaseModel):
    """One stored turn: what was said, by whom, and the state after it."""

    id: int | None = None
    conversation_id: str
    channel: str
    direction: str = Field(pattern="^(in|out|system)$")
    text: str | None
    time: datetime | str
    # None: this event says nothing about the fields (a notice, a hang-up), so the
    # conversation keeps the ones it has; a dict (even empty) is the state after the turn.
    fields: dict[str, Any] | None = None
    outcome: str | None = None
    escalation: dict[str, Any] | None = None
    actions: list[dict[str, Any]] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    dedupe_key: str | None = None  # the channel's message id; one event per key per conversation


class ConversationRecord(BaseModel):
    id: str
    worker: str
    channel: str
    started_at: str
    updated_at: str
    outcome: str | None
    escalation: dict[str, Any] | None
    fields: dict[str, Any]
    turns: int
    # The spec that ran it (migration 14): its `version:` label and content hash, set when the
    # conversation started. None on conversations from before versions were recorded.
    spec_version: str | None = None
    spec_hash: str | None = None
    min_confidence: float | None = None  # migration 15: the lowest confidence of the values held
    # Migration 19 (transcripts/kpis.py): the task after the latest turn, every task it was in
    # (' book cancel '; None: not yet backfilled), whether the person confirmed a read-back, the
    # re-asks (counted, and the fields named ' date time'), the fallback replies, and the voice
    # reply latencies in ms (JSON text).
    task: str | None = None
    tasks: str | None = ""
    confirmed: int = 0
    reasks: int = 0
    reasked: str = ""
    fallbacks: int = 0
    voice_latency: str | None = None


class SpecStamp(BaseModel):
    """Which version of the worker spec a conversation started on."""

    version: str | None = None
    hash: str | None = None


def lowest_confidence(fields: dict[str, Any] | None) -> float | None:
    """The lowest confidence among stored field records ({"value", "confidence", ...}); None if none has one."""
    found = [float(r["confidence"]) for r in (fields or {}).values()
             if isinstance(r, dict) and isinstance(r.get("confidence"), (int, float))]
    return min(found) if found else None


def voice_latencies(metadata: dict[str, Any]) -> list[int]:
    """The reply latency of each spoken turn of a 'call ended' event's metadata.turns, in ms: from
    the caller's last word to the worker's first audio (the VAD pause, the hold in which
    recognition runs, the dialogue, the reply's first audio). Turns without a first audio (the
    call ended first) and key presses are left out. Migration 19 computes the same in SQL."""
    out = []
    for t in metadata.get("turns") or []:
        if isinstance(t, dict) and t.get("input") == "speech" and t.get("tts_first_audio_ms") is not None:
            out.append(int(round(sum(float(t.get(k) or 0) for k in ("vad_wait_ms", "hold_ms", "dialogue_ms"))
                                 + float(t["tts_first_audio_ms"]))))
    return out


def spec_version_clause(wanted: str, table: str = "") -> tuple[str, list[Any]]:
    """SQL for conversations started on a spec version: its label, or its hash by a prefix of 6+
    hex digits (the pattern is a parameter: no % in the SQL text). `table`: a prefix such as "c."."""
    if len(wanted) >= 6 and all(c in "0123456789abcdef" for c in wanted):
        return f"({table}spec_version = ? OR {table}spec_hash LIKE ?)", [wanted, wanted + "%"]
    return f"{table}spec_version = ?", [wanted]


class ExportFilter(BaseModel):
    since: datetime | None = None
    until: datetime | None = None
    outcome: str | None = None
    channel: str | None = None
    worker: str | None = None
    # The spec's `version:` label, or its content hash (a prefix of at least 6 characters will do).
    spec_version: str | None = None


class TranscriptStore:
    def __init__(self, db: Database):
        self.db = db

    @classmethod
    async def open(cls, url: str) -> TranscriptStore:
        db = await Database.open(url)
        await migrate(db)
        store = cls(db)
        from transcripts.kpis import backfill  # it reads the store's rows; imported here, below it

        await backfill(store)  # rows from before migration 19; one index lookup once there are none
        return store

    async def close(self) -> None:
        await self.db.close()

    async def append(self, event: Event, worker: str, spec: SpecStamp | None = None) -> None:
        """Record one event and keep the conversation's summary row in step with it."""
        await self.db.batch(self.append_statements(event, worker, spec))

    @staticmethod
    def append_statements(event: Event, worker: str, spec: SpecStamp | None = None) -> list[Statement]:
        """What `append` runs, for callers that commit the event with other writes. `spec` is
        stored only when this event starts the conversation: a conversation keeps the version of
        the spec it started with."""
        spec = spec or SpecStamp()
        return [
            ("INSERT INTO conversations (id, worker, channel, started_at, updated_at, fields, turns, spec_version, "
             "spec_hash, tasks) VALUES (?, ?, ?, ?, ?, J?, 0, ?, ?, '') ON CONFLICT (id) DO NOTHING",
             (event.conversation_id, worker, event.channel, event.time, event.time, {}, spec.version, spec.hash)),
            ("INSERT INTO events (conversation_id, channel, direction, text, time, fields, outcome, escalation, actions, "
             "metadata, dedupe_key) VALUES (?, ?, ?, ?, ?, J?, ?, J?, J?, J?, ?) ON CONFLICT DO NOTHING",
             (event.conversation_id, event.channel, event.direction, event.text, event.time, event.fields or {},
              event.outcome, event.escalation, event.actions, event.metadata, event.dedupe_key)),
            TranscriptStore._summary_statement(event),
        ]

    @staticmethod
    def _summary_statement(event: Event) -> Statement:
        counts = event.direction == "in" and event.text is not None
        if counts and event.dedupe_key is not None:
            # A keyed message may be offered again (redelivery, recovery) and then stored no
            # second time: count the turns instead of adding one.
            turns, params = ("(SELECT COUNT(*) FROM events WHERE conversation_id = ? AND direction = 'in' "
                             "AND text IS NOT NULL)"), [event.conversation_id]
        else:
            turns, params = "turns + ?", [1 if counts else 0]
        # The lowest confidence of the values held after this turn (migration 15): the review
        # console's "low confidence" filter reads this column instead of every row's JSON.
        # The turn's KPI marks (migration 19, transcripts/kpis.py): the task, and counters. A row
        # from before it (tasks NULL) is left to the backfill, which counts from the checkpoints.
        marks = event.metadata.get("kpi") or {}
        task = event.metadata.get("task") if event.direction == "out" else None
        latency = voice_latencies(event.metadata) if event.metadata.get("event") == "call ended" else None
        return (
            "UPDATE conversations SET updated_at = ?, fields = COALESCE(J?, fields), outcome = COALESCE(?, outcome), "
            f"escalation = COALESCE(J?, escalation), turns = {turns}, "
            "min_confidence = CASE WHEN ? THEN ? ELSE min_confidence END, "
            "task = COALESCE(?, task), "
            "tasks = CASE WHEN tasks IS NULL OR CAST(? AS TEXT) IS NULL OR tasks LIKE ? ESCAPE '\\' THEN tasks "
            "WHEN tasks = '' THEN ? ELSE tasks || CAST(? AS TEXT) END, "
            "confirmed = CASE WHEN ? THEN 1 ELSE confirmed END, reasks = reasks + ?, reasked = reasked || CAST(? AS TEXT), "
            "fallbacks = fallbacks + ?, voice_latency = COALESCE(?, voice_latency) WHERE id = ?",
            (event.time, event.fields, event.outcome, event.escalation, *params, event.fields is not None,
             lowest_confidence(event.fields), task, task, "% " + (task or "").replace("_", "\\_") + " %",
             f" {task} ", f"{task} ", bool(marks.get("confirmed")), len(marks.get("reasked") or []),
             "".join(f" {f}" for f in marks.get("reasked") or []), int(marks.get("fallbacks") or 0),
             json.dumps(latency) if latency is not None else None, event.conversation_id),
        )

    async def reply_after(self, conversation_id: str, metadata_key: str, value: str) -> str | None:
        """The worker's reply to the inbound turn whose metadata has `metadata_key == value`, if
        that turn ran to the end (None if it never ran or stopped before replying). Channels use it
        after a crash to send the reply that was made instead of running the turn again."""
        events = await self.events(conversation_id)
        for i, event in enumerate(events):
            if event.direction == "in" and event.metadata.get(metadata_key) == value:
                for later in events[i + 1:]:
                    if later.direction == "in":
                        return None
                    if later.direction == "out":
                        return later.text or ""
                return None
        return None

    async def reopen(self, conversation_id: str) -> None:
        """Clear a conversation's outcome and escalation when it goes back to the worker."""
        await self.db.execute("UPDATE conversations SET outcome = NULL, escalation = NULL WHERE id = ?", (conversation_id,))

    async def conversation(self, conversation_id: str) -> ConversationRecord | None:
        row = await self.db.fetchone("SELECT * FROM conversations WHERE id = ?", (conversation_id,), _JSON_CONV)
        return ConversationRecord(**row) if row else None

    async def spec_of(self, conversation_id: str) -> SpecStamp | None:
        """The spec version a stored conversation started on (None: no such conversation)."""
        row = await self.db.fetchone("SELECT spec_version, spec_hash FROM conversations WHERE id = ?", (conversation_id,))
        return SpecStamp(version=row["spec_version"], hash=row["spec_hash"]) if row else None

    async def by_spec(self, worker: str, since: datetime | None = None) -> list[ConversationRecord]:
        """The worker's conversations (started at or after `since`), with their outcome, fields and
        spec version, oldest first: what the per-version KPIs are computed from."""
        where, params = "worker = ?", [worker]
        if since is not None:
            where, params = where + " AND started_at >= ?", [worker, since]
        rows = await self.db.fetchall(f"SELECT * FROM conversations WHERE {where} ORDER BY started_at, id", params,
                                      _JSON_CONV)
        return [ConversationRecord(**r) for r in rows]

    async def recent_ended(self, worker: str, limit: int) -> list[ConversationRecord]:
        """The worker's last `limit` conversations that reached an outcome, latest first (the
        drift alarm's window)."""
        rows = await self.db.fetchall(
            "SELECT * FROM conversations WHERE worker = ? AND outcome IS NOT NULL ORDER BY updated_at DESC LIMIT ?",
            (worker, limit), _JSON_CONV,
        )
        return [ConversationRecord(**r) for r in rows]

    async def events(self, conversation_id: str) -> list[Event]:
        rows = await self.db.fetchall(
            "SELECT * FROM events WHERE conversation_id = ? ORDER BY id", (conversation_id,), _JSON_EVENT
        )
        return [Event(**r) for r in rows]

    def _where(self, f: ExportFilter) -> tuple[str, list[Any]]:
        clauses, params = [], []
        for column, value, op in (
            ("started_at", f.since, ">="), ("started_at", f.until, "<"),
            ("outcome", f.outcome, "="), ("channel", f.channel, "="), ("worker", f.worker, "="),
        ):
            if value is not None:
                clauses.append(f"{column} {op} ?")
                params.append(value)
        if f.spec_version is not None:
            clause, more = spec_version_clause(f.spec_version)
            clauses.append(clause)
            params += more
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params

    async def count_conversations(self, f: ExportFilter) -> int:
        where, params = self._where(f)
        row = await self.db.fetchone(f"SELECT COUNT(*) AS n FROM conversations{where}", params)
        return int(row["n"]) if row else 0

    async def iter_conversations(self, f: ExportFilter, batch: int = 500) -> AsyncIterator[tuple[ConversationRecord, list[Event]]]:
        """Conversations matching `f`, oldest first, each with its events; paged so memory stays flat."""
        where, params = self._where(f)
        last_started, last_id = "", ""
        while True:
            keyset = "(started_at > ? OR (started_at = ? AND id > ?))"
            clause = f"{where} AND {keyset}" if where else f" WHERE {keyset}"
            rows = await self.db.fetchall(
                f"SELECT * FROM conversations{clause} ORDER BY started_at, id LIMIT {int(batch)}",
                [*params, last_started or "0001-01-01T00:00:00+00:00", last_started or "0001-01-01T00:00:00+00:00", last_id],
                _JSON_CONV,
            )
            if not rows:
                return
            ids = [r["id"] for r in rows]
            marks = ",".join("?" for _ in ids)
            event_rows = await self.db.fetchall(
                f"SELECT * FROM events WHERE conversation_id IN ({marks}) ORDER BY id", ids, _JSON_EVENT
            )
            by_conv: dict[str, list[Event]] = {i: [] for i in ids}
            for e in event_rows:
                by_conv[e["conversation_id"]].append(Event(**e))
            for r in rows:
                yield ConversationRecord(**r), by_conv[r["id"]]
            last_started, last_id = rows[-1]["started_at"], rows[-1]["id"]
