"""SQLite commits as the database grows under steady writes, and the size of its write-ahead log.

    .venv/bin/python bench/sqlite_log.py [--blocks 6] [--per-block 1500] [--no-rewind]

Runs whole conversations of the flat restaurant worker (tests/data/specs/restaurant_booking.yaml:
a request, a name, "yes") through the dialogue engine on a fresh SQLite file, back to back, so
the database is written all the time, as under a steady stream of texts. After each block of
conversations it prints the time of the turns' COMMITs (median, p99, max and how many took
over 5 ms), the sizes of the database and its log, and how many times the log was rewound.

`--no-rewind` runs with the rewind switched off (storage.db.WAL_RESTART_FRAMES set out of
reach): the passive checkpoints alone, as before, whose log grew without end under steady
writes. Both in one invocation: run it twice.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import storage.db  # noqa: E402
from dialogue.events import Turn  # noqa: E402
from dialogue.spec_loader import load_spec  # noqa: E402
from worker.config import Settings  # noqa: E402
from worker.runtime import open_engine  # noqa: E402

SCRIPT = ("hi, a table for 4 tomorrow at 7pm please", "Maria Lopez", "yes")


class TimedCommits:
    """The engine's inline connection, with each COMMIT timed (everything else passed through)."""

    def __init__(self, conn: object) -> None:
        self._conn = conn
        self.commits: list[float] = []

    def execute(self, sql: str, params: object = ()) -> object:
        began = time.perf_counter()
        result = self._conn.execute(sql, params)  # type: ignore[attr-defined]
        if sql.startswith("COMMIT"):
            self.commits.append(time.perf_counter() - began)
        return result

    def __getattr__(self, name: str) -> object:
        return getattr(self._conn, name)


async def run(blocks: int, per_block: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        var = Path(tmp) / "var"
        spec = load_spec(ROOT / "tests" / "data" / "specs" / "restaurant_booking.yaml")
        async with open_engine(spec, Settings(var_dir=var)) as engine:
            db = engine.store.db
            timed = TimedCommits(db._inline)
            db._inline = timed  # type: ignore[assignment]
            path = var / "transcripts.sqlite"
            now = datetime(2026, 11, 23, 9, tzinfo=timezone.utc)
            print(f"{'conversations':>13} {'commit p50 ms':>13} {'p99 ms':>7} {'max ms':>7} {'> 5 ms':>6} "
                  f"{'db MB':>7} {'log MB':>7} {'rewinds':>7}")
            for block in range(blocks):
                timed.commits.clear()
                for i in range(block * per_block, (block + 1) * per_block):
                    for text in SCRIPT:
                        await engine.handle(Turn(conversation_id=f"sms:+1{i:09d}", channel="sms", text=text,
                                                 time=now, metadata={}))
                xs = sorted(timed.commits)
                log = Path(f"{path}-wal")
                print(f"{(block + 1) * per_block:>13} {statistics.median(xs) * 1e3:>13.3f} "
                      f"{xs[int(len(xs) * 0.99)] * 1e3:>7.3f} {xs[-1] * 1e3:>7.2f} {sum(x > 0.005 for x in xs):>6} "
                      f"{path.stat().st_size / 2**20:>7.0f} {(log.stat().st_size if log.exists() else 0) / 2**20:>7.0f} "
                      f"{db._wal.restarts if db._wal else 0:>7}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--blocks", type=int, default=6)
    parser.add_argument("--per-block", type=int, default=1500, help="conversations per printed row")
    parser.add_argument("--no-rewind", action="store_true", help="passive checkpoints only, as before")
    args = parser.parse_args()
    if args.no_rewind:
        storage.db.WAL_RESTART_FRAMES = 2**62
    print(f"rewind past {storage.db.WAL_RESTART_FRAMES if not args.no_rewind else 'never'} frames; "
          f"{len(SCRIPT)} turns a conversation, SQLite WAL, synchronous=NORMAL")
    asyncio.run(run(args.blocks, args.per_block))


if __name__ == "__main__":
    main()
