"""Retention: conversations with no activity for N days are deleted with everything of theirs.

A purged conversation takes with it its events, its state (checkpoints and checkpoint_writes),
its SMS and email messages and outbox rows, its handoffs and their notifications, its action
results and outcome deliveries, and its audit trail. What is kept is a count: `retention_purged`
adds, per day (the conversation's start, UTC), worker, channel and outcome, how many
conversations, user turns, events, handoffs and audit entries were purged, so totals and KPIs
over old periods still add up.

"No activity" means the conversation's last event and the last change to any of its handoffs
are both older than the cutoff (a handoff a person is still working keeps it). Channel rows
that never became a conversation (an SMS STOP, an email the loop guard skipped) go when they
are older than the cutoff too. SMS opt-outs are kept: a STOP must be honoured for good.

Each batch of conversations is purged in one transaction, so a crash leaves none half-gone.
The audit table stays append-only: its trigger lets a row go only while its conversation is in
`retention_purging`, a working set that exists only inside the purge's own transaction.

Run it with `channel-worker purge --older-than-days N [--dry-run]`, or set RETENTION_DAYS and
`serve` purges every RETENTION_INTERVAL_SECONDS (an hour by default).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field

from storage.clock import utcnow
from storage.db import Database, Statement

log = logging.getLogger(__name__)

# What a conversation owns, table by table: (table, SQL counting its rows for conversation c.id).
_OWNED: dict[str, str] = {
    "events": "SELECT COUNT(*) FROM events x WHERE x.conversation_id = c.id",
    "checkpoints": "SELECT COUNT(*) FROM checkpoints x WHERE x.thread_id = c.id",
    "checkpoint_writes": "SELECT COUNT(*) FROM checkpoint_writes x WHERE x.thread_id = c.id",
    "handoffs": "SELECT COUNT(*) FROM handoffs x WHERE x.conversation_id = c.id",
    "notifications": "SELECT COUNT(*) FROM notifications x WHERE x.conversation_id = c.id",
    "audit": "SELECT COUNT(*) FROM audit x WHERE x.conversation_id = c.id",
    "sms_messages": "SELECT COUNT(*) FROM sms_messages x WHERE x.conversation_id = c.id",
    "sms_outbox": "SELECT COUNT(*) FROM sms_outbox x WHERE x.conversation_id = c.id",
    "email_messages": "SELECT COUNT(*) FROM email_messages x WHERE x.conversation_id = c.id",
    "email_outbox": ("SELECT COUNT(*) FROM email_outbox x WHERE x.inbound_key IN "
                     "(SELECT m.key FROM email_messages m WHERE m.conversation_id = c.id)"),
    "action_results": "SELECT COUNT(*) FROM action_results x WHERE x.conversation_id = c.id",
    "outcome_deliveries": "SELECT COUNT(*) FROM outcome_deliveries x WHERE x.conversation_id = c.id",
    # Reviewers' labels (migration 15): a corrected value is the person's data too.
    "field_labels": "SELECT COUNT(*) FROM field_labels x WHERE x.conversation_id = c.id",
}
_PURGING = "(SELECT p.conversation_id FROM retention_purging p)"
# Children before parents (notifications point at handoffs, events at conversations).
_DELETES: list[str] = [
    f"DELETE FROM notifications WHERE conversation_id IN {_PURGING} "
    f"OR handoff_id IN (SELECT h.id FROM handoffs h WHERE h.conversation_id IN {_PURGING})",
    f"DELETE FROM handoffs WHERE conversation_id IN {_PURGING}",
    f"DELETE FROM audit WHERE conversation_id IN {_PURGING}",
    f"DELETE FROM checkpoint_writes WHERE thread_id IN {_PURGING}",
    f"DELETE FROM checkpoints WHERE thread_id IN {_PURGING}",
    f"DELETE FROM sms_outbox WHERE conversation_id IN {_PURGING}",
    f"DELETE FROM sms_messages WHERE conversation_id IN {_PURGING}",
    f"DELETE FROM email_outbox WHERE inbound_key IN (SELECT m.key FROM email_messages m WHERE m.conversation_id IN {_PURGING})",
    f"DELETE FROM email_messages WHERE conversation_id IN {_PURGING}",
    f"DELETE FROM action_results WHERE conversation_id IN {_PURGING}",
    f"DELETE FROM outcome_deliveries WHERE conversation_id IN {_PURGING}",
    f"DELETE FROM field_labels WHERE conversation_id IN {_PURGING}",
    f"DELETE FROM events WHERE conversation_id IN {_PURGING}",
    f"DELETE FROM conversations WHERE id IN {_PURGING}",
]
# Channel rows of no stored conversation, by age: (table, condition with one ? for the cutoff).
_NO_CONVERSATION = "conversation_id NOT IN (SELECT id FROM conversations)"
_LEFTOVERS: list[tuple[str, str]] = [
    ("notifications", f"created_at < ? AND {_NO_CONVERSATION}"),
    ("sms_outbox", f"created_at < ? AND {_NO_CONVERSATION}"),
    ("sms_messages", f"created_at < ? AND {_NO_CONVERSATION}"),
    ("email_outbox", f"inbound_key IN (SELECT m.key FROM email_messages m WHERE m.created_at < ? AND m.{_NO_CONVERSATION})"),
    ("email_messages", f"created_at < ? AND {_NO_CONVERSATION}"),
    # A call's result is stored before its turn commits; a turn that never did leaves it alone.
    ("action_results", f"created_at < ? AND {_NO_CONVERSATION}"),
    ("voice_calls", "announced_at < ? AND ('voice:' || call_sid) NOT IN (SELECT id FROM conversations)"),
]
TABLES = ["conversations", *_OWNED, "voice_calls"]


class RetentionSettings(BaseModel):
    """RETENTION_DAYS (unset, empty, 0 or off: keep everything) and RETENTION_INTERVAL_SECONDS."""

    days: int | None = Field(None, ge=1)
    interval_seconds: float = Field(3600.0, gt=0)

    @staticmethod
    def parse_days(raw: str) -> int | None:
        """RETENTION_DAYS as written: unset, empty, 0 or off mean keep everything."""
        raw = raw.strip().lower()
        if raw in ("", "0", "off", "no", "false"):
            return None
        if raw.isdigit():
            return int(raw)
        raise ValueError(f"RETENTION_DAYS={raw!r} is not a whole number of days (or off)")


class PurgeReport(BaseModel):
    """What a purge deleted (or, for a dry run, would delete): conversations and rows per table."""

    cutoff: datetime
    dry_run: bool
    worker: str | None = None
    conversations: int = 0
    rows: dict[str, int] = Field(default_factory=lambda: {t: 0 for t in TABLES})


class PurgedCount(BaseModel):
    """One row of `retention_purged`: what is left of purged conversations."""

    day: str
    worker: str
    channel: str
    outcome: str | None  # None: the conversation had no outcome yet
    conversations: int
    user_turns: int
    events: int
    handoffs: int
    audit_entries: int
    last_purged_at: str


def _stale(worker: str | None, alias: str = "c") -> tuple[str, list[Any]]:
    """Conversations with no activity since the cutoff; parameters: (cutoff, cutoff[, worker])."""
    sql = (f"{alias}.updated_at < ? AND NOT EXISTS (SELECT 1 FROM handoffs h "
           f"WHERE h.conversation_id = {alias}.id AND h.updated_at >= ?)")
    return (sql + f" AND {alias}.worker = ?", [worker]) if worker else (sql, [])


async def _present(db: Database, table: str) -> bool:
    if db.dialect == "sqlite":
        row = await db.fetchone("SELECT 1 AS present FROM sqlite_master WHERE type = 'table' AND name = ?", (table,))
    else:
        row = await db.fetchone("SELECT 1 AS present FROM information_schema.tables "
                                "WHERE table_schema = current_schema() AND table_name = ?", (table,))
    return row is not None


def _counts_select() -> str:
    return ", ".join(f"({sql}) AS {table}" for table, sql in _OWNED.items())


async def purge(
    db: Database,
    older_than_days: int,
    *,
    worker: str | None = None,
    dry_run: bool = False,
    now: datetime | None = None,
    batch: int = 100,
) -> PurgeReport:
    """Delete every conversation with no activity in the last `older_than_days` days, and all
    its rows; with `worker`, only that worker's conversations (rows of no conversation are then
    left alone). `dry_run` counts without deleting."""
    if older_than_days < 1:
        raise ValueError("older_than_days must be at least 1")
    cutoff = (now or utcnow()) - timedelta(days=older_than_days)
    report = PurgeReport(cutoff=cutoff, dry_run=dry_run, worker=worker)
    stale, extra = _stale(worker)
    params = [cutoff, cutoff, *extra]
    leftovers = [(t, cond) for t, cond in _LEFTOVERS if not worker and await _present(db, t)]
    voice = await _present(db, "voice_calls")

    if dry_run:
        sums = ", ".join(f"COALESCE(SUM(x.{t}), 0) AS {t}" for t in _OWNED)
        row = await db.fetchone(
            f"SELECT COUNT(*) AS conversations, {sums} FROM "
            f"(SELECT c.id, {_counts_select()} FROM conversations c WHERE {stale}) x", params,
        )
        report.conversations = report.rows["conversations"] = int(row["conversations"]) if row else 0
        for table in _OWNED:
            report.rows[table] = int(row[table]) if row else 0
        for table, condition in leftovers:
            found = await db.fetchone(f"SELECT COUNT(*) AS n FROM {table} WHERE {condition}", (cutoff,))
            report.rows[table] += int(found["n"]) if found else 0
        return report

    while True:
        purged = await db.batch(_batch_statements(db.dialect, worker, params, batch, utcnow(), voice))
        if not purged:
            break
        report.conversations += len(purged)
        report.rows["conversations"] += len(purged)
        for row in purged:
            for table in _OWNED:
                report.rows[table] += int(row[table])
    for table, condition in leftovers:
        report.rows[table] += await db.execute_count(f"DELETE FROM {table} WHERE {condition}", (cutoff,))
    return report


def _batch_statements(
    dialect: str, worker: str | None, params: list[Any], batch: int, purged_at: datetime, voice: bool,
) -> list[Statement]:
    """One transaction: take up to `batch` stale conversations into the working set (with
    their row counts), add them to the counts, delete everything of theirs, empty the working
    set. Returns, as the last statement's rows, the working set: one row per purged conversation."""
    pick = f"SELECT s.id FROM conversations s WHERE {_stale(worker, 's')[0]} ORDER BY s.updated_at LIMIT {int(batch)}"
    if dialect == "postgres":
        # A conversation taking a turn right now holds its row: skip it (it is active after all),
        # and two processes purging at once take different conversations.
        pick += " FOR UPDATE SKIP LOCKED"
        day, at = "(c.started_at AT TIME ZONE 'UTC')::date", "CAST(? AS TIMESTAMPTZ)"
    else:
        day, at = "substr(c.started_at, 1, 10)", "?"
    columns = ", ".join(_OWNED)
    take = (f"INSERT INTO retention_purging (conversation_id, {columns}) "
            f"SELECT c.id, {_counts_select()} FROM conversations c WHERE c.id IN ({pick})")
    count = (
        "INSERT INTO retention_purged (day, worker, channel, outcome, conversations, user_turns, events, handoffs, "
        f"audit_entries, last_purged_at) SELECT {day}, c.worker, c.channel, COALESCE(c.outcome, ''), COUNT(*), "
        f"SUM(c.turns), SUM(p.events), SUM(p.handoffs), SUM(p.audit), {at} "
        "FROM retention_purging p JOIN conversations c ON c.id = p.conversation_id GROUP BY 1, 2, 3, 4 "
        "ON CONFLICT (day, worker, channel, outcome) DO UPDATE SET "
        "conversations = retention_purged.conversations + excluded.conversations, "
        "user_turns = retention_purged.user_turns + excluded.user_turns, "
        "events = retention_purged.events + excluded.events, "
        "handoffs = retention_purged.handoffs + excluded.handoffs, "
        "audit_entries = retention_purged.audit_entries + excluded.audit_entries, "
        "last_purged_at = excluded.last_purged_at"
    )
    # Admitted voice calls (the conversation is voice:<CallSid>), once voice's migration is there.
    calls = [f"DELETE FROM voice_calls WHERE ('voice:' || call_sid) IN {_PURGING}"] if voice else []
    deletes = [*_DELETES[:-2], *calls, *_DELETES[-2:]]
    return [
        (take, params),
        (count, [purged_at]),
        *[(sql, ()) for sql in deletes],
        # Only this transaction's rows are visible to it: the working set is empty again at commit.
        ("DELETE FROM retention_purging RETURNING *", ()),
    ]


async def purged_counts(db: Database, worker: str | None = None) -> list[PurgedCount]:
    """What is left of purged conversations, oldest day first."""
    where, params = (" WHERE worker = ?", [worker]) if worker else ("", [])
    rows = await db.fetchall(f"SELECT * FROM retention_purged{where} ORDER BY day, worker, channel, outcome", params)
    return [PurgedCount(**{**r, "day": str(r["day"]), "outcome": r["outcome"] or None}) for r in rows]


async def purge_forever(db: Database, settings: RetentionSettings) -> None:
    """`serve`'s retention loop: purge at start, then every `interval_seconds`. Every worker
    process may run it; purges of one database never take the same conversation twice."""
    if not settings.days:
        return
    while True:
        try:
            report = await purge(db, settings.days)
            if any(report.rows.values()):
                log.info("retention: purged %d conversations with no activity since %s (%s)", report.conversations,
                         report.cutoff.isoformat(timespec="seconds"),
                         ", ".join(f"{t} {n}" for t, n in report.rows.items() if n))
        except Exception:  # a database hiccup must not end retention for good
            log.exception("retention purge failed")
        await asyncio.sleep(settings.interval_seconds)

