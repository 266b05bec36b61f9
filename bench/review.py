"""Review console page times with 100,000 stored conversations, on SQLite and PostgreSQL.

Seeds a database with the review tests' real conversations (tests/support/review_seed.py drives
the engine: SMS, email and console, escalated and abandoned) and then N copies of them under new
ids, times and outcomes (every other console copy a phone call with per-turn timings, and the KPI
columns of migration 19 drawn at random), bulk-inserted through transcripts/review_queries.py, with
handoffs for the escalated ones and 2,000 reviewers' labels; starts the console
(`create_review_app`, uvicorn on loopback), logs in as a reviewer and times each page over HTTP
(median and p95 of --repeat requests after two warm-ups). Every page must stay under 300 ms.

    .venv/bin/python bench/review.py [--conversations 100000] [--repeat 20] [--no-postgres] [--no-sqlite] [--pages search]

The PostgreSQL server is the test suite's throwaway one (tests/support/postgres.py: fsync off).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import uvicorn  # noqa: E402

from tests.support.receivers import free_port  # noqa: E402
from tests.support.review_seed import PASSWORD, SMS_LOST, seed, store_url  # noqa: E402
from transcripts.review_queries import insert_conversations  # noqa: E402
from transcripts.store import ConversationRecord, Event, TranscriptStore, voice_latencies  # noqa: E402
from worker.review import create_review_app  # noqa: E402

RULES = ["asks_for_human", "action:freeze_card", "stolen_with_payments", "too_many_reasks"]
OUTCOMES = ["completed", "completed", "escalated", "abandoned", None]
PAGES = [
    ("list, newest first", "/review/conversations"),
    ("list, page 50", "/review/conversations?page=50"),
    ("list, sms + escalated", "/review/conversations?channel=sms&outcome=escalated"),
    ("list, rule", "/review/conversations?rule=asks_for_human"),
    ("list, low confidence", "/review/conversations?low_confidence=yes"),
    ("list, date range", "/review/conversations?since=2026-07-01&until=2026-07-08"),
    ("list, spec version", "/review/conversations?spec_version=bench-2"),
    ("list, sort by turns", "/review/conversations?sort=turns&order=desc"),
    ("list, sort by confidence", "/review/conversations?sort=confidence&order=asc"),
    ("search, phone number", "/review/conversations?q=%2B15550012345"),
    ("search, common words", "/review/conversations?q=lost+my+card"),
    ("search, words found nowhere", "/review/conversations?q=zebra+crossing"),
    ("conversation", f"/review/conversations/{quote(SMS_LOST, safe=':+')}"),
    ("queue, open and claimed", "/review/queue"),
    ("queue, resolved tab", "/review/queue?status=resolved"),
    ("queue, live poll", "LIVE"),  # what an open queue page asks every 5 s (its URL read from the page)
    ("list, task", "/review/conversations?task=dispute"),
    ("KPIs, all time", "/review/kpis"),
    ("KPIs, one worker, a month", "/review/kpis?worker=account_support&since=2026-07-01&until=2026-08-01"),
]
TASKS = ["lost_card", "dispute", "change_address"]
REASKED = ["account_number", "amount", "date", "time", "people"]
OPEN_HANDOFFS, CLAIMED_HANDOFFS = 150, 50  # of the escalated copies; the other escalations resolved or released


async def add_handoffs(store: TranscriptStore) -> int:
    """A handoff for every escalated copy: 150 open, 50 claimed by rita (each with a reply from the
    queue, its turn and its outbox row sent), the rest resolved or released, over the 90 days."""
    rows = await store.db.fetchall(
        "SELECT id, worker, channel, started_at, escalation FROM conversations WHERE outcome = 'escalated' ORDER BY started_at",
        (), ("escalation",))
    statements = []
    for i, r in enumerate(rows):
        live = len(rows) - i  # the newest are still open or claimed
        status = "open" if live <= OPEN_HANDOFFS else "claimed" if live <= OPEN_HANDOFFS + CLAIMED_HANDOFFS else \
            ("released" if i % 5 == 0 else "resolved")
        rule = (r["escalation"] or {}).get("rule", "asks_for_human")
        statements.append((
            "INSERT INTO handoffs (conversation_id, worker, channel, rule, reason, packet, status, claimed_by, note, "
            "created_at, updated_at) VALUES (?, ?, ?, ?, ?, J?, ?, ?, ?, ?, ?)",
            (r["id"], r["worker"], r["channel"], rule, "bench", {"summary": f"bench handoff {i}", "fields": {}}, status,
             "rita" if status != "open" else None, "done" if status == "resolved" else None, r["started_at"], r["started_at"])))
        if status == "claimed" and r["channel"] in ("sms", "email"):
            key = f"human:bench-{i:012d}"
            statements.append((
                "INSERT INTO events (conversation_id, channel, direction, text, time, fields, actions, metadata, dedupe_key) "
                "VALUES (?, ?, 'out', ?, ?, J?, J?, J?, ?)",
                (r["id"], r["channel"], "Hello, this is Rita from the bank.", r["started_at"], {}, [],
                 {"event": "human reply", "human": True, "by": "rita"}, key)))
            if r["channel"] == "sms":
                _, person, service = r["id"].split(":", 2)
                statements.append((
                    "INSERT INTO sms_outbox (conversation_id, to_number, from_number, body, dedupe_key, state, attempts, "
                    "next_attempt_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'sent', 1, ?, ?, ?)",
                    (r["id"], person, service, "Hello, this is Rita from the bank.", key, r["started_at"], r["started_at"],
                     r["started_at"])))
            else:
                statements.append((
                    "INSERT INTO email_outbox (inbound_key, message_id, recipient, raw, state, attempts, next_attempt_at, "
                    "created_at) VALUES (?, ?, ?, ?, 'sent', 1, ?, ?)",
                    (key, f"<{key}@bench>", "person@example.org", "raw", r["started_at"], r["started_at"])))
    for start in range(0, len(statements), 5000):
        await store.db.batch(statements[start:start + 5000])
    return len(rows)


LABELS = 2000


async def add_labels(store: TranscriptStore, rng: random.Random) -> int:
    """Reviewers' labels for the KPI page's labelled accuracy: LABELS values of random conversations
    that hold one, 85 % marked right, one in ten labelled a second time."""
    rows = await store.db.fetchall("SELECT id, fields FROM conversations WHERE min_confidence IS NOT NULL "
                                   f"ORDER BY id LIMIT {LABELS * 20}", (), ("fields",))
    statements = []
    for r in rng.sample(rows, min(LABELS, len(rows))):
        field = next(iter(r["fields"]))
        for _ in range(2 if rng.random() < 0.1 else 1):
            statements.append((
                "INSERT INTO field_labels (conversation_id, field, turn, stored_value, verdict, labelled_by, labelled_at) "
                "VALUES (?, ?, 1, J?, ?, 'rita', ?)",
                (r["id"], field, {"v": "x"}, "right" if rng.random() < 0.85 else "wrong", "2026-09-01T00:00:00+00:00")))
    await store.db.batch(statements)
    return len(statements)


def copies(templates: list[tuple[ConversationRecord, list[Event]]], n: int, rng: random.Random):
    """n conversations shaped like the templates, with new ids, times, outcomes and confidences."""
    base = datetime(2026, 6, 1, tzinfo=timezone.utc)
    kpi = random.Random(11)  # the KPI columns' own draws: the other columns stay as they were before them
    for i in range(n):
        record, events = templates[i % len(templates)]
        start = base + timedelta(seconds=int(i * 90 * 86400 / n) + rng.randrange(60))
        # Every other console copy is a phone call instead, with per-turn timings in its 'call ended'
        # event and their reply latencies on the row (migration 19), so the KPI page has calls to count.
        voice = record.channel == "console" and i % 2 == 0
        if record.channel == "sms":
            cid = f"sms:+1555{i:07d}:+15550000000"
        elif record.channel == "email":
            cid = f"email:<bench{i}@mail.example>"
        elif voice:
            cid = f"voice:CA{i:032d}"
        else:
            cid = f"console-bench-{i}"
        outcome = rng.choice(OUTCOMES)
        escalation = {"rule": rng.choice(RULES), "reason": "bench", "action": "transfer"} if outcome == "escalated" else None
        low = round(rng.uniform(0.5, 1.0), 3)
        shifted = []
        first = datetime.fromisoformat(str(events[0].time))
        for e in events:
            at = start + (datetime.fromisoformat(str(e.time)) - first)
            shifted.append(e.model_copy(update={"conversation_id": cid, "time": at.isoformat(), "id": None,
                                                "channel": "voice" if voice else e.channel,
                                                "dedupe_key": f"{cid}:{e.dedupe_key}" if e.dedupe_key else None}))
        latency = None
        if voice:
            turns = [{"turn": t, "input": "speech", "vad_wait_ms": 600, "hold_ms": kpi.randrange(100, 600),
                      "dialogue_ms": kpi.randrange(5, 80), "tts_first_audio_ms": kpi.randrange(150, 900)}
                     for t in range(1, kpi.randrange(3, 9))]
            latency = str(voice_latencies({"turns": turns}))
            shifted.append(Event(conversation_id=cid, channel="voice", direction="system", text=None,
                                 time=shifted[-1].time, metadata={"event": "call ended", "turns": turns}))
        task = kpi.choice(TASKS) if record.task and record.worker == "account_support" else record.task
        reasked = [kpi.choice(REASKED) for _ in range(kpi.choice([0, 0, 0, 1, 2]))]
        yield (record.model_copy(update={
            "id": cid, "channel": "voice" if voice else record.channel, "started_at": start.isoformat(),
            "updated_at": shifted[-1].time, "outcome": outcome,
            "escalation": escalation, "min_confidence": low if record.fields else None,
            "spec_version": "bench-2" if i % 10 == 0 else "bench-1", "task": task, "tasks": f" {task} " if task else "",
            "confirmed": int(kpi.random() < (0.8 if outcome == "completed" else 0.1)), "reasks": len(reasked),
            "reasked": "".join(f" {f}" for f in reasked), "fallbacks": kpi.choice([0, 0, 1, 2]),
            "voice_latency": latency}), shifted)


async def build(url: str, n: int) -> str:
    await seed(url)
    target = store_url(url)
    store = await TranscriptStore.open(target)
    try:
        templates = []
        for r in await store.db.fetchall("SELECT id FROM conversations ORDER BY id"):
            record = await store.conversation(r["id"])
            templates.append((record, await store.events(r["id"])))
        rng = random.Random(7)
        batch: list = []
        began = time.perf_counter()
        for item in copies(templates, n, rng):
            batch.append(item)
            if len(batch) == 2000:
                await insert_conversations(store, batch)
                batch = []
        if batch:
            await insert_conversations(store, batch)
        handoffs = await add_handoffs(store)
        labels = await add_labels(store, rng)
        await store.db.execute("ANALYZE")
        events = (await store.db.fetchone("SELECT COUNT(*) AS n FROM events"))["n"]
        print(f"  seeded {n:,} conversations ({events:,} events, {handoffs:,} handoffs, {labels:,} labels) in "
              f"{time.perf_counter() - began:.0f} s", flush=True)
    finally:
        await store.close()
    return target


def time_pages(url: str, repeat: int, only: str = "") -> list[tuple[str, float, float, int]]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_review_app(url, "account_support"), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    results = []
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/review/login").text).group(1)
            client.post("/review/login", data={"username": "rita", "password": PASSWORD, "csrf_token": token})
            for name, path in [(n, p) for n, p in PAGES if only in n]:
                if path == "LIVE":  # the queue page's own poll: every row it shows, nothing changed (204)
                    poll = re.search(r'hx-get="(/review/queue/live\?[^"]+)"', client.get("/review/queue").text)
                    path = poll.group(1).replace("&amp;", "&")
                times, rows = [], 0
                for i in range(repeat + 2):
                    began = time.perf_counter()
                    answer = client.get(path)
                    elapsed = (time.perf_counter() - began) * 1000
                    assert answer.status_code in ((204,) if "/live?" in path else (200,)), (path, answer.status_code)
                    rows = answer.text.count("<tr>") - 1 if "/conversations?" in path or path.endswith("conversations") else 0
                    if "/review/queue" in path and "/live?" not in path:
                        rows = answer.text.count('<tr id="handoff-')
                    if i >= 2:
                        times.append(elapsed)
                times.sort()
                p95 = times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))]
                results.append((name, statistics.median(times), p95, rows))
    finally:
        server.should_exit = True
        thread.join(10)
    return results


def report(label: str, results: list[tuple[str, float, float, int]]) -> None:
    print(f"\n{label}")
    print(f"  {'page':30} {'median ms':>10} {'p95 ms':>8} {'rows':>5}")
    for name, median, p95, rows in results:
        flag = "" if p95 < 300 else "  OVER 300 ms"
        print(f"  {name:30} {median:10.1f} {p95:8.1f} {rows:5}{flag}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--conversations", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--pages", default="", help="Only the pages whose name contains this (e.g. search).")
    args = parser.parse_args()
    if not args.no_sqlite:
        folder = Path(tempfile.mkdtemp(prefix="cw-review-bench-"))
        print(f"SQLite ({folder})", flush=True)
        try:
            url = asyncio.run(build(str(folder / "worker.sqlite"), args.conversations))
            report(f"SQLite, {args.conversations:,} conversations", time_pages(url, args.repeat, args.pages))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    if not args.no_postgres:
        from tests.support.postgres import start_postgres

        pg = start_postgres()
        try:
            print("\nPostgreSQL (throwaway server, fsync off)", flush=True)
            url = asyncio.run(build(pg.create_database("review_bench"), args.conversations))
            report(f"PostgreSQL, {args.conversations:,} conversations", time_pages(url, args.repeat, args.pages))
        finally:
            pg.stop()


if __name__ == "__main__":
    main()
