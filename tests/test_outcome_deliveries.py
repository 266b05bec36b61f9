"""Outcome deliveries: the finished record reaches the business exactly once per conversation
and outcome, signed so the receiver can check it came from us, even when the receiver is down
for a while; what waits and why shows in the status report."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest
from pydantic import ValidationError

from actions.deliveries import (
    SIGNATURE_HEADER, OutcomeDeliverer, OutcomeRecord, RecordField, deliveries, delivery_key, delivery_report,
    enqueue, enqueue_statement, verify,
)
from actions.spec import OutcomeDeliverySpec
from storage.clock import utcnow
from storage.db import Database, Fenced, FenceLost
from storage.migrations import migrate
from tests.support.business_api import OutcomeReceiver
from tests.support.receivers import free_port

SECRET = "whsec-" + uuid.uuid4().hex
ENV = {"OUTCOME_SECRET": SECRET}


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = await Database.open(database_url)
    await migrate(database)
    try:
        yield database
    finally:
        await database.close()


def spec(port: int, **overrides: object) -> OutcomeDeliverySpec:
    return OutcomeDeliverySpec.model_validate({
        "url": f"http://127.0.0.1:{port}/outcomes", "secret": "${OUTCOME_SECRET}", "timeout": 5, **overrides})


def record(outcome: str = "completed") -> OutcomeRecord:
    return OutcomeRecord(
        worker="restaurant_booking", conversation_id=f"sms-{uuid.uuid4().hex}", channel="sms", task="book",
        outcome=outcome,
        fields={"people": RecordField(value=4, text="four of us", start=10, end=20, confidence=0.97),
                "date": RecordField(value="2026-12-04", text="friday", start=0, end=6, confidence=0.91)},
        results={"booking.booking_id": "B1"},
        started_at="2026-11-29T17:00:00+00:00", ended_at="2026-11-29T17:02:10+00:00")


def later(hours: int = 1) -> datetime:
    """A pass as if run after the backoff: the attempts are real, only the wait is skipped."""
    return utcnow() + timedelta(hours=hours)


async def test_a_record_is_delivered_once_signed_after_the_receiver_was_down_then_up(db: Database) -> None:
    port = free_port()
    target = spec(port)
    finished = record()
    # The turn that ended the conversation runs twice (a write conflict): one delivery queued.
    await db.batch([enqueue_statement(target, finished)])
    await db.batch([enqueue_statement(target, finished)])
    deliverer = OutcomeDeliverer(db, env=ENV)
    try:
        assert await deliverer.deliver_due() == 0  # nothing listens on the port yet
        report = await delivery_report(db)
        assert report.pending == 1 and report.delivered == 0
        assert report.latest_failures[0].attempts == 1 and "ConnectError" in report.latest_failures[0].last_error

        with OutcomeReceiver(port, fail=1) as receiver:  # up, but busy on the first POST
            assert await deliverer.deliver_due(now=later()) == 0
            assert await deliverer.deliver_due(now=later(2)) == 1
            assert await deliverer.deliver_due(now=later(3)) == 0  # delivered: never sent again
        assert len(receiver.accepted) == 1 and len(receiver.calls) == 2
    finally:
        await deliverer.aclose()

    got = receiver.accepted[0]
    assert verify(SECRET, got.body, got.headers[SIGNATURE_HEADER])
    assert not verify("another-secret", got.body, got.headers[SIGNATURE_HEADER])
    assert not verify(SECRET, got.body.replace(b'"value":4', b'"value":40'), got.headers[SIGNATURE_HEADER])
    body = json.loads(got.body)
    assert body["conversation_id"] == finished.conversation_id and body["outcome"] == "completed"
    assert body["task"] == "book" and body["channel"] == "sms"
    assert body["fields"]["people"] == {"value": 4, "text": "four of us", "start": 10, "end": 20, "confidence": 0.97}
    # Both attempts carried the same identity, so a receiver can drop a repeat.
    assert len({request.headers["Idempotency-Key"] for _, request in receiver.calls}) == 1
    report = await delivery_report(db)
    assert report.pending == 0 and report.delivered == 1 and report.latest_failures == []
    [row] = await deliveries(db, finished.conversation_id)
    assert row.status == "delivered" and row.attempts == 3


async def test_a_delivery_is_queued_only_when_the_turn_that_ended_the_conversation_commits(db: Database) -> None:
    target, finished = spec(free_port()), record()
    lost_claim = Fenced("UPDATE outcome_deliveries SET attempts = attempts WHERE conversation_id = ?", ("nobody",))
    with pytest.raises(FenceLost):
        await db.batch([enqueue_statement(target, finished), lost_claim])
    assert await deliveries(db) == []
    await db.batch([enqueue_statement(target, finished)])
    assert [d.conversation_id for d in await deliveries(db)] == [finished.conversation_id]


async def test_two_deliverers_at_once_send_each_record_once(db: Database) -> None:
    port = free_port()
    target = spec(port)
    finished = [record() for _ in range(5)]
    for r in finished:
        await enqueue(db, [target], r)
    first, second = OutcomeDeliverer(db, env=ENV), OutcomeDeliverer(db, env=ENV)
    try:
        with OutcomeReceiver(port) as receiver:
            sent = await asyncio.gather(first.deliver_due(), second.deliver_due())
    finally:
        await first.aclose()
        await second.aclose()
    assert sum(sent) == 5
    ids = sorted(json.loads(request.body)["conversation_id"] for _, request in receiver.calls)
    assert ids == sorted(r.conversation_id for r in finished)


async def test_a_missing_secret_is_a_failed_attempt_shown_in_the_report_and_nothing_is_sent(db: Database) -> None:
    port = free_port()
    await enqueue(db, [spec(port)], record())
    deliverer = OutcomeDeliverer(db, env={})
    try:
        with OutcomeReceiver(port) as receiver:
            assert await deliverer.deliver_due() == 0
    finally:
        await deliverer.aclose()
    assert receiver.calls == []
    report = await delivery_report(db)
    assert report.pending == 1 and "OUTCOME_SECRET is not set" in report.latest_failures[0].last_error


async def test_a_delivery_takes_only_the_outcomes_it_names(db: Database) -> None:
    port = free_port()
    only_completed = spec(port, outcomes=["completed"])
    await enqueue(db, [only_completed], record("escalated"))
    await enqueue(db, [only_completed], record("completed"))
    assert [d.outcome for d in await deliveries(db)] == ["completed"]


async def test_a_record_queued_before_the_upgrade_is_kept_and_sent_under_its_old_key(
        database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import storage.migrations as migrations

    database = await Database.open(database_url)
    try:
        # The database as it was before deliveries were told apart by turn (migration 13).
        monkeypatch.setattr(migrations, "MIGRATIONS", [m for m in migrations.MIGRATIONS if m.version < 13])
        await migrate(database)
        finished = record()
        now = utcnow()
        await database.execute(
            "INSERT INTO outcome_deliveries (conversation_id, task, outcome, target, url, secret, headers, timeout, "
            "body, status, attempts, next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, ?, J?, ?, ?, 'pending', 0, ?, ?)",
            (finished.conversation_id, "book", "completed", "bookings", "http://127.0.0.1:9/outcomes",
             "${OUTCOME_SECRET}", {}, 5.0, "{}", now, now))
        monkeypatch.undo()
        assert 13 in await migrate(database)
        [kept] = await deliveries(database, finished.conversation_id)
        assert kept.status == "pending" and kept.task == "book"
        row = await database.fetchone("SELECT turn FROM outcome_deliveries WHERE conversation_id = ?",
                                      (finished.conversation_id,))
        assert row is not None and row["turn"] == 0
        # Its Idempotency-Key is the one a receiver may already have seen from an earlier attempt:
        # the pre-upgrade key, over conversation, task, outcome and target only.
        before_upgrade = "cw-outcome-" + hashlib.sha256("\x1f".join(
            (finished.conversation_id, "book", "completed", "bookings")).encode()).hexdigest()[:40]
        assert delivery_key(finished.conversation_id, "book", "completed", "bookings", row["turn"]) == before_upgrade
        assert delivery_key(finished.conversation_id, "book", "completed", "bookings", 3) != before_upgrade
    finally:
        await database.close()


def test_the_signing_secret_is_never_written_inline() -> None:
    with pytest.raises(ValidationError, match="never inline"):
        OutcomeDeliverySpec(url="https://crm.example.com/hooks", secret="hunter2")
    with pytest.raises(ValidationError, match=r"headers\.Authorization: a secret written inline"):
        OutcomeDeliverySpec(url="https://crm.example.com/hooks", secret="${S}", headers={"Authorization": "Bearer x1"})
    with pytest.raises(ValidationError, match=r"url: \{conversation_id\}: a delivery URL takes no field placeholders"):
        OutcomeDeliverySpec(url="https://crm.example.com/hooks/{conversation_id}", secret="${S}")
