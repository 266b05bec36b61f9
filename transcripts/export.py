"""Export conversations: JSON lines (one conversation per line, turns nested) or CSV
(one row per event, conversation columns repeated), for reviewers and spreadsheets."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from typing import IO, Literal

from transcripts.store import ExportFilter, TranscriptStore

ExportFormat = Literal["jsonl", "csv"]

CSV_COLUMNS = [
    "conversation_id", "worker", "conversation_channel", "started_at", "conversation_outcome",
    "event_id", "time", "channel", "direction", "text", "fields", "outcome", "escalation_rule", "escalation_reason",
]


async def export(
    store: TranscriptStore,
    out: IO[str],
    fmt: ExportFormat,
    flt: ExportFilter,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write every matching conversation to `out`; returns how many were written."""
    writer = None
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS)
        writer.writeheader()
    n = 0
    async for conv, events in store.iter_conversations(flt):
        if writer is None:
            record = conv.model_dump()
            record["turns"] = [
                {"role": "user" if e.direction == "in" else "worker" if e.direction == "out" else "system",
                 "text": e.text, "time": e.time, "outcome": e.outcome, "escalation": e.escalation}
                for e in events if e.text is not None
            ]
            record["user_turns"] = conv.turns
            # The audit trail travels with the transcript: rules that fired, actions taken or refused.
            record["audit"] = await store.db.fetchall(
                "SELECT time, kind, rule, action, inputs, detail FROM audit WHERE conversation_id = ? ORDER BY id",
                (conv.id,), ("inputs",),
            )
            out.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
        else:
            for e in events:
                writer.writerow({
                    "conversation_id": conv.id, "worker": conv.worker, "conversation_channel": conv.channel,
                    "started_at": conv.started_at, "conversation_outcome": conv.outcome or "",
                    "event_id": e.id, "time": e.time, "channel": e.channel, "direction": e.direction,
                    "text": e.text or "", "fields": json.dumps({k: v.get("value") for k, v in e.fields.items()}, ensure_ascii=False),
                    "outcome": e.outcome or "", "escalation_rule": (e.escalation or {}).get("rule", ""),
                    "escalation_reason": (e.escalation or {}).get("reason", ""),
                })
        n += 1
        if progress:
            progress(1)
    return n
