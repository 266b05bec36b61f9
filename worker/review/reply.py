"""A person's reply to the customer from the queue page, by SMS or by email.

The reply goes through the channel's own outbox (`sms_outbox`, sent by `serve`'s SMS sender loop
with its retries and opt-out check; `email_outbox`, sent by the email channel's loop) and is
stored as a turn of the conversation (direction `out`, metadata `{"event": "human reply",
"human": true, "by": NAME}`), with an audit row, all in one transaction. The form carries an
idempotency key: the outbox row and the turn are keyed by it (`human:<key>`, unique), and the
outbox insert must add a row or the whole transaction is rolled back, so a double submit sends
and stores the reply exactly once.

Who may reply: a reviewer or admin (the route), to a handoff they have claimed themselves and
that is still claimed; an open handoff must be claimed first, one claimed by someone else or no
longer in the queue is refused. The text is the person's to write but never trusted: control
characters are dropped, line breaks normalised, the length bounded (one SMS body; 10,000
characters of email), and no part of it reaches an email header.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from channels.email.headers import clean_text
from channels.email.outbox import EmailOutbox, NotReplyable, human_reply
from channels.sms.store import SmsStore
from escalation.audit import AuditEntry, AuditTrail
from escalation.queue import Handoff
from storage.clock import utcnow
from storage.crash_points import crash_point
from storage.db import Statement, WriteConflict
from transcripts.human_replies import PREFIX, human_replies
from transcripts.store import Event, TranscriptStore

KEY = re.compile(r"[A-Za-z0-9_-]{16,64}")
MAX_CHARS = {"sms": 1600, "email": 10_000}  # Twilio's limit for one message body; a long email
CHANNELS = tuple(MAX_CHARS)


class ReplyRefused(Exception):
    """The reply cannot be sent; the message says why (shown on the page)."""


def can_reply(handoff: Handoff, operator: str) -> bool:
    """Whether the page offers `operator` a reply form on this handoff."""
    return handoff.channel in CHANNELS and handoff.status == "claimed" and handoff.claimed_by == operator


def _checked(handoff: Handoff, body: str, key: str, by: str) -> str:
    if handoff.channel not in CHANNELS:
        raise ReplyRefused(f"replying from the page works on SMS and email conversations, not {handoff.channel}")
    if handoff.status == "open" or handoff.status == "released":
        raise ReplyRefused(f"handoff {handoff.id} is {handoff.status}: claim it first, then reply")
    if handoff.status != "claimed":
        raise ReplyRefused(f"handoff {handoff.id} is {handoff.status}; it is no longer in the queue")
    if handoff.claimed_by != by:
        raise ReplyRefused(f"handoff {handoff.id} is claimed by {handoff.claimed_by}; only they can reply")
    if not KEY.fullmatch(key):
        raise ReplyRefused("the form had no valid idempotency key; reload the page")
    text = clean_text(body).strip()
    limit = MAX_CHARS[handoff.channel]
    if not text or len(text) > limit:
        raise ReplyRefused(f"a reply needs 1 to {limit:,} characters")
    return text


def _turn_and_audit(handoff: Handoff, text: str, dedupe: str, by: str, meta: dict[str, Any]) -> list[Statement]:
    event = Event(conversation_id=handoff.conversation_id, channel=handoff.channel, direction="out", text=text,
                  time=utcnow(), metadata={"event": "human reply", "human": True, "by": by, **meta}, dedupe_key=dedupe)
    return [
        *TranscriptStore.append_statements(event, handoff.worker),
        *AuditTrail.statements([AuditEntry(conversation_id=handoff.conversation_id, worker=handoff.worker,
                                           kind="review", rule=handoff.rule, action="reply",
                                           inputs={"handoff_id": handoff.id, "channel": handoff.channel, "by": by},
                                           detail=f"by {by}")]),
    ]


async def _commit(store: TranscriptStore, statements: list[Statement]) -> bool:
    try:
        await store.db.batch(statements, guard=0)  # statement 0 is the outbox insert
    except WriteConflict:
        return False
    crash_point("review.reply_committed")  # queued and stored; the reviewer's page has not heard back
    return True


async def reply_by_sms(store: TranscriptStore, handoff: Handoff, body: str, key: str, by: str) -> bool:
    """Queue `body` to the person of `handoff`; False if this key was already sent (a double submit)."""
    text = _checked(handoff, body, key, by)
    if not handoff.conversation_id.startswith("sms:") or handoff.conversation_id.count(":") != 2:
        raise ReplyRefused("this SMS conversation has no phone numbers to answer")
    _, person, service = handoff.conversation_id.split(":", 2)
    dedupe = f"{PREFIX}{key}"
    return await _commit(store, [SmsStore.enqueue_statement(handoff.conversation_id, person, service, text, dedupe_key=dedupe),
                                 *_turn_and_audit(handoff, text, dedupe, by, {})])


def _last_email(events: list[Event]) -> Event | None:
    """The person's last email of the conversation (the turn the channel stored from it)."""
    for event in reversed(events):
        if event.direction == "in" and event.channel == "email" and (event.metadata or {}).get("from"):
            return event
    return None


async def reply_by_email(store: TranscriptStore, handoff: Handoff, body: str, key: str, by: str,
                         sender: str | None) -> bool:
    """Queue an email answering the person's last message of `handoff`'s thread; False if this
    key was already sent (a double submit)."""
    text = _checked(handoff, body, key, by)
    if not sender:
        raise ReplyRefused("replying by email needs the email channel's settings here (IMAP_*, SMTP_*, EMAIL_FROM)")
    last = _last_email(await store.events(handoff.conversation_id))
    if last is None:
        raise ReplyRefused("this conversation holds no email from the person to answer")
    meta = last.metadata
    root = handoff.conversation_id.removeprefix("email:")
    in_reply_to = meta.get("email_message_id") or meta.get("message_id")
    try:
        message = human_reply(sender=sender, to=str(meta.get("from") or ""), subject=str(meta.get("subject") or ""),
                              in_reply_to=str(in_reply_to) if in_reply_to else None, thread_root=root, body=text, key=key)
    except NotReplyable as exc:
        raise ReplyRefused(str(exc)) from None
    dedupe = f"{PREFIX}{key}"
    shown = {"subject": str(message["Subject"]), "to": str(message["To"]), "message_id": str(message["Message-ID"])}
    return await _commit(store, [EmailOutbox.enqueue_statement(dedupe, message),
                                 *_turn_and_audit(handoff, text, dedupe, by, shown)])


async def send_reply(store: TranscriptStore, handoff: Handoff, body: str, key: str, by: str,
                     email_from: str | None = None) -> bool:
    if handoff.channel == "email":
        return await reply_by_email(store, handoff, body, key, by, email_from)
    return await reply_by_sms(store, handoff, body, key, by)


@dataclass
class Delivery:
    """A person's reply as the pages show it: who, when, what, and how far it got."""

    key: str
    by: str
    time: str
    text: str
    channel: str
    status: str  # queued, sent, failed
    detail: str | None = None  # why it failed, or why it is waiting (the last refusal)


def delivery_status(channel: str, row: dict[str, Any] | None) -> tuple[str, str | None]:
    """queued / sent / failed from the channel's outbox row (none yet: queued)."""
    if row is None:
        return "queued", None
    state, error = row.get("state"), row.get("last_error")
    if state == "sent":
        return "sent", None
    if state == "suppressed":
        return "failed", "not sent: the person opted out of texts"
    if state == "failed":
        return "failed", error or "refused"
    waiting = error if error and error != "in flight" else None
    return "queued", f"retrying: {waiting}" if waiting and int(row.get("attempts") or 0) > 0 else None


async def statuses(store: TranscriptStore, events: list[Event]) -> dict[str, tuple[str, str | None]]:
    """dedupe key -> (status, detail) of these reply events, from the SMS and email outboxes."""
    keys = {"sms": [e.dedupe_key for e in events if e.channel == "sms" and e.dedupe_key],
            "email": [e.dedupe_key for e in events if e.channel == "email" and e.dedupe_key]}
    rows: dict[str, dict[str, Any]] = {}
    if keys["sms"]:
        rows.update(await SmsStore(store.db).states(keys["sms"]))
    if keys["email"]:
        rows.update(await EmailOutbox(store.db).states(keys["email"]))
    return {e.dedupe_key: delivery_status(e.channel, rows.get(e.dedupe_key))
            for e in events if e.dedupe_key}


async def deliveries(store: TranscriptStore, conversation_ids: list[str]) -> dict[str, list[Delivery]]:
    """conversation id -> the replies people sent to it from the queue, with their delivery status."""
    found = await human_replies(store, conversation_ids)
    states = await statuses(store, [e for events in found.values() for e in events])
    out: dict[str, list[Delivery]] = {}
    for cid, events in found.items():
        for e in events:
            status, detail = states.get(e.dedupe_key or "", ("queued", None))
            out.setdefault(cid, []).append(Delivery(key=e.dedupe_key or "", by=str(e.metadata.get("by") or ""),
                                                    time=str(e.time), text=e.text or "", channel=e.channel,
                                                    status=status, detail=detail))
    return out
