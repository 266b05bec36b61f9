"""The audit trail: every rule that fired and every action taken or refused, append-only.

The table refuses UPDATE and DELETE itself (a trigger), so the trail cannot be edited by
this code or anyone else with ordinary SQL.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from storage.clock import utcnow
from storage.db import Database, Statement

AuditKind = Literal["rule_fired", "action_taken", "action_refused", "handoff", "notification", "queue", "drift", "review"]


class AuditEntry(BaseModel):
    id: int | None = None
    time: datetime | str = Field(default_factory=utcnow)
    conversation_id: str
    worker: str
    kind: AuditKind
    rule: str | None = None
    action: str | None = None
    inputs: dict[str, Any] = Field(default_factory=dict)
    detail: str | None = None


class AuditTrail:
    def __init__(self, db: Database):
        self.db = db

    async def record(self, entry: AuditEntry) -> None:
        await self.db.execute(
            "INSERT INTO audit (time, conversation_id, worker, kind, rule, action, inputs, detail) VALUES (?, ?, ?, ?, ?, ?, J?, ?)",
            (entry.time, entry.conversation_id, entry.worker, entry.kind, entry.rule, entry.action, entry.inputs, entry.detail),
        )

    async def record_many(self, entries: list[AuditEntry]) -> None:
        if entries:
            await self.db.batch(self.statements(entries))

    @staticmethod
    def statements(entries: list[AuditEntry]) -> list[Statement]:
        """The inserts for `entries`, to commit in the same transaction as what they audit."""
        return [
            ("INSERT INTO audit (time, conversation_id, worker, kind, rule, action, inputs, detail) VALUES (?, ?, ?, ?, ?, ?, J?, ?)",
             (e.time, e.conversation_id, e.worker, e.kind, e.rule, e.action, e.inputs, e.detail))
            for e in entries
        ]

    async def for_conversation(self, conversation_id: str) -> list[AuditEntry]:
        rows = await self.db.fetchall("SELECT * FROM audit WHERE conversation_id = ? ORDER BY id", (conversation_id,), ("inputs",))
        return [AuditEntry(**r) for r in rows]
