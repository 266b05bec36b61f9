"""The human queue: handoff packets waiting for a person, stored in the database.

A handoff is `open` when created, `claimed` by a person, then `resolved` (done) or
`released` (the worker takes the conversation back).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from escalation.operators import valid_operator_id
from storage.clock import utcnow
from storage.db import Database

Status = Literal["open", "claimed", "resolved", "released"]
_NEXT: dict[str, set[str]] = {
    "claim": {"open", "released"},
    "resolve": {"open", "claimed"},
    "release": {"open", "claimed"},
}


class Handoff(BaseModel):
    id: int
    conversation_id: str
    worker: str
    channel: str
    rule: str
    reason: str
    packet: dict[str, Any]
    status: Status
    claimed_by: str | None = None
    note: str | None = None
    created_at: str
    updated_at: str


class QueueError(Exception):
    """A queue operation that cannot be done (unknown id, wrong state); the message says why."""


class HumanQueue:
    def __init__(self, db: Database):
        self.db = db

    async def open(self, conversation_id: str, worker: str, channel: str, rule: str, reason: str,
                   packet: dict[str, Any]) -> int:
        now = utcnow()
        await self.db.execute(
            "INSERT INTO handoffs (conversation_id, worker, channel, rule, reason, packet, status, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, J?, 'open', ?, ?)",
            (conversation_id, worker, channel, rule, reason, packet, now, now),
        )
        row = await self.db.fetchone(
            "SELECT id FROM handoffs WHERE conversation_id = ? ORDER BY id DESC LIMIT 1", (conversation_id,)
        )
        assert row is not None
        return int(row["id"])

    async def list(self, status: str | None = None, worker: str | None = None) -> list[Handoff]:
        clauses, params = [], []
        if status:
            clauses.append("status = ?")
            params.append(status)
        if worker:
            clauses.append("worker = ?")
            params.append(worker)
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        rows = await self.db.fetchall(f"SELECT * FROM handoffs{where} ORDER BY id", params, ("packet",))
        return [Handoff(**r) for r in rows]

    async def get(self, handoff_id: int) -> Handoff:
        row = await self.db.fetchone("SELECT * FROM handoffs WHERE id = ?", (handoff_id,), ("packet",))
        if row is None:
            raise QueueError(f"no handoff {handoff_id}")
        return Handoff(**row)

    async def open_for(self, conversation_id: str) -> Handoff | None:
        row = await self.db.fetchone(
            "SELECT * FROM handoffs WHERE conversation_id = ? AND status IN ('open', 'claimed') ORDER BY id DESC LIMIT 1",
            (conversation_id,), ("packet",),
        )
        return Handoff(**row) if row else None

    async def _move(self, handoff_id: int, op: str, status: str, claimed_by: str | None = None,
                    note: str | None = None) -> Handoff:
        current = await self.get(handoff_id)
        if current.status not in _NEXT[op]:
            raise QueueError(f"handoff {handoff_id} is {current.status}; it cannot be {op}ed" if op != "release"
                             else f"handoff {handoff_id} is {current.status}; it cannot be released")
        await self.db.execute(
            "UPDATE handoffs SET status = ?, claimed_by = COALESCE(?, claimed_by), note = COALESCE(?, note), "
            "updated_at = ? WHERE id = ? AND status = ?",
            (status, claimed_by, note, utcnow(), handoff_id, current.status),
        )
        moved = await self.get(handoff_id)
        if moved.status != status:
            raise QueueError(f"handoff {handoff_id} changed meanwhile; it is now {moved.status}")
        return moved

    async def claim(self, handoff_id: int, by: str) -> Handoff:
        # The name is shown to people and kept in the audit trail: a plain operator name only.
        if not valid_operator_id(by):
            raise QueueError(f"{by[:80]!r} is not an operator name (1-64 letters, digits or . _ @ -)")
        return await self._move(handoff_id, "claim", "claimed", claimed_by=by)

    async def resolve(self, handoff_id: int, note: str | None = None) -> Handoff:
        return await self._move(handoff_id, "resolve", "resolved", note=note)

    async def release(self, handoff_id: int, note: str | None = None) -> Handoff:
        return await self._move(handoff_id, "release", "released", note=note)
