"""One bad email never stops the email channel: hostile and broken mail through a real Dovecot,
a normal message after it, a restart; and a crashed channel restarted by the supervisor while
/healthz says it is down."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest

from channels.email.channel import EmailChannel, EmailSettings
from channels.email.report import email_report
from dialogue.spec import WorkerSpec
from escalation.notify import SmtpSettings
from worker.settings import WorkerSettings
from tests.conftest import ROOT, SPECS
from tests.support.dovecot import PASSWORD, USER, Dovecot
from tests.support.receivers import FlakySmtp
from tests.support.talk import engine_for
from tests.test_email import WORKER, deliver, dovecot, email, imap_settings  # noqa: F401 - the module's Dovecot fixture
from worker.app import create_app
from worker.config import Settings
from worker.supervisor import Supervisor


async def until(condition: Callable[[], Awaitable[bool]] | Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Wait for a condition, never for a fixed time."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def parsed(smtp: FlakySmtp) -> list[EmailMessage]:
    return [message_from_bytes(m.as_bytes(), policy=policy.default) for m in smtp.accepted]


def poison(tag: str) -> dict[str, bytes]:
    """Mail that broke or could break the channel, keyed by what is wrong with it."""
    head = f"To: {WORKER}\r\nDate: Mon, 23 Nov 2026 09:00:00 +0000\r\n".encode()
    nested = b"".join(b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i) for i in range(2000))
    return {
        # RFC 2047 encoded-words that decode to CR/LF in the Subject and the From display name.
        "crlf": head + (f"Message-ID: <crlf-{tag}@example.org>\r\n"
                        "From: =?utf-8?q?Evil=0D=0ABcc=3A_boss=40example.org?= <evil@example.org>\r\n"
                        "Subject: =?utf-8?q?Booking=0D=0ABcc=3A_victim=40example.org?=\r\n"
                        "Content-Type: text/plain; charset=utf-8\r\n\r\ntable for 2 tomorrow at 7pm\r\n").encode(),
        # A Unicode line separator in the Subject, a NUL and escape codes in the body.
        "separator": head + (f"Message-ID: <sep-{tag}@example.org>\r\nFrom: Ana <ana@example.org>\r\n"
                             "Subject: =?utf-8?q?Table=E2=80=A8for_two?=\r\n"
                             "Content-Type: text/plain; charset=utf-8\r\n\r\n").encode() + b"a table\x00 for 2\x1b[31m friday\r\n",
        # Broken MIME: a boundary never closed, base64 that is not base64, a charset nobody knows.
        "broken-mime": head + (f"Message-ID: <mime-{tag}@example.org>\r\nFrom: Bo <bo@example.org>\r\nSubject: hi\r\n"
                               "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\n"
                               "Content-Type: text/plain; charset=x-klingon\r\nContent-Transfer-Encoding: base64\r\n\r\n"
                               "!!!not base64***\r\n--zz\r\nContent-Type: application/pdf\r\n\r\n%PDF").encode(),
        # Encoded-words in charsets that do not exist or decode to garbage.
        "odd-charsets": head + (f"Message-ID: <odd-{tag}@example.org>\r\n"
                                "From: =?x-unknown?b?//79?= <cy@example.org>\r\n"
                                "Subject: =?utf-7?q?+AGEAYgBj-?= =?utf-8?b?/w==?=\r\n"
                                "Content-Type: text/plain; charset=utf-16\r\n\r\n").encode() + b"\xff\xfe\x00t\x00a",
        # MIME nested 2000 levels deep: the stdlib parser runs out of stack.
        "nested": head + f"Message-ID: <deep-{tag}@example.org>\r\nFrom: dee@example.org\r\nSubject: deep\r\n".encode()
        + b"MIME-Version: 1.0\r\n" + nested + b"Content-Type: text/plain\r\n\r\ntable for 2\r\n",
        # An internationalised address that a reply cannot be sent to.
        "utf8-address": head + (f"Message-ID: <idn-{tag}@example.org>\r\nFrom: José <josé@example.es>\r\nSubject: hola\r\n"
                                "Content-Type: text/plain; charset=utf-8\r\n\r\nmesa para 2\r\n").encode(),
    }


async def states(channel: EmailChannel) -> dict[str, tuple[str, str | None]]:
    rows = await channel.db.fetchall("SELECT message_id, state, detail FROM email_messages")
    return {r["message_id"]: (r["state"], r["detail"]) for r in rows}


async def test_poison_mail_is_recorded_and_skipped_and_the_inbox_keeps_being_read(
        restaurant: WorkerSpec, dovecot: Dovecot, tmp_path: Path) -> None:  # noqa: F811
    folder, tag = f"p{uuid.uuid4().hex[:8]}", uuid.uuid4().hex[:8]
    bad = poison(tag)
    for raw in bad.values():
        await deliver(dovecot, folder, raw)
    await deliver(dovecot, folder, email("table for 2 tomorrow at 7pm", f"<normal-{tag}@example.org>"))
    with FlakySmtp() as smtp:
        async with engine_for(restaurant, str(tmp_path / "db")) as engine:
            settings = EmailSettings(imap_settings(dovecot, folder),
                                     SmtpSettings(host="127.0.0.1", port=smtp.port, tls="none", sender=WORKER))
            channel = EmailChannel(engine, engine.store.db, settings, backoff_base=0.05)
            task = asyncio.create_task(channel.run(send_interval=0.1))
            await until(lambda: any(m["In-Reply-To"] == f"<normal-{tag}@example.org>" for m in parsed(smtp)),
                        "the normal message after the poison to be answered")
            assert not task.done() and channel.watcher.connected.is_set()

            replies = {m["In-Reply-To"]: m for m in parsed(smtp)}
            crlf = replies[f"<crlf-{tag}@example.org>"]
            assert crlf["Subject"] == "Re: Booking Bcc: victim@example.org" and crlf["Bcc"] is None
            assert crlf["To"] == "evil@example.org"
            assert replies[f"<sep-{tag}@example.org>"]["Subject"] == "Re: Table for two"
            assert f"<mime-{tag}@example.org>" in replies

            recorded = await states(channel)
            assert recorded[f"<deep-{tag}@example.org>"] == ("failed", "the MIME structure is nested too deeply to read")
            assert recorded[f"<idn-{tag}@example.org>"][0] == "failed"
            assert "internationalised" in recorded[f"<idn-{tag}@example.org>"][1]
            stored = [e.text for e in await engine.store.events(f"email:<sep-{tag}@example.org>") if e.direction == "in"]
            # (Dovecot itself turns the NUL into 0x80 on the way in; the escape code is ours to drop.)
            [text] = stored
            assert "\x00" not in text and "\x1b" not in text and text.endswith("for 2[31m friday")
            report = await email_report(channel.db)
            assert report.failed == 2 and {f.reason for f in report.latest_failures} == {
                recorded[f"<deep-{tag}@example.org>"][1], recorded[f"<idn-{tag}@example.org>"][1]}
            answered = len(smtp.accepted)
            channel.stop()
            await asyncio.wait_for(task, 20)

            # A restart reads on from the cursor: the poison is not processed again.
            restarted = EmailChannel(engine, engine.store.db, settings, backoff_base=0.05)
            task = asyncio.create_task(restarted.run(send_interval=0.1))
            await deliver(dovecot, folder, email("table for 3 friday at 8pm", f"<after-{tag}@example.org>"))
            await until(lambda: len(smtp.accepted) == answered + 1, "the message after the restart to be answered")
            assert parsed(smtp)[-1]["In-Reply-To"] == f"<after-{tag}@example.org>"
            assert {k: v for k, v in (await states(restarted)).items() if k in recorded} == recorded
            restarted.stop()
            await asyncio.wait_for(task, 20)


async def test_a_database_error_is_retried_by_restarting_then_recorded_failed(
        restaurant: WorkerSpec, dovecot: Dovecot, tmp_path: Path) -> None:  # noqa: F811
    folder, tag = f"d{uuid.uuid4().hex[:8]}", uuid.uuid4().hex[:8]
    await deliver(dovecot, folder, email("table for 2 tomorrow at 7pm", f"<db-{tag}@example.org>"))
    with FlakySmtp() as smtp:
        async with engine_for(restaurant, str(tmp_path / "db")) as engine:
            settings = EmailSettings(imap_settings(dovecot, folder),
                                     SmtpSettings(host="127.0.0.1", port=smtp.port, tls="none", sender=WORKER))
            channel = EmailChannel(engine, engine.store.db, settings, backoff_base=0.05)
            # A real fault: the reply outbox is missing, so answering fails on every attempt.
            await engine.store.db.execute("ALTER TABLE email_outbox RENAME TO email_outbox_away")
            supervisor = Supervisor(base=0.05, cap=0.2)
            supervisor.start("email", lambda: channel.run(send_interval=0.1))
            try:
                await until(lambda: _state(channel, f"<db-{tag}@example.org>", "failed"), "the message to be recorded failed")
                assert supervisor.health["email"].restarts == 2  # tried three times, restarting in between
                [(state, detail)] = [v for k, v in (await states(channel)).items() if k == f"<db-{tag}@example.org>"]
                assert detail == "OperationalError: no such table: email_outbox"
                await engine.store.db.execute("ALTER TABLE email_outbox_away RENAME TO email_outbox")
                await deliver(dovecot, folder, email("table for 3 friday at 8pm", f"<next-{tag}@example.org>"))
                await until(lambda: smtp.accepted, "the next message to be answered")
                assert parsed(smtp)[0]["In-Reply-To"] == f"<next-{tag}@example.org>"
            finally:
                channel.stop()
                await supervisor.stop()


async def _state(channel: EmailChannel, message_id: str, state: str) -> bool:
    return (await states(channel)).get(message_id, ("", None))[0] == state


@pytest.mark.parametrize("max_bytes", [4000])
async def test_oversized_mail_is_refused_recorded_failed_and_never_fetched_whole(
        restaurant: WorkerSpec, dovecot: Dovecot, tmp_path: Path, max_bytes: int) -> None:  # noqa: F811
    folder = f"o{uuid.uuid4().hex[:8]}"
    received: list[tuple[int, int]] = []
    await deliver(dovecot, folder, email("table for 2 " + "x" * 200_000, "<big@example.org>"))
    with FlakySmtp() as smtp:
        async with engine_for(restaurant, str(tmp_path / "db")) as engine:
            settings = EmailSettings(imap_settings(dovecot, folder),
                                     SmtpSettings(host="127.0.0.1", port=smtp.port, tls="none", sender=WORKER),
                                     max_bytes=max_bytes)
            channel = EmailChannel(engine, engine.store.db, settings, backoff_base=0.05)
            handle = channel.watcher.handler

            async def watch(uidvalidity: str, uid: int, raw: bytes, size: int) -> None:
                received.append((len(raw), size))  # what came over the wire, for the assertion below
                await handle(uidvalidity, uid, raw, size)

            channel.watcher.handler = watch
            task = asyncio.create_task(channel.run(send_interval=0.1))
            await until(lambda: smtp.accepted, "the polite refusal")
            channel.stop()
            await asyncio.wait_for(task, 20)
            [(state, detail)] = (await states(channel)).values()
    assert "larger than I can read" in parsed(smtp)[0].get_content()
    assert state == "failed" and detail.startswith("too large:") and "EMAIL_MAX_BYTES (4000)" in detail
    [(fetched, size)] = received
    assert fetched == max_bytes + 1 and size > 200_000


def test_email_aliases_setting_makes_them_the_workers_own(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"IMAP_HOST": "imap.example", "SMTP_HOST": "smtp.example", "EMAIL_FROM": "support@example.com",
                        "EMAIL_ALIASES": "help@example.com, Sales@Example.com,"}.items():
        monkeypatch.setenv(name, value)
    settings = WorkerSettings.from_env().email_settings()
    assert settings is not None
    assert settings.own_addresses == {"support@example.com", "help@example.com", "sales@example.com"}


async def test_a_crashed_email_channel_is_restarted_and_healthz_is_503_while_it_is_down(
        restaurant: WorkerSpec, dovecot: Dovecot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    folder = f"h{uuid.uuid4().hex[:8]}"
    await deliver(dovecot, folder, email("setup", f"<setup-{folder}@example.org>", Auto_Submitted="auto-generated"))
    with FlakySmtp() as smtp:
        for name, value in {"IMAP_HOST": "127.0.0.1", "IMAP_PORT": str(dovecot.port), "IMAP_USER": USER,
                            "IMAP_PASSWORD": PASSWORD, "IMAP_TLS": "none", "IMAP_FOLDER": folder, "IMAP_IDLE_SECONDS": "5",
                            "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(smtp.port), "SMTP_TLS": "none",
                            "EMAIL_FROM": WORKER}.items():
            monkeypatch.setenv(name, value)
        for name in ("DATABASE_URL", "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN"):
            monkeypatch.delenv(name, raising=False)
        app = create_app(restaurant, Settings(var_dir=tmp_path))
        database = tmp_path / "transcripts.sqlite"
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://worker") as client:
                async def health() -> httpx.Response:
                    return await client.get("/healthz")

                await until(lambda: _cursor_saved(database), "the watcher to read the folder")
                assert (await health()).status_code == 200
                # A real fault under the channel: its cursor table is gone, so reading the inbox fails.
                _sql(database, "ALTER TABLE email_cursor RENAME TO email_cursor_away")
                await deliver(dovecot, folder, email("table for 2 tomorrow at 7pm", f"<h1-{folder}@example.org>"))

                async def down() -> bool:
                    response = await health()
                    return response.status_code == 503 and response.json()["detail"] == {"status": "unhealthy", "down": ["email"]}

                await until(down, "/healthz to report the email channel down")
                _sql(database, "ALTER TABLE email_cursor_away RENAME TO email_cursor")
                await until(lambda: any(m["In-Reply-To"] == f"<h1-{folder}@example.org>" for m in parsed(smtp)),
                            "the restarted channel to answer the message", timeout=60)
                await until(lambda: _ok(health), "/healthz to be 200 again")


def _sql(database: Path, statement: str) -> None:
    with sqlite3.connect(database, timeout=10) as connection:
        connection.execute(statement)


def _cursor_saved(database: Path) -> bool:
    try:
        with sqlite3.connect(database, timeout=10) as connection:
            return connection.execute("SELECT COUNT(*) FROM email_cursor").fetchone()[0] > 0
    except sqlite3.Error:
        return False


async def _ok(health: Callable[[], Awaitable[httpx.Response]]) -> bool:
    return (await health()).status_code == 200


async def test_the_supervisor_restarts_a_crashing_task_and_reports_it_down_meanwhile() -> None:
    supervisor = Supervisor(base=0.2, cap=1.0)
    runs: list[int] = []
    crash = asyncio.Event()

    async def flaky() -> None:
        runs.append(len(runs))
        if len(runs) == 1:
            await crash.wait()
            raise RuntimeError("lost the inbox")
        await asyncio.Event().wait()  # the second run stays up

    async def steady() -> None:
        await asyncio.Event().wait()

    supervisor.start("flaky", flaky)
    supervisor.start("steady", steady)
    await until(lambda: runs == [0], "the first run")
    assert supervisor.unhealthy() == []
    crash.set()
    await until(lambda: supervisor.unhealthy() == ["flaky"], "the crash to be reported")
    health = supervisor.health["flaky"]
    assert (health.running, health.last_error, health.down_since is not None) == (False, "RuntimeError: lost the inbox", True)
    await until(lambda: runs == [0, 1] and supervisor.unhealthy() == [], "the restart")
    assert (health.running, health.restarts, health.down_since) == (True, 1, None)
    await supervisor.stop()


def test_status_shows_failed_email_messages(tmp_path: Path) -> None:
    database = tmp_path / "var" / "transcripts.sqlite"
    env = {**os.environ, "CHANNEL_WORKER_VAR": str(tmp_path / "var")}
    env.pop("DATABASE_URL", None)
    worker = ["--worker", str(SPECS / "restaurant_booking.yaml")]
    first = subprocess.run([sys.executable, "-m", "worker.cli", "status", *worker], capture_output=True, text=True,
                           cwd=ROOT, env=env, timeout=120)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["email"] == {"by_state": {}, "failed": 0, "latest_failures": []}
    _sql(database, "INSERT INTO email_messages (key, message_id, conversation_id, sender, subject, state, detail, "
                   "created_at, updated_at) VALUES ('1:7', '<deep@example.org>', 'email:<deep@example.org>', "
                   "'dee@example.org', 'deep', 'failed', 'the MIME structure is nested too deeply to read', "
                   "'2026-11-23T09:00:00+00:00', '2026-11-23T09:00:00+00:00')")
    result = subprocess.run([sys.executable, "-m", "worker.cli", "status", *worker], capture_output=True, text=True,
                            cwd=ROOT, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)["email"]
    assert report["by_state"] == {"failed": 1} and report["failed"] == 1
    assert report["latest_failures"] == [{"message_id": "<deep@example.org>", "sender": "dee@example.org", "subject": "deep",
                                          "reason": "the MIME structure is nested too deeply to read",
                                          "at": "2026-11-23T09:00:00+00:00"}]
    assert "1 message(s) could not be processed" in result.stderr
