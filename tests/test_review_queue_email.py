"""Replying by email from the queue page, for real: `channel-worker serve` reads the inbox on a
throwaway Dovecot (IMAP) and sends through aiosmtpd (SMTP); a reviewer in Debian's chromium claims
the handoff and double-clicks Send; the SMTP server receives the reply once, threaded to the
person's last message. Then, without a browser, the reply's text and the stored thread are
treated as hostile: no header can be added, sizes are bounded, and nothing bad is queued.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from email import message_from_bytes, message_from_string, policy
from email.message import EmailMessage
from pathlib import Path

import playwright.sync_api as playwright_api
import pytest
from fastapi.testclient import TestClient

from tests.support.dovecot import PASSWORD as IMAP_PASSWORD, USER, Dovecot
from tests.support.receivers import FlakySmtp
from tests.support.review_seed import PASSWORD
from tests.support.server import WorkerServer
from tests.test_email import WORKER, deliver, dovecot, email  # noqa: F401 - the module's Dovecot fixture
from tests.test_review_browser import accessible, browser, log_in, shot  # noqa: F401 - the module's browser fixture
from tests.test_review_queue_live import add_users, until
from tests.test_sms import db_rows

BANK = "examples/account_support.yaml"
PERSON = "zoe.khan@example.org"
expect = playwright_api.expect


def run(coroutine):  # noqa: ANN001, ANN201
    """asyncio.run in a thread of its own: Playwright's sync API keeps an event loop running in this one."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def accepted(smtp: FlakySmtp) -> list[EmailMessage]:
    return [message_from_bytes(m.as_bytes(), policy=policy.default) for m in smtp.accepted]  # type: ignore[misc]


@pytest.fixture
def bank_by_email(dovecot: Dovecot, tmp_path: Path) -> Iterator[tuple[WorkerServer, FlakySmtp, str]]:  # noqa: F811
    var = tmp_path / "var"
    add_users(var, rita="reviewer")
    folder = f"q{uuid.uuid4().hex[:8]}"
    run(deliver(dovecot, folder, email("setup", f"<setup-{folder}@example.org>", Auto_Submitted="auto-generated")))
    with FlakySmtp() as smtp:
        server = WorkerServer(BANK, {
            "IMAP_HOST": "127.0.0.1", "IMAP_PORT": str(dovecot.port), "IMAP_USER": USER, "IMAP_PASSWORD": IMAP_PASSWORD,
            "IMAP_TLS": "none", "IMAP_FOLDER": folder, "IMAP_IDLE_SECONDS": "5", "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(smtp.port), "SMTP_TLS": "none", "EMAIL_FROM": WORKER}, var)
        try:
            server.wait_ready(timeout=120)
            yield server, smtp, folder
        finally:
            server.stop()


def test_an_email_reply_double_clicked_reaches_the_smtp_server_once_threaded_to_the_last_message(
        browser, dovecot: Dovecot, bank_by_email: tuple[WorkerServer, FlakySmtp, str], tmp_path: Path) -> None:  # noqa: ANN001, F811
    server, smtp, folder = bank_by_email
    first = email("Hello, I want to talk to a real person about my card.", "<z1@example.org>", subject="Lost card",
                  From=f"Zoe Khan <{PERSON}>")
    run(deliver(dovecot, folder, first))
    until(lambda: db_rows(server, "SELECT id FROM handoffs"), "the handoff")
    until(lambda: smtp.accepted, "the worker's answer (a person will follow up)")
    [answer] = accepted(smtp)
    # The person writes again in the thread before anyone answers: the reply must follow this one.
    later = email("Are you there? It is urgent.", "<z2@example.org>", subject="Re: Lost card",
                  reply_to=answer, From=f"Zoe Khan <{PERSON}>")
    run(deliver(dovecot, folder, later))
    until(lambda: db_rows(server, "SELECT 1 FROM email_messages WHERE message_id = '<z2@example.org>' AND state != 'new'"),
          "the second message read")
    before = len(smtp.accepted)

    context = browser.new_context(base_url=server.base_url, bypass_csp=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    log_in(page, "rita")
    page.goto("/review/queue")
    row = page.locator("tr#handoff-1")
    assert "email" in row.inner_text() and "Claim it to reply by email" in row.inner_text()
    row.get_by_role("button", name="Claim").click()
    expect(page.get_by_role("status")).to_contain_text("claimed")
    words = ("Dear Zoe,\n\nthis is Rita from Northwind Bank. Your card is frozen and a new one is on its way.\n"
             "Bcc: someone@elsewhere.example\n\nRita")
    page.locator("tr#handoff-1").get_by_label("Reply by email").fill(words)
    page.locator("tr#handoff-1").get_by_role("button", name="Send").dblclick()
    expect(page.get_by_role("status")).to_contain_text("reply")
    until(lambda: len(smtp.accepted) > before, "the reply at the SMTP server")
    until(lambda: not db_rows(server, "SELECT 1 FROM email_outbox WHERE state = 'pending'"), "an empty outbox")
    expect(page.locator("tr#handoff-1 .delivery")).to_have_text("sent", timeout=20_000)  # live, no reload
    human = [m for m in accepted(smtp)[before:]]
    assert len(human) == 1  # a double click, one email
    [reply] = human
    assert reply["To"] == PERSON and reply["From"] == WORKER
    assert reply["Subject"] == "Re: Lost card"
    assert reply["In-Reply-To"] == "<z2@example.org>"
    assert reply["References"].split() == ["<z1@example.org>", "<z2@example.org>"]
    assert reply["Bcc"] is None and reply["Auto-Submitted"] is None  # a person wrote it
    assert "Your card is frozen" in reply.get_content() and "Bcc: someone@elsewhere.example" in reply.get_content()
    assert db_rows(server, "SELECT inbound_key LIKE 'human:%', state FROM email_outbox WHERE recipient = ? "
                           "AND inbound_key LIKE 'human:%'", (PERSON,)) == [(1, "sent")]
    assert db_rows(server, "SELECT direction, json_extract(metadata, '$.by'), json_extract(metadata, '$.subject') "
                           "FROM events WHERE json_extract(metadata, '$.human')") == [("out", "rita", "Re: Lost card")]
    assert db_rows(server, "SELECT kind, json_extract(inputs, '$.channel') FROM audit WHERE action = 'reply'") == [
        ("review", "email")]
    accessible(page)
    shot(page, tmp_path, "review-queue-email")  # docs/images/review-queue-email.png
    page.locator("tr#handoff-1").get_by_role("link", name="Open the conversation").click()
    human_turn = page.locator("li.turn.human")
    expect(human_turn).to_have_count(1)
    assert "rita (a person, from the queue)" in human_turn.inner_text()
    assert human_turn.locator(".delivery").inner_text() == "sent"  # the timeline shows the outbox's word too
    shot(page, tmp_path, "conversation-email-human-reply")
    context.close()


# -- the same route without a browser: hostile text, sizes, threads that cannot be answered -----

CONV = "email:<root-1@example.org>"


async def _seed(url: str, meta: dict, channel: str = "email", conversation: str = CONV) -> None:
    from escalation.operators import OperatorStore
    from escalation.queue import HumanQueue
    from transcripts.store import Event, TranscriptStore
    from worker.operator_auth import hash_password

    store = await TranscriptStore.open(url)
    try:
        await store.append(Event(conversation_id=conversation, channel=channel, direction="in", text="I want a person",
                                 time="2026-11-30T01:00:00+00:00", metadata=meta), "account_support")
        await HumanQueue(store.db).open(conversation, "account_support", channel, "asks_for_human", "asked", {"summary": "s"})
        await OperatorStore(store.db).add_user("rita", "reviewer", hash_password(PASSWORD))
    finally:
        await store.close()


def _client(url: str, email_from: str | None = WORKER) -> TestClient:
    from worker.review import create_review_app

    return TestClient(create_review_app(url, "account_support", email_from=email_from))


def _rita(client: TestClient) -> str:
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/review/login").text).group(1)
    client.post("/review/login", data={"username": "rita", "password": PASSWORD, "csrf_token": token})
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/review/queue").text).group(1)
    assert client.post("/review/queue/1/claim", data={"csrf_token": csrf}).status_code == 200  # followed to the page
    return csrf


def _outbox(url: str) -> list[str]:
    async def read() -> list[str]:
        from transcripts.store import TranscriptStore

        store = await TranscriptStore.open(url)
        try:
            # Read back as the channel's sender reads it (channels/email/channel.py, send_due).
            return [r["raw"] for r in await store.db.fetchall("SELECT raw FROM email_outbox ORDER BY id")]
        finally:
            await store.close()
    return run(read())


def test_hostile_text_adds_no_header_and_sizes_are_bounded(tmp_path: Path) -> None:
    url = str(tmp_path / "worker.sqlite")
    # A stored subject that somehow kept a line break (an older row, another channel's bug).
    run(_seed(url, {"from": PERSON, "subject": "Card\r\nBcc: thief@evil.example", "message_id": "<m1@example.org>"}))
    with _client(url) as client:
        csrf = _rita(client)
        key = "a" * 24
        body = "Hello\r\nBcc: thief@evil.example\r\n\r\nIt is done.\x00\x1b[31m"
        too_long = client.post("/review/queue/1/reply", data={"csrf_token": csrf, "idempotency_key": key, "body": "x" * 10_001})
        assert too_long.status_code == 409 and "1 to 10,000 characters" in too_long.text
        empty = client.post("/review/queue/1/reply", data={"csrf_token": csrf, "idempotency_key": key, "body": " \x00\r\n "})
        assert empty.status_code == 409
        bad_key = client.post("/review/queue/1/reply", data={"csrf_token": csrf, "idempotency_key": "x\r\ny", "body": "hi"})
        assert bad_key.status_code == 409 and "idempotency key" in bad_key.text
        sent = client.post("/review/queue/1/reply", data={"csrf_token": csrf, "idempotency_key": key, "body": body})
        assert sent.status_code == 200 and "reply queued to the person by email" in sent.text
        again = client.post("/review/queue/1/reply", data={"csrf_token": csrf, "idempotency_key": key, "body": body})
        assert "already sent (sent once)" in again.text
    [raw] = _outbox(url)
    message = message_from_string(raw, policy=policy.default)
    assert message["Bcc"] is None
    assert not [k for k, v in message.items() if k != "Subject" and "thief" in str(v)]
    assert message["Subject"] == "Re: Card Bcc: thief@evil.example"  # one line: text, not a header
    assert [k for k in message.keys()] == ["From", "To", "Subject", "In-Reply-To", "References", "Message-ID", "Date",
                                           "Content-Type", "Content-Transfer-Encoding", "MIME-Version"]
    assert message["References"].split() == ["<root-1@example.org>", "<m1@example.org>"]
    content = message.get_content()
    assert "Bcc: thief@evil.example" in content and "\x00" not in content and "\x1b" not in content


@pytest.mark.parametrize("meta, expected", [
    ({"from": "zoe@example.org\r\nBcc: thief@evil.example", "subject": "x"}, "not one plain address"),
    ({"from": "Zoe <zoe@example.org>, thief@evil.example", "subject": "x"}, "not one plain address"),
    ({"from": "zoé@exämple.org", "subject": "x"}, "not one plain address"),
    ({"subject": "no sender stored"}, "no email from the person"),
])
def test_a_thread_with_no_safe_address_is_refused(tmp_path: Path, meta: dict, expected: str) -> None:
    url = str(tmp_path / "worker.sqlite")
    run(_seed(url, meta))
    with _client(url) as client:
        csrf = _rita(client)
        refused = client.post("/review/queue/1/reply", data={"csrf_token": csrf, "idempotency_key": "b" * 24, "body": "hi"})
        assert refused.status_code == 409 and expected in refused.text
    assert _outbox(url) == []


def test_without_the_email_settings_an_email_reply_is_refused_not_left_unsent(tmp_path: Path) -> None:
    url = str(tmp_path / "worker.sqlite")
    run(_seed(url, {"from": PERSON, "subject": "x"}))
    with _client(url, email_from=None) as client:
        csrf = _rita(client)
        refused = client.post("/review/queue/1/reply", data={"csrf_token": csrf, "idempotency_key": "c" * 24, "body": "hi"})
        assert refused.status_code == 409 and "EMAIL_FROM" in refused.text
    assert _outbox(url) == []


def test_a_console_conversation_has_no_reply_form_and_a_reply_is_refused(tmp_path: Path) -> None:
    url = str(tmp_path / "worker.sqlite")
    run(_seed(url, {}, channel="console", conversation="console-1"))
    with _client(url) as client:
        csrf = _rita(client)
        assert 'action="/review/queue/1/reply"' not in client.get("/review/queue").text
        refused = client.post("/review/queue/1/reply", data={"csrf_token": csrf, "idempotency_key": "d" * 24, "body": "hi"})
        assert refused.status_code == 409 and "SMS and email" in refused.text
