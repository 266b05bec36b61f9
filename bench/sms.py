"""Load the SMS webhook on loopback with signed requests, as Twilio would.

    .venv/bin/python bench/sms.py [--conversations 1000] [--messages 3] [--concurrency 64] [--workers 1]

Starts `channel-worker serve` (SQLite default, in a temp dir) with the restaurant worker, then
sends `--messages` signed webhook requests per conversation across `--conversations`
conversations (each person waits for the reply before texting again; `--concurrency` people
text at once). Prints requests per second, p50/p95/p99 latency, and checks that every
message got exactly one reply. A baseline of GET /healthz on the same server, in the same
run, shows what the HTTP stack alone costs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
from twilio.request_validator import RequestValidator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.receivers import free_port  # noqa: E402

TOKEN = "bench-token-0123456789abcdef0123"
ACCOUNT = "AC" + "b" * 32
SERVICE = "+15005550006"
SCRIPT = ["hi, a table for 4 tomorrow at 7pm", "Maria Lopez", "yes"]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def run_load(base: str, conversations: int, messages: int, concurrency: int) -> tuple[list[float], int, int, float]:
    url = base + "/twilio/sms"
    validator = RequestValidator(TOKEN)
    plans = []
    for i in range(conversations):
        number = f"+1202{i:07d}"
        plan = []
        for j in range(messages):
            params = {"MessageSid": "SM" + uuid.uuid4().hex, "AccountSid": ACCOUNT, "From": number, "To": SERVICE,
                      "Body": SCRIPT[j % len(SCRIPT)], "NumMedia": "0"}
            plan.append((params, validator.compute_signature(url, params)))
        plans.append(plan)
    latencies: list[float] = []
    replies = missing = 0
    queue: asyncio.Queue[list] = asyncio.Queue()
    for plan in plans:
        queue.put_nowait(plan)

    async def person(session: aiohttp.ClientSession) -> None:
        nonlocal replies, missing
        while not queue.empty():
            plan = queue.get_nowait()
            for params, signature in plan:
                t0 = time.perf_counter()
                async with session.post(url, data=params, headers={"X-Twilio-Signature": signature}) as response:
                    body = await response.text()
                latencies.append(time.perf_counter() - t0)
                count = len(re.findall(r"<Message[ >]", body))
                if response.status == 200 and count == 1:
                    replies += 1
                else:
                    missing += 1

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        start = time.perf_counter()
        await asyncio.gather(*(person(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return latencies, replies, missing, elapsed


async def run_baseline(base: str, requests: int, concurrency: int) -> tuple[list[float], float]:
    latencies: list[float] = []
    remaining = requests

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            t0 = time.perf_counter()
            async with session.get(base + "/healthz") as response:
                await response.read()
            latencies.append(time.perf_counter() - t0)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        start = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
        return latencies, time.perf_counter() - start


def report(name: str, latencies: list[float], elapsed: float) -> None:
    print(f"{name:<22} {len(latencies):>6} {len(latencies) / elapsed:>9.0f} {statistics.median(latencies) * 1e3:>8.1f} "
          f"{percentile(latencies, 0.95) * 1e3:>8.1f} {percentile(latencies, 0.99) * 1e3:>8.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conversations", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL" and not k.startswith("TWILIO_")}
        env.update({"CHANNEL_WORKER_VAR": tmp, "TWILIO_AUTH_TOKEN": TOKEN, "TWILIO_ACCOUNT_SID": ACCOUNT,
                    "PUBLIC_BASE_URL": base, "TWILIO_API_BASE": "http://127.0.0.1:9"})
        server = subprocess.Popen(
            [sys.executable, "-m", "worker.cli", "serve", "--worker", "examples/restaurant_booking.yaml",
             "--port", str(port), "--log-level", "error"], cwd=ROOT, env=env,
        )
        try:
            import httpx

            for _ in range(600):
                try:
                    if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.05)
            asyncio.run(run_load(base, 20, 1, 4))  # warm up
            base_lat, base_elapsed = asyncio.run(run_baseline(base, 2000, args.concurrency))
            lat, replies, missing, elapsed = asyncio.run(run_load(base, args.conversations, args.messages, args.concurrency))
        finally:
            server.terminate()
            server.wait(timeout=30)
    total = args.conversations * args.messages
    print(f"{args.conversations} conversations x {args.messages} messages, {args.concurrency} people texting at once, "
          "SQLite, one server process")
    print(f"{'run':<22} {'reqs':>6} {'req/s':>9} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}")
    report("baseline GET /healthz", base_lat, base_elapsed)
    report("signed SMS webhooks", lat, elapsed)
    print(f"exactly one reply: {replies}/{total}; without a reply or with an error: {missing}")
    print(f"SMS p50 vs baseline p50: {statistics.median(lat) / statistics.median(base_lat):.1f}x")


if __name__ == "__main__":
    main()
