"""A person's reply from the review console's queue page, as the email channel sends it.

The reply is a row of the channel's own `email_outbox`, sent by the same loop as the worker's
replies (`EmailChannel.send_due`: retries with backoff, sent only once the SMTP server accepted
it). Its `inbound_key` is `human:<the form's idempotency key>` (unique), so a double submit adds
one row; its Message-ID is derived from that key, so even a resend is the same message.

Threading: In-Reply-To is the person's last message, References the thread root then that
message, the Subject theirs with one "Re: ". Every header is built from text checked here (one
line, no control characters, an address of plain ASCII), whatever the stored turn or the form
held: a line break in a reviewer's text or a stored subject can never add a header.
"""

from __future__ import annotations

import hashlib
import re
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

from channels.email.headers import clean_header, clean_text
from storage.clock import utcnow
from storage.db import Database, Statement

_MSGID = re.compile(r"<[!-;=?-~]{1,250}>")  # printable ASCII, no < > inside, no space
_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")


class NotReplyable(ValueError):
    """The stored conversation gives no safe address or thread to answer."""


def human_message_id(key: str, sender: str) -> str:
    digest = hashlib.sha256(f"human:{key}".encode()).hexdigest()[:32]
    domain = sender.rsplit("@", 1)[-1] if "@" in sender else "channel-worker"
    return f"<human-{digest}@{domain}>"


def human_reply(*, sender: str, to: str, subject: str, in_reply_to: str | None, thread_root: str | None,
                body: str, key: str) -> EmailMessage:
    """The reply as an email. `body` may hold anything (it is the message's text, line breaks
    normalised, control characters dropped); every header value is checked to be one safe line."""
    if not _ADDRESS.fullmatch(to or ""):
        raise NotReplyable(f"the person's address {clean_header(to or '')[:80]!r} is not one plain address")
    if not _ADDRESS.fullmatch(sender or ""):
        raise NotReplyable("EMAIL_FROM is not one plain address")
    ids = [i for i in (thread_root, in_reply_to) if i and _MSGID.fullmatch(i)]
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    subject = clean_header(subject or "")[:200].strip() or "your message"
    message["Subject"] = subject if re.match(r"(?i)^re\s*:", subject) else f"Re: {subject}"
    if in_reply_to and _MSGID.fullmatch(in_reply_to):
        message["In-Reply-To"] = in_reply_to
    if ids:
        message["References"] = " ".join(dict.fromkeys(ids))
    message["Message-ID"] = human_message_id(key, sender)
    message["Date"] = formatdate(localtime=False)
    message.set_content(clean_text(body))
    return message


class EmailOutbox:
    def __init__(self, db: Database):
        self.db = db

    @staticmethod
    def enqueue_statement(inbound_key: str, message: EmailMessage) -> Statement:
        """The row that sends `message` once (ON CONFLICT on `inbound_key`: no second row)."""
        now = utcnow()
        return ("INSERT INTO email_outbox (inbound_key, message_id, recipient, raw, state, attempts, next_attempt_at, "
                "created_at) VALUES (?, ?, ?, ?, 'pending', 0, ?, ?) ON CONFLICT (inbound_key) DO NOTHING",
                (inbound_key, message["Message-ID"], message["To"], message.as_string(), now, now))

    async def states(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        """key -> state, attempts, last_error, sent_at of the outbox rows with these inbound keys."""
        if not keys:
            return {}
        marks = ",".join("?" for _ in keys)
        rows = await self.db.fetchall(
            f"SELECT inbound_key, state, attempts, last_error, sent_at FROM email_outbox WHERE inbound_key IN ({marks})", keys)
        return {r["inbound_key"]: r for r in rows}
