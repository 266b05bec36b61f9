"""The KPI figures of the review console's KPI page and of `channel-worker report`, and the marks
each turn leaves on its conversation's row so that they are read from one index, not from events.

What is counted (every rate is a share of the *ended* conversations, those with an outcome):
- completion: outcome `completed`; escalation: `escalated`; abandonment: `abandoned`.
- success: an outcome other than escalated or abandoned, reached after the person said yes to a
  read-back of the values (`confirmed`): a conversation that ended without a confirmation does not
  count as a success even when it reached an outcome.
- handle time: from the first to the last stored event of an ended conversation.
- re-asks: a field asked again because the answer gave no valid value (dialogue's `reasks`),
  counted per field; fallbacks: replies that said the worker did not understand (`fallback` line).
- confidence distribution: conversations by the lowest confidence of the values they hold.
- labelled accuracy: of the stored values reviewers labelled (the latest label per value), the
  share marked right; missed values (kind `missed`) are not stored values and are left out.
- voice latency: per spoken turn of a call, from the caller's last word to the worker's first
  audio (`transcripts.store.voice_latencies`), as percentiles by nearest rank.

The task a conversation is in (migration 19): `task` is the task after its latest turn that was in
one (a person who booked, then cancelled, is counted under `cancel`); `tasks` lists every task it
was in (' book cancel '), and the list's `task` filter matches any of them. Conversations of a
worker without tasks have none ('no task').

Rows from before migration 19 (`tasks IS NULL`) are backfilled from their checkpoints when the
store opens (`backfill`): every checkpoint is the state after one turn, so the same `turn_marks`
runs over each pair in order.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import chain
from datetime import datetime
from typing import Any, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict

from storage.checkpoints import ConversationSaver
from storage.db import Database


class TranscriptStore(Protocol):
    """What these functions need of transcripts.store.TranscriptStore (which opens with
    `backfill`, so this module cannot import it)."""

    db: Database

log = logging.getLogger(__name__)

NOT_SUCCESS = ("escalated", "abandoned")
DIMENSIONS = ("day", "channel", "worker", "task", "spec_version")
PERCENTILES = (50, 90, 95, 99)


# -- the marks a turn leaves --------------------------------------------------------------------

def turn_marks(before: Mapping[str, Any], after: Mapping[str, Any], updated: Iterable[str]) -> dict[str, Any]:
    """What one turn adds to its conversation's KPI columns, from the dialogue state before and
    after it and the state keys it wrote: stored in the reply event's metadata (`task`, `kpi`)
    and added to the row by the summary update (transcripts/store.py)."""
    written = set(updated)
    out: dict[str, Any] = {}
    if after.get("task"):
        out["task"] = after["task"]
    marks: dict[str, Any] = {}
    if "lines" in written:
        fallbacks = sum(1 for line in after.get("lines") or [] if isinstance(line, dict) and line.get("key") == "fallback")
        if fallbacks:
            marks["fallbacks"] = fallbacks
    if "reasks" in written:
        was, now = before.get("reasks") or {}, after.get("reasks") or {}
        reasked = [name for name, n in sorted(now.items()) for _ in range(max(0, int(n) - int(was.get(name, 0))))]
        if reasked:
            marks["reasked"] = reasked
    # A yes to the read-back: the conversation was confirming and moves on, with no value changed,
    # and was not handed over or left in that turn.
    if (before.get("phase") in ("confirming", "correcting") and after.get("phase") not in ("confirming", "correcting")
            and not after.get("took") and not after.get("escalated_now")
            and after.get("outcome") not in NOT_SUCCESS and not set(after.get("intents") or []) & {"goodbye", "human", "stop"}):
        marks["confirmed"] = True
    if marks:
        out["kpi"] = marks
    return out


async def backfill(store: TranscriptStore, batch: int = 200) -> int:
    """Fill the migration 19 columns of conversations stored before it (tasks IS NULL, a partial
    index) from their checkpoints; returns how many rows it filled. Once none is left this is one
    index lookup, so it runs whenever the store opens."""
    db, saver = store.db, ConversationSaver(store.db)
    done = 0
    while True:
        rows = await db.fetchall(f"SELECT id FROM conversations WHERE tasks IS NULL ORDER BY id LIMIT {int(batch)}")
        if not rows:
            break
        if not done:
            log.info("filling the task and KPI columns of conversations stored before migration 19")
        histories = await saver.histories([r["id"] for r in rows])
        statements = []
        for cid, checkpoints in histories.items():
            task, tasks, confirmed, reasked, fallbacks = None, [], False, [], 0
            before: Mapping[str, Any] = {}
            for checkpoint in checkpoints:
                after = checkpoint["channel_values"]
                marks = turn_marks(before, after, checkpoint.get("updated_channels") or after.keys())
                if marks.get("task"):
                    task = marks["task"]
                    tasks += [] if task in tasks else [task]
                kpi = marks.get("kpi") or {}
                confirmed = confirmed or bool(kpi.get("confirmed"))
                reasked += kpi.get("reasked") or []
                fallbacks += int(kpi.get("fallbacks") or 0)
                before = after
            statements.append((
                "UPDATE conversations SET task = ?, tasks = ?, confirmed = ?, reasks = ?, reasked = ?, fallbacks = ? "
                "WHERE id = ? AND tasks IS NULL",
                (task, f" {' '.join(tasks)} " if tasks else "", 1 if confirmed else 0, len(reasked),
                 "".join(f" {f}" for f in reasked), fallbacks, cid)))
        await db.batch(statements)
        done += len(rows)
    if done:
        log.info("filled the task and KPI columns of %d conversations", done)
    return done


# -- the figures --------------------------------------------------------------------------------

@dataclass(slots=True)
class Figures:
    """One group's figures (the whole period, or one day, channel, worker, task or spec version)."""

    key: str = ""
    conversations: int = 0
    ended: int = 0
    completed: int = 0
    escalated: int = 0
    abandoned: int = 0
    success: int = 0
    reasks: int = 0
    fallbacks: int = 0
    handle_total: float = 0.0  # seconds, over the ended conversations
    latency_parts: list[np.ndarray] = field(default_factory=list)  # voice reply latencies (ms), in parts
    _sorted: np.ndarray | None = None

    def rate(self, n: int) -> float | None:
        return n / self.ended if self.ended else None

    @property
    def completion_rate(self) -> float | None:
        return self.rate(self.completed)

    @property
    def success_rate(self) -> float | None:
        return self.rate(self.success)

    @property
    def escalation_rate(self) -> float | None:
        return self.rate(self.escalated)

    @property
    def abandonment_rate(self) -> float | None:
        return self.rate(self.abandoned)

    @property
    def handle_seconds(self) -> float | None:
        return self.handle_total / self.ended if self.ended else None

    @property
    def reasks_per_conversation(self) -> float | None:
        return self.reasks / self.conversations if self.conversations else None

    @property
    def fallbacks_per_conversation(self) -> float | None:
        return self.fallbacks / self.conversations if self.conversations else None

    @property
    def voice_turns(self) -> int:
        return sum(len(part) for part in self.latency_parts)

    def latency(self, p: int) -> int | None:
        """The p-th percentile of the voice reply latencies, by nearest rank (numpy sorts them once:
        100,000 calls hold about 500,000 turns)."""
        if self._sorted is None:
            parts = self.latency_parts
            self._sorted = np.sort(np.concatenate(parts)) if parts else np.empty(0, dtype=np.int64)
        if not len(self._sorted):
            return None
        return int(self._sorted[max(0, math.ceil(p / 100 * len(self._sorted)) - 1)])

    def count(self, n: int, outcome: str | None, confirmed: int, reasks: int, fallbacks: int, handle: float) -> None:
        """Add n conversations with this outcome (None: open) and these sums."""
        self.conversations += n
        self.reasks += reasks
        self.fallbacks += fallbacks
        if outcome is not None:
            self.ended += n
            self.handle_total += handle
            if outcome == "completed":
                self.completed += n
            elif outcome == "escalated":
                self.escalated += n
            elif outcome == "abandoned":
                self.abandoned += n
            if outcome not in NOT_SUCCESS:
                self.success += confirmed

    def summary(self) -> dict[str, Any]:
        """The numbers as JSON (rates as fractions rounded to 4 places, seconds to 1)."""
        def r(x: float | None, places: int = 4) -> float | None:
            return round(x, places) if x is not None else None
        return {
            "conversations": self.conversations, "ended": self.ended, "completed": self.completed,
            "success": self.success, "escalated": self.escalated, "abandoned": self.abandoned,
            "completion_rate": r(self.completion_rate), "success_rate": r(self.success_rate),
            "escalation_rate": r(self.escalation_rate), "abandonment_rate": r(self.abandonment_rate),
            "handle_seconds": r(self.handle_seconds, 1), "reasks": self.reasks, "fallbacks": self.fallbacks,
            "reasks_per_conversation": r(self.reasks_per_conversation),
            "fallbacks_per_conversation": r(self.fallbacks_per_conversation),
            "voice_turns": self.voice_turns,
            "voice_latency_ms": {f"p{p}": self.latency(p) for p in PERCENTILES},
        }


class Kpis(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    since: datetime | None = None
    until: datetime | None = None
    worker: str | None = None
    total: Figures
    by: dict[str, list[Figures]]  # dimension -> groups, in key order (days oldest first)
    by_outcome: dict[str, int]  # "" = still open
    by_rule: dict[str, int]
    reasks_by_field: dict[str, int]
    confidence: list[int]  # conversations by lowest confidence, tenths 0-0.1 ... 0.9-1.0
    labelled: int
    labelled_right: int
    accuracy_by_field: dict[str, tuple[int, int]]  # field -> (right, labelled)

    @property
    def accuracy(self) -> float | None:
        return self.labelled_right / self.labelled if self.labelled else None

    def as_json(self) -> dict[str, Any]:
        """The figures as `channel-worker report --format json` writes them."""
        return {
            "period": {"since": self.since.isoformat() if self.since else None,
                       "until": self.until.isoformat() if self.until else None, "worker": self.worker},
            "total": self.total.summary(),
            "outcomes": {(o or "open"): n for o, n in self.by_outcome.items()},
            "escalations_by_rule": self.by_rule,
            "reasks_by_field": self.reasks_by_field,
            "lowest_confidence": {f"{i / 10:.1f}-{(i + 1) / 10:.1f}": n for i, n in enumerate(self.confidence)},
            "labelled_accuracy": {
                "labelled": self.labelled, "right": self.labelled_right,
                "accuracy": round(self.accuracy, 4) if self.accuracy is not None else None,
                "by_field": {f: {"right": ok, "labelled": n} for f, (ok, n) in self.accuracy_by_field.items()}},
            "by": {dim: [{"key": g.key, **g.summary()} for g in groups] for dim, groups in self.by.items()},
        }


def percentile(values: list[int], p: int) -> int | None:
    """The p-th percentile by nearest rank (the smallest value with at least p % at or below it), as
    `Figures.latency` takes it."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def _where(db: Database, since: datetime | None, until: datetime | None, worker: str | None,
           extra: str = "") -> tuple[str, list[Any]]:
    clauses, params = [], []
    for sql, value in (("c.started_at >= ?", since), ("c.started_at < ?", until), ("c.worker = ?", worker)):
        if value is not None:
            clauses.append(sql)
            params.append(value)
    if extra:
        clauses.append(extra)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


async def kpis(store: TranscriptStore, since: datetime | None = None, until: datetime | None = None,
               worker: str | None = None) -> Kpis:
    """Every figure of the KPI page over the conversations started in [since, until) (of `worker`).
    One grouped read of an index (migration 19: on SQLite in the index's own order, so no sort)
    gives the counts for every dimension; the rest read partial indexes of the rows that have
    what they count (escalated, re-asked, voice), and the labels of the period's conversations."""
    db = store.db
    sqlite = db.dialect == "sqlite"
    where, params = _where(db, since, until, worker)
    seconds = ("(julianday(c.updated_at) - julianday(c.started_at)) * 86400" if sqlite
               else "EXTRACT(EPOCH FROM (c.updated_at - c.started_at))")
    # SQLite groups in the order of the day index (no sort); PostgreSQL hashes the groups, told how
    # few there are by the statistics of migration 19.
    if sqlite:
        day, version = "substr(c.started_at, 1, 10)", "c.spec_version AS v, c.spec_hash AS h"
        keys = f"{day}, c.channel, c.worker, c.task, c.spec_version, c.spec_hash"
    else:
        day, version = "(c.started_at AT TIME ZONE 'UTC')::date", "COALESCE(c.spec_version, substr(c.spec_hash, 1, 8)) AS v, NULL AS h"
        keys = f"{day}, c.channel, c.worker, c.task, COALESCE(c.spec_version, substr(c.spec_hash, 1, 8))"
    rows = await db.fetchall(
        f"SELECT {day} AS day, c.channel AS channel, c.worker AS worker, c.task AS task, {version}, "
        "c.outcome AS outcome, COUNT(*) AS n, SUM(c.confirmed) AS confirmed, SUM(c.reasks) AS reasks, "
        f"SUM(c.fallbacks) AS fallbacks, SUM(CASE WHEN c.outcome IS NOT NULL THEN {seconds} ELSE 0 END) AS handle "
        f"FROM conversations c{where} GROUP BY {keys}, c.outcome", params)
    total = Figures(key="all")
    groups: dict[str, dict[str, Figures]] = {d: {} for d in DIMENSIONS}

    def group_of(dim: str, key: str) -> Figures:
        found = groups[dim].get(key)
        if found is None:
            found = groups[dim][key] = Figures(key=key)
        return found

    def keys_of(r: dict[str, Any]) -> tuple[str, ...]:
        return (str(r["day"]), r["channel"], r["worker"], r["task"] or "", r["v"] or (r["h"] or "")[:8])

    outcomes: Counter[str] = Counter()
    for r in rows:
        counted = (int(r["n"]), r["outcome"], int(r["confirmed"] or 0), int(r["reasks"] or 0), int(r["fallbacks"] or 0),
                   float(r["handle"] or 0))
        outcomes[r["outcome"] or ""] += counted[0]
        total.count(*counted)
        for dim, key in zip(DIMENSIONS, keys_of(r)):
            group_of(dim, key).count(*counted)
    # Voice latencies, by the same dimensions: each group's lists joined by the database ("[..],[..]").
    joined = "group_concat(c.voice_latency, ',')" if sqlite else "string_agg(c.voice_latency, ',')"
    for r in await db.fetchall(
            f"SELECT {day} AS day, c.channel AS channel, c.worker AS worker, c.task AS task, {version}, "
            f"{joined} AS lat FROM conversations c"
            + _where(db, since, until, worker, "c.voice_latency IS NOT NULL")[0] + f" GROUP BY {keys}", params):
        values = np.fromiter(chain.from_iterable(json.loads(f"[{r['lat'] or ''}]")), dtype=np.int64)
        total.latency_parts.append(values)
        for dim, key in zip(DIMENSIONS, keys_of(r)):
            group_of(dim, key).latency_parts.append(values)
    rule = "json_extract(c.escalation, '$.rule')" if sqlite else "(c.escalation->>'rule')"
    escalated_where, _ = _where(db, since, until, worker, "c.escalation IS NOT NULL")
    rules = {r["r"] or "": int(r["n"]) for r in await db.fetchall(
        f"SELECT {rule} AS r, COUNT(*) AS n FROM conversations c{escalated_where} GROUP BY {rule} ORDER BY n DESC, r",
        params)}
    reasked: Counter[str] = Counter()
    for r in await db.fetchall(f"SELECT c.reasked AS f, COUNT(*) AS n FROM conversations c"
                               f"{_where(db, since, until, worker, 'c.reasks > 0')[0]} GROUP BY c.reasked", params):
        for name in (r["f"] or "").split():
            reasked[name] += int(r["n"])
    buckets = [0] * 10
    bucket = "CAST(c.min_confidence * 10 AS INTEGER)" if sqlite else "CAST(FLOOR(c.min_confidence * 10) AS INTEGER)"
    for r in await db.fetchall(
            f"SELECT {bucket} AS b, COUNT(*) AS n FROM conversations c"
            f"{_where(db, since, until, worker, 'c.min_confidence IS NOT NULL')[0]} GROUP BY {bucket}", params):
        buckets[min(max(int(r["b"]), 0), 9)] += int(r["n"])
    # Labels of the conversations in the period: the latest label of each stored value.
    labelled_where, _ = _where(db, since, until, worker, "l.kind = 'stored' AND l.id = (SELECT MAX(m.id) FROM field_labels m "
                               "WHERE m.conversation_id = l.conversation_id AND m.field = l.field AND m.kind = 'stored')")
    by_field: dict[str, tuple[int, int]] = {}
    for r in await db.fetchall(
            "SELECT l.field AS field, COUNT(*) AS n, SUM(CASE WHEN l.verdict = 'right' THEN 1 ELSE 0 END) AS ok "
            f"FROM field_labels l JOIN conversations c ON c.id = l.conversation_id{labelled_where} "
            "GROUP BY l.field ORDER BY l.field", params):
        by_field[r["field"]] = (int(r["ok"] or 0), int(r["n"]))
    ordered = {d: sorted(g.values(), key=lambda f: f.key) if d == "day" else
               sorted(g.values(), key=lambda f: (-f.conversations, f.key)) for d, g in groups.items()}
    return Kpis(since=since, until=until, worker=worker, total=total, by=ordered,
                by_outcome=dict(sorted(outcomes.items(), key=lambda x: (-x[1], x[0]))), by_rule=rules,
                reasks_by_field=dict(sorted(reasked.items(), key=lambda x: (-x[1], x[0]))), confidence=buckets,
                labelled=sum(n for _, n in by_field.values()), labelled_right=sum(ok for ok, _ in by_field.values()),
                accuracy_by_field=by_field)


class LabelWindow(BaseModel):
    """Labelled accuracy over a worker's latest labels (the drift alarm's window)."""

    labels: int
    right: int

    @property
    def accuracy(self) -> float | None:
        return self.right / self.labels if self.labels else None


async def recent_label_accuracy(store: TranscriptStore, worker: str, window: int) -> LabelWindow:
    """Of the last `window` labels given to the worker's stored values (latest label per value,
    newest labels first), how many said right."""
    rows = await store.db.fetchall(
        "SELECT l.verdict AS v FROM field_labels l JOIN conversations c ON c.id = l.conversation_id "
        "WHERE c.worker = ? AND l.kind = 'stored' AND l.id = (SELECT MAX(m.id) FROM field_labels m "
        "WHERE m.conversation_id = l.conversation_id AND m.field = l.field AND m.kind = 'stored') "
        f"ORDER BY l.id DESC LIMIT {int(window)}", (worker,))
    return LabelWindow(labels=len(rows), right=sum(1 for r in rows if r["v"] == "right"))
