"""Per-turn latency and throughput of the dialogue engine.

Runs the same scripted restaurant conversations through:
  baseline         the worker's LangGraph graph with no checkpointer (state carried by hand)
  pregel+sqlite    the graph run by LangGraph's own loop (`ainvoke`), checkpointed in SQLite:
                   how the engine ran turns before it ran the nodes itself
  engine sqlite    the whole DialogueEngine on SQLite (the default): checkpoint, transcript
                   events and audit rows, in two database round trips per turn
  engine postgres  the same on PostgreSQL (a throwaway server is started on loopback)
  engine tasks     the engine on SQLite with a worker with tasks (tests/data/specs/flows_restaurant.yaml:
                   routing, steps, knowledge, a switch), its actions answered by a booking API on
                   loopback (tests/support/flow_api.py); the time inside the action calls is taken
                   out of each turn, and printed on its own ("engine tasks" is the engine's share)

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

    .venv/bin/python bench/turns.py [--conversations 200] [--no-postgres] [--postgres-url URL] [--no-tasks]
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


TASK_SCRIPTS = [
    ["I'd like to book a table for 2 tomorrow at 8pm", "no", "Maria", "yes"],
    ["table for 8 on Friday at 7pm", "yes", "nuts", "is there parking?", "Tom", "no", "make it 8pm", "yes"],
    ["I need to cancel my booking for Friday", "Ana"],
    ["can I book for saturday", "actually I need to cancel my booking for Friday", "Li", "8pm", "3", "no", "yes"],
]


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


async def run_engine_tasks(url: str, n: int) -> tuple[list[float], list[float]]:
    """(engine time per turn without the action calls, time inside the action calls per turn that made any)."""
    import os

    from tests.support.flow_api import FlowApi

    samples, in_actions = [], []
    with FlowApi() as api:
        os.environ.setdefault("FLOW_API", api.origin)
        os.environ.setdefault("OUTCOME_URL", "http://127.0.0.1:9/outcomes")  # queued, never sent here
        os.environ.setdefault("OUTCOME_SECRET", "bench")
        spec = load_spec(ROOT / "tests" / "data" / "specs" / "flows_restaurant.yaml")
        store = await TranscriptStore.open(url)
        try:
            engine = DialogueEngine(spec, store, handoffs=Handoffs(spec, store, Notifier(store.db)))
            client = engine.flows.actions
            spent = [0.0]
            call = client.run

            async def timed(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202 - the bench's own stopwatch
                t0 = time.perf_counter()
                try:
                    return await call(*args, **kwargs)
                finally:
                    spent[0] += time.perf_counter() - t0

            client.run = timed
            for i in range(n + 8):
                at = START
                for text in [None, *TASK_SCRIPTS[i % len(TASK_SCRIPTS)]]:
                    at += timedelta(seconds=3)
                    spent[0] = 0.0
                    t0 = time.perf_counter()
                    await engine.handle(Turn(conversation_id=f"tasks-{i}", channel="console", text=text, time=at))
                    if i >= 8:  # the first conversations warm the router and the HTTP pool
                        samples.append(time.perf_counter() - t0 - spent[0])
                        if spent[0]:
                            in_actions.append(spent[0])
            await client.aclose()
        finally:
            await store.close()
    return samples, in_actions


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
    parser.add_argument("--no-tasks", action="store_true", help="skip the run of a worker with tasks")
    args = parser.parse_args()
    # The flat restaurant spec (no tasks) these runs have always measured; examples/ now has tasks.
    spec = load_spec(ROOT / "tests" / "data" / "specs" / "restaurant_booking.yaml")
    await run_baseline(spec, 8)  # warm imports and caches before measuring
    rows = [("baseline", await run_baseline(spec, args.conversations))]
    with tempfile.TemporaryDirectory() as tmp:
        rows.append(("pregel+sqlite", await run_pregel(spec, str(Path(tmp) / "pregel.sqlite"), args.conversations)))
        rows.append(("engine sqlite", await run_engine(spec, str(Path(tmp) / "engine.sqlite"), args.conversations)))
        if not args.no_tasks:
            tasks, in_actions = await run_engine_tasks(str(Path(tmp) / "tasks.sqlite"), args.conversations)
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
    if not args.no_tasks:
        rows.append(("engine tasks", tasks))
    report(rows)
    if not args.no_tasks:
        print(f"engine tasks: {len(tasks)} turns of a worker with tasks, action time taken out; "
              f"{len(in_actions)} turns called the booking API on loopback, inside the calls p50 "
              f"{statistics.median(in_actions) * 1e3:.2f} ms, p95 {percentile(in_actions, 0.95) * 1e3:.2f} ms")
    print("durability: " + "; ".join(durability))


if __name__ == "__main__":
    asyncio.run(main())
