"""Retention: a conversation with no activity for N days goes with everything of its own, and
what is left of it is a count per day, worker, channel and outcome."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from dialogue.spec import WorkerSpec
from storage.db import Database
from worker.settings import WorkerSettings
from tests.conftest import ROOT, SPECS
from tests.support.server import WorkerServer
from tests.support.talk import Talk, engine_for, settings_for
from transcripts.retention import TABLES, RetentionSettings, purge, purged_counts

NOW = datetime.now(timezone.utc).replace(microsecond=0)
LATER = NOW + timedelta(days=60)

# Every table that holds a conversation's rows, with how its rows name the conversation.
OWNED_BY = {
    "events": "conversation_id", "checkpoints": "thread_id", "checkpoint_writes": "thread_id",
    "handoffs": "conversation_id", "notifications": "conversation_id", "audit": "conversation_id",
    "sms_messages": "conversation_id", "sms_outbox": "conversation_id", "email_messages": "conversation_id",
    "action_results": "conversation_id", "outcome_deliveries": "conversation_id",
}
# Tables that hold no conversation's data, or keep it on purpose.
NOT_CONVERSATION_DATA = {
    "schema_migrations", "email_cursor", "retention_purged", "retention_purging",
    "sms_optouts",  # a STOP is honoured for good
    "operators", "api_tokens",
    "review_sessions",  # who is logged in to the review console: no conversation's data
    # SQLite's full-text index of events.text (migration 18): kept in step with events by triggers.
    "events_fts", "events_fts_data", "events_fts_idx", "events_fts_docsize", "events_fts_config",
}


async def _channel_rows(db: Database, conversation_id: str, at: datetime, state: bool = True) -> None:
    """The SMS, email and state rows a conversation has besides its events, as the channels write them."""
    tag = uuid.uuid4().hex[:8]
    state_rows = [
        ("INSERT INTO checkpoint_writes (thread_id, checkpoint_ns, checkpoint_id, task_id, idx, channel) "
         "VALUES (?, '', ?, 't', 0, 'fields')", (conversation_id, tag)),
    ]
    # An action's stored result and an outcome delivery (actions/), as the engine will write them.
    action_rows = [
        ("INSERT INTO action_results (conversation_id, step_id, action, idempotency_key, status, attempts, "
         "created_at, updated_at) VALUES (?, 'book.check', 'availability', ?, 'ok', 1, ?, ?)",
         (conversation_id, f"cw-{tag}", at, at)),
    ]
    delivery_rows = [
        ("INSERT INTO outcome_deliveries (conversation_id, outcome, target, url, secret, timeout, body, status, "
         "next_attempt_at, created_at) VALUES (?, 'completed', 'crm', 'http://127.0.0.1:9/x', '${S}', 5, '{}', "
         "'delivered', ?, ?)", (conversation_id, at, at)),
    ]
    await db.batch([
        *(state_rows + delivery_rows if state else []),
        *action_rows,
        ("INSERT INTO sms_messages (sid, conversation_id, direction, from_number, to_number, body, state, created_at, updated_at) "
         "VALUES (?, ?, 'in', '+12025550143', '+14155550100', 'hi', 'answered', ?, ?)", (f"SM{tag}", conversation_id, at, at)),
        ("INSERT INTO sms_outbox (conversation_id, to_number, from_number, body, state, next_attempt_at, created_at, updated_at) "
         "VALUES (?, '+12025550143', '+14155550100', 'hello', 'sent', ?, ?, ?)", (conversation_id, at, at, at)),
        ("INSERT INTO email_messages (key, message_id, conversation_id, sender, subject, state, created_at, updated_at) "
         "VALUES (?, ?, ?, 'ana@example.com', 'booking', 'answered', ?, ?)", (f"k{tag}", f"<{tag}@example.com>", conversation_id, at, at)),
        ("INSERT INTO email_outbox (inbound_key, message_id, recipient, raw, state, next_attempt_at, created_at) "
         "VALUES (?, ?, 'ana@example.com', 'raw', 'sent', ?, ?)", (f"k{tag}", f"<r{tag}@example.com>", at, at)),
    ])


async def _rows_of(db: Database, conversation_id: str) -> dict[str, int]:
    counts = {}
    for table, column in OWNED_BY.items():
        row = await db.fetchone(f"SELECT COUNT(*) AS n FROM {table} WHERE {column} = ?", (conversation_id,))
        counts[table] = int(row["n"])
    row = await db.fetchone("SELECT COUNT(*) AS n FROM conversations WHERE id = ?", (conversation_id,))
    counts["conversations"] = int(row["n"])
    row = await db.fetchone("SELECT COUNT(*) AS n FROM email_outbox o JOIN email_messages m ON m.key = o.inbound_key "
                            "WHERE m.conversation_id = ?", (conversation_id,))
    counts["email_outbox"] = int(row["n"])
    return counts


async def _escalated(engine, conversation_id: str) -> None:  # noqa: ANN001
    talk = Talk(engine, conversation_id, channel="sms", start=NOW)
    await talk.start()
    await talk.say("12345678")
    await talk.say("I want to talk to a person")


async def _age(db: Database, conversation_id: str, when: datetime, handoffs: bool = True) -> None:
    """Make a conversation held today look as if it happened at `when` (replies and handoffs are
    stamped with the real clock, so a test cannot simply talk in the past)."""
    await db.batch([
        ("UPDATE conversations SET started_at = ?, updated_at = ? WHERE id = ?", (when, when, conversation_id)),
        ("UPDATE events SET time = ? WHERE conversation_id = ?", (when, conversation_id)),
        *([("UPDATE handoffs SET created_at = ?, updated_at = ? WHERE conversation_id = ?", (when, when, conversation_id))]
          if handoffs else []),
    ])


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
async def test_a_stale_conversation_goes_with_all_its_rows_and_is_kept_as_counts(account_support: WorkerSpec, database_url: str) -> None:
    spec = account_support.model_copy(deep=True)
    spec.escalation.notify.webhook = "http://127.0.0.1:9/never"  # a notification row per handoff
    old = NOW - timedelta(days=45)
    async with engine_for(spec, database_url) as engine:
        db = engine.store.db
        await _escalated(engine, "sms-old")
        await _age(db, "sms-old", old)
        await _channel_rows(db, "sms-old", old)
        await _escalated(engine, "sms-recent")
        await _channel_rows(db, "sms-recent", NOW - timedelta(days=5))
        old_before, recent_before = await _rows_of(db, "sms-old"), await _rows_of(db, "sms-recent")
        assert all(old_before.values()), old_before  # the old conversation has a row in every table

        report = await purge(db, 30)

        assert report.conversations == 1 and not report.dry_run
        assert {t: n for t, n in report.rows.items() if n} == old_before
        assert set((await _rows_of(db, "sms-old")).values()) == {0}
        assert await _rows_of(db, "sms-recent") == recent_before
        [kept] = await purged_counts(db)
        assert (kept.day, kept.worker, kept.channel, kept.outcome) == (old.date().isoformat(), "account_support", "sms", "escalated")
        assert (kept.conversations, kept.user_turns, kept.events, kept.handoffs, kept.audit_entries) == (
            1, 2, old_before["events"], old_before["handoffs"], old_before["audit"])
        # The trail is still append-only for everything else.
        with pytest.raises(Exception, match="append-only"):
            await db.execute("DELETE FROM audit")

        # A second purge adds to the same day's counts.
        await _escalated(engine, "sms-old-2")
        await _age(db, "sms-old-2", old)
        again = await purge(db, 30)
        assert again.conversations == 1
        [kept] = await purged_counts(db)
        assert (kept.conversations, kept.user_turns) == (2, 4)


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
async def test_a_handoff_still_being_worked_keeps_its_conversation(account_support: WorkerSpec, database_url: str) -> None:
    async with engine_for(account_support, database_url) as engine:
        # The person's last message was 40 days ago, but the handoff was last changed today.
        await _escalated(engine, "waiting")
        await _age(engine.store.db, "waiting", NOW - timedelta(days=40), handoffs=False)
        assert (await purge(engine.store.db, 30)).conversations == 0
        assert (await engine.store.conversation("waiting")) is not None
        assert (await purge(engine.store.db, 30, now=LATER)).conversations == 1


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
async def test_a_dry_run_counts_what_would_go_and_deletes_nothing(account_support: WorkerSpec, database_url: str) -> None:
    async with engine_for(account_support, database_url) as engine:
        db = engine.store.db
        await _escalated(engine, "old")
        await _age(db, "old", NOW - timedelta(days=45))
        await _channel_rows(db, "old", NOW - timedelta(days=45))
        await _escalated(engine, "new")
        before = await _rows_of(db, "old")
        dry = await purge(db, 30, dry_run=True)
        assert dry.dry_run and dry.conversations == 1
        assert {t: n for t, n in dry.rows.items() if n} == {t: n for t, n in before.items() if n}
        assert await _rows_of(db, "old") == before and await purged_counts(db) == []
        real = await purge(db, 30)
        assert real.rows == dry.rows and await engine.store.conversation("new") is not None


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
async def test_channel_rows_of_no_conversation_go_by_age(restaurant: WorkerSpec, database_url: str) -> None:
    # An SMS STOP or a skipped email never becomes a conversation, but holds a number or an address.
    async with engine_for(restaurant, database_url) as engine:
        db = engine.store.db
        await _channel_rows(db, "sms:+12025550143:+14155550100", NOW - timedelta(days=40), state=False)
        await _channel_rows(db, "sms:+12025550199:+14155550100", NOW - timedelta(days=2), state=False)
        report = await purge(db, 30)
        assert (report.rows["sms_messages"], report.rows["sms_outbox"]) == (1, 1)
        assert (report.rows["email_messages"], report.rows["email_outbox"]) == (1, 1)
        assert set((await _rows_of(db, "sms:+12025550143:+14155550100")).values()) == {0}
        left = await db.fetchall("SELECT conversation_id FROM sms_messages")
        assert [r["conversation_id"] for r in left] == ["sms:+12025550199:+14155550100"]
        # Limited to one worker, rows of no conversation are left alone (they have no worker).
        await _channel_rows(db, "sms:+12025550111:+14155550100", NOW - timedelta(days=40), state=False)
        assert (await purge(db, 30, worker="restaurant_booking")).rows["sms_messages"] == 0


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
async def test_every_table_with_conversation_data_is_purged(database_url: str, restaurant: WorkerSpec) -> None:
    """A new table that holds conversation rows must be added to the purge (or kept on purpose here)."""
    async with engine_for(restaurant, database_url) as engine:
        db = engine.store.db
        if db.dialect == "sqlite":
            names = [r["name"] for r in await db.fetchall("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
        else:
            names = [r["table_name"] for r in await db.fetchall(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")]
    assert set(names) - NOT_CONVERSATION_DATA - set(TABLES) == set()


def _cli(url: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    settings = settings_for(url)
    if settings.database_url:
        full["DATABASE_URL"] = settings.database_url
    else:
        full["CHANNEL_WORKER_VAR"] = str(settings.var_dir)
    return subprocess.run([sys.executable, "-m", "worker.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          env={**full, **(env or {})}, timeout=120)


async def _two_conversations(spec: WorkerSpec, url: str) -> None:
    async with engine_for(spec, url) as engine:
        for conversation_id in ("old", "new"):
            talk = Talk(engine, conversation_id, start=NOW)
            await talk.start()
            await talk.say("table for 2 tomorrow at 8pm")
        await _age(engine.store.db, "old", NOW - timedelta(days=40))


async def _ids(spec: WorkerSpec, url: str) -> list[str]:
    async with engine_for(spec, url) as engine:
        rows = await engine.store.db.fetchall("SELECT id FROM conversations ORDER BY id")
    return [r["id"] for r in rows]


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
async def test_purge_command_with_and_without_dry_run(restaurant: WorkerSpec, database_url: str) -> None:
    await _two_conversations(restaurant, database_url)
    dry = _cli(database_url, "purge", "--older-than-days", "30", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["conversations"] == 1 and "would purge 1 conversation" in dry.stderr
    assert await _ids(restaurant, database_url) == ["new", "old"]
    done = _cli(database_url, "purge", "--older-than-days", "30")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["conversations"] == 1 and not report["dry_run"]
    assert report["rows"] == json.loads(dry.stdout)["rows"] and report["rows"]["events"] >= 3
    assert await _ids(restaurant, database_url) == ["new"]


def test_purge_command_refuses_a_missing_or_silly_age(tmp_path: Path) -> None:
    url = str(tmp_path / "worker.sqlite")
    assert _cli(url, "purge").returncode == 2
    zero = _cli(url, "purge", "--older-than-days", "0")
    assert zero.returncode == 2 and "older-than-days" in zero.stderr


def test_retention_is_off_unless_retention_days_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RETENTION_DAYS", raising=False)
    assert WorkerSettings.from_env().retention_settings().days is None
    monkeypatch.setenv("RETENTION_DAYS", "30")
    assert WorkerSettings.from_env().retention_settings().days == 30
    monkeypatch.setenv("RETENTION_DAYS", "a month")
    with pytest.raises(ValueError, match="RETENTION_DAYS"):
        WorkerSettings.from_env().retention_settings()


async def test_serve_purges_on_its_own_when_retention_days_is_set(restaurant: WorkerSpec, tmp_path: Path) -> None:
    url = str(tmp_path / "worker.sqlite")
    await _two_conversations(restaurant, url)
    server = WorkerServer(str(SPECS / "restaurant_booking.yaml"), {"RETENTION_DAYS": "30"}, settings_for(url).var_dir)
    try:
        server.wait_ready()
        deadline = time.monotonic() + 30
        while await _ids(restaurant, url) != ["new"]:
            assert time.monotonic() < deadline, server.log.read_text()
            await asyncio.sleep(0.1)
    finally:
        server.stop()
