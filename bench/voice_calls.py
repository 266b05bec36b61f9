"""Whole booking calls answered the way people answer on the phone: a few words at a time.

    .venv/bin/python bench/voice_calls.py [--calls 8] [--baseline-start 0.2]

Each call rings `channel-worker serve` (tests/data/specs/restaurant_booking.yaml, TWILIO_VOICE=on)
over Twilio Media Streams, signed as Twilio signs. The caller asks for a table, then answers each
question in one to three words (a day, a time, a party size, a first name, a last name, "yes"), in
one of four espeak-ng voices, at real-time pace, waiting for the worker to finish each line. What
the worker asked is read from its own transcript (not recognised again), so the caller always
answers the question really asked.

Per call it measures what was understood as well as how fast:
  completed     the call ended with the booking confirmed (outcome `completed`)
  no re-ask     completed with no question asked again and no answer lost (issue 18: >= 9 in 10)
  right         each stored value equals what the caller said (date, time, people, names)
  lost turns    answers the worker never took as a turn (it said "are you still there?")
  re-asks       questions asked again after an answer ("Sorry, I didn't catch that")
  repeated      stored turns holding a run of words twice ("Maria Maria")
  latency       from the caller's last voiced frame to the first frame of the reply

The same calls run against a baseline server in the same process: the speech detector at
pipecat's defaults (a turn starts after 0.2 s of speech at volume 0.6) instead of the worker's
0.1 s at 0.4.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from channels.voice.audio import read_wav  # noqa: E402
from tests.support.media_stream import Caller  # noqa: E402
from tests.support.server import WorkerServer  # noqa: E402
from tqdm import tqdm  # noqa: E402

TOKEN = "bench-calls-token-0123456789abcd"
SPEC = "tests/data/specs/restaurant_booking.yaml"
VOICES = ["en-us", "en-gb", "en-gb+f3", "en-us+m3"]
FIRST = ["Maria", "John", "Anna", "David", "Sarah", "Peter", "Laura", "James"]
LAST = ["Brown", "Lopez", "Smith", "Taylor", "Wilson", "Clark", "Walker", "Young"]
TIMES = [("Seven pm", "19:00"), ("Eight pm", "20:00"), ("Six thirty", "18:30"), ("Half past seven", "19:30")]
PEOPLE = [("Two", 2), ("Four", 4), ("Six", 6), ("Three", 3)]
DAYS = [("Tomorrow", 1), ("Friday", None), ("Saturday", None)]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def expected_date(word: str, offset: int | None, today: date) -> str:
    if offset is not None:
        return (today + timedelta(days=offset)).isoformat()
    ahead = (WEEKDAYS.index(word) - today.weekday()) % 7 or 7
    return (today + timedelta(days=ahead)).isoformat()


def speech(text: str, voice: str, folder: Path) -> tuple[np.ndarray, int]:
    path = folder / f"{abs(hash((text, voice)))}.wav"
    if not path.exists():
        subprocess.run(["espeak-ng", "-v", voice, "-s", "150", "-w", str(path), text], check=True)
    return read_wav(path)


def last_said(server: WorkerServer, call_sid: str) -> str:
    with sqlite3.connect(f"file:{server.var / 'transcripts.sqlite'}?mode=ro", uri=True) as conn:
        row = conn.execute("SELECT text FROM events WHERE conversation_id = ? AND direction = 'out' AND text IS NOT NULL "
                           "ORDER BY id DESC LIMIT 1", (f"voice:{call_sid}",)).fetchone()
    return (row[0] if row else "").lower()


def repeated(text: str) -> bool:
    words = re.findall(r"[a-z0-9']+", text.lower())
    return any(words[i:i + n] == words[i + n:i + 2 * n] for n in (1, 2, 3) for i in range(len(words) - 2 * n + 1))


async def one_call(server: WorkerServer, n: int, folder: Path) -> dict:
    rng = random.Random(n)
    voice = VOICES[n % len(VOICES)]
    first, last = rng.choice(FIRST), rng.choice(LAST)
    (time_words, time_value), (people_words, people_value) = rng.choice(TIMES), rng.choice(PEOPLE)
    day_words, offset = rng.choice(DAYS)
    answers = [("is that right", "Yes"), ("last name", last), ("first name", first), ("name", first),
               ("time", time_words), ("how many", people_words), ("day", day_words)]
    latencies, lost, reasks = [], 0, 0
    async with Caller(server.base_url, TOKEN) as caller:
        await caller.listen(timeout=60)  # the greeting
        spoke_until = await caller.say(*speech("I would like to book a table please", voice, folder))
        for _ in range(14):
            await caller.listen(timeout=60, quiet_for=1.2)
            answered_at = caller.first_audio_after(spoke_until)
            said = last_said(server, caller.call_sid)
            if "still there" in said:
                lost += 1
            elif answered_at is not None:
                latencies.append(answered_at - spoke_until)
            if "sorry" in said:
                reasks += 1
            if caller.ended or "booked" in said or "goodbye" in said:
                break
            answer = next((a for question, a in answers if question in said), "Sorry?")
            spoke_until = await caller.say(*speech(answer, voice, folder))
        try:
            await caller.hung_up(timeout=20)
        except TimeoutError:
            pass
    time.sleep(0.3)
    with sqlite3.connect(f"file:{server.var / 'transcripts.sqlite'}?mode=ro", uri=True) as conn:
        outcome, fields, started = conn.execute("SELECT outcome, fields, started_at FROM conversations WHERE id = ?",
                                                (f"voice:{caller.call_sid}",)).fetchone()
        turns = [t for (t,) in conn.execute("SELECT text FROM events WHERE conversation_id = ? AND direction = 'in' "
                                             "AND text IS NOT NULL", (f"voice:{caller.call_sid}",))]
    today = datetime.fromisoformat(started).astimezone(ZoneInfo("Europe/London")).date()
    stored = {k: v["value"] for k, v in json.loads(fields or "{}").items()}
    want = {"date": expected_date(day_words, offset, today), "time": time_value, "people": people_value,
            "first_name": first, "last_name": last}
    right = {k: str(stored.get(k)).lower() == str(v).lower() for k, v in want.items()}
    return {"voice": voice, "completed": outcome == "completed", "right": right, "lost": lost, "reasks": reasks,
            "repeated": sum(repeated(t) for t in turns), "latencies": latencies}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] if ordered else float("nan")


def run(label: str, start_secs: float, min_volume: float, calls: int, folder: Path) -> dict:
    server = WorkerServer(SPEC, {"TWILIO_ACCOUNT_SID": "AC" + "0" * 32, "TWILIO_AUTH_TOKEN": TOKEN, "TWILIO_VOICE": "on",
                                 "TWILIO_API_BASE": "http://127.0.0.1:9", "VOICE_SPEECH_START_SECONDS": str(start_secs),
                                 "VOICE_SPEECH_MIN_VOLUME": str(min_volume)},
                          folder / f"var-{label}")
    try:
        server.wait_ready(timeout=180)
        results = [asyncio.run(one_call(server, n, folder)) for n in tqdm(range(calls), desc=label, unit="call",
                                                                          file=sys.stderr)]
    finally:
        server.stop()
    values = [ok for r in results for ok in r["right"].values()]
    latencies = [x for r in results for x in r["latencies"]]
    summary = {"calls": calls, "completed": sum(r["completed"] for r in results),
               "clean": sum(r["completed"] and not r["reasks"] and not r["lost"] for r in results),
               "values_right": sum(values), "values": len(values), "lost": sum(r["lost"] for r in results),
               "reasks": sum(r["reasks"] for r in results), "repeated": sum(r["repeated"] for r in results),
               "p50": statistics.median(latencies) * 1e3 if latencies else float("nan"),
               "p95": percentile(latencies, 0.95) * 1e3}
    wrong = sorted({k for r in results for k, ok in r["right"].items() if not ok})
    print(f"{label:<32} {summary['completed']:>3}/{calls:<3} {summary['clean']:>4}/{calls:<3} "
          f"{summary['values_right']:>3}/{summary['values']:<3} "
          f"{summary['lost']:>5} {summary['reasks']:>7} {summary['repeated']:>8} {summary['p50']:>7.0f} {summary['p95']:>7.0f}"
          f"   wrong fields: {', '.join(wrong) or 'none'}")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=8, help="calls per server (one at a time)")
    parser.add_argument("--baseline-start", type=float, default=0.2,
                        help="the baseline's speech start period (pipecat's default); the worker uses 0.1")
    parser.add_argument("--baseline-volume", type=float, default=0.6,
                        help="the baseline's minimum speech volume (pipecat's default); the worker uses 0.4")
    parser.add_argument("--no-baseline", action="store_true", help="run the worker's settings only")
    parser.add_argument("--keep", type=Path, default=None,
                        help="keep each server's database and log in this folder (to read the calls afterwards)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        print(f"{args.calls} booking calls per server, answered in short words, four espeak-ng voices")
        print(f"{'server':<32} {'completed':>7} {'no re-ask':>8} {'values right':>8} {'lost':>5} {'re-asks':>7} {'repeated':>8} "
              f"{'p50 ms':>7} {'p95 ms':>7}")
        base = None if args.no_baseline else run(
            f"baseline ({args.baseline_start:g} s, {args.baseline_volume:g})", args.baseline_start,
            args.baseline_volume, args.calls, folder)
        now = run("worker (0.1 s, 0.4)", 0.1, 0.4, args.calls, folder)
        if args.keep:
            print(f"databases and logs kept in {folder}")
        if base is None:
            return
        if base["completed"]:
            print(f"completed calls, worker / baseline: {now['completed'] / base['completed']:.2f}x")
        if base["p50"] == base["p50"]:
            print(f"latency p50, worker / baseline: {now['p50'] / base['p50']:.2f}x")


if __name__ == "__main__":
    main()
