"""The review console's reads of conversations and events: the filtered, sorted, paged list and
one conversation with its turns. SQL on `conversations` and `events` lives in transcripts/
(tests/test_sql_ownership.py); worker/review/ calls these.

The list is LIMIT/OFFSET over an index (migration 15: started_at, outcome, channel,
min_confidence; 14: worker and spec hash), with one row more than the page to know whether a
next page exists, and no COUNT: with 100,000 conversations a count under a word search would
read every event.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from transcripts.store import _JSON_CONV, ConversationRecord, Event, TranscriptStore, spec_version_clause

Sort = Literal["started", "updated", "turns", "confidence"]
_SORT_COLUMN = {"started": "started_at", "updated": "updated_at", "turns": "turns", "confidence": "min_confidence"}
LOW_CONFIDENCE = 0.8  # the default threshold of the "low confidence" filter
MAX_PAGE = 200


class ReviewFilter(BaseModel):
    """What the list shows; every field is a query parameter of /review/conversations."""

    worker: str | None = None
    channel: str | None = None
    outcome: str | None = None
    escalated: bool | None = None
    rule: str | None = None
    low_confidence: bool = False
    below: float = Field(LOW_CONFIDENCE, ge=0, le=1)
    since: datetime | None = None
    until: datetime | None = None
    spec_version: str | None = None
    task: str | None = Field(None, max_length=100)  # any task the conversation was in (migration 19)
    q: str | None = Field(None, max_length=200)
    sort: Sort = "started"
    order: Literal["asc", "desc"] = "desc"
    page: int = Field(1, ge=1, le=100_000)
    per_page: int = Field(50, ge=1, le=MAX_PAGE)


class ConversationPage(BaseModel):
    rows: list[ConversationRecord]
    page: int
    has_next: bool


def _like(text: str) -> str:
    """A LIKE pattern for `text` anywhere, with the wildcards in it taken literally (ESCAPE '\\')."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


_PHONE = re.compile(r"\+?[\d\s().-]{6,}")


_WORD = re.compile(r"\w+", re.UNICODE)


def _search(q: str, dialect: str) -> tuple[str, list[Any]]:
    """One kind of search per query, so each reads as little as it can: a phone number (a leading +
    or 10+ digits) is in the conversation id (sms:+1555...:..., scanned over the conversations only), an email address in
    the turns' metadata (sender), anything else as words of what either side said, in that order
    (the full-text index of migration 18: SQLite FTS5, PostgreSQL to_tsvector('simple'))."""
    number = re.sub(r"[\s().-]", "", q)
    if _PHONE.fullmatch(q) and (number.startswith("+") or len(number) >= 10):  # shorter: an account number, said
        return "c.id LIKE ? ESCAPE '\\'", [_like(number)]
    if "@" in q:
        return ("(c.id LIKE ? ESCAPE '\\' OR EXISTS (SELECT 1 FROM events e WHERE e.conversation_id = c.id AND "
                "LOWER(CAST(e.metadata AS TEXT)) LIKE ? ESCAPE '\\'))", [_like(q), _like(q.lower())])
    # Words, in order, as a phrase, through the full-text index (migration 18).
    words = _WORD.findall(q)
    if not words:
        return "1 = 0", []
    if dialect == "sqlite":
        phrase = '"' + " ".join(words).replace('"', '""') + '"'
        return ("c.id IN (SELECT e.conversation_id FROM events_fts f JOIN events e ON e.id = f.rowid "
                "WHERE events_fts MATCH ?)", [phrase])
    return ("c.id IN (SELECT e.conversation_id FROM events e WHERE "
            "to_tsvector('simple', COALESCE(e.text, '')) @@ phraseto_tsquery('simple', ?))", [" ".join(words)])


def _where(f: ReviewFilter, dialect: str) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    for column, value, op in (("worker", f.worker, "="), ("channel", f.channel, "="), ("outcome", f.outcome, "="),
                              ("started_at", f.since, ">="), ("started_at", f.until, "<")):
        if value is not None and value != "":
            clauses.append(f"c.{column} {op} ?")
            params.append(value)
    if f.escalated is True:
        clauses.append("c.escalation IS NOT NULL")
    elif f.escalated is False:
        clauses.append("c.escalation IS NULL")
    if f.rule:
        rule = "json_extract(c.escalation, '$.rule')" if dialect == "sqlite" else "c.escalation->>'rule'"
        clauses.append(f"{rule} = ?")
        params.append(f.rule)
    if f.low_confidence:
        clauses.append("c.min_confidence < ?")
        params.append(f.below)
    if f.task:
        clause = "c.tasks LIKE ? ESCAPE '\\'"
        clauses.append(clause)
        params.append(_like(f" {f.task} "))
    if f.spec_version:
        clause, more = spec_version_clause(f.spec_version, "c.")
        clauses.append(clause)
        params += more
    if f.q and f.q.strip():
        clause, more = _search(f.q.strip(), dialect)
        clauses.append(clause)
        params += more
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


async def list_conversations(store: TranscriptStore, f: ReviewFilter) -> ConversationPage:
    db = store.db
    where, params = _where(f, db.dialect)
    column = _SORT_COLUMN[f.sort]
    direction = "DESC" if f.order == "desc" else "ASC"
    # NULLS LAST only on the one nullable column (conversations with no value go last): on the
    # NOT NULL columns PostgreSQL would give up the index to honour it and sort every row.
    nulls = " NULLS LAST" if db.dialect == "postgres" and f.sort == "confidence" else ""
    offset = (f.page - 1) * f.per_page
    rows = await db.fetchall(
        f"SELECT c.* FROM conversations c{where} ORDER BY c.{column} {direction}{nulls}, c.id {direction} "
        f"LIMIT {int(f.per_page) + 1} OFFSET {int(offset)}", params, _JSON_CONV)
    records = [ConversationRecord(**r) for r in rows[:f.per_page]]
    return ConversationPage(rows=records, page=f.page, has_next=len(rows) > f.per_page)


async def facets(store: TranscriptStore) -> dict[str, list[str]]:
    """The values the list's filter menus offer (each read from an index)."""
    db = store.db
    out: dict[str, list[str]] = {}
    for name, column in (("worker", "worker"), ("channel", "channel"), ("outcome", "outcome"), ("task", "task")):
        rows = await db.fetchall(f"SELECT DISTINCT {column} AS v FROM conversations WHERE {column} IS NOT NULL ORDER BY v")
        out[name] = [r["v"] for r in rows]
    return out


class ConversationDetail(BaseModel):
    conversation: ConversationRecord
    events: list[Event]


async def conversation_detail(store: TranscriptStore, conversation_id: str) -> ConversationDetail | None:
    record = await store.conversation(conversation_id)
    if record is None:
        return None
    return ConversationDetail(conversation=record, events=await store.events(conversation_id))


async def insert_conversations(store: TranscriptStore, rows: list[tuple[ConversationRecord, list[Event]]],
                               chunk: int = 500) -> None:
    """Bulk load of whole conversations (bench/review.py seeds 100,000 with it): multi-row inserts
    of `chunk` rows, all in one transaction, each summary row written as it is given."""
    conversation_rows = [
        (r.id, r.worker, r.channel, r.started_at, r.updated_at, r.outcome, r.escalation, r.fields, r.turns,
         r.spec_version, r.spec_hash, r.min_confidence, r.task, r.tasks if r.tasks is not None else "", r.confirmed,
         r.reasks, r.reasked, r.fallbacks, r.voice_latency) for r, _ in rows]
    event_rows = [
        (e.conversation_id, e.channel, e.direction, e.text, e.time, e.fields or {}, e.outcome, e.escalation,
         e.actions, e.metadata, e.dedupe_key) for _, events in rows for e in events]
    statements = []
    for start in range(0, len(conversation_rows), chunk):
        part = conversation_rows[start:start + chunk]
        statements.append((
            "INSERT INTO conversations (id, worker, channel, started_at, updated_at, outcome, escalation, fields, turns, "
            "spec_version, spec_hash, min_confidence, task, tasks, confirmed, reasks, reasked, fallbacks, voice_latency) "
            "VALUES " + ", ".join(["(?, ?, ?, ?, ?, ?, J?, J?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"] * len(part)),
            [v for row in part for v in row]))
    for start in range(0, len(event_rows), chunk):
        part = event_rows[start:start + chunk]
        statements.append((
            "INSERT INTO events (conversation_id, channel, direction, text, time, fields, outcome, escalation, "
            "actions, metadata, dedupe_key) VALUES " + ", ".join(["(?, ?, ?, ?, ?, J?, ?, J?, J?, J?, ?)"] * len(part)),
            [v for row in part for v in row]))
    await store.db.batch(statements)


class Kpis(BaseModel):
    conversations: int
    by_outcome: dict[str, int]  # "" = no outcome yet (open)
    by_rule: dict[str, int]
    by_channel: dict[str, dict[str, int]]  # channel -> {"total", "completed", "escalated"}
    handle_seconds: float | None  # mean time from the first to the last event of ended conversations
    confidence: list[int]  # conversations by lowest confidence, ten buckets 0-0.1 ... 0.9-1.0
    labelled: int
    labelled_right: int


async def kpis(store: TranscriptStore, since: datetime | None = None, until: datetime | None = None,
               worker: str | None = None) -> Kpis:
    """The KPI page's figures over the conversations started in [since, until) of `worker`."""
    db = store.db
    where, params = _where(ReviewFilter(since=since, until=until, worker=worker), db.dialect)
    outcomes = {r["o"] or "": int(r["n"]) for r in await db.fetchall(
        f"SELECT c.outcome AS o, COUNT(*) AS n FROM conversations c{where} GROUP BY c.outcome", params)}
    rule = "json_extract(c.escalation, '$.rule')" if db.dialect == "sqlite" else "c.escalation->>'rule'"
    escalated = " AND " if where else " WHERE "
    rules = {r["r"]: int(r["n"]) for r in await db.fetchall(
        f"SELECT {rule} AS r, COUNT(*) AS n FROM conversations c{where}{escalated}c.escalation IS NOT NULL "
        f"GROUP BY {rule} ORDER BY n DESC", params)}
    channels: dict[str, dict[str, int]] = {}
    for r in await db.fetchall(f"SELECT c.channel AS ch, c.outcome AS o, COUNT(*) AS n FROM conversations c{where} "
                               "GROUP BY c.channel, c.outcome", params):
        row = channels.setdefault(r["ch"], {"total": 0, "completed": 0, "escalated": 0})
        row["total"] += int(r["n"])
        if r["o"] in ("completed", "escalated"):
            row[r["o"]] += int(r["n"])
    seconds = ("(julianday(c.updated_at) - julianday(c.started_at)) * 86400" if db.dialect == "sqlite"
               else "EXTRACT(EPOCH FROM (c.updated_at - c.started_at))")
    ended = " AND " if where else " WHERE "
    handle = await db.fetchone(f"SELECT AVG({seconds}) AS s FROM conversations c{where}{ended}c.outcome IS NOT NULL", params)
    buckets = [0] * 10
    # Tenths, rounded down (PostgreSQL's CAST rounds; SQLite's truncates).
    bucket = "CAST(c.min_confidence * 10 AS INTEGER)" if db.dialect == "sqlite" else "CAST(FLOOR(c.min_confidence * 10) AS INTEGER)"
    for r in await db.fetchall(
            f"SELECT {bucket} AS b, COUNT(*) AS n FROM conversations c{where}"
            f"{' AND ' if where else ' WHERE '}c.min_confidence IS NOT NULL GROUP BY {bucket}", params):
        buckets[min(max(int(r["b"]), 0), 9)] += int(r["n"])
    labels = await db.fetchone(
        "SELECT COUNT(*) AS n, SUM(CASE WHEN l.verdict = 'right' THEN 1 ELSE 0 END) AS ok FROM field_labels l "
        "WHERE l.kind = 'stored' AND l.id = (SELECT MAX(m.id) FROM field_labels m WHERE m.conversation_id = l.conversation_id "
        "AND m.field = l.field AND m.kind = 'stored')")  # values the worker stored (missed ones are labels too)
    return Kpis(conversations=sum(outcomes.values()), by_outcome=outcomes, by_rule=rules, by_channel=channels,
                handle_seconds=float(handle["s"]) if handle and handle["s"] is not None else None, confidence=buckets,
                labelled=int(labels["n"] or 0) if labels else 0, labelled_right=int(labels["ok"] or 0) if labels else 0)
