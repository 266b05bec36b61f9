"""Answer the messages a crash left unanswered.

A message is recorded before anything else. If the process dies after that (mid-turn, or
after answering Twilio with an empty response while the turn was still running), the row
stays 'processing' and the person would never hear back. At start and every little while,
such rows are taken over (the same compare-and-set claim a redelivery uses, so the dead
holder's writes are fenced off) and answered through the REST outbox, keyed by the inbound
MessageSid, so this can never send two. The turn runs again only if it never committed;
the person's message is stored once either way (its dedupe key).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from channels.seam import Conversations
from channels.sms.segments import shape
from channels.sms.sender import SmsSender
from channels.sms.store import PROCESSING, SmsStore
from dialogue.events import Turn
from storage.clock import utcnow
from storage.db import FenceLost, Statement

log = logging.getLogger(__name__)


async def recover_unanswered(conversations: Conversations, store: SmsStore, sender: SmsSender, max_segments: int,
                             stale_after: float = 60.0) -> int:
    cutoff = utcnow() - timedelta(seconds=stale_after)
    rows: list[dict[str, Any]] = await store.db.fetchall(
        "SELECT * FROM sms_messages WHERE direction = 'in' AND (state LIKE ? OR state = 'failed') "
        "AND updated_at < ? ORDER BY created_at", (f"{PROCESSING}%", cutoff), ("media",),
    )
    recovered = 0
    for row in rows:
        token = await store.take_over(row["sid"], row["state"])
        if token is None:
            continue  # answered or taken meanwhile
        key, sid = row["conversation_id"], row["sid"]

        def finish(reply: str | None) -> list[Statement]:
            shaped = shape(reply, max_segments) if reply else None
            writes = [store.finish_statement(sid, "answered", shaped, claim=token, via="outbox" if shaped else None)]
            if shaped:
                writes.append(store.enqueue_statement(key, row["from_number"], row["to_number"], shaped,
                                                      dedupe_key=f"reply:{sid}"))
            return writes

        try:
            reply = await conversations.reply_after(key, "message_sid", sid)
            if reply is not None:
                await store.db.batch(finish(reply))
            else:
                sent_at = row["created_at"]
                await conversations.handle(
                    Turn(conversation_id=key, channel="sms", text=row["body"] or None,
                         time=datetime.fromisoformat(sent_at) if isinstance(sent_at, str) else sent_at,
                         metadata={"message_sid": sid, "from": row["from_number"], "to": row["to_number"], "recovered": True},
                         dedupe_key=f"sms:{sid}"),
                    after=lambda result: finish(result.reply),
                )
        except FenceLost:
            continue  # a redelivery took it over and answers it
        except Exception as exc:
            gave_up = await store.fail(sid, token, f"{type(exc).__name__}: {exc}")
            log.exception("SMS %s: recovery failed; %s", sid, "given up" if gave_up else "will try again")
            continue
        log.warning("SMS %s: answered after recovery", sid)
        recovered += 1
    if recovered:
        await sender.send_due()
    return recovered



