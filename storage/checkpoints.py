"""Conversation state as LangGraph checkpoints, kept in the transcript database.

`ConversationSaver` is a LangGraph checkpointer (`BaseCheckpointSaver`) over our own
`Database`, so the graph's `aget_state`, `aupdate_state` and history work as with any saver.
It also hands out the SQL of its reads and writes, so the engine can put a turn's state,
its reply event, its audit rows and the channel's bookkeeping in one transaction: a turn is
stored whole or not at all, in two database round trips.

Concurrency is optimistic: a checkpoint may have only one child (a unique index on the
parent). Two processes that run a turn of the same conversation from the same state cannot
both commit; the loser gets `WriteConflict` and reruns its turn from the winner's state.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import datetime, timezone
from typing import Any

from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    empty_checkpoint,
    get_checkpoint_id,
    get_checkpoint_metadata,
)
from langgraph.checkpoint.base.id import uuid6

from storage.db import Database, Statement

_COLUMNS = "thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata"


def _config(thread_id: str, ns: str, checkpoint_id: str | None) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": checkpoint_id}}


class Saved:
    """The latest checkpoint of a conversation as the engine needs it."""

    __slots__ = ("checkpoint", "checkpoint_id", "step")

    def __init__(self, checkpoint: Checkpoint, checkpoint_id: str | None, step: int):
        self.checkpoint = checkpoint
        self.checkpoint_id = checkpoint_id
        self.step = step

    @property
    def values(self) -> dict[str, Any]:
        return self.checkpoint["channel_values"]


class ConversationSaver(BaseCheckpointSaver[str]):
    def __init__(self, db: Database):
        super().__init__()
        self.db = db

    # -- the engine's fast path: SQL to batch with the rest of the turn --------------------

    def latest_statement(self, thread_id: str) -> Statement:
        return (
            f"SELECT {_COLUMNS} FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = '' "
            "ORDER BY checkpoint_id DESC LIMIT 1",
            (thread_id,),
        )

    def decode_latest(self, rows: list[dict[str, Any]]) -> Saved:
        if not rows:
            return Saved(empty_checkpoint(), None, -1)
        row = rows[0]
        checkpoint = self.serde.loads_typed((row["type"], bytes(row["checkpoint"])))
        return Saved(checkpoint, row["checkpoint_id"], int((row["metadata"] or {}).get("step", -1)))

    def next_checkpoint(self, saved: Saved, updates: dict[str, Any]) -> Checkpoint:
        """The checkpoint LangGraph would write for `aupdate_state(updates, as_node=<last node>)`:
        the written channels get a new version, nothing is scheduled to run next."""
        previous = saved.checkpoint
        versions = dict(previous["channel_versions"])
        # Channels written in one step share one new version, as in LangGraph's own loop.
        version = self.get_next_version(max(versions.values()) if versions else None, None)
        for key in updates:
            versions[key] = version
        return Checkpoint(
            v=previous["v"],
            id=str(uuid6(clock_seq=saved.step + 1)),
            ts=datetime.now(timezone.utc).isoformat(),
            channel_values={**previous["channel_values"], **updates},
            channel_versions=versions,
            versions_seen=previous["versions_seen"],
            pending_sends=[],
            updated_channels=sorted(updates),
        )

    def put_statement(self, thread_id: str, checkpoint: Checkpoint, parent_id: str | None, step: int,
                      source: str = "loop") -> Statement:
        """Insert a checkpoint as the only child of `parent_id`; changes no row if another
        process already wrote one (use it as the batch's guard)."""
        kind, blob = self.serde.dumps_typed(checkpoint)
        return (
            f"INSERT INTO checkpoints ({_COLUMNS}) VALUES (?, '', ?, ?, ?, ?, J?) ON CONFLICT DO NOTHING",
            (thread_id, checkpoint["id"], parent_id, kind, blob, {"source": source, "step": step, "parents": {}}),
        )

    async def histories(self, thread_ids: Sequence[str]) -> dict[str, list[Checkpoint]]:
        """Every checkpoint of these conversations, oldest first, decoded (without pending
        writes): what transcripts/kpis.py backfills a conversation's KPI marks from."""
        if not thread_ids:
            return {}
        marks = ",".join("?" for _ in thread_ids)
        rows = await self.db.fetchall(
            f"SELECT thread_id, type, checkpoint FROM checkpoints WHERE checkpoint_ns = '' AND thread_id IN ({marks}) "
            "ORDER BY thread_id, checkpoint_id", list(thread_ids))
        out: dict[str, list[Checkpoint]] = {t: [] for t in thread_ids}
        for row in rows:
            out[row["thread_id"]].append(self.serde.loads_typed((row["type"], bytes(row["checkpoint"]))))
        return out

    # -- BaseCheckpointSaver ------------------------------------------------------------------

    async def aget_tuple(self, config: dict[str, Any]) -> CheckpointTuple | None:
        conf = config["configurable"]
        thread_id, ns = str(conf["thread_id"]), conf.get("checkpoint_ns", "")
        if checkpoint_id := get_checkpoint_id(config):
            rows = await self.db.fetchall(
                f"SELECT {_COLUMNS} FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?",
                (thread_id, ns, checkpoint_id), ("metadata",))
        else:
            rows = await self.db.fetchall(
                f"SELECT {_COLUMNS} FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = ? "
                "ORDER BY checkpoint_id DESC LIMIT 1", (thread_id, ns), ("metadata",))
        if not rows:
            return None
        return await self._tuple(rows[0])

    async def alist(
        self,
        config: dict[str, Any] | None,
        *,
        filter: dict[str, Any] | None = None,
        before: dict[str, Any] | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        wheres, params = [], []
        if config is not None:
            conf = config["configurable"]
            wheres.append("thread_id = ?")
            params.append(str(conf["thread_id"]))
            if conf.get("checkpoint_ns") is not None:
                wheres.append("checkpoint_ns = ?")
                params.append(conf["checkpoint_ns"])
            if checkpoint_id := get_checkpoint_id(config):
                wheres.append("checkpoint_id = ?")
                params.append(checkpoint_id)
        if before is not None:
            wheres.append("checkpoint_id < ?")
            params.append(get_checkpoint_id(before))
        where = ("WHERE " + " AND ".join(wheres)) if wheres else ""
        rows = await self.db.fetchall(
            f"SELECT {_COLUMNS} FROM checkpoints {where} ORDER BY checkpoint_id DESC", params, ("metadata",))
        yielded = 0
        for row in rows:
            metadata = row["metadata"] or {}
            if filter and any(metadata.get(k) != v for k, v in filter.items()):
                continue
            if limit is not None and yielded >= limit:
                return
            yielded += 1
            yield await self._tuple(row)

    async def aput(
        self, config: dict[str, Any], checkpoint: Checkpoint, metadata: CheckpointMetadata, new_versions: ChannelVersions,
    ) -> dict[str, Any]:
        conf = config["configurable"]
        thread_id, ns = str(conf["thread_id"]), conf.get("checkpoint_ns", "")
        kind, blob = self.serde.dumps_typed(checkpoint)
        meta = get_checkpoint_metadata(config, metadata)
        await self.db.execute(
            f"INSERT INTO checkpoints ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, J?) "
            "ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id) DO UPDATE SET "
            "type = excluded.type, checkpoint = excluded.checkpoint, metadata = excluded.metadata",
            (thread_id, ns, checkpoint["id"], conf.get("checkpoint_id"), kind, blob, meta),
        )
        return _config(thread_id, ns, checkpoint["id"])

    async def aput_writes(
        self, config: dict[str, Any], writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = "",
    ) -> None:
        conf = config["configurable"]
        replace = all(channel in WRITES_IDX_MAP for channel, _ in writes)
        conflict = ("DO UPDATE SET channel = excluded.channel, type = excluded.type, value = excluded.value"
                    if replace else "DO NOTHING")
        statements = []
        for idx, (channel, value) in enumerate(writes):
            kind, blob = self.serde.dumps_typed(value)
            statements.append((
                "INSERT INTO checkpoint_writes (thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, "
                "channel, type, value) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                f"ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id, task_id, idx) {conflict}",
                (str(conf["thread_id"]), conf.get("checkpoint_ns", ""), str(conf["checkpoint_id"]), task_id,
                 task_path, WRITES_IDX_MAP.get(channel, idx), channel, kind, blob),
            ))
        if statements:
            await self.db.batch(statements)

    async def adelete_thread(self, thread_id: str) -> None:
        await self.db.batch([
            ("DELETE FROM checkpoints WHERE thread_id = ?", (str(thread_id),)),
            ("DELETE FROM checkpoint_writes WHERE thread_id = ?", (str(thread_id),)),
        ])

    def get_next_version(self, current: str | None, channel: None) -> str:
        # The same scheme as LangGraph's SQLite and Postgres savers: a counter that sorts as text.
        number = 0 if current is None else (current if isinstance(current, int) else int(str(current).split(".")[0]))
        return f"{number + 1:032}.{random.random():016}"

    async def _tuple(self, row: dict[str, Any]) -> CheckpointTuple:
        thread_id, ns, checkpoint_id = row["thread_id"], row["checkpoint_ns"], row["checkpoint_id"]
        writes = await self.db.fetchall(
            "SELECT task_id, channel, type, value, task_path, idx FROM checkpoint_writes "
            "WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ? ORDER BY task_path, task_id, idx",
            (thread_id, ns, checkpoint_id))
        return CheckpointTuple(
            _config(thread_id, ns, checkpoint_id),
            self.serde.loads_typed((row["type"], bytes(row["checkpoint"]))),
            row["metadata"] or {},
            _config(thread_id, ns, row["parent_checkpoint_id"]) if row["parent_checkpoint_id"] else None,
            [(w["task_id"], w["channel"], self.serde.loads_typed((w["type"], bytes(w["value"])))) for w in writes],
        )

    # LangGraph's sync interface is for sync graphs; the worker is async all the way.
    def get_tuple(self, config: dict[str, Any]) -> CheckpointTuple | None:
        raise NotImplementedError("ConversationSaver is async-only; use aget_tuple")

    def list(self, *args: Any, **kwargs: Any) -> Iterable[CheckpointTuple]:  # noqa: A003
        raise NotImplementedError("ConversationSaver is async-only; use alist")

    def put(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        raise NotImplementedError("ConversationSaver is async-only; use aput")

    def put_writes(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("ConversationSaver is async-only; use aput_writes")
