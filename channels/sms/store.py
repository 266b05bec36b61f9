"""What the SMS channel keeps: every message by its Twilio MessageSid, the REST outbox, and
the opt-out list that every outbound path checks."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel

from storage.clock import utcnow
from storage.db import Database, Fenced, Statement


# A sending pass takes at most this many replies; the next pass takes the rest. Unbounded, a pass
# over a backlog (Twilio down for a while) held the event loop reading and building every row.
DUE_BATCH = 200

class OutboxItem(BaseModel):
    id: int
    conversation_id: str
    to_number: str
    from_number: str
    body: str
    dedupe_key: str | None
    state: str
    attempts: int
    next_attempt_at: str
    last_error: str | None = None
    message_sid: str | None = None
    created_at: datetime


class Claim(BaseModel):
    """The outcome of recording an inbound message."""

    won: bool  # this delivery is the one to answer it
    opted_out: bool  # the sender is on the opt-out list
    token: str | None = None  # the processing state this delivery holds (the fence for its writes)


class Delivered(BaseModel):
    """An inbound message as a later delivery of it finds it."""

    state: str
    reply: str | None
    reply_via: str | None  # 'twiml': the reply went in a webhook response; 'outbox': through the REST API
    updated_at: datetime

    @property
    def in_flight(self) -> bool:
        return self.state.startswith(PROCESSING)


PROCESSING = "processing:"
IN_FLIGHT = "in flight"
MAX_ATTEMPTS = 3  # deliveries or recoveries that may try to answer one message


class SmsStore:
    def __init__(self, db: Database):
        self.db = db

    async def claim_inbound(self, sid: str, conversation_id: str, from_number: str, to_number: str, body: str,
                            media: list[dict[str, Any]]) -> Claim:
        """Record an inbound message and say whether this delivery is the one to answer it.

        The insert is the claim: of two deliveries of one MessageSid, even overlapping ones,
        exactly one inserts the row. A delivery whose earlier attempt failed may claim it again."""
        now = utcnow()
        claim = f"{PROCESSING}{uuid.uuid4().hex}"
        # One transaction: record, claim (only from 'new' or 'failed'), read who holds it and
        # whether the sender opted out.
        rows = await self.db.batch([
            ("INSERT INTO sms_messages (sid, conversation_id, direction, from_number, to_number, body, media, state, "
             "created_at, updated_at) VALUES (?, ?, 'in', ?, ?, ?, J?, 'new', ?, ?) ON CONFLICT (sid) DO NOTHING",
             (sid, conversation_id, from_number, to_number, body, media, now, now)),
            ("UPDATE sms_messages SET state = ?, updated_at = ?, attempts = attempts + 1 "
             "WHERE sid = ? AND state IN ('new', 'failed')", (claim, now, sid)),
            ("SELECT state, EXISTS (SELECT 1 FROM sms_optouts WHERE number = ? AND service_number = ?) AS opted_out "
             "FROM sms_messages WHERE sid = ?", (from_number, to_number, sid)),
        ])
        won = bool(rows) and rows[0]["state"] == claim
        return Claim(won=won, opted_out=bool(rows and rows[0]["opted_out"]), token=claim if won else None)

    async def delivered(self, sid: str) -> Delivered | None:
        row = await self.db.fetchone("SELECT state, reply, reply_via, updated_at FROM sms_messages WHERE sid = ?", (sid,))
        return Delivered(**row) if row else None

    async def take_over(self, sid: str, held: str) -> str | None:
        """Claim a message whose holder is presumed dead (it held `held` too long); the new
        token, or None when someone else moved it first. The old holder's fenced writes now
        change nothing, so its turn cannot commit a second reply."""
        token = f"{PROCESSING}{uuid.uuid4().hex}"
        changed = await self.db.execute_count(
            "UPDATE sms_messages SET state = ?, updated_at = ?, attempts = attempts + 1 WHERE sid = ? AND state = ?",
            (token, utcnow(), sid, held))
        return token if changed == 1 else None

    async def fail(self, sid: str, claim: str, reason: str) -> bool:
        """Record that answering failed. After MAX_ATTEMPTS tries the message is given up:
        recorded with the reason and never tried again (one message that always breaks its
        turn must not be retried forever). True when it was given up."""
        rows = await self.db.batch([
            ("UPDATE sms_messages SET state = CASE WHEN attempts >= ? THEN 'gave_up' ELSE 'failed' END, failure = ?, "
             "updated_at = ? WHERE sid = ? AND state = ?", (MAX_ATTEMPTS, reason[:500], utcnow(), sid, claim)),
            ("SELECT state FROM sms_messages WHERE sid = ?", (sid,)),
        ])
        return bool(rows) and rows[0]["state"] == "gave_up"

    async def failures(self, latest: int = 5) -> tuple[dict[str, int], list[dict[str, Any]]]:
        """Inbound messages per state, and the latest that were given up or failed, with why."""
        counts = await self.db.fetchall(
            "SELECT state, COUNT(*) AS n FROM sms_messages WHERE direction = 'in' GROUP BY state")
        by_state: dict[str, int] = {}
        for row in counts:
            state = "processing" if row["state"].startswith(PROCESSING) else row["state"]
            by_state[state] = by_state.get(state, 0) + int(row["n"])
        rows = await self.db.fetchall(
            "SELECT sid, from_number, state, attempts, failure, updated_at FROM sms_messages "
            "WHERE direction = 'in' AND state IN ('failed', 'gave_up') ORDER BY updated_at DESC LIMIT ?", (latest,))
        return by_state, rows

    async def finish_inbound(self, sid: str, state: str, reply: str | None = None, claim: str | None = None,
                             via: str | None = None) -> None:
        await self.db.batch([self.finish_statement(sid, state, reply, claim, via)])

    @staticmethod
    def finish_statement(sid: str, state: str, reply: str | None = None, claim: str | None = None,
                         via: str | None = None) -> Statement:
        """Mark an inbound message done. With `claim`, only while that claim still holds it
        (a `Fenced` statement: the batch fails with `FenceLost` otherwise)."""
        via = via or ("twiml" if reply else None)
        if claim is None:
            return ("UPDATE sms_messages SET state = ?, reply = ?, reply_via = ?, updated_at = ? WHERE sid = ?",
                    (state, reply, via, utcnow(), sid))
        return Fenced("UPDATE sms_messages SET state = ?, reply = ?, reply_via = ?, updated_at = ? "
                      "WHERE sid = ? AND state = ?", (state, reply, via, utcnow(), sid, claim))

    async def message(self, sid: str) -> dict[str, Any] | None:
        return await self.db.fetchone("SELECT * FROM sms_messages WHERE sid = ?", (sid,), ("media",))

    async def record_outbound(self, sid: str, conversation_id: str, from_number: str, to_number: str, body: str,
                              status: str) -> None:
        now = utcnow()
        await self.db.execute(
            "INSERT INTO sms_messages (sid, conversation_id, direction, from_number, to_number, body, state, status, "
            "created_at, updated_at) VALUES (?, ?, 'out', ?, ?, ?, 'sent', ?, ?, ?) ON CONFLICT (sid) DO NOTHING",
            (sid, conversation_id, from_number, to_number, body, status, now, now),
        )

    async def update_status(self, sid: str, status: str, error_code: str | None) -> bool:
        """Apply a delivery status callback; False when the message is not ours."""
        row = await self.db.fetchone("SELECT sid FROM sms_messages WHERE sid = ?", (sid,))
        if row is None:
            return False
        await self.db.execute(
            "UPDATE sms_messages SET status = ?, error_code = ?, updated_at = ? WHERE sid = ?",
            (status, error_code, utcnow(), sid),
        )
        return True

    # -- opt-outs ------------------------------------------------------------------------

    async def opt_out(self, number: str, service_number: str) -> bool:
        """True when the number was not opted out before (so the confirmation is sent once)."""
        before = await self.is_opted_out(number, service_number)
        await self.db.execute(
            "INSERT INTO sms_optouts (number, service_number, opted_out_at) VALUES (?, ?, ?) "
            "ON CONFLICT (number, service_number) DO NOTHING",
            (number, service_number, utcnow()),
        )
        return not before

    async def opt_in(self, number: str, service_number: str) -> bool:
        before = await self.is_opted_out(number, service_number)
        await self.db.execute("DELETE FROM sms_optouts WHERE number = ? AND service_number = ?", (number, service_number))
        return before

    async def is_opted_out(self, number: str, service_number: str) -> bool:
        row = await self.db.fetchone(
            "SELECT 1 AS x FROM sms_optouts WHERE number = ? AND service_number = ?", (number, service_number)
        )
        return row is not None

    # -- outbox --------------------------------------------------------------------------

    async def enqueue(self, conversation_id: str, to_number: str, from_number: str, body: str,
                      dedupe_key: str | None = None) -> None:
        await self.db.batch([self.enqueue_statement(conversation_id, to_number, from_number, body, dedupe_key)])

    @staticmethod
    def enqueue_statement(conversation_id: str, to_number: str, from_number: str, body: str,
                          dedupe_key: str | None = None) -> Statement:
        now = utcnow()
        return (
            "INSERT INTO sms_outbox (conversation_id, to_number, from_number, body, dedupe_key, state, attempts, "
            "next_attempt_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?) "
            "ON CONFLICT (dedupe_key) DO NOTHING",
            (conversation_id, to_number, from_number, body, dedupe_key, now, now, now),
        )

    async def due(self, now: datetime, conversation_id: str | None = None, limit: int = DUE_BATCH) -> list[OutboxItem]:
        """Replies waiting to be sent (of one conversation, or the oldest `limit` of all)."""
        if conversation_id is not None:
            rows = await self.db.fetchall(
                "SELECT * FROM sms_outbox WHERE state = 'pending' AND next_attempt_at <= ? AND conversation_id = ? "
                "ORDER BY id LIMIT ?", (now, conversation_id, limit))
        else:
            rows = await self.db.fetchall(
                "SELECT * FROM sms_outbox WHERE state = 'pending' AND next_attempt_at <= ? ORDER BY id LIMIT ?",
                (now, limit))
        return [OutboxItem(**r) for r in rows]

    async def lease(self, item: OutboxItem, seconds: float = 20.0) -> bool:
        """Take an item for one send attempt; False when another sender took it first.

        The attempt count is the version: only one UPDATE can move it from N to N+1. The lease
        keeps others off it while the request is in flight (twice the REST client's 10 s timeout,
        so a live attempt has always ended before another may start), and lapses if this
        process dies: the item is then sent after `seconds`, not a minute later."""
        now = utcnow()
        # last_error says 'in flight' until the attempt's outcome is written: an item leased
        # again with that mark was being sent when its process died (see SmsSender).
        changed = await self.db.execute_count(
            "UPDATE sms_outbox SET attempts = attempts + 1, next_attempt_at = ?, updated_at = ?, last_error = ? "
            "WHERE id = ? AND state = 'pending' AND attempts = ?",
            (now + timedelta(seconds=seconds), now, IN_FLIGHT, item.id, item.attempts),
        )
        return changed == 1

    async def known_sids(self, sids: list[str]) -> set[str]:
        """Which of these Twilio message sids an outbox item already accounts for."""
        if not sids:
            return set()
        marks = ",".join("?" for _ in sids)
        rows = await self.db.fetchall(f"SELECT message_sid FROM sms_outbox WHERE message_sid IN ({marks})", sids)
        return {r["message_sid"] for r in rows}

    async def states(self, dedupe_keys: list[str]) -> dict[str, dict[str, Any]]:
        """dedupe key -> state, attempts, last_error of the outbox items with these keys (the
        review console's delivery status of a person's reply)."""
        if not dedupe_keys:
            return {}
        marks = ",".join("?" for _ in dedupe_keys)
        rows = await self.db.fetchall(
            f"SELECT dedupe_key, state, attempts, last_error FROM sms_outbox WHERE dedupe_key IN ({marks})", dedupe_keys)
        return {r["dedupe_key"]: r for r in rows}

    async def outbox(self, conversation_id: str | None = None) -> list[OutboxItem]:
        where, params = ("WHERE conversation_id = ?", [conversation_id]) if conversation_id else ("", [])
        return [OutboxItem(**r) for r in await self.db.fetchall(f"SELECT * FROM sms_outbox {where} ORDER BY id", params)]

    async def mark(self, item_id: int, state: str, attempts: int, error: str | None = None,
                   retry_in: float | None = None, message_sid: str | None = None) -> None:
        now = utcnow()
        next_at = now + timedelta(seconds=retry_in) if retry_in is not None else now
        await self.db.execute(
            "UPDATE sms_outbox SET state = ?, attempts = ?, last_error = ?, next_attempt_at = ?, message_sid = ?, "
            "updated_at = ? WHERE id = ?",
            (state, attempts, error, next_at, message_sid, now, item_id),
        )
