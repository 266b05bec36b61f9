"""The review console's exports read the conversations the list's filter matches (every page of
it, not one), with their events, in batches, so an export of 100,000 conversations never holds
more than one batch in memory.

The filter is the list's own (`ReviewFilter`, its WHERE clause from transcripts/review_queries.py),
so an export holds exactly what the list shows. Conversations come oldest first by start (a keyset
on (started_at, id), as `TranscriptStore.iter_conversations`), whatever the list's sort: OFFSET
paging over 100,000 rows would read the table again for every batch. `until` caps the start time,
so conversations that begin while an export runs are not added to it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from transcripts.review_queries import ReviewFilter, _where
from transcripts.store import _JSON_CONV, _JSON_EVENT, ConversationRecord, Event, TranscriptStore

_FIRST = "0001-01-01T00:00:00+00:00"


def _bounded(f: ReviewFilter, dialect: str, until: datetime | None) -> tuple[str, list[Any]]:
    where, params = _where(f, dialect)
    if until is not None:
        where = f"{where} AND c.started_at <= ?" if where else " WHERE c.started_at <= ?"
        params = [*params, until]
    return where, params


async def count_matching(store: TranscriptStore, f: ReviewFilter, until: datetime | None = None) -> int:
    where, params = _bounded(f, store.db.dialect, until)
    row = await store.db.fetchone(f"SELECT COUNT(*) AS n FROM conversations c{where}", params)
    return int(row["n"]) if row else 0


async def iter_matching(store: TranscriptStore, f: ReviewFilter, until: datetime | None = None,
                        batch: int = 200) -> AsyncIterator[tuple[ConversationRecord, list[Event]]]:
    """Every conversation the filter matches (started at or before `until`), oldest first, each
    with its events."""
    db = store.db
    where, params = _bounded(f, db.dialect, until)
    last_started, last_id = _FIRST, ""
    keyset = "(c.started_at > ? OR (c.started_at = ? AND c.id > ?))"
    clause = f"{where} AND {keyset}" if where else f" WHERE {keyset}"
    while True:
        rows = await db.fetchall(
            f"SELECT c.* FROM conversations c{clause} ORDER BY c.started_at, c.id LIMIT {int(batch)}",
            [*params, last_started, last_started, last_id], _JSON_CONV)
        if not rows:
            return
        by_conv = await _events_of(store, [r["id"] for r in rows])
        for r in rows:
            yield ConversationRecord(**r), by_conv[r["id"]]
        if len(rows) < batch:
            return
        last_started, last_id = rows[-1]["started_at"], rows[-1]["id"]


async def one(store: TranscriptStore, conversation_id: str) -> AsyncIterator[tuple[ConversationRecord, list[Event]]]:
    """One conversation with its events, as `iter_matching` gives them (nothing if it is gone)."""
    record = await store.conversation(conversation_id)
    if record is not None:
        yield record, await store.events(conversation_id)


async def _events_of(store: TranscriptStore, ids: list[str]) -> dict[str, list[Event]]:
    marks = ",".join("?" for _ in ids)
    rows = await store.db.fetchall(f"SELECT * FROM events WHERE conversation_id IN ({marks}) ORDER BY id", ids,
                                   _JSON_EVENT)
    by_conv: dict[str, list[Event]] = {i: [] for i in ids}
    for e in rows:
        by_conv[e["conversation_id"]].append(Event(**e))
    return by_conv
