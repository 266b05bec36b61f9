"""Tell the team about a handoff: an email to team addresses and/or a POST to a webhook,
through an outbox in the database, retried with backoff until delivered.

A notification is marked delivered only after the SMTP server accepted it or the webhook
answered 2xx, so a crash in between means one more attempt, never a lost notice. Each
attempt carries the same identity (`Message-ID`, `Idempotency-Key`) so the receiving side
can drop the rare duplicate such a crash produces.
"""

from __future__ import annotations

import json
import logging
import ssl
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any, Literal

import aiosmtplib
import httpx
from pydantic import BaseModel

from storage.clock import utcnow
from storage.db import Database
from storage.outbox import backoff

log = logging.getLogger(__name__)


class SmtpSettings(BaseModel):
    """Outgoing mail, from the same variables as the email channel."""

    host: str
    port: int = 587
    user: str | None = None
    password: str | None = None
    tls: Literal["ssl", "starttls", "none"] = "starttls"
    sender: str = "channel-worker@localhost"
    ca_file: str | None = None
    timeout: float = 10.0


class Notification(BaseModel):
    id: int
    handoff_id: int | None
    conversation_id: str
    kind: Literal["email", "webhook"]
    target: str
    payload: dict[str, Any]
    status: Literal["pending", "delivered"]
    attempts: int
    next_attempt_at: str
    last_error: str | None = None
    delivered_at: str | None = None


class Notifier:
    """Queues notifications and delivers the ones that are due."""

    def __init__(self, db: Database, smtp: SmtpSettings | None = None, http_timeout: float = 10.0,
                 backoff_base: float = 1.0):
        self.db = db
        self.smtp = smtp
        self.http_timeout = http_timeout
        self.backoff_base = backoff_base

    async def enqueue(self, conversation_id: str, handoff_id: int | None, kind: str, target: str,
                      payload: dict[str, Any]) -> None:
        now = utcnow()
        await self.db.execute(
            "INSERT INTO notifications (handoff_id, conversation_id, kind, target, payload, status, attempts, "
            "next_attempt_at, created_at) VALUES (?, ?, ?, ?, J?, 'pending', 0, ?, ?)",
            (handoff_id, conversation_id, kind, target, payload, now, now),
        )

    async def all(self, conversation_id: str | None = None) -> list[Notification]:
        where, params = ("WHERE conversation_id = ?", [conversation_id]) if conversation_id else ("", [])
        rows = await self.db.fetchall(f"SELECT * FROM notifications {where} ORDER BY id", params, ("payload",))
        return [Notification(**r) for r in rows]

    async def pending_count(self) -> int:
        row = await self.db.fetchone("SELECT COUNT(*) AS n FROM notifications WHERE status = 'pending'")
        return int(row["n"]) if row else 0

    async def deliver_due(self, now: datetime | None = None) -> int:
        """Try every notification that is due once; returns how many were delivered now."""
        now = now or utcnow()
        rows = await self.db.fetchall(
            "SELECT * FROM notifications WHERE status = 'pending' AND next_attempt_at <= ? ORDER BY id", (now,), ("payload",)
        )
        delivered = 0
        for row in rows:
            note = Notification(**row)
            # Claim the attempt (the attempt count is the version) so two senders never both send it.
            lease_until = utcnow() + timedelta(seconds=60)
            claimed = await self.db.execute_count(
                "UPDATE notifications SET next_attempt_at = ?, attempts = attempts + 1 "
                "WHERE id = ? AND status = 'pending' AND attempts = ?",
                (lease_until, note.id, note.attempts),
            )
            if claimed != 1:
                continue
            try:
                if note.kind == "email":
                    await self._send_email(note)
                else:
                    await self._post_webhook(note)
            except Exception as exc:  # any failure is retried: the team must hear of it
                attempts = note.attempts + 1
                retry_at = utcnow() + timedelta(seconds=backoff(attempts, self.backoff_base))
                await self.db.execute(
                    "UPDATE notifications SET next_attempt_at = ?, last_error = ? WHERE id = ? AND status = 'pending'",
                    (retry_at, f"{type(exc).__name__}: {exc}"[:500], note.id),
                )
                log.warning("notification %s to %s failed (attempt %s), retry at %s: %s",
                            note.id, note.target, attempts, retry_at.isoformat(), exc)
                continue
            await self.db.execute(
                "UPDATE notifications SET status = 'delivered', delivered_at = ?, last_error = NULL "
                "WHERE id = ? AND status = 'pending'",
                (utcnow(), note.id),
            )
            delivered += 1
        return delivered

    async def _post_webhook(self, note: Notification) -> None:
        async with httpx.AsyncClient(timeout=self.http_timeout) as client:
            response = await client.post(
                note.target, json=note.payload,
                headers={"Idempotency-Key": f"channel-worker-notification-{note.id}", "User-Agent": "channel-worker"},
            )
        if response.status_code >= 300:
            raise RuntimeError(f"webhook answered {response.status_code}")

    async def _send_email(self, note: Notification) -> None:
        if self.smtp is None:
            raise RuntimeError("no SMTP server configured (SMTP_HOST)")
        payload = note.payload
        message = EmailMessage()
        message["From"] = self.smtp.sender
        message["To"] = note.target
        message["Subject"] = f"[handoff] {payload.get('worker', '')}: {payload.get('reason', '')}"[:200]
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = f"<notification-{note.id}.{note.conversation_id}@channel-worker>"
        message["Auto-Submitted"] = "auto-generated"
        message.set_content(render_packet_text(payload))
        message.add_attachment(json.dumps(payload, indent=2, default=str).encode(), maintype="application",
                               subtype="json", filename="handoff.json")
        context = ssl.create_default_context(cafile=self.smtp.ca_file) if self.smtp.tls != "none" else None
        await aiosmtplib.send(
            message, hostname=self.smtp.host, port=self.smtp.port, username=self.smtp.user, password=self.smtp.password,
            use_tls=self.smtp.tls == "ssl", start_tls=True if self.smtp.tls == "starttls" else False,
            tls_context=context, timeout=self.smtp.timeout,
        )


def render_packet_text(packet: dict[str, Any]) -> str:
    lines = [
        f"Conversation {packet.get('conversation_id')} on {packet.get('channel')} needs a person.",
        f"Rule: {packet.get('rule')}",
        f"Reason: {packet.get('reason')}",
        "",
        packet.get("summary", ""),
        "",
        "Collected fields:",
    ]
    for name, f in (packet.get("fields") or {}).items():
        lines.append(f"  {name}: {f.get('value')}  (from \"{f.get('text')}\", confidence {f.get('confidence')})")
    lines += ["", "Transcript:"]
    for t in packet.get("transcript") or []:
        lines.append(f"  {t.get('role')}: {t.get('text')}")
    if packet.get("link"):
        lines += ["", f"Open: {packet['link']}"]
    return "\n".join(lines) + "\n"
