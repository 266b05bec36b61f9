"""One small async database handle over SQLite or PostgreSQL (psycopg).

SQL is written once with `?` placeholders; the PostgreSQL side rewrites them to `%s`.
`J` in SQL marks a JSON parameter (`J?`), stored as TEXT in SQLite and JSONB in
PostgreSQL. Rows come back as dicts with JSON already decoded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from datetime import datetime, timezone
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import queue
import sqlite3
import threading

from storage.safe_text import storable_json

def iso_utc(moment: datetime) -> str:
    """One text form for every stored time, so SQLite compares them correctly as strings."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")


_PLACEHOLDER = re.compile(r"J\?|\?")


def is_postgres_url(url: str | None) -> bool:
    return bool(url) and url.startswith(("postgres://", "postgresql://"))


class WriteConflict(Exception):
    """A guarded statement of a batch changed no row: someone else got there first. The batch
    was rolled back as a whole."""


class FenceLost(Exception):
    """A fenced statement of a batch changed no row: the claim it was made under (an SMS
    message's processing token) was taken over by another process. The batch was rolled back;
    the new holder answers, so the turn must not be run again."""


class Fenced(tuple):
    """A statement that must change a row for its batch to commit (see `FenceLost`)."""

    def __new__(cls, sql: str, params: Sequence[Any]) -> Fenced:
        return super().__new__(cls, (sql, params))


class DatabaseUnavailable(Exception):
    """The configured database cannot be reached; the message says which and why."""


def _redact(url: str) -> str:
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)


async def check_postgres(url: str, timeout: float = 5.0) -> None:
    """Fail fast and clearly, instead of a connection pool waiting out its timeout."""
    import psycopg

    try:
        conn = await psycopg.AsyncConnection.connect(url, connect_timeout=max(2, int(timeout)))
    except psycopg.Error as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise DatabaseUnavailable(f"cannot connect to PostgreSQL at {_redact(url)}: {reason}") from None
    await conn.close()


Statement = tuple[str, Sequence[Any]]


class _SqliteThread:
    """One thread that owns the SQLite connection and runs calls in order. Lighter than a
    one-worker ThreadPoolExecutor: a C queue in, one `call_soon_threadsafe` out, which is
    most of what a turn's database round trip costs."""

    def __init__(self) -> None:
        self._calls: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="sqlite", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._calls.get()
            if item is None:
                return
            loop, future, fn = item
            try:
                result, error = fn(), None
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                result, error = None, exc
            loop.call_soon_threadsafe(_settle, future, result, error)

    def call(self, fn: Any) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._calls.put((loop, future, fn))
        return future

    def stop(self) -> None:
        self._calls.put(None)
        self._thread.join()


# Frames (pages) the log may hold before it is started again from its beginning: 64 MB. Each
# rewind holds writers off for 5-15 ms on this machine (measured under bench/sms.py's load, where
# the log grows about 70 MB a second), so it is worth doing only when the log is long.
WAL_RESTART_FRAMES = 16384
# What the log file is cut back to when it is started again (it is rewritten from its start).
WAL_KEEP_BYTES = 64 * 1024 * 1024
WAL_CHECKPOINT_SECONDS = 1.0


def _writer_lock_path(path: str) -> str:
    """The file every writer of the SQLite file at `path` locks first (the checkpointer too)."""
    return f"{path}.writer-lock"


class _WalCheckpoints:
    """Copies the write-ahead log back into the database every second, beside the writers
    (PASSIVE: it never blocks them), so a commit never pays for it; and starts the log again
    from its beginning once it is long.

    A passive checkpoint alone does not keep the log short under steady writes: SQLite
    rewinds the log only when a writer begins just after everything in it was copied, and
    with commits arriving while the copy runs that moment never comes. The log then grew
    without end (4.9 GB after 27,000 turns) and commits became three times slower
    (bench/sqlite_log.py). Once the log is past `restart_frames`, a RESTART
    checkpoint rewinds it: it holds writers off only while it copies what the passive pass
    just left (5-15 ms; TRUNCATE, which also cuts and syncs the file, took 30-40), and gives
    up after `wait_ms` if a reader is in the way. The writers' connections cut the file back
    to WAL_KEEP_BYTES when they start it again.
    It queues for the writers' file lock first, as a writer does: SQLite's own busy handler
    polls, and against writers that follow each other closely it lost every time."""

    def __init__(self, path: str, every: float | None = None, restart_frames: int | None = None, wait_ms: int = 100):
        self._stop = threading.Event()
        self.restarts = 0
        every = WAL_CHECKPOINT_SECONDS if every is None else every
        restart_frames = WAL_RESTART_FRAMES if restart_frames is None else restart_frames
        self._thread = threading.Thread(target=self._run, args=(path, every, restart_frames, wait_ms),
                                        name="sqlite-wal", daemon=True)
        self._thread.start()

    def _run(self, path: str, every: float, restart_frames: int, wait_ms: int) -> None:
        import fcntl

        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout={int(wait_ms)}")
        writers = open(_writer_lock_path(path), "a+b")  # noqa: SIM115 - closed below
        try:
            while not self._stop.wait(every):
                try:
                    [(_, frames, _)] = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    if frames >= restart_frames:
                        fcntl.flock(writers.fileno(), fcntl.LOCK_EX)
                        try:
                            [(busy, _, _)] = conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
                        finally:
                            fcntl.flock(writers.fileno(), fcntl.LOCK_UN)
                        self.restarts += not busy
                except sqlite3.Error:
                    pass  # busy now; the next round catches up
        finally:
            writers.close()
            conn.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class Database:
    """Async access to the worker's own tables. Create with `await Database.open(url)`.

    SQLite work that cannot wait (no lock held by anyone else, nothing queued before it) runs
    right on the event loop through a connection that never waits (busy_timeout 0): a local
    WAL transaction takes tens of microseconds, less than handing it to a thread. Anything
    that would wait goes to one dedicated database thread with its own connection, in order.
    `batch` runs several statements in one transaction, which is what a turn needs."""

    dialect: str

    def __init__(self) -> None:
        self._sqlite: sqlite3.Connection | None = None
        self._thread: _SqliteThread | None = None
        self._pool: Any = None
        self._path: str | None = None
        self._writer_lock: Any = None
        self._wal: _WalCheckpoints | None = None
        self._inline: sqlite3.Connection | None = None
        self._queued = 0  # calls handed to the database thread and not yet finished

    @classmethod
    async def open(cls, url: str) -> Database:
        db = cls()
        if is_postgres_url(url):
            from psycopg.rows import dict_row
            from psycopg_pool import AsyncConnectionPool

            db.dialect = "postgres"
            await check_postgres(url)
            db._pool = AsyncConnectionPool(
                url, min_size=1, max_size=8, open=False,
                kwargs={"autocommit": True, "row_factory": dict_row, "prepare_threshold": 0},
            )
            await db._pool.open(wait=True)
        else:
            db.dialect = "sqlite"
            path = url.removeprefix("sqlite:///").removeprefix("sqlite://")
            if path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                db._path = path
            db._thread = _SqliteThread()

            def connect() -> sqlite3.Connection:
                conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
                conn.row_factory = sqlite3.Row
                # WAL lets readers (exports, the review UI, other processes) run beside the writer.
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute(f"PRAGMA journal_size_limit={WAL_KEEP_BYTES}")
                conn.execute("PRAGMA busy_timeout=5000")
                if path != ":memory:":
                    # Checkpoints (WAL copied back into the database, with fsyncs) run on their
                    # own connection in the background, not inside whichever commit crosses the
                    # threshold: inline, they stalled every writer for tens of milliseconds.
                    conn.execute("PRAGMA wal_autocheckpoint=0")
                return conn

            db._sqlite = await db._on_thread(connect)
            if path != ":memory:":
                db._writer_lock = open(_writer_lock_path(path), "a+b")  # noqa: SIM115 - held while open
                db._wal = _WalCheckpoints(path)
                # A second connection for work that cannot wait: it never waits for a lock
                # (busy_timeout 0), so running it on the event loop costs microseconds, not a
                # thread hop. Anything that would wait goes to the database thread instead.
                db._inline = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
                db._inline.row_factory = sqlite3.Row
                db._inline.execute("PRAGMA synchronous=NORMAL")
                db._inline.execute(f"PRAGMA journal_size_limit={WAL_KEEP_BYTES}")
                db._inline.execute("PRAGMA wal_autocheckpoint=0")
                db._inline.execute("PRAGMA busy_timeout=0")
        return db

    async def _on_thread(self, fn: Any) -> Any:
        self._queued += 1
        try:
            return await self._thread.call(fn)
        finally:
            self._queued -= 1

    def _try_inline(self, fn: Any, write: bool) -> tuple[bool, Any]:
        """Run `fn(connection)` on the event loop if that cannot block: nothing is queued for
        the database thread (order is kept), and for writes the writer lock is free this very
        moment. Returns (ran, result)."""
        conn = self._inline
        if conn is None or self._queued:
            return False, None
        import fcntl

        if write:
            try:
                fcntl.flock(self._writer_lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False, None  # another process is writing: wait for it on the thread
        try:
            return True, fn(conn)
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            return False, None  # someone outside our lock holds the database: wait on the thread
        finally:
            if write:
                fcntl.flock(self._writer_lock.fileno(), fcntl.LOCK_UN)

    @contextlib.asynccontextmanager
    async def advisory_lock(self, key: int) -> AsyncIterator[None]:
        """Serialise work (such as migrating) across processes: a PostgreSQL advisory lock, or
        for SQLite an exclusive lock on a file beside the database (all its users share a machine)."""
        if self._pool is None:
            if self._path is None:
                yield
                return
            import fcntl

            with open(f"{self._path}.lock-{key}", "a+b") as handle:
                await asyncio.to_thread(fcntl.flock, handle.fileno(), fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            return
        async with self._pool.connection() as conn:
            await conn.execute("SELECT pg_advisory_lock(%s)", (key,))
            try:
                yield
            finally:
                await conn.execute("SELECT pg_advisory_unlock(%s)", (key,))

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """Writers of one SQLite file (several server processes) queue on a file lock. SQLite's
        own busy handler polls with growing sleeps (1, 2, 5 ... 100 ms), which under load put
        tens of milliseconds on the slowest requests; a blocked flock wakes the moment the
        holder lets go. Runs on the database thread."""
        if self._writer_lock is None:
            yield
            return
        import fcntl

        fcntl.flock(self._writer_lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._writer_lock.fileno(), fcntl.LOCK_UN)

    async def close(self) -> None:
        if self._inline is not None:
            self._inline.close()
            self._inline = None
        if self._sqlite is not None:
            conn = self._sqlite
            await self._on_thread(conn.close)
            self._sqlite = None
        if self._thread is not None:
            self._thread.stop()
            self._thread = None
        if self._wal is not None:
            self._wal.stop()
            self._wal = None
        if self._writer_lock is not None:
            self._writer_lock.close()
            self._writer_lock = None
        if self._pool is not None:
            await self._pool.close()

    def _sql(self, sql: str) -> str:
        if self.dialect == "sqlite":
            return _PLACEHOLDER.sub("?", sql)
        return _PLACEHOLDER.sub(lambda m: "%s::jsonb" if m.group(0) == "J?" else "%s", sql.replace("%", "%%"))

    def _params(self, params: Sequence[Any]) -> list[Any]:
        out = []
        for p in params:
            if isinstance(p, (dict, list)):
                p = storable_json(p)
            elif isinstance(p, str) and "\x00" in p:
                # Neither database stores NUL in text (PostgreSQL refuses it); never what a person meant.
                p = p.replace("\x00", "")
            elif isinstance(p, datetime) and self.dialect == "sqlite":
                p = iso_utc(p)
            out.append(p)
        return out

    @staticmethod
    def _decode(rows: list[dict[str, Any]], json_columns: Iterable[str]) -> list[dict[str, Any]]:
        json_columns = tuple(json_columns)
        for row in rows:
            for col, value in row.items():
                if isinstance(value, datetime):
                    row[col] = iso_utc(value)
            for col in json_columns:
                if isinstance(row.get(col), str):
                    row[col] = json.loads(row[col])
        return rows

    async def batch(
        self, statements: Sequence[Statement], json_columns: Iterable[str] = (), guard: int | None = None,
    ) -> list[dict[str, Any]]:
        """Run statements in one transaction; returns the rows of the last one (if it returns rows).

        `guard` is the index of a statement that must change at least one row (an insert with
        ON CONFLICT DO NOTHING, an update with a version check); if it changes none, the whole
        batch is rolled back and `WriteConflict` raised. A `Fenced` statement that changes no
        row rolls the batch back with `FenceLost`."""
        prepared = [(self._sql(sql), self._params(params)) for sql, params in statements]
        fences = {i for i, statement in enumerate(statements) if isinstance(statement, Fenced)}
        if self._sqlite is not None:
            def transaction(conn: sqlite3.Connection) -> list[dict[str, Any]]:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    cursor = None
                    for i, (sql, params) in enumerate(prepared):
                        cursor = conn.execute(sql, params)
                        if cursor.rowcount < 1 and (i == guard or i in fences):
                            raise (WriteConflict if i == guard else FenceLost)(sql.split("(")[0].strip())
                    rows = [dict(r) for r in cursor.fetchall()] if cursor is not None and cursor.description else []
                    conn.execute("COMMIT")
                    return rows
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise

            ran, rows = self._try_inline(transaction, write=True)
            if not ran:
                def run() -> list[dict[str, Any]]:
                    with self._writing():
                        return transaction(self._sqlite)

                rows = await self._on_thread(run)
            return self._decode(rows, json_columns)
        async with self._pool.connection() as conn:
            async with conn.transaction():
                cursor = None
                for i, (sql, params) in enumerate(prepared):
                    cursor = await conn.execute(sql, params)
                    if cursor.rowcount < 1 and (i == guard or i in fences):
                        raise (WriteConflict if i == guard else FenceLost)(sql.split("(")[0].strip())
                rows = list(await cursor.fetchall()) if cursor is not None and cursor.description else []
        return self._decode(rows, json_columns)

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        await self.execute_count(sql, params)

    async def execute_count(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement and return how many rows it changed (for optimistic claims)."""
        if self._sqlite is not None:
            prepared = (self._sql(sql), self._params(params))
            ran, count = self._try_inline(lambda conn: conn.execute(*prepared).rowcount, write=True)
            if ran:
                return count

            def run_one() -> int:
                with self._writing():
                    return self._sqlite.execute(*prepared).rowcount

            return await self._on_thread(run_one)
        async with self._pool.connection() as conn:
            cursor = await conn.execute(self._sql(sql), self._params(params))
            return cursor.rowcount

    async def execute_script(self, statements: Iterable[str]) -> None:
        """Run DDL statements in one transaction (SQLite and PostgreSQL both have transactional DDL)."""
        statements = list(statements)
        if self._sqlite is not None:
            await self.batch([(s, ()) for s in statements])
            return
        if self._pool is not None:
            async with self._pool.connection() as conn:
                async with conn.transaction():
                    for statement in statements:
                        await conn.execute(statement)

    async def fetchall(self, sql: str, params: Sequence[Any] = (), json_columns: Iterable[str] = ()) -> list[dict[str, Any]]:
        if self._sqlite is not None:
            prepared = (self._sql(sql), self._params(params))
            ran, rows = self._try_inline(lambda conn: [dict(r) for r in conn.execute(*prepared).fetchall()], write=False)
            if not ran:
                conn = self._sqlite
                rows = await self._on_thread(lambda: [dict(r) for r in conn.execute(*prepared).fetchall()])
        else:
            async with self._pool.connection() as conn:
                cursor = await conn.execute(self._sql(sql), self._params(params))
                rows = list(await cursor.fetchall())
        return self._decode(rows, json_columns)

    async def fetchone(self, sql: str, params: Sequence[Any] = (), json_columns: Iterable[str] = ()) -> dict[str, Any] | None:
        rows = await self.fetchall(sql, params, json_columns)
        return rows[0] if rows else None
