"""The replies people sent from the review console's queue page, read back for the page.

A person's reply is an `out` event whose dedupe key is `human:<idempotency key>` (the same key
as its outbox row in the channel's outbox). Read through the `(conversation_id, dedupe_key)`
index as a key range, so the queue page costs a few index lookups per row whatever the size of
the event log.
"""

from __future__ import annotations

from transcripts.store import Event, TranscriptStore

PREFIX = "human:"


async def human_replies(store: TranscriptStore, conversation_ids: list[str]) -> dict[str, list[Event]]:
    """conversation id -> its people's replies, oldest first."""
    ids = list(dict.fromkeys(conversation_ids))
    if not ids:
        return {}
    marks = ",".join("?" for _ in ids)
    rows = await store.db.fetchall(
        f"SELECT * FROM events WHERE conversation_id IN ({marks}) AND dedupe_key >= ? AND dedupe_key < ? ORDER BY id",
        [*ids, PREFIX, PREFIX[:-1] + chr(ord(PREFIX[-1]) + 1)], ("fields", "escalation", "actions", "metadata"))
    out: dict[str, list[Event]] = {}
    for row in rows:
        out.setdefault(row["conversation_id"], []).append(Event(**row))
    return out
