"""Which calls may have a Media Stream, recorded in the database so every worker process agrees.

A row per CallSid (table `voice_calls`, migration 9) moves announced -> live -> ended:

- announced: the signed call webhook issued a stream token (its nonce is stored); refused when
  the calls in progress already reach VOICE_MAX_CALLS.
- live: a stream presented that token; only one stream can make this step for a call, once.
- ended: the stream closed.

Calls in progress are the live rows whose stream is still beating (a running call touches its
row every HEARTBEAT_SECONDS, so a process that died frees its calls' places) plus the announced
rows whose token has not expired (so a burst of calls cannot all pass the check before their
streams arrive).
"""

from __future__ import annotations

from datetime import timedelta
from enum import Enum

from pydantic import BaseModel, Field

from storage.clock import utcnow
from storage.db import Database

HEARTBEAT_SECONDS = 15.0
STALE_AFTER_SECONDS = 4 * HEARTBEAT_SECONDS  # a live row not touched for this long is a dead process's
_ANNOUNCE_LOCK = 727209  # PostgreSQL advisory lock key: announcements take turns


class VoiceLimits(BaseModel):
    # 8 calls kept replies under 2 s at p95 on 2 cores (bench/RESULTS.md, voice concurrency); at 10
    # the cores saturate on recognition and every caller waits.
    max_calls: int = Field(8, ge=1)
    start_timeout_seconds: float = Field(5.0, gt=0)  # a socket that has not sent `start` by then is closed
    token_seconds: float = Field(30.0, gt=0)  # Twilio opens the stream right after it reads the TwiML
    # The stream tokens' key (VOICE_STREAM_SECRET); unset: derived from the Twilio auth token.
    stream_secret: str | None = Field(None, repr=False)


class Announced(str, Enum):
    admitted = "admitted"
    busy = "busy"  # over VOICE_MAX_CALLS
    known = "known"  # this call already has (or had) a stream


class CallAdmissions:
    def __init__(self, db: Database, limits: VoiceLimits):
        self.db = db
        self.limits = limits

    def _in_progress_sql(self) -> tuple[str, list[object]]:
        now = utcnow()
        return ("SELECT COUNT(*) FROM voice_calls WHERE call_sid <> ? AND ("
                "(state = 'announced' AND announced_at > ?) OR (state = 'live' AND seen_at > ?))",
                [now - timedelta(seconds=self.limits.token_seconds), now - timedelta(seconds=STALE_AFTER_SECONDS)])

    async def in_progress(self) -> int:
        sql, params = self._in_progress_sql()
        row = await self.db.fetchone(sql.replace("COUNT(*)", "COUNT(*) AS n"), ["", *params])
        return int(row["n"]) if row else 0

    async def announce(self, call_sid: str, nonce: str) -> Announced:
        """Record that a stream token with `nonce` was issued for the call, if there is room.
        Announcing a call again before its stream started replaces the token (the first is void)."""
        count, params = self._in_progress_sql()
        # The count and the insert are one statement in one transaction, so two webhooks at once
        # cannot both take the last place: SQLite's writers take turns (BEGIN IMMEDIATE);
        # PostgreSQL's announcers queue on a transaction-scoped advisory lock.
        upsert = (
            "INSERT INTO voice_calls (call_sid, nonce, state, announced_at) SELECT ?, ?, 'announced', ? "
            f"WHERE ({count}) < ? "
            "ON CONFLICT (call_sid) DO UPDATE SET nonce = excluded.nonce, announced_at = excluded.announced_at "
            "WHERE voice_calls.state = 'announced' RETURNING call_sid",
            [call_sid, nonce, utcnow(), call_sid, *params, self.limits.max_calls],
        )
        lock = [("SELECT pg_advisory_xact_lock(?)", [_ANNOUNCE_LOCK])] if self.db.dialect == "postgres" else []
        if await self.db.batch([*lock, upsert]):
            return Announced.admitted
        row = await self.db.fetchone("SELECT state FROM voice_calls WHERE call_sid = ?", (call_sid,))
        return Announced.known if row and row["state"] != "announced" else Announced.busy

    async def claim(self, call_sid: str, nonce: str) -> bool:
        """The stream with this token becomes the call's one stream. False if the token was
        used already, replaced, or the call has a stream: whichever process asks, only one wins."""
        now = utcnow()
        changed = await self.db.execute_count(
            "UPDATE voice_calls SET state = 'live', started_at = ?, seen_at = ? "
            "WHERE call_sid = ? AND nonce = ? AND state = 'announced'",
            (now, now, call_sid, nonce),
        )
        return changed == 1

    async def beat(self, call_sid: str) -> None:
        await self.db.execute("UPDATE voice_calls SET seen_at = ? WHERE call_sid = ? AND state = 'live'",
                              (utcnow(), call_sid))

    async def end(self, call_sid: str) -> None:
        await self.db.execute("UPDATE voice_calls SET state = 'ended', ended_at = ? WHERE call_sid = ?",
                              (utcnow(), call_sid))
