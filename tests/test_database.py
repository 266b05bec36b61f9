"""The worker's database handle: SQLite work never stalls the event loop, even when another
process holds the database."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from storage.db import Database, WriteConflict
from storage.migrations import migrate


async def test_a_write_that_must_wait_for_another_writer_waits_off_the_event_loop(tmp_path: Path) -> None:
    path = tmp_path / "worker.sqlite"
    db = await Database.open(str(path))
    await migrate(db)
    try:
        # Another program holds SQLite's write lock. It lets go only after the event loop has run
        # twenty more times while our write waits: a write that blocked the loop would never see
        # the lock released (and would fail on its busy timeout instead).
        other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")
        ticks = 0

        async def loop_runs_then_other_commits() -> None:
            nonlocal ticks
            for ticks in range(1, 21):
                await asyncio.sleep(0.01)
            other.execute("COMMIT")

        other_writer = asyncio.create_task(loop_runs_then_other_commits())
        await db.execute("INSERT INTO conversations (id, worker, channel, started_at, updated_at) "
                         "VALUES ('c1', 'w', 'sms', '2026-11-22', '2026-11-22')")
        # It did wait for the other writer, while the event loop kept running.
        assert other_writer.done() and ticks == 20
        other.close()
        assert (await db.fetchone("SELECT id FROM conversations"))["id"] == "c1"
    finally:
        await db.close()


async def test_a_guarded_batch_that_loses_is_rolled_back_whole(tmp_path: Path) -> None:
    db = await Database.open(str(tmp_path / "worker.sqlite"))
    await migrate(db)
    try:
        insert = ("INSERT INTO conversations (id, worker, channel, started_at, updated_at) "
                  "VALUES ('c1', 'w', 'sms', '2026-11-22', '2026-11-22') ON CONFLICT DO NOTHING", ())
        await db.batch([insert], guard=0)
        with pytest.raises(WriteConflict):  # the insert changes no row the second time
            await db.batch([("UPDATE conversations SET turns = 5", ()), insert], guard=1)
        assert (await db.fetchone("SELECT turns FROM conversations"))["turns"] == 0
    finally:
        await db.close()


async def test_the_write_ahead_log_is_started_again_under_steady_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A passive checkpoint copies the log into the database, but SQLite only rewinds the log when
    # a writer begins right after the copy caught up; with writes arriving all the time that
    # never happened, and the log grew without end (4.9 GB after 27,000 turns).
    import storage.db

    monkeypatch.setattr(storage.db, "WAL_CHECKPOINT_SECONDS", 0.05)
    monkeypatch.setattr(storage.db, "WAL_RESTART_FRAMES", 50)
    monkeypatch.setattr(storage.db, "WAL_KEEP_BYTES", 0)
    path = tmp_path / "worker.sqlite"
    db = await Database.open(str(path))
    await migrate(db)
    try:
        written, largest = 0, 0
        loop = asyncio.get_running_loop()
        until = loop.time() + 2.0
        while loop.time() < until:  # a busy server: a write every millisecond or so
            await db.execute("INSERT INTO conversations (id, worker, channel, started_at, updated_at, fields) "
                             "VALUES (?, 'w', 'sms', '2026-11-22', '2026-11-22', ?)", (f"c{written}", "x" * 2000))
            written += 1
            largest = max(largest, Path(f"{path}-wal").stat().st_size)
            await asyncio.sleep(0.001)
        assert db._wal is not None and db._wal.restarts >= 2
        # A few thresholds' worth at most, where all the writes were in it before (a page or
        # more each: the row is 2 kB, with its index entries).
        assert largest < 20 * 50 * 4096 < written * 4096, (largest, written)
    finally:
        await db.close()
