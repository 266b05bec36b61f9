"""The email channel against real servers: Dovecot (IMAP) and aiosmtpd (SMTP) on loopback."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from channels.email.channel import EmailChannel, EmailSettings
from channels.email.imap import ImapSettings, connect
from dialogue.spec import WorkerSpec
from escalation.notify import SmtpSettings
from tests.support.dovecot import PASSWORD, USER, Dovecot, start_dovecot
from tests.support.receivers import FlakySmtp
from tests.support.talk import engine_for

WORKER = "bookings@luigi.example"


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    server = start_dovecot()
    try:
        yield server
    finally:
        server.destroy()


def imap_settings(dovecot: Dovecot, folder: str, tls: str = "none") -> ImapSettings:
    port = dovecot.ssl_port if tls == "ssl" else dovecot.port
    return ImapSettings(host="127.0.0.1", port=port, user=USER, password=PASSWORD, tls=tls, folder=folder,
                        ca_file=str(dovecot.cert), idle_seconds=5, poll_seconds=1, timeout=10)


async def deliver(dovecot: Dovecot, folder: str, raw: bytes) -> int:
    """Append a message to the folder; its UID (from Dovecot's APPENDUID)."""
    client = await connect(imap_settings(dovecot, folder))
    try:
        await client.protocol.simple_command("CREATE", folder)
        response = await client.append(raw, mailbox=folder)
        assert response.result == "OK", response
    finally:
        await client.logout()
    found = re.search(rb"\[APPENDUID \d+ (\d+)\]", b" ".join(response.lines))
    assert found, response.lines
    return int(found.group(1))


async def until(condition: Callable[[], Awaitable[bool]], what: str, timeout: float = 20.0) -> None:
    """Wait for a condition of the stored state (never a fixed sleep: a slow worker would pass it)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting until {what}"
        await asyncio.sleep(0.05)


async def read_past(channel: EmailChannel, uid: int) -> None:
    """Wait until the worker has handled every message up to `uid`: the cursor moves past a
    message only after it was recorded (answered, ignored or refused) and marked processed."""
    async def past() -> bool:
        row = await channel.db.fetchone("SELECT last_uid FROM email_cursor WHERE folder = ?", (channel.settings.imap.folder,))
        return row is not None and int(row["last_uid"]) >= uid
    await until(past, f"the worker has read past UID {uid}")


async def settled_outbox(channel: EmailChannel) -> list[tuple[str, str]]:
    """(inbound Message-ID, state) of every reply once none is waiting to be sent."""
    async def settled() -> bool:
        return not await channel.db.fetchall("SELECT 1 FROM email_outbox WHERE state = 'pending'")
    await until(settled, "no reply is waiting to be sent")
    rows = await channel.db.fetchall("SELECT inbound_key, state FROM email_outbox ORDER BY id")
    return [(r["inbound_key"], r["state"]) for r in rows]


def email(body: str, message_id: str, subject: str = "Booking", html: bool = False, charset: str = "utf-8",
          reply_to: EmailMessage | None = None, **headers: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = headers.pop("From", "Maria Lopez <maria@example.org>")
    msg["To"] = WORKER
    msg["Subject"] = subject
    msg["Message-ID"] = message_id
    msg["Date"] = headers.pop("Date", "Mon, 23 Nov 2026 09:00:00 +0000")
    if reply_to is not None:
        msg["In-Reply-To"] = reply_to["Message-ID"]
        msg["References"] = " ".join(filter(None, [reply_to.get("References", ""), reply_to["Message-ID"]]))
    for k, v in headers.items():
        msg[k.replace("_", "-")] = v
    msg.set_content(body, subtype="html" if html else "plain", charset=charset)
    return msg.as_bytes()


class Harness:
    def __init__(self, channel: EmailChannel, smtp: FlakySmtp, folder: str):
        self.channel, self.smtp, self.folder = channel, smtp, folder

    async def replies(self, count: int, timeout: float = 20.0) -> list[EmailMessage]:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.smtp.accepted) < count and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        return [message_from_bytes(m.as_bytes(), policy=policy.default) for m in self.smtp.accepted]

    async def state_of(self, message_id: str) -> str | None:
        row = await self.channel.db.fetchone("SELECT state FROM email_messages WHERE message_id = ?", (message_id,))
        return row["state"] if row else None


@pytest.fixture
async def harness(restaurant: WorkerSpec, dovecot: Dovecot, tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    refuse = getattr(request, "param", {}).get("refuse", 0)
    max_bytes = getattr(request, "param", {}).get("max_bytes", 2_000_000)
    processed = getattr(request, "param", {}).get("processed", "seen")
    rate = getattr(request, "param", {}).get("rate", 20)
    refusal = getattr(request, "param", {}).get("refusal", "451 4.3.0 Try again later")
    folder = f"t{uuid.uuid4().hex[:8]}"
    with FlakySmtp(refuse=refuse, refusal=refusal) as smtp:
        async with engine_for(restaurant, str(tmp_path / "db")) as engine:
            settings = EmailSettings(imap_settings(dovecot, folder).model_copy(update={"processed": processed}),
                                     SmtpSettings(host="127.0.0.1", port=smtp.port, tls="none", sender=WORKER),
                                     max_bytes=max_bytes, replies_per_sender_per_hour=rate)
            channel = EmailChannel(engine, engine.store.db, settings, backoff_base=0.05)
            await deliver(dovecot, folder, email("setup", f"<setup-{folder}@example.org>", Auto_Submitted="auto-generated"))
            task = asyncio.create_task(channel.run(send_interval=0.1))
            await asyncio.wait_for(channel.watcher.connected.wait(), 20)
            try:
                yield Harness(channel, smtp, folder)
            finally:
                channel.stop()
                await asyncio.wait_for(task, 20)


async def test_a_booking_over_three_emails_in_one_thread(harness: Harness, dovecot: Dovecot) -> None:
    await deliver(dovecot, harness.folder, email("Hi, a table for 4 tomorrow at 7pm please.", "<b1@example.org>"))
    [first] = await harness.replies(1)
    assert first["Subject"] == "Re: Booking" and first["In-Reply-To"] == "<b1@example.org>"
    assert first["Auto-Submitted"] == "auto-replied" and first["To"] == "maria@example.org"
    assert "first name" in first.get_content()
    second_raw = email("Maria Lopez\n\nOn Mon, 23 Nov 2026, Sam wrote:\n> Can I have your first name?\n",
                       "<b2@example.org>", subject="Re: Booking", reply_to=first)
    await deliver(dovecot, harness.folder, second_raw)
    second = (await harness.replies(2))[1]
    # "tomorrow" is read against the email's Date header (Monday 23 November), not today.
    assert "table for 4 on Tuesday 24 November at 19:00, under Maria Lopez" in second.get_content()
    assert second["References"].split() == ["<b1@example.org>", first["Message-ID"], "<b2@example.org>"]
    await deliver(dovecot, harness.folder, email("Yes, thanks!\n\n-- \nMaria", "<b3@example.org>", subject="Re: Booking", reply_to=second))
    third = (await harness.replies(3))[2]
    assert "You're booked, Maria" in third.get_content()
    conv = await harness.channel.conversations.store.conversation("email:<b1@example.org>")
    assert conv.outcome == "completed" and conv.turns == 3


async def test_html_only_and_latin1_mail_are_read(harness: Harness, dovecot: Dovecot) -> None:
    await deliver(dovecot, harness.folder, email("<p>A table for <b>2</b> on friday at 8pm</p>", "<h1@example.org>", html=True))
    await deliver(dovecot, harness.folder, email("Mesa para 3, mañana a las 9pm. José", "<l1@example.es>", charset="iso-8859-1",
                                                 From="José <jose@example.es>"))
    replies = await harness.replies(2)
    by_to = {r["To"]: r.get_content() for r in replies}
    assert "first name" in by_to["maria@example.org"]
    # The Latin-1 body was decoded, not mangled or dropped: the turn read José's words as written,
    # and the reply answers what they say (nine in the evening; "mañana" and "para 3" are not English).
    events = await harness.channel.conversations.store.events("email:<l1@example.es>")
    assert [e.text for e in events if e.direction == "in" and e.text] == ["Mesa para 3, mañana a las 9pm. José"]
    state = await harness.channel.conversations.snapshot("email:<l1@example.es>")
    assert {k: f.value for k, f in state.fields.items()} == {"time": "21:00"}
    assert "What day" in by_to["jose@example.es"]


async def test_machine_mail_gets_no_reply(harness: Harness, dovecot: Dovecot) -> None:
    await deliver(dovecot, harness.folder, email("I am out of office", "<a1@example.org>", Auto_Submitted="auto-replied"))
    await deliver(dovecot, harness.folder, email("Delivery failed", "<a2@example.org>", From="MAILER-DAEMON@mx.example.org"))
    await deliver(dovecot, harness.folder, email("Newsletter", "<a3@example.org>", Precedence="bulk"))
    last = await deliver(dovecot, harness.folder, email("table for 2 tomorrow", "<a4@example.org>"))
    await read_past(harness.channel, last)
    assert await settled_outbox(harness.channel) == [("<a4@example.org>", "sent")]
    assert [r["In-Reply-To"] for r in harness.smtp.accepted] == ["<a4@example.org>"]
    states = await harness.channel.db.fetchall("SELECT message_id, state FROM email_messages WHERE message_id LIKE '<a%'")
    assert {r["message_id"]: r["state"] for r in states} == {
        "<a1@example.org>": "ignored", "<a2@example.org>": "ignored", "<a3@example.org>": "ignored", "<a4@example.org>": "answered"}


async def test_the_same_message_delivered_twice_is_answered_once(harness: Harness, dovecot: Dovecot) -> None:
    raw = email("table for 2 tomorrow at 7pm", "<d1@example.org>")
    await deliver(dovecot, harness.folder, raw)
    second = await deliver(dovecot, harness.folder, raw)
    await read_past(harness.channel, second)
    assert await settled_outbox(harness.channel) == [("<d1@example.org>", "sent")]
    assert len(harness.smtp.accepted) == 1


@pytest.mark.parametrize("harness", [{"max_bytes": 4000}], indirect=True)
async def test_oversized_mail_gets_a_polite_reply(harness: Harness, dovecot: Dovecot) -> None:
    await deliver(dovecot, harness.folder, email("table for 2 " + "x" * 8000, "<o1@example.org>"))
    [reply] = await harness.replies(1)
    assert "larger than I can read" in reply.get_content()


@pytest.mark.parametrize("harness", [{"refuse": 2}], indirect=True)
async def test_smtp_refusing_for_a_while(harness: Harness, dovecot: Dovecot) -> None:
    await deliver(dovecot, harness.folder, email("table for 2 tomorrow at 7pm", "<s1@example.org>"))
    [reply] = await harness.replies(1)
    assert reply["In-Reply-To"] == "<s1@example.org>" and harness.smtp.attempts == 3
    [row] = await harness.channel.db.fetchall("SELECT state, attempts FROM email_outbox")
    assert (row["state"], row["attempts"]) == ("sent", 3)


@pytest.mark.parametrize("harness", [{"refuse": 99, "refusal": "554 5.7.1 Message rejected"}], indirect=True)
async def test_a_reply_the_smtp_server_refuses_for_good_is_marked_failed_not_retried_for_ever(
        harness: Harness, dovecot: Dovecot) -> None:
    await deliver(dovecot, harness.folder, email("table for 2 tomorrow at 7pm", "<p1@example.org>"))

    async def given_up() -> bool:
        rows = await harness.channel.db.fetchall("SELECT state FROM email_outbox WHERE inbound_key LIKE '%p1@%'")
        return [r["state"] for r in rows] == ["failed"]
    await until(given_up, "the reply is marked failed")
    await asyncio.sleep(0.5)  # several send intervals: no further try
    [row] = await harness.channel.db.fetchall("SELECT attempts, last_error FROM email_outbox WHERE inbound_key LIKE '%p1@%'")
    assert row["attempts"] == 1 and harness.smtp.attempts == 1
    assert "554" in row["last_error"]


async def test_the_imap_server_restarted_mid_idle(harness: Harness, dovecot: Dovecot) -> None:
    async def idling() -> bool:
        client = harness.channel.watcher._client  # read only: is the watcher waiting in IDLE?
        return client is not None and client.has_pending_idle()
    await until(idling, "the watcher waits in IDLE")
    await asyncio.to_thread(dovecot.restart)
    await deliver(dovecot, harness.folder, email("table for 2 tomorrow at 7pm", "<r1@example.org>"))
    [reply] = await harness.replies(1, timeout=30)
    assert reply["In-Reply-To"] == "<r1@example.org>"


async def test_a_crash_between_recording_and_replying(restaurant: WorkerSpec, dovecot: Dovecot, tmp_path: Path) -> None:
    from dialogue.events import Turn

    folder = f"c{uuid.uuid4().hex[:8]}"
    raw = email("table for 2 tomorrow at 7pm", "<c1@example.org>")
    uid = await deliver(dovecot, folder, raw)
    with FlakySmtp() as smtp:
        async with engine_for(restaurant, str(tmp_path / "db")) as engine:
            # The first process recorded the message and ran the turn, then died before the outbox.
            await engine.store.db.execute(
                "INSERT INTO email_messages (key, message_id, conversation_id, sender, subject, state, created_at, updated_at) "
                "VALUES ('x:1', '<c1@example.org>', 'email:<c1@example.org>', 'maria@example.org', 'Booking', 'new', ?, ?)",
                ("2026-11-23T09:00:00+00:00", "2026-11-23T09:00:00+00:00"))
            made = await engine.handle(Turn(conversation_id="email:<c1@example.org>", channel="email",
                                            text="table for 2 tomorrow at 7pm", metadata={"email_message_id": "<c1@example.org>"}))
            settings = EmailSettings(imap_settings(dovecot, folder), SmtpSettings(host="127.0.0.1", port=smtp.port, tls="none", sender=WORKER))
            channel = EmailChannel(engine, engine.store.db, settings, backoff_base=0.05)
            task = asyncio.create_task(channel.run(send_interval=0.1))
            # The message read again and every reply sent: a second reply would be in the outbox now.
            await read_past(channel, uid)
            outbox = await settled_outbox(channel)
            channel.stop()
            await asyncio.wait_for(task, 20)
            conv = await engine.store.conversation("email:<c1@example.org>")
    assert outbox == [("<c1@example.org>", "sent")] and len(smtp.accepted) == 1
    sent = message_from_bytes(smtp.accepted[0].as_bytes(), policy=policy.default)
    assert sent.get_content().strip() == made.reply
    assert conv.turns == 1  # the turn was not run twice


@pytest.mark.parametrize("harness", [{"processed": "move:Handled"}], indirect=True)
async def test_processed_mail_is_moved_when_configured(harness: Harness, dovecot: Dovecot) -> None:
    uid = await deliver(dovecot, harness.folder, email("table for 2 tomorrow at 7pm", "<mv1@example.org>"))
    await harness.replies(1)
    await read_past(harness.channel, uid)  # moved before the cursor moves past it
    client = await connect(imap_settings(dovecot, "Handled"))
    try:
        await client.select("Handled")
        found = await client.uid_search("HEADER Message-ID mv1@example.org", charset=None)
        assert found.lines[0].split()
        await client.select(harness.folder)
        left = await client.uid_search("HEADER Message-ID mv1@example.org", charset=None)
        assert not left.lines[0].split()
    finally:
        await client.logout()


@pytest.mark.parametrize("harness", [{"rate": 1}], indirect=True)
async def test_replies_per_sender_are_rate_limited(harness: Harness, dovecot: Dovecot) -> None:
    await deliver(dovecot, harness.folder, email("table for 2 tomorrow at 7pm", "<rl1@example.org>"))
    second = await deliver(dovecot, harness.folder, email("and another question", "<rl2@example.org>"))
    await read_past(harness.channel, second)
    assert await harness.state_of("<rl2@example.org>") == "rate_limited"
    assert await settled_outbox(harness.channel) == [("<rl1@example.org>", "sent")]
    assert len(harness.smtp.accepted) == 1


async def test_escalation_on_email_stops_automatic_replies(harness: Harness, dovecot: Dovecot) -> None:
    await deliver(dovecot, harness.folder, email("I want to speak to a real person", "<e1@example.org>"))
    [handoff] = await harness.replies(1)
    assert "A member of our team will follow up" in handoff.get_content()
    second = await deliver(dovecot, harness.folder, email("hello? anyone?", "<e2@example.org>", subject="Re: Booking",
                                                          reply_to=handoff))
    await read_past(harness.channel, second)
    assert await harness.state_of("<e2@example.org>") == "no_reply"  # recorded, and deliberately not answered
    assert await settled_outbox(harness.channel) == [("<e1@example.org>", "sent")]
    assert len(harness.smtp.accepted) == 1
    [item] = await harness.channel.conversations.handoffs.queue.list()
    assert item.channel == "email" and item.conversation_id == "email:<e1@example.org>"


@pytest.mark.parametrize("tls", ["ssl", "starttls"])
async def test_tls_connections(dovecot: Dovecot, tls: str) -> None:
    client = await connect(imap_settings(dovecot, "INBOX", tls))
    try:
        assert (await client.select("INBOX")).result == "OK"
    finally:
        await client.logout()


async def test_a_wrong_password_is_an_error_not_a_hang(dovecot: Dovecot) -> None:
    settings = imap_settings(dovecot, "INBOX").model_copy(update={"password": "wrong"})
    from channels.email.imap import ImapError

    with pytest.raises(ImapError, match="LOGIN failed"):
        await connect(settings)
