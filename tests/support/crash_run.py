"""Kill the SMS worker mid-request, many times, while people text it; count what was lost.

One run: `channel-worker serve` (SQLite, or PostgreSQL with several processes) answers many
conversations at once through signed webhooks, as Twilio sends them. Each message is
delivered again, with the same MessageSid, whenever its delivery got no answer (connection
dropped, refused, 5xx or 15 s timeout), as Twilio does with retries on. Meanwhile the whole
server (every process) is SIGKILLed at random moments and started again. At the end every
person must have exactly one reply per message, from a webhook response or from the REST API
(a local stand-in for Twilio), and the transcript must hold each message once.

Used by tests/test_crash_exactly_once.py (small runs) and bench/kill.py (the figures).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree

import httpx
from twilio.request_validator import RequestValidator

from tests.support.fake_twilio import FakeTwilio
from tests.support.receivers import free_port

ROOT = Path(__file__).resolve().parent.parent.parent
TOKEN = "crash-token-0123456789abcdef0123"
ACCOUNT = "AC" + "c" * 32
SERVICE = "+15005550006"
SCRIPT = ("hi, a table for 4 tomorrow at 7pm", "Maria Lopez", "yes")


@dataclass
class Report:
    database: str
    processes: int
    conversations: int
    messages: int = 0
    kills: int = 0  # SIGKILLs from outside at random moments
    crash_points: int = 0  # deaths at a named worst moment (a crash point fired)
    deliveries: int = 0  # webhook posts, first deliveries and retries
    retries: int = 0
    retried_answered: int = 0  # retries that got the reply (stored, or by taking over a dead claim)
    via_twiml: int = 0
    via_rest: int = 0
    lost: int = 0  # messages that never got a reply
    duplicated: int = 0  # replies beyond one per message
    duplicated_user_turns: int = 0  # a person's message stored more than once
    unfinished: int = 0  # conversations that did not end booked
    slow: int = 0  # replies that came later than the person waited (settle_seconds), so the script stopped
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.lost or self.duplicated or self.duplicated_user_turns or self.unfinished or self.slow)


class Server:
    """`channel-worker serve` in its own process group, so a kill takes every process of it."""

    def __init__(self, env: dict[str, str], processes: int, log: Path):
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = {**{k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "LLM_", "DATABASE_URL"))},
                    "PUBLIC_BASE_URL": self.base_url, "TWILIO_VOICE": "off", **env}
        self.processes = processes
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        self._started_with: dict[str, str] | None = None

    @property
    def started_clean(self) -> bool:
        """The running server was started without crash points."""
        return self._started_with is not None and "CHANNEL_WORKER_CRASH_AT" not in self._started_with

    def start(self) -> None:
        self._started_with = dict(self.env)
        args = [sys.executable, "-m", "worker.cli", "serve", "--worker", "tests/data/specs/restaurant_booking.yaml",
                "--port", str(self.port), "--log-level", "warning"]
        if self.processes > 1:
            args += ["--workers", str(self.processes)]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(args, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)

    async def ready(self, timeout: float = 90.0) -> bool:
        """True once /healthz answers; False if the server died first (killed by a crash point)."""
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=1) as client:
            while time.monotonic() < deadline:
                assert self.process is not None
                if self.process.poll() is not None:
                    if self.process.returncode != -signal.SIGKILL:
                        raise RuntimeError(f"server exited: {self.log.read_text()[-3000:]}")
                    return False
                try:
                    if (await client.get(f"{self.base_url}/healthz")).status_code == 200:
                        return True
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.05)
        raise TimeoutError(f"server not ready: {self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        assert self.process is not None
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


def _reply_of(text: str) -> str | None:
    messages = [m.text or "" for m in ElementTree.fromstring(text).iter("Message")]
    return messages[0] if messages else None


class _Rows:
    """Read the worker's tables directly, as an auditor would."""

    def __init__(self, database_url: str | None, sqlite_path: Path):
        self.url, self.path = database_url, sqlite_path

    def all(self, sql: str) -> list[tuple]:
        if self.url:
            import psycopg

            with psycopg.connect(self.url) as conn:
                return [tuple(r) for r in conn.execute(sql).fetchall()]
        with sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=10) as conn:
            return conn.execute(sql).fetchall()


async def crash_run(
    workdir: Path, *, conversations: int = 20, database_url: str | None = None, processes: int = 1,
    kill_every: tuple[float, float] = (0.2, 1.2), seed: int = 0, settle_seconds: float = 300.0,
    crash_at: str = "sms.after_commit=0.04,sms.after_claim=0.02,turn.after_record=0.02,outbox.after_send=0.1",
    deaths: int = 30,
) -> Report:
    rng = random.Random(seed)
    workdir.mkdir(parents=True, exist_ok=True)
    report = Report("postgresql" if database_url else "sqlite", processes, conversations)
    validator = RequestValidator(TOKEN)
    with FakeTwilio() as twilio:
        env = {"TWILIO_ACCOUNT_SID": ACCOUNT, "TWILIO_AUTH_TOKEN": TOKEN, "TWILIO_API_BASE": twilio.base_url,
               "CHANNEL_WORKER_VAR": str(workdir / "var"),
               # Short enough that a run takes seconds: a dead holder's message is taken over
               # by its retry after budget + 2 s, by recovery after 3 s.
               "SMS_REPLY_BUDGET_SECONDS": "2", "SMS_RECOVERY_AFTER_SECONDS": "3",
               # Besides the random kills, die at the worst moments on purpose (storage/crash_points.py).
               "CHANNEL_WORKER_CRASH_AT": crash_at}
        if database_url:
            env["DATABASE_URL"] = database_url
        server = Server(env, processes, workdir / "server.log")
        rows = _Rows(database_url, workdir / "var" / "transcripts.sqlite")
        server.start()
        if not await server.ready():
            raise RuntimeError("the server died at its first start")
        started = time.monotonic()
        numbers = [f"+1202{uuid.uuid4().int % 10**7:07d}" for _ in range(conversations)]
        received: dict[str, list[str]] = {n: [] for n in numbers}  # TwiML replies per person
        sent: dict[str, int] = {n: 0 for n in numbers}  # messages each person sent
        done = asyncio.Event()
        url = server.base_url + "/twilio/sms"

        def rest_replies(number: str) -> list[str]:
            return [m["Body"] for m in list(twilio.sent) if m.get("To") == number]

        async def deliver(client: httpx.AsyncClient, params: dict[str, str]) -> str | None:
            headers = {"X-Twilio-Signature": validator.compute_signature(url, params)}
            first = True
            while True:
                report.deliveries += 1
                if not first:
                    report.retries += 1
                try:
                    response = await client.post(url, data=params, headers=headers)
                    if response.status_code == 200:
                        reply = _reply_of(response.text)
                        if reply is not None and not first:
                            report.retried_answered += 1
                        return reply
                    if response.status_code < 500:
                        report.problems.append(f"{params['MessageSid']}: HTTP {response.status_code} {response.text[:200]}")
                        return None
                except httpx.HTTPError:
                    pass
                first = False
                await asyncio.sleep(0.2 + rng.random() * 0.3)

        async def converse(client: httpx.AsyncClient, number: str) -> None:
            for i, line in enumerate(SCRIPT):
                await asyncio.sleep(rng.random() * 0.5)
                params = {"MessageSid": "SM" + uuid.uuid4().hex, "AccountSid": ACCOUNT, "From": number, "To": SERVICE,
                          "Body": line, "NumMedia": "0"}
                report.messages += 1
                sent[number] += 1
                reply = await deliver(client, params)
                if reply is not None:
                    received[number].append(reply)
                # Wait for this message's reply (in the response, or later by REST) before the next.
                deadline = time.monotonic() + settle_seconds
                while len(received[number]) + len(rest_replies(number)) < i + 1:
                    if time.monotonic() > deadline:
                        report.slow += 1
                        report.problems.append(f"{number}: no reply to message {i + 1} ({line!r}) "
                                               f"within {settle_seconds:.0f} s; the rest of its script not sent")
                        return
                    await asyncio.sleep(0.1)

        async def killer() -> None:
            # A kill from outside at a random moment, or a crash point firing inside: either
            # way every server process is gone, and the server is started again.
            # After `deaths` of them the server runs on without crash points and is left alone,
            # so every run ends: what is counted then is what the deaths left behind.
            while not done.is_set():
                if report.kills + report.crash_points >= deaths:
                    server.env.pop("CHANNEL_WORKER_CRASH_AT", None)
                wake = time.monotonic() + kill_every[0] + rng.random() * (kill_every[1] - kill_every[0])
                while time.monotonic() < wake and not done.is_set() and server.process.poll() is None:
                    await asyncio.sleep(0.02)
                if done.is_set():
                    return
                if server.process.poll() is None:
                    if report.kills + report.crash_points >= deaths and "CHANNEL_WORKER_CRASH_AT" not in server.env:
                        if server.started_clean:
                            await done.wait()
                            return
                    report.kills += 1
                else:
                    report.crash_points += 1
                server.kill()
                # A crash point may fire again while the server starts (recovery sends at start).
                while True:
                    server.start()
                    if await server.ready():
                        break
                    report.crash_points += 1

        try:
            async with httpx.AsyncClient(timeout=15) as client:
                killing = asyncio.create_task(killer())
                talking = asyncio.gather(*(converse(client, n) for n in numbers))
                # The killer failing (a server that cannot start) must end the run, not stall it.
                await asyncio.wait([killing, talking], return_when=asyncio.FIRST_COMPLETED)
                if killing.done():
                    talking.cancel()
                    killing.result()
                await talking
                done.set()
                await killing
            # Let recovery and the outbox finish whatever the last kill interrupted, then count.
            deadline = time.monotonic() + settle_seconds
            while time.monotonic() < deadline:
                open_rows = rows.all("SELECT COUNT(*) FROM sms_messages WHERE direction = 'in' AND state LIKE 'processing:%'")
                pending = rows.all("SELECT COUNT(*) FROM sms_outbox WHERE state = 'pending'")
                if open_rows[0][0] == 0 and pending[0][0] == 0:
                    break
                await asyncio.sleep(0.2)
            await asyncio.sleep(2.0)  # a straggling duplicate would show up by now
            report.seconds = time.monotonic() - started
            for number in numbers:
                replies = received[number] + rest_replies(number)
                report.via_twiml += len(received[number])
                report.via_rest += len(rest_replies(number))
                # Counted against what was sent: a reply that came after the person gave up waiting
                # (settle_seconds) still counts as delivered, and shows as `slow`.
                report.lost += max(0, sent[number] - len(replies))
                report.duplicated += max(0, len(replies) - sent[number])
            in_counts = dict(rows.all("SELECT conversation_id, COUNT(*) FROM events WHERE direction = 'in' "
                                      "AND text IS NOT NULL GROUP BY conversation_id"))
            report.duplicated_user_turns = sum(max(0, in_counts.get(f"sms:{n}:{SERVICE}", 0) - sent[n]) for n in numbers)
            outcomes = dict(rows.all("SELECT id, outcome FROM conversations"))
            report.unfinished = sum(outcomes.get(f"sms:{n}:{SERVICE}") != "completed" for n in numbers)
        finally:
            server.stop()
    return report
