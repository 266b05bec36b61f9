"""The email channel: each new message in the inbox becomes a turn of its thread's
conversation, and the reply goes out over SMTP through an outbox, exactly once.

Order of work for one message, each step safe to repeat after a crash:
1. record it (keyed by UIDVALIDITY/UID and by Message-ID) before anything else;
2. decide: machine mail and rate-limited senders get no reply, oversized mail a polite one,
   anything else a dialogue turn (the stored reply is reused if the turn had already run);
3. put the reply in the outbox and mark the message answered, in one transaction;
4. only then flag the message on the IMAP server; the outbox is sent separately and an item is
   marked sent only after the SMTP server accepted it. The reply's Message-ID is derived from the
   inbound one, so even a resend after a crash is the same message, not a second answer.

One bad message never stops the inbox: a message that cannot be processed is recorded as
`failed` with the reason (see `channel-worker status`) and the watcher moves on. Only a database
error propagates (a few times per message), so that the supervisor restarts the channel and the
message is tried again once the database is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import sqlite3
import ssl
from collections import Counter
from datetime import timedelta
from email import message_from_string, policy

import aiosmtplib

from channels.email.imap import ImapSettings, InboxWatcher
from channels.email.parse import InboundEmail, build_reply, parse_email, summary
from channels.seam import Conversations
from dialogue.events import Turn
from dialogue.render import render
from escalation.notify import SmtpSettings
from storage.clock import utcnow
from storage.db import Database, DatabaseUnavailable
from storage.outbox import backoff

log = logging.getLogger(__name__)

# A database error while processing a message is retried this many times (the channel restarts
# in between) before the message is recorded as failed: a deterministic one must not stop the inbox.
DATABASE_ATTEMPTS = 3


def _is_database_error(exc: BaseException) -> bool:
    return isinstance(exc, (sqlite3.Error, DatabaseUnavailable)) or type(exc).__module__.startswith("psycopg")


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


# Tries at most five minutes apart (storage/outbox.py), so about a day of them: a mail server down
# for longer needs a person, and the reply shows as failed (status, the review console's queue).
MAX_SEND_ATTEMPTS = 300


def refused_for_good(exc: BaseException) -> bool:
    """The SMTP server refused the message with a permanent (5xx) answer: every recipient, or
    the message itself. A 4xx answer, a timeout or a connection error may pass later."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        return bool(exc.recipients) and all(500 <= r.code < 600 for r in exc.recipients)
    return isinstance(exc, aiosmtplib.SMTPResponseException) and 500 <= exc.code < 600


class EmailSettings:
    def __init__(self, imap: ImapSettings, smtp: SmtpSettings, max_bytes: int = 2_000_000,
                 replies_per_sender_per_hour: int = 20, aliases: list[str] | None = None):
        self.imap, self.smtp = imap, smtp
        self.max_bytes = max_bytes
        self.replies_per_sender_per_hour = replies_per_sender_per_hour
        self.aliases = [a.strip().lower() for a in aliases or [] if a.strip()]

    @property
    def own_addresses(self) -> set[str]:
        """Mail from these (or from their +tag forms) is the worker's own and never answered."""
        return {self.smtp.sender.lower(), *self.aliases}


class EmailChannel:
    def __init__(self, conversations: Conversations, db: Database, settings: EmailSettings, backoff_base: float = 1.0):
        self.conversations = conversations
        self.db = db
        self.settings = settings
        self.backoff_base = backoff_base
        self.watcher = InboxWatcher(settings.imap, self.handle_raw, self._cursor_load, self._cursor_save,
                                    max_bytes=settings.max_bytes)
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._database_errors: Counter[str] = Counter()  # per message, within this process

    # -- the inbox cursor -----------------------------------------------------------------

    async def _cursor_load(self) -> tuple[str, int] | None:
        row = await self.db.fetchone("SELECT uidvalidity, last_uid FROM email_cursor WHERE folder = ?", (self.settings.imap.folder,))
        return (row["uidvalidity"], int(row["last_uid"])) if row else None

    async def _cursor_save(self, uidvalidity: str, uid: int) -> None:
        await self.db.execute(
            "INSERT INTO email_cursor (folder, uidvalidity, last_uid) VALUES (?, ?, ?) "
            "ON CONFLICT (folder) DO UPDATE SET uidvalidity = excluded.uidvalidity, last_uid = excluded.last_uid",
            (self.settings.imap.folder, uidvalidity, uid),
        )

    # -- one inbound message --------------------------------------------------------------

    async def handle_raw(self, uidvalidity: str, uid: int, raw: bytes, size: int | None = None) -> None:
        """Process one message. Returns normally whatever the message holds (the watcher then
        moves past it); raises only on a database error, for the supervisor to retry."""
        key = f"{uidvalidity}:{uid}"
        try:
            inbound = parse_email(raw, own_addresses=self.settings.own_addresses, max_bytes=self.settings.max_bytes,
                                  size=size)
        except Exception as exc:  # parse_email degrades rather than raising; this is the last guard
            log.exception("email %s could not be parsed; recorded as failed", key)
            inbound = InboundEmail(message_id=f"<unparsed-{hashlib.sha256(raw).hexdigest()[:32]}@channel-worker>",
                                   size=size or len(raw), problem=f"unreadable: {_reason(exc)}")
        conversation = f"email:{inbound.thread_root}"
        now = utcnow()
        rows = await self.db.batch([
            ("INSERT INTO email_messages (key, message_id, conversation_id, sender, subject, state, created_at, updated_at) "
             "VALUES (?, ?, ?, ?, ?, 'new', ?, ?) ON CONFLICT DO NOTHING",
             (key, inbound.message_id, conversation, inbound.sender, inbound.subject[:500], now, now)),
            ("SELECT key, state FROM email_messages WHERE message_id = ?", (inbound.message_id,)),
        ])
        if rows and rows[0]["state"] != "new":
            return  # seen before (a redelivery, a copy, or a restart after it was answered or failed)
        try:
            await self._process(inbound, conversation)
        except Exception as exc:
            if _is_database_error(exc) and self._database_errors[inbound.message_id] < DATABASE_ATTEMPTS - 1:
                self._database_errors[inbound.message_id] += 1
                raise
            log.exception("email %s from %s could not be processed; recorded as failed", inbound.message_id, inbound.sender)
            await self.db.execute("UPDATE email_messages SET state = 'failed', detail = ?, updated_at = ? WHERE message_id = ?",
                                  (_reason(exc), utcnow(), inbound.message_id))
        self._database_errors.pop(inbound.message_id, None)

    async def _process(self, inbound: InboundEmail, conversation: str) -> None:
        state, detail, body = await self._decide(inbound, conversation)
        if state == "failed":
            log.warning("email %s from %s not processed: %s", inbound.message_id, inbound.sender, detail)
        statements = [("UPDATE email_messages SET state = ?, detail = ?, updated_at = ? WHERE message_id = ?",
                       (state, detail, utcnow(), inbound.message_id))]
        if body:
            reply = build_reply(inbound, body, self.settings.smtp.sender)
            statements.insert(0, (
                "INSERT INTO email_outbox (inbound_key, message_id, recipient, raw, state, attempts, next_attempt_at, created_at) "
                "VALUES (?, ?, ?, ?, 'pending', 0, ?, ?) ON CONFLICT (inbound_key) DO NOTHING",
                (inbound.message_id, reply["Message-ID"], inbound.sender, reply.as_string(), utcnow(), utcnow()),
            ))
        await self.db.batch(statements)
        if body:
            self._wake.set()

    def _line(self, template: str, **extra: str) -> str:
        """A line of the spec's script (every sentence a person reads comes from the spec)."""
        return render(template, self.conversations.spec.fields, {}, **extra)

    async def _decide(self, inbound: InboundEmail, conversation: str) -> tuple[str, str | None, str | None]:
        if inbound.auto_generated:
            log.info("email %s from %s not answered: %s", inbound.message_id, inbound.sender, inbound.auto_generated)
            return "ignored", inbound.auto_generated, None
        if inbound.problem:
            return "failed", inbound.problem, None
        if not inbound.sender.isascii():
            # The reply's To would be mangled into an encoded-word, sent to nobody.
            return "failed", f"cannot reply to {inbound.sender}: internationalised addresses are not supported", None
        hour_ago = utcnow() - timedelta(hours=1)
        row = await self.db.fetchone(
            "SELECT COUNT(*) AS n FROM email_outbox WHERE recipient = ? AND created_at >= ?", (inbound.sender, hour_ago))
        if row and int(row["n"]) >= self.settings.replies_per_sender_per_hour:
            log.warning("email %s: %s got %s replies in the last hour; not answering", inbound.message_id, inbound.sender, row["n"])
            return "rate_limited", f"{row['n']} replies in the last hour", None
        if inbound.size > self.settings.max_bytes:
            limit = self.settings.max_bytes / 1_000_000
            detail = f"too large: {inbound.size} bytes, more than EMAIL_MAX_BYTES ({self.settings.max_bytes}); asked to resend it shorter"
            return "failed", detail, self._line(self.conversations.spec.script.email_too_large, limit=f"{limit:g}")
        if not inbound.new_text:
            return "answered", "no text", self._line(self.conversations.spec.script.email_no_text)
        reply = await self.conversations.reply_after(conversation, "email_message_id", inbound.message_id)  # type: ignore[union-attr]
        if reply is None:
            result = await self.conversations.handle(Turn(
                conversation_id=conversation, channel="email", text=inbound.new_text, time=inbound.date or utcnow(),
                metadata={**summary(inbound), "email_message_id": inbound.message_id},
                # A retry after a crash or a database error stores the message once.
                dedupe_key=f"email:{inbound.message_id}" if inbound.message_id else None,
            ))
            reply = result.reply
        return ("answered", None, reply) if reply else ("no_reply", "the dialogue had nothing to say (handed over?)", None)

    # -- the outbox -----------------------------------------------------------------------

    async def send_due(self) -> int:
        rows = await self.db.fetchall(
            "SELECT * FROM email_outbox WHERE state = 'pending' AND next_attempt_at <= ? ORDER BY id", (utcnow(),))
        sent = 0
        for row in rows:
            # Leased for a little longer than one SMTP attempt may take; a dead process's lease lapses soon.
            lease = timedelta(seconds=self.settings.smtp.timeout * 1.5)
            claimed = await self.db.execute_count(
                "UPDATE email_outbox SET attempts = attempts + 1, next_attempt_at = ? WHERE id = ? AND state = 'pending' AND attempts = ?",
                (utcnow() + lease, row["id"], row["attempts"]),
            )
            if claimed != 1:
                continue
            attempts = int(row["attempts"]) + 1
            message = message_from_string(row["raw"], policy=policy.default)
            smtp = self.settings.smtp
            try:
                context = ssl.create_default_context(cafile=smtp.ca_file) if smtp.tls != "none" else None
                await aiosmtplib.send(
                    message, hostname=smtp.host, port=smtp.port, username=smtp.user, password=smtp.password,
                    use_tls=smtp.tls == "ssl", start_tls=smtp.tls == "starttls", tls_context=context, timeout=smtp.timeout,
                )
            except Exception as exc:  # refused, down, or slow: keep it and try again later
                if refused_for_good(exc) or attempts >= MAX_SEND_ATTEMPTS:
                    # A 5xx refusal (no such mailbox, message rejected) will not change on a retry;
                    # nor, after this many tries, will anything else. Kept, marked failed, logged.
                    await self.db.execute("UPDATE email_outbox SET state = 'failed', last_error = ? WHERE id = ?",
                                          (f"{type(exc).__name__}: {exc}"[:500], row["id"]))
                    log.error("email reply %s to %s given up after %s attempts: %s", row["message_id"], row["recipient"],
                              attempts, exc)
                    continue
                delay = backoff(attempts, self.backoff_base)
                await self.db.execute(
                    "UPDATE email_outbox SET next_attempt_at = ?, last_error = ? WHERE id = ?",
                    (utcnow() + timedelta(seconds=delay), f"{type(exc).__name__}: {exc}"[:500], row["id"]),
                )
                log.warning("email reply %s to %s not accepted (attempt %s): %s", row["message_id"], row["recipient"], attempts, exc)
                continue
            await self.db.execute("UPDATE email_outbox SET state = 'sent', sent_at = ?, last_error = NULL WHERE id = ?",
                                  (utcnow(), row["id"]))
            sent += 1
        return sent

    async def _send_forever(self, interval: float, done: asyncio.Event) -> None:
        while not (self._stop.is_set() or done.is_set()):
            try:
                await self.send_due()
            except Exception:
                log.exception("email outbox pass failed")
            self._wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), interval)

    async def run(self, send_interval: float = 1.0) -> None:
        """Watch the inbox and send replies until stopped. After a crash it can be run again
        (the supervisor does): this run's sender stops with it, the channel itself is not stopped."""
        done = asyncio.Event()
        sender = asyncio.create_task(self._send_forever(send_interval, done))
        try:
            await self.watcher.run()
        finally:
            done.set()
            self._wake.set()
            await sender

    def stop(self) -> None:
        self.watcher.stop()
        self._stop.set()
        self._wake.set()
