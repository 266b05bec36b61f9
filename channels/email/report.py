"""What `channel-worker status` tells about the inbox: messages per state, and the latest
messages that could not be processed with the reason each was recorded with."""

from __future__ import annotations

from pydantic import BaseModel, Field

from storage.db import Database


class FailedEmail(BaseModel):
    message_id: str
    sender: str
    subject: str | None
    reason: str | None
    at: str


class EmailReport(BaseModel):
    by_state: dict[str, int] = Field(default_factory=dict, description="answered, ignored, rate_limited, failed...")
    failed: int = 0
    latest_failures: list[FailedEmail] = Field(default_factory=list)


async def email_report(db: Database, latest: int = 5) -> EmailReport:
    counts = await db.fetchall("SELECT state, COUNT(*) AS n FROM email_messages GROUP BY state")
    by_state = {row["state"]: int(row["n"]) for row in counts}
    rows = await db.fetchall(
        "SELECT message_id, sender, subject, detail, updated_at FROM email_messages WHERE state = 'failed' "
        "ORDER BY updated_at DESC LIMIT ?", (latest,))
    failures = [FailedEmail(message_id=r["message_id"], sender=r["sender"], subject=r["subject"], reason=r["detail"],
                            at=r["updated_at"].isoformat() if hasattr(r["updated_at"], "isoformat") else str(r["updated_at"]))
                for r in rows]
    return EmailReport(by_state=by_state, failed=by_state.get("failed", 0), latest_failures=failures)


async def message_state(db: Database, message_id: str) -> tuple[str, str | None] | None:
    """How one inbound message was recorded (state, detail), or None when it never was."""
    row = await db.fetchone("SELECT state, detail FROM email_messages WHERE message_id = ?", (message_id,))
    return None if row is None else (row["state"], row["detail"])


async def reply_to(db: Database, message_id: str) -> str | None:
    """The raw MIME of the reply queued for an inbound message (sent or not), if any."""
    row = await db.fetchone("SELECT raw FROM email_outbox WHERE inbound_key = ?", (message_id,))
    return None if row is None else row["raw"]
