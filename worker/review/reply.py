"""A person's reply to the customer from the queue page, on SMS.

The reply goes through the SMS channel's own outbox (`sms_outbox`, sent by `serve`'s sender loop
with its retries and opt-out check) and is stored as a turn of the conversation (direction `out`,
metadata `{"event": "human reply", "human": true, "by": NAME}`), with an audit row, all in one
transaction. The form carries an idempotency key: the outbox row and the turn are keyed by it
(unique), and the outbox insert must add a row or the whole transaction is rolled back, so a
double submit sends and stores the reply exactly once.
"""

from __future__ import annotations

import re

from channels.sms.store import SmsStore
from escalation.audit import AuditEntry, AuditTrail
from escalation.queue import Handoff
from storage.clock import utcnow
from storage.db import WriteConflict
from transcripts.store import Event, TranscriptStore

KEY = re.compile(r"[A-Za-z0-9_-]{16,64}")
MAX_CHARS = 1600  # Twilio's limit for one message body


class ReplyRefused(Exception):
    """The reply cannot be sent; the message says why (shown on the page)."""


async def reply_by_sms(store: TranscriptStore, handoff: Handoff, body: str, key: str, by: str) -> bool:
    """Queue `body` to the person of `handoff`; False if this key was already sent (a double submit)."""
    if handoff.channel != "sms" or not handoff.conversation_id.startswith("sms:"):
        raise ReplyRefused("replying from the page works on SMS conversations only for now")
    if handoff.status not in ("open", "claimed"):
        raise ReplyRefused(f"handoff {handoff.id} is {handoff.status}; claim it again to reply")
    if not KEY.fullmatch(key):
        raise ReplyRefused("the form had no valid idempotency key; reload the page")
    body = body.strip()
    if not body or len(body) > MAX_CHARS:
        raise ReplyRefused(f"a reply needs 1 to {MAX_CHARS} characters")
    _, person, service = handoff.conversation_id.split(":", 2)
    dedupe = f"human:{key}"
    event = Event(conversation_id=handoff.conversation_id, channel="sms", direction="out", text=body, time=utcnow(),
                  metadata={"event": "human reply", "human": True, "by": by}, dedupe_key=dedupe)
    statements = [
        SmsStore.enqueue_statement(handoff.conversation_id, person, service, body, dedupe_key=dedupe),
        *TranscriptStore.append_statements(event, handoff.worker),
        *AuditTrail.statements([AuditEntry(conversation_id=handoff.conversation_id, worker=handoff.worker,
                                           kind="review", rule=handoff.rule, action="reply",
                                           inputs={"handoff_id": handoff.id, "channel": "sms", "by": by},
                                           detail=f"by {by}")]),
    ]
    try:
        await store.db.batch(statements, guard=0)
    except WriteConflict:
        return False
    return True
