"""Browser sessions of the review console (table `review_sessions`, migration 15).

Server-side rather than a signed cookie: a session must end for good at logout, when its
operator is removed, and when an admin ends every session of one operator; a signed token
stays valid until it expires wherever it was copied. The cookie carries 256 random bits; only
their SHA-256 is stored, so the table cannot be replayed. Each session has its own CSRF token
(the synchroniser token every form of the console carries). The role is read from `operators`
on every request, so a changed role counts at once.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta, timezone

from pydantic import BaseModel

from escalation.operators import Role
from storage.db import Database


class ReviewSession(BaseModel):
    operator: str
    role: Role
    csrf_token: str
    ref_key: str  # server-side only: encrypts the conversation references viewers get (migration 16)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class SessionStore:
    def __init__(self, db: Database):
        self.db = db

    async def create(self, operator: str, lifetime: timedelta) -> tuple[str, str]:
        """A new session for `operator`: (the cookie's token, the session's CSRF token)."""
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        now = datetime.now(timezone.utc)
        # Expired sessions of anyone go when someone logs in: the table never grows past the live ones.
        await self.db.batch([
            ("DELETE FROM review_sessions WHERE expires_at < ?", (now,)),
            ("INSERT INTO review_sessions (token_hash, operator, csrf_token, created_at, expires_at, ref_key) "
             "VALUES (?, ?, ?, ?, ?, ?)", (_hash(token), operator, csrf, now, now + lifetime, secrets.token_hex(32))),
        ])
        return token, csrf

    async def get(self, token: str) -> ReviewSession | None:
        """The live session of this cookie, with its operator's current role (None: unknown, expired,
        ended, or its operator was removed)."""
        if not token or len(token) > 100:
            return None
        row = await self.db.fetchone(
            "SELECT s.operator, o.role, s.csrf_token, s.ref_key FROM review_sessions s JOIN operators o ON o.name = s.operator "
            "WHERE s.token_hash = ? AND s.expires_at > ? AND s.ref_key IS NOT NULL", (_hash(token), datetime.now(timezone.utc)))
        return ReviewSession(**row) if row else None

    async def end(self, token: str) -> None:
        await self.db.execute("DELETE FROM review_sessions WHERE token_hash = ?", (_hash(token),))

    async def end_all(self, operator: str) -> int:
        return await self.db.execute_count("DELETE FROM review_sessions WHERE operator = ?", (operator,))



