"""Answer the messages a crash left unanswered.

A message is recorded before anything else. If the process dies after that (mid-turn, or
after answering Twilio with an empty response while the turn was still running), the row
stays 'processing' and the person would never hear back. At start and every little while,
such rows are claimed again: if the turn had finished (its reply is in the transcript), that
reply is sent; otherwise the turn is run now. Replies go through the REST outbox, keyed by
the inbound MessageSid, so this can never send two.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from channels.sms.segments import shape
from channels.sms.sender import SmsSender
from channels.sms.store import SmsStore
from dialogue.engine import DialogueEngine
from dialogue.events import Turn, utcnow

log = logging.getLogger(__name__)


async def recover_unanswered(engine: DialogueEngine, store: SmsStore, sender: SmsSender, max_segments: int,
                             stale_after: float = 60.0) -> int:
    assert engine.store is not None
    cutoff = utcnow() - timedelta(seconds=stale_after)
    rows: list[dict[str, Any]] = await store.db.fetchall(
        "SELECT * FROM sms_messages WHERE direction = 'in' AND (state LIKE 'processing:%' OR state = 'failed') "
        "AND updated_at < ? ORDER BY created_at", (cutoff,), ("media",),
    )
    recovered = 0
    for row in rows:
        claimed = await store.db.execute_count(
            "UPDATE sms_messages SET state = ?, updated_at = ? WHERE sid = ? AND state = ?",
            (f"processing:recovery:{row['sid']}", utcnow(), row["sid"], row["state"]),
        )
        if claimed != 1:
            continue
        key, sid = row["conversation_id"], row["sid"]
        try:
            reply = await engine.store.reply_after(key, "message_sid", sid)
            if reply is None:
                sent_at = row["created_at"]
                result = await engine.handle(Turn(
                    conversation_id=key, channel="sms", text=row["body"] or None,
                    time=datetime.fromisoformat(sent_at) if isinstance(sent_at, str) else sent_at,
                    metadata={"message_sid": sid, "from": row["from_number"], "to": row["to_number"], "recovered": True},
                ))
                reply = result.reply
        except Exception:
            log.exception("SMS %s: recovery failed; will try again", sid)
            await store.finish_inbound(sid, "failed")
            continue
        shaped = shape(reply, max_segments) if reply else None
        if shaped:
            await store.enqueue(key, row["from_number"], row["to_number"], shaped, dedupe_key=f"reply:{sid}")
        await store.finish_inbound(sid, "answered", shaped)
        log.warning("SMS %s: answered after recovery", sid)
        recovered += 1
    if recovered:
        await sender.send_due()
    return recovered
