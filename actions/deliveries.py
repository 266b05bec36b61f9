"""Outcome deliveries: the finished record of a conversation POSTed to the business, through an
outbox, retried with backoff until the receiver answers 2xx.

Exactly once per outcome reached (conversation, task, outcome, the turn it was reached in) and
delivery: the row is enqueued by the statement
`enqueue_statement` returns, run inside the turn's own transaction (so a delivery exists exactly
when its outcome was committed), and the table's UNIQUE key makes a turn that runs again insert
nothing. Each row is claimed before it is sent (its attempt count is the version), so two
deliverers never both send it; it is marked delivered only after a 2xx, so a crash in between
means one more attempt with the same `Idempotency-Key`, which the receiver uses to drop it.

The body is stored as the exact text sent, and signed at each attempt:

    X-Channel-Worker-Signature: sha256=<hex HMAC-SHA256 of the raw body, keyed by the secret>

The secret, URL and headers are stored as `${VAR}` templates and read from the environment when
sending, so no secret is ever in the database; a variable that is not set is a failed attempt,
retried and shown by `delivery_report` (for `channel-worker status`).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import httpx
from pydantic import BaseModel, Field

from actions import templating
from actions.spec import OutcomeDeliverySpec
from storage.clock import utcnow
from storage.db import Database, Statement
from storage.outbox import backoff

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Channel-Worker-Signature"
DELIVERY_HEADER = "X-Channel-Worker-Delivery"


class RecordField(BaseModel):
    """One collected value with where it came from."""

    value: Any
    text: str | None = Field(None, description="The person's words it was read from.")
    start: int | None = Field(None, description="Span of `text` in the person's message.")
    end: int | None = None
    confidence: float | None = None


class OutcomeRecord(BaseModel):
    """The finished record the receiver gets (the delivery body, as JSON)."""

    version: int = 1
    worker: str
    conversation_id: str
    channel: str
    task: str | None = None
    outcome: str
    fields: dict[str, RecordField] = Field(default_factory=dict)
    results: dict[str, Any] = Field(default_factory=dict, description="Named action results, JSON form.")
    started_at: str
    ended_at: str


class Delivery(BaseModel):
    id: int
    conversation_id: str
    task: str
    outcome: str
    target: str
    url: str
    status: str
    attempts: int
    next_attempt_at: str
    last_error: str | None = None
    created_at: str
    delivered_at: str | None = None


class DeliveryReport(BaseModel):
    """For `channel-worker status`: how many wait, how many went, and the latest failures."""

    pending: int = 0
    delivered: int = 0
    oldest_pending_since: str | None = None
    latest_failures: list[Delivery] = Field(default_factory=list)


def sign(secret: str, body: bytes) -> str:
    """The signature header's value for `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str | None) -> bool:
    """What a receiver runs: does `header` sign these exact bytes with this secret?"""
    return bool(header) and hmac.compare_digest(sign(secret, body), header)


def delivery_key(conversation_id: str, task: str, outcome: str, target: str, turn: int = 0) -> str:
    """The same for every attempt of one delivery (and the receiver can drop a repeat by it).
    Turn 0: a row queued before deliveries were told apart by turn keeps the key it was sent under."""
    parts = (conversation_id, task, outcome, target) + ((str(turn),) if turn else ())
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()
    return f"cw-outcome-{digest[:40]}"


def body_text(record: OutcomeRecord) -> str:
    """One fixed text for the record: every attempt sends (and signs) the same bytes."""
    return json.dumps(record.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def enqueue_statement(delivery: OutcomeDeliverySpec, record: OutcomeRecord, now: datetime | None = None,
                      turn: int = 0) -> Statement:
    """The INSERT that queues `record` for `delivery`, for the turn's own batch. `turn`: the
    conversation's turn that reached the outcome. Inserts nothing when that turn's outcome was
    queued for this delivery before (the turn ran again); a later booking is a new row."""
    now = now or utcnow()
    return (
        "INSERT INTO outcome_deliveries (conversation_id, task, outcome, target, turn, url, secret, headers, timeout, "
        "body, status, attempts, next_attempt_at, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, J?, ?, ?, 'pending', 0, ?, ?) "
        "ON CONFLICT (conversation_id, task, outcome, target, turn) DO NOTHING",
        (record.conversation_id, record.task or "", record.outcome, delivery.name, turn, delivery.url, delivery.secret,
         delivery.headers, delivery.timeout, body_text(record), now, now),
    )


async def enqueue(db: Database, deliveries: list[OutcomeDeliverySpec], record: OutcomeRecord) -> None:
    """Queue `record` for every delivery that wants its outcome, in one transaction of its own
    (the engine puts `enqueue_statement`s in its turn's batch instead)."""
    statements = [enqueue_statement(d, record) for d in deliveries if d.wants(record.outcome)]
    if statements:
        await db.batch(statements)


class OutcomeDeliverer:
    """Sends the deliveries that are due. `run` loops until stopped; `deliver_due` is one pass."""

    def __init__(self, db: Database, http: httpx.AsyncClient | None = None, env: Mapping[str, str] | None = None,
                 backoff_base: float = 1.0, lease_seconds: float = 120.0):
        self.db = db
        self._http = http or httpx.AsyncClient(headers={"User-Agent": "channel-worker"})
        self._own_http = http is None
        self._env = env
        self.backoff_base = backoff_base
        # Longer than any attempt (timeouts are at most 60 s), so a claim is never taken over mid-send.
        self.lease_seconds = lease_seconds

    async def aclose(self) -> None:
        if self._own_http:
            await self._http.aclose()

    async def run(self, stop: asyncio.Event, every: float = 1.0) -> None:
        while not stop.is_set():
            try:
                await self.deliver_due()
            except Exception:  # noqa: BLE001 - the database may be away a moment; the next pass retries
                log.exception("outcome deliveries: a pass failed")
            try:
                await asyncio.wait_for(stop.wait(), timeout=every)
            except asyncio.TimeoutError:
                pass

    async def deliver_due(self, now: datetime | None = None) -> int:
        """Try every due delivery once; returns how many were delivered now."""
        rows = await self.db.fetchall(
            "SELECT id, conversation_id, task, outcome, target, turn, attempts, url, secret, headers, timeout, body "
            "FROM outcome_deliveries "
            "WHERE status = 'pending' AND next_attempt_at <= ? ORDER BY id LIMIT 100",
            (now or utcnow(),), ("headers",))
        delivered = 0
        for row in rows:
            claimed = await self.db.execute_count(
                "UPDATE outcome_deliveries SET attempts = attempts + 1, next_attempt_at = ? "
                "WHERE id = ? AND status = 'pending' AND attempts = ?",
                (utcnow() + timedelta(seconds=self.lease_seconds), row["id"], row["attempts"]))
            if claimed != 1:
                continue  # another deliverer has it
            attempts = row["attempts"] + 1
            try:
                await self._post(row)
            except Exception as exc:  # noqa: BLE001 - every failure is retried: the business must get it
                retry_at = utcnow() + timedelta(seconds=backoff(attempts, self.backoff_base))
                await self.db.execute(
                    "UPDATE outcome_deliveries SET next_attempt_at = ?, last_error = ? "
                    "WHERE id = ? AND status = 'pending'",
                    (retry_at, f"{type(exc).__name__}: {exc}"[:500], row["id"]))
                log.warning("outcome delivery %s failed (attempt %s), retry at %s: %s",
                            row["id"], attempts, retry_at.isoformat(), exc)
                continue
            await self.db.execute(
                "UPDATE outcome_deliveries SET status = 'delivered', delivered_at = ?, last_error = NULL "
                "WHERE id = ? AND status = 'pending'", (utcnow(), row["id"]))
            delivered += 1
        return delivered

    async def _post(self, row: dict[str, Any]) -> None:
        env = os.environ if self._env is None else self._env
        body = row["body"].encode()
        url = templating.fill_text(row["url"], {}, env)
        headers = {name: templating.fill_text(v, {}, env) for name, v in (row["headers"] or {}).items()}
        secret = templating.fill_text(row["secret"], {}, env)
        headers.update({
            "Content-Type": "application/json",
            "Idempotency-Key": delivery_key(row["conversation_id"], row["task"], row["outcome"], row["target"],
                                            row["turn"]),
            DELIVERY_HEADER: str(row["id"]),
            SIGNATURE_HEADER: sign(secret, body),
        })
        response = await self._http.post(url, content=body, headers=headers, timeout=row["timeout"])
        if not 200 <= response.status_code < 300:
            raise RuntimeError(f"the receiver answered {response.status_code}")


async def deliveries(db: Database, conversation_id: str | None = None) -> list[Delivery]:
    where, params = ("WHERE conversation_id = ?", (conversation_id,)) if conversation_id else ("", ())
    rows = await db.fetchall(
        "SELECT id, conversation_id, task, outcome, target, url, status, attempts, next_attempt_at, last_error, "
        f"created_at, delivered_at FROM outcome_deliveries {where} ORDER BY id", params)
    return [Delivery(**r) for r in rows]


async def delivery_report(db: Database, latest: int = 5) -> DeliveryReport:
    counts = await db.fetchall(
        "SELECT status, COUNT(*) AS n, MIN(created_at) AS oldest FROM outcome_deliveries GROUP BY status")
    by_status = {r["status"]: r for r in counts}
    failing = await db.fetchall(
        "SELECT id, conversation_id, task, outcome, target, url, status, attempts, next_attempt_at, last_error, "
        "created_at, delivered_at FROM outcome_deliveries WHERE status = 'pending' AND last_error IS NOT NULL "
        "ORDER BY next_attempt_at DESC LIMIT ?", (latest,))
    pending = by_status.get("pending")
    return DeliveryReport(
        pending=int(pending["n"]) if pending else 0,
        delivered=int(by_status["delivered"]["n"]) if "delivered" in by_status else 0,
        oldest_pending_since=str(pending["oldest"]) if pending else None,
        latest_failures=[Delivery(**r) for r in failing],
    )
