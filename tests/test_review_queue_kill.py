"""A reviewer's reply is sent once even when `serve` is killed at the worst moment: the reply is
queued and stored, and the process dies before the page hears back. The reviewer sends the
same form again (the browser's resubmit: the same idempotency key) to a restarted `serve`, and
the person gets one text, the conversation one human turn."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx

from tests.support.fake_twilio import FakeTwilio
from tests.support.review_seed import PASSWORD
from tests.support.server import WorkerServer
from tests.test_review_queue_live import BANK, add_users, hand_over, until
from tests.test_sms import ACCOUNT, TOKEN, db_rows

WORDS = "Hi, this is Rita at Northwind Bank. Your card is frozen."
KEY = "kill-test-key-0123456789"


def csrf(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)  # type: ignore[union-attr]


def test_a_reply_committed_when_serve_is_killed_is_sent_once_after_the_resubmit(tmp_path: Path) -> None:
    var = tmp_path / "var"
    add_users(var, rita="reviewer")
    env = {"TWILIO_ACCOUNT_SID": ACCOUNT, "TWILIO_AUTH_TOKEN": TOKEN}
    with FakeTwilio() as twilio:
        env["TWILIO_API_BASE"] = twilio.base_url
        dying = WorkerServer(BANK, {**env, "CHANNEL_WORKER_CRASH_AT": "review.reply_committed=1"}, var)
        try:
            dying.wait_ready(timeout=120)
            [phone] = hand_over(dying, 1)
            rita = httpx.Client(base_url=dying.base_url, timeout=30)
            rita.post("/review/login", data={"username": "rita", "password": PASSWORD,
                                             "csrf_token": csrf(rita.get("/review/login").text)})
            token = csrf(rita.get("/review/queue").text)
            assert rita.post("/review/queue/1/claim", data={"csrf_token": token}).status_code == 303
            form = {"body": WORDS, "idempotency_key": KEY, "csrf_token": token}
            try:
                answer = rita.post("/review/queue/1/reply", data=form)
                raise AssertionError(f"serve answered {answer.status_code}; the crash point did not fire")
            except httpx.TransportError:
                pass  # killed after the commit: the page never heard back
            dying.process.wait(timeout=30)
        finally:
            dying.stop()
        stored = db_rows(dying, "SELECT state FROM sms_outbox WHERE dedupe_key = ?", (f"human:{KEY}",))
        assert len(stored) == 1  # the reply was committed before the kill

        restarted = WorkerServer(BANK, env, var)
        try:
            restarted.wait_ready(timeout=120)
            rita.base_url = httpx.URL(restarted.base_url)  # the same session, the same form, sent again
            again = rita.post("/review/queue/1/reply", data=form)
            assert again.status_code in (200, 303), again.text
            until(lambda: [m for m in twilio.sent if m.get("Body") == WORDS], "the reply at the Twilio stand-in")
            until(lambda: not db_rows(restarted, "SELECT 1 FROM sms_outbox WHERE state = 'pending'"), "an empty outbox")
            time.sleep(1.0)  # a second send, were there one, would be on its way by now
            sent = [m for m in twilio.sent if m.get("Body") == WORDS]
            assert [m["To"] for m in sent] == [phone.number]  # once
            turns = db_rows(restarted, "SELECT text FROM events WHERE json_extract(metadata, '$.human')")
            assert turns == [(WORDS,)]
            assert db_rows(restarted, "SELECT state FROM sms_outbox WHERE dedupe_key = ?", (f"human:{KEY}",)) == [("sent",)]
            rita.close()
        finally:
            restarted.stop()
