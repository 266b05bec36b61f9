"""Per-turn latency and throughput of the dialogue engine.

Runs the same scripted restaurant conversations through:
  baseline         the worker's LangGraph graph with no checkpointer (state carried by hand)
  pregel+sqlite    the graph run by LangGraph's own loop (`ainvoke`), checkpointed in SQLite:
                   how the engine ran turns before it ran the nodes itself
  engine sqlite    the whole DialogueEngine on SQLite (the default): checkpoint, transcript
                   events and audit rows, in two database round trips per turn
  engine postgres  the same on PostgreSQL (a throwaway server is started on loopback)

and prints p50/p95/p99 per turn, turns per second, and the ratio of each median to the
baseline's, measured in the same process.

Durability, which sets what a commit costs, is not the same in every run, and the output names it:
  SQLite runs      the worker's own settings (storage/db.py): journal_mode=WAL,
                   synchronous=NORMAL (a commit does not wait for fsync; a power cut may lose
                   the last commits, never corrupt the file).
  engine postgres  the throwaway server is the test suite's (tests/support/postgres.py):
                   fsync=off, synchronous_commit=off, full_page_writes=off. Nothing waits for
                   the disk, so these figures are lower than on a production server, where
                   every commit waits for its WAL flush. With --postgres-url the server's own
                   settings apply; they are read back from it and printed either way.

    .venv/bin/python bench/turns.py [--conversations 200] [--no-postgres] [--postgres-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dialogue.engine import DialogueEngine  # noqa: E402
from dialogue.events import Turn  # noqa: E402
from dialogue.graph import build_graph  # noqa: E402
from dialogue.spec_loader import load_spec  # noqa: E402
from escalation.handoff import Handoffs  # noqa: E402
from escalation.notify import Notifier  # noqa: E402
from storage.checkpoints import ConversationSaver  # noqa: E402
from transcripts.store import TranscriptStore  # noqa: E402

SCRIPTS = [
    ["hi", "table for 4 tomorrow at 7pm", "no, make it 5", "Maria", "Lopez", "yes"],
    ["can I book for friday", "half past seven", "a party of six", "my name is Tom Baker", "yes please"],
    ["we are 3 people", "next saturday at 8pm", "Ana", "Silva", "no", "make it 9pm", "yes"],
    ["hello", "tonight", "around 6", "just me", "Li Wei", "correct"],
]
START = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def conversations(n: int):  # noqa: ANN201
    for i in range(n):
        yield f"bench-{i}", [None, *SCRIPTS[i % len(SCRIPTS)]]


async def run_baseline(spec, n: int) -> list[float]:  # noqa: ANN001
    graph = build_graph(spec)
    samples = []
    for _, lines in conversations(n):
        state: dict = {}
        at = START
        for text in lines:
            at += timedelta(seconds=3)
            t0 = time.perf_counter()
            state = await graph.ainvoke({**state, "incoming": {"text": text, "time": at.isoformat(), "channel": "console"}})
            samples.append(time.perf_counter() - t0)
    return samples


async def run_pregel(spec, url: str, n: int) -> list[float]:  # noqa: ANN001
    samples = []
    store = await TranscriptStore.open(url)
    try:
        graph = build_graph(spec, checkpointer=ConversationSaver(store.db))
        for key, lines in conversations(n):
            config = {"configurable": {"thread_id": key}}
            at = START
            for text in lines:
                at += timedelta(seconds=3)
                t0 = time.perf_counter()
                await graph.ainvoke({"incoming": {"text": text, "time": at.isoformat(), "channel": "console"}},
                                    config, durability="exit")
                samples.append(time.perf_counter() - t0)
    finally:
        await store.close()
    return samples


async def run_engine(spec, url: str, n: int) -> list[float]:  # noqa: ANN001
    samples = []
    store = await TranscriptStore.open(url)
    try:
        engine = DialogueEngine(spec, store, handoffs=Handoffs(spec, store, Notifier(store.db)))
        for key, lines in conversations(n):
            at = START
            for text in lines:
                at += timedelta(seconds=3)
                t0 = time.perf_counter()
                await engine.handle(Turn(conversation_id=key, channel="console", text=text, time=at))
                samples.append(time.perf_counter() - t0)
    finally:
        await store.close()
    return samples


def report(rows: list[tuple[str, list[float]]]) -> None:
    base = statistics.median(rows[0][1])
    print(f"{'run':<16} {'turns':>6} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'turns/s':>9} {'p50 vs baseline':>16}")
    for name, samples in rows:
        p50 = statistics.median(samples)
        print(
            f"{name:<16} {len(samples):>6} {p50 * 1e3:>8.2f} {percentile(samples, 0.95) * 1e3:>8.2f} "
            f"{percentile(samples, 0.99) * 1e3:>8.2f} {len(samples) / sum(samples):>9.0f} {p50 / base:>15.1f}x"
        )


SQLITE_DURABILITY = "journal_mode=WAL, synchronous=NORMAL (the worker's own settings)"


def postgres_durability(url: str) -> str:
    """The server's durability settings, read back from it rather than assumed."""
    import psycopg

    with psycopg.connect(url) as conn:
        values = [conn.execute(f"SHOW {name}").fetchone()[0] for name in ("fsync", "synchronous_commit", "full_page_writes")]
    return "fsync={}, synchronous_commit={}, full_page_writes={}".format(*values)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conversations", type=int, default=200)
    parser.add_argument("--no-postgres", action="store_true", help="skip the PostgreSQL run")
    parser.add_argument("--postgres-url", help="use this PostgreSQL instead of starting one")
    args = parser.parse_args()
    spec = load_spec(ROOT / "examples" / "restaurant_booking.yaml")
    await run_baseline(spec, 8)  # warm imports and caches before measuring
    rows = [("baseline", await run_baseline(spec, args.conversations))]
    with tempfile.TemporaryDirectory() as tmp:
        rows.append(("pregel+sqlite", await run_pregel(spec, str(Path(tmp) / "pregel.sqlite"), args.conversations)))
        rows.append(("engine sqlite", await run_engine(spec, str(Path(tmp) / "engine.sqlite"), args.conversations)))
    durability = [f"SQLite runs: {SQLITE_DURABILITY}"]
    if not args.no_postgres:
        server = None
        url = args.postgres_url
        if url is None:
            from tests.support.postgres import start_postgres

            server = start_postgres()
            url = server.url
        try:
            rows.append(("engine postgres", await run_engine(spec, url, args.conversations)))
            started = "throwaway server started by the benchmark" if server is not None else "server at --postgres-url"
            durability.append(f"engine postgres: {postgres_durability(url)} ({started})")
        finally:
            if server is not None:
                server.stop()
    print(f"{args.conversations} scripted restaurant conversations, {len(rows[0][1])} turns per run")
    report(rows)
    print("durability: " + "; ".join(durability))


if __name__ == "__main__":
    asyncio.run(main())
