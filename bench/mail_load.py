"""The email channel under load, and under SIGKILL.

    .venv/bin/python bench/mail_load.py [--threads 100] [--per-thread 5]

Starts a real Dovecot and an aiosmtpd SMTP server on loopback and `channel-worker serve` with
the email channel, appends threads x per-thread messages to the inbox, and times until every
message has its reply accepted by SMTP. A second run kills the worker with SIGKILL twice during
the batch (restarting it each time) and reports lost replies (a message never answered),
duplicate deliveries (more than one reply accepted for one inbound message) and second, different
replies (an inbound message answered with two different texts: compared by body, since a reply's
Message-ID is derived from the inbound one and would always match), target 0 of each, with the
throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from email import message_from_bytes, policy
from email.message import EmailMessage, Message
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from channels.email.imap import ImapSettings, connect  # noqa: E402
from tests.support.dovecot import PASSWORD, USER, start_dovecot  # noqa: E402
from tests.support.receivers import FlakySmtp, free_port  # noqa: E402

WORKER = "bookings@luigi.example"
LINES = ["Hi, a table for 4 tomorrow at 7pm please", "Maria Lopez", "actually make it 5 people", "yes", "thanks!"]


def messages(threads: int, per_thread: int, tag: str) -> list[bytes]:
    out = []
    for t in range(threads):
        root = f"<{tag}-t{t}-m0@example.org>"
        for k in range(per_thread):
            msg = EmailMessage()
            msg["From"] = f"Person {t} <p{t}@example.org>"
            msg["To"] = WORKER
            msg["Subject"] = "Booking" if k == 0 else "Re: Booking"
            msg["Message-ID"] = f"<{tag}-t{t}-m{k}@example.org>"
            msg["Date"] = "Mon, 23 Nov 2026 09:00:00 +0000"
            if k:
                msg["In-Reply-To"] = f"<{tag}-t{t}-m{k - 1}@example.org>"
                msg["References"] = root
            msg.set_content(LINES[k % len(LINES)])
            out.append(msg.as_bytes())
    return out


async def append_all(settings: ImapSettings, raws: list[bytes]) -> None:
    client = await connect(settings)
    try:
        for raw in raws:
            await client.append(raw, mailbox=settings.folder)
    finally:
        await client.logout()


def start_worker(env: dict[str, str], port: int, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "serve", "--worker", "tests/data/specs/restaurant_booking.yaml", "--port", str(port),
         "--log-level", "warning"], cwd=ROOT, env=env, stdout=open(log, "a"), stderr=subprocess.STDOUT,
    )


def run(threads: int, per_thread: int, kills: int, dovecot, tag: str) -> dict:  # noqa: ANN001
    total = threads * per_thread
    folder = f"bench{tag}"
    imap = ImapSettings(host="127.0.0.1", port=dovecot.port, user=USER, password=PASSWORD, tls="none", folder=folder)
    with tempfile.TemporaryDirectory() as tmp, FlakySmtp() as smtp:
        env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL" and not k.startswith(("TWILIO_", "LLM_"))}
        env.update({"CHANNEL_WORKER_VAR": tmp, "IMAP_HOST": "127.0.0.1", "IMAP_PORT": str(dovecot.port), "IMAP_USER": USER,
                    "IMAP_PASSWORD": PASSWORD, "IMAP_TLS": "none", "IMAP_FOLDER": folder, "IMAP_IDLE_SECONDS": "30",
                    "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(smtp.port), "SMTP_TLS": "none", "EMAIL_FROM": WORKER})
        asyncio.run(_create(imap))
        port = free_port()
        log = Path(tmp) / "worker.log"
        worker = start_worker(env, port, log)
        start = time.perf_counter()
        asyncio.run(append_all(imap, messages(threads, per_thread, tag)))
        kill_points = [total * (i + 1) // (kills + 1) for i in range(kills)]
        killed = 0
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            answered = len({m["In-Reply-To"] for m in smtp.accepted})
            if answered >= total:
                break
            if killed < kills and answered >= kill_points[killed]:
                worker.send_signal(signal.SIGKILL)
                worker.wait()
                killed += 1
                worker = start_worker(env, port, log)
            time.sleep(0.02)
        elapsed = time.perf_counter() - start
        worker.terminate()
        worker.wait(timeout=30)
        replies = [(m["In-Reply-To"], _body(m)) for m in smtp.accepted]
    per_inbound = Counter(r for r, _ in replies)
    # Bodies, not Message-IDs: the reply's Message-ID is derived from the inbound one, so two
    # different replies to one message would share it and never be counted.
    bodies_per_inbound: dict[str, set[str]] = {}
    for r, body in replies:
        bodies_per_inbound.setdefault(r, set()).add(body)
    return {
        "total": total, "answered": len(per_inbound), "lost": total - len(per_inbound),
        "duplicate_deliveries": sum(n - 1 for n in per_inbound.values()),
        "different_second_replies": sum(len(bodies) - 1 for bodies in bodies_per_inbound.values()),
        "elapsed": elapsed, "rate": len(per_inbound) / elapsed, "kills": killed,
    }


def _body(message: Message) -> str:
    """The reply's text as sent (the transfer encoding undone)."""
    parsed = message_from_bytes(message.as_bytes(), policy=policy.default)
    part = parsed.get_body(("plain",)) or parsed
    return part.get_content().strip()


async def _create(imap: ImapSettings) -> None:
    client = await connect(imap)
    try:
        await client.protocol.simple_command("CREATE", imap.folder)
    finally:
        await client.logout()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=100)
    parser.add_argument("--per-thread", type=int, default=5)
    args = parser.parse_args()
    dovecot = start_dovecot()
    try:
        calm = run(args.threads, args.per_thread, 0, dovecot, "calm")
        killed = run(args.threads, args.per_thread, 2, dovecot, "kill")
    finally:
        dovecot.destroy()
    print(f"{args.threads} threads x {args.per_thread} messages, Dovecot + aiosmtpd on loopback, one worker process, SQLite")
    print("dup: replies accepted beyond one per inbound message; 2nd reply: inbound messages answered with a "
          "second, different body")
    print(f"{'run':<24} {'answered':>9} {'lost':>5} {'dup':>5} {'2nd reply':>9} {'seconds':>8} {'msg/s':>7}")
    for name, r in (("no interruption", calm), (f"SIGKILL x{killed['kills']}", killed)):
        print(f"{name:<24} {r['answered']:>4}/{r['total']:<4} {r['lost']:>5} {r['duplicate_deliveries']:>5} "
              f"{r['different_second_replies']:>9} {r['elapsed']:>8.1f} {r['rate']:>7.1f}")


if __name__ == "__main__":
    main()
