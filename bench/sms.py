"""Load the SMS webhook on loopback with signed requests, as Twilio would.

    .venv/bin/python bench/sms.py [--conversations 1000] [--messages 3] [--rate 300] [--repeat 3]
                                  [--concurrency 64] [--workers 1,2] [--order burst|steady] [--gap 1]

Starts `channel-worker serve` (SQLite default, in a temp dir) with the restaurant worker and
runs, against the same server in the same run:

  baseline    GET /healthz, closed loop: what the HTTP stack alone costs
  sustained   `--conversations` x `--messages` signed webhooks arriving at a fixed `--rate`
              (open loop, as Twilio delivers them: a message arrives whether or not earlier
              ones are answered). `--order burst` (the default): every person's first
              message, then every second one, and so on, so new conversations arrive at the
              full rate for a third of the run and a person texts again seconds after the
              reply. `--order steady`: new conversations and answers mixed at every moment
              (a third each with the 3-message script), a person's next message `--gap` s
              after the last; the first turn of a worker with tasks (routing, checks) costs
              most, and this is the load a line sees once it is busy. Latency counts from the moment a request was due, so a stalled
              server cannot hide its queue (no coordinated omission). Run `--repeat` times with
              new people each time; the figure is the median run's p99.
  capacity    the same traffic closed loop, `--concurrency` people texting at once, each
              waiting for the reply: the most the server takes.

For each: the offered rate (open loop only), the achieved rate, p50/p95/p99 latency, and a
check that every message got exactly one reply. The achieved rate is requests answered (200 with
exactly one reply; for /healthz, every response) divided by the wall time from the first request
sent to the last response: in an open-loop run it is the server's, not the generator's, figure,
and it falls below the offered rate when the server does not keep up or answers wrongly.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiohttp
from twilio.request_validator import RequestValidator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.receivers import free_port  # noqa: E402

TOKEN = "bench-token-0123456789abcdef0123"
ACCOUNT = "AC" + "b" * 32
SERVICE = "+15005550006"
SCRIPT = ["hi, a table for 4 {day} at {time}", "Maria Lopez", "yes"]
# Each person asks for another slot: all asking for one table, a worker whose task checks and books
# (examples/restaurant_booking.yaml) would find it full after the first ten and take its error
# branch for the rest. 7 days x 20 evening and lunch slots x 10 tables of 4 (examples/booking_api.py).
DAYS = ["tomorrow", "on Monday", "on Tuesday", "on Wednesday", "on Thursday", "on Friday", "on Saturday"]
TIMES = [f"{h % 12 or 12}:{m:02d}pm" for h in range(12, 23) for m in (0, 30) if (h, m) != (20, 0)][:20]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def server_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of the server and its worker processes so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(proc.name) == pid or int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def signed_plans(url: str, conversations: int, messages: int, prefix: str) -> list[list[tuple[dict[str, str], str]]]:
    validator = RequestValidator(TOKEN)
    plans = []
    for i in range(conversations):
        number = f"+1{prefix}{i:07d}"
        plan = []
        for j in range(messages):
            params = {"MessageSid": "SM" + uuid.uuid4().hex, "AccountSid": ACCOUNT, "From": number, "To": SERVICE,
                      "Body": SCRIPT[j % len(SCRIPT)].format(day=DAYS[i % len(DAYS)],
                                                             time=TIMES[(i // len(DAYS)) % len(TIMES)]),
                      "NumMedia": "0"}
            plan.append((params, validator.compute_signature(url, params)))
        plans.append(plan)
    return plans


def exactly_one_reply(status: int, body: str) -> bool:
    return status == 200 and len(re.findall(r"<Message[ >]", body)) == 1


@contextlib.contextmanager
def no_client_gc_pauses() -> Iterator[None]:
    """The load generator's own garbage collection would be timed as the server's latency."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def interleaved(plans: list[list[tuple[dict[str, str], str]]], rate: float,
                gap: float) -> list[tuple[int, dict[str, str], str]]:
    """The steady order: people start in waves of `rate * gap / messages`, and while one wave
    sends its first messages the wave before sends its second, and so on. Every second then
    carries new conversations and answers alike, and each person texts again `gap` s later."""
    messages = len(plans[0])
    wave = max(1, round(rate * gap / messages))
    waves = [plans[k:k + wave] for k in range(0, len(plans), wave)]
    order = []
    for t in range(len(waves) + messages - 1):
        for i in range(wave):
            for j in range(messages):
                if 0 <= t - j < len(waves) and i < len(waves[t - j]):
                    order.append((j, *waves[t - j][i][j]))
    return order


async def run_sustained(base: str, conversations: int, messages: int, rate: float, prefix: str = "303",
                        by_step: dict[int, list[float]] | None = None,
                        gap: float = 0.0) -> tuple[list[float], int, int, float]:
    """`by_step`, when given, collects the latencies of each message of the script (0: the
    request, 1: the name, 2: the "yes") so the slow turn shows. `gap` 0: every first message,
    then every second (a burst of new conversations at the full rate); else the steady order
    (`interleaved`)."""
    by_step = {} if by_step is None else by_step
    url = base + "/twilio/sms"
    plans = signed_plans(url, conversations, messages, prefix)
    order = interleaved(plans, rate, gap) if gap else [(j, *plan[j]) for j in range(messages) for plan in plans]
    latencies: list[float] = []
    replies = missing = 0

    async def send(session: aiohttp.ClientSession, due: float, step: int, params: dict[str, str], signature: str) -> None:
        nonlocal replies, missing
        async with session.post(url, data=params, headers={"X-Twilio-Signature": signature}) as response:
            body = await response.text()
        latencies.append(time.perf_counter() - due)
        by_step.setdefault(step, []).append(latencies[-1])
        if exactly_one_reply(response.status, body):
            replies += 1
        else:
            missing += 1

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=512)) as session:
        # Open the connections first (as Twilio's are long warm): the client's first connect
        # otherwise stalls it for a few hundred ms, and every request due meanwhile counts it.
        for _ in range(3):
            await asyncio.gather(*(session.get(base + "/healthz") for _ in range(32)))
        start = time.perf_counter()
        tasks = []
        for n, (step, params, signature) in enumerate(order):
            due = start + n / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(send(session, due, step, params, signature)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    return latencies, replies, missing, elapsed


async def run_load(base: str, conversations: int, messages: int, concurrency: int) -> tuple[list[float], int, int, float]:
    url = base + "/twilio/sms"
    plans = signed_plans(url, conversations, messages, "202")
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
                if exactly_one_reply(response.status, body):
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


def report(name: str, latencies: list[float], elapsed: float, answered: int, offered: float | None = None) -> None:
    """`answered` requests completed correctly in `elapsed` seconds of wall time: the achieved rate."""
    offer = f"{offered:>10.0f}" if offered is not None else f"{'closed':>10}"
    print(f"{name:<40} {len(latencies):>6} {offer} {answered / elapsed:>9.0f} {statistics.median(latencies) * 1e3:>8.1f} "
          f"{percentile(latencies, 0.95) * 1e3:>8.1f} {percentile(latencies, 0.99) * 1e3:>8.1f}")


def against_server(workers: int, args: argparse.Namespace) -> dict[str, tuple]:
    """Start `serve --workers N` on a fresh SQLite database and run every load against it."""
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL" and not k.startswith("TWILIO_")}
        env.update({"CHANNEL_WORKER_VAR": tmp, "TWILIO_AUTH_TOKEN": TOKEN, "TWILIO_ACCOUNT_SID": ACCOUNT, "TWILIO_VOICE": "off",
                    "PUBLIC_BASE_URL": base, "TWILIO_API_BASE": "http://127.0.0.1:9"})
        booking_api = None
        if "${BOOKING_API_URL}" in (ROOT / args.worker).read_text():
            # A worker whose tasks call the business's system: the example's own, on loopback.
            # Both sides know the outcome deliveries' secret (else every delivery is refused and retried).
            booking_api = subprocess.Popen([sys.executable, "-m", "examples.booking_api", "--port", "0", "--quiet"],
                                           cwd=ROOT, stdout=subprocess.PIPE, text=True,
                                           env={**os.environ, "OUTCOME_WEBHOOK_SECRET": "bench-secret"})
            assert booking_api.stdout is not None
            env.update({"BOOKING_API_URL": booking_api.stdout.readline().rsplit(" ", 1)[1].strip(),
                        "OUTCOME_WEBHOOK_SECRET": "bench-secret"})
        server = subprocess.Popen(
            [sys.executable, "-m", "worker.cli", "serve", "--worker", args.worker,
             "--port", str(port), "--log-level", "error", "--workers", str(workers)], cwd=ROOT, env=env,
        )
        try:
            import httpx

            for _ in range(600):
                try:
                    if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.05)
            asyncio.run(run_load(base, 20 * workers, 1, 4 * workers))  # warm up every process
            with no_client_gc_pauses():
                results = {"baseline": asyncio.run(run_baseline(base, 2000, args.concurrency))}
                cpu = server_cpu_seconds(server.pid)
                business_cpu = server_cpu_seconds(booking_api.pid) if booking_api is not None else 0.0
                by_step: dict[int, list[float]] = {}
                # Repeated with new people each time: this VM's speed drifts by a quarter from
                # one minute to the next, and one run can land on a slow stretch.
                results["sustained"] = [
                    asyncio.run(run_sustained(base, args.conversations, args.messages, args.rate, prefix=f"3{rep}3",
                                              by_step=by_step, gap=args.gap if args.order == "steady" else 0.0))
                    for rep in range(args.repeat)
                ]
                requests = sum(len(r[0]) for r in results["sustained"])
                results["cpu_ms_per_request"] = (server_cpu_seconds(server.pid) - cpu) * 1e3 / requests
                results["business_cpu_ms_per_request"] = (
                    (server_cpu_seconds(booking_api.pid) - business_cpu) * 1e3 / requests if booking_api else None)
                results["by_step"] = by_step
                results["capacity"] = asyncio.run(run_load(base, args.conversations, args.messages, args.concurrency))
            return results
        finally:
            server.terminate()
            server.wait(timeout=30)
            if booking_api is not None:
                booking_api.terminate()
                booking_api.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", default="tests/data/specs/restaurant_booking.yaml",
                        help="the spec served; one whose actions call ${BOOKING_API_URL} gets the example booking "
                             "system started beside it (examples/restaurant_booking.yaml)")
    parser.add_argument("--conversations", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=3)
    parser.add_argument("--rate", type=float, default=300.0, help="arrivals per second in the sustained run")
    parser.add_argument("--order", choices=("burst", "steady"), default="burst",
                        help="burst: every person's first message, then every second one (new conversations "
                             "arrive at the full rate for the first third of the run); steady: new conversations "
                             "and answers mixed throughout, each person texting again --gap s later")
    parser.add_argument("--gap", type=float, default=1.0, help="seconds between one person's messages (steady)")
    parser.add_argument("--concurrency", type=int, default=64, help="people texting at once in the capacity run")
    parser.add_argument("--workers", default="1,2", help="server process counts to measure, comma-separated")
    parser.add_argument("--repeat", type=int, default=3, help="sustained runs per server (the median p99 is the figure)")
    args = parser.parse_args()
    total = args.conversations * args.messages
    print(f"worker {args.worker}: {args.conversations} conversations x {args.messages} messages, {args.order} order, SQLite, "
          "load generator in this process on the same 2 cores")
    print("offered/s: the open-loop arrival rate (closed: each client waits for its answer); done/s: requests "
          "answered correctly / wall time")
    print(f"{'run':<40} {'reqs':>6} {'offered/s':>10} {'done/s':>9} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}")
    for workers in (int(w) for w in args.workers.split(",")):
        results = against_server(workers, args)
        base_lat, base_elapsed = results["baseline"]
        label = f"[{workers} process{'es' if workers > 1 else ''}] "
        report(label + "baseline GET /healthz", base_lat, base_elapsed, len(base_lat))
        print(f"{'':<40} server CPU per webhook in the sustained run: {results['cpu_ms_per_request']:.2f} ms")
        if results["business_cpu_ms_per_request"] is not None:
            print(f"{'':<40} the booking system's CPU per webhook (same 2 cores): "
                  f"{results['business_cpu_ms_per_request']:.2f} ms")
        runs = [(f"sustained #{i + 1}, {args.rate:g} arrivals/s", r, args.rate) for i, r in enumerate(results["sustained"])]
        for name, (lat, replies, missing, elapsed), offered in (
            *runs, (f"capacity, {args.concurrency} texting at once", results["capacity"], None),
        ):
            report(label + name, lat, elapsed, replies, offered)
            print(f"{'':<40} exactly one reply: {replies}/{total}; without a reply or with an error: {missing}; "
                  f"p50 {statistics.median(lat) / statistics.median(base_lat):.1f}x baseline")
        for step, lat in sorted(results["by_step"].items()):
            print(f"{'':<40} message {step + 1} ({SCRIPT[step % len(SCRIPT)][:24]!r}), all sustained runs: "
                  f"p50 {percentile(lat, 0.5) * 1e3:.1f} ms, p99 {percentile(lat, 0.99) * 1e3:.1f} ms")
        p99s = sorted(percentile(r[0], 0.99) * 1e3 for r in results["sustained"])
        print(f"{'':<40} sustained p99 over {len(p99s)} runs: median {statistics.median(p99s):.1f} ms "
              f"(runs: {', '.join(f'{v:.1f}' for v in p99s)})")


if __name__ == "__main__":
    main()
