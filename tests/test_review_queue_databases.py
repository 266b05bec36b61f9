"""The queue page's replies, delivery status and live updates on SQLite and on PostgreSQL, in
process (no browser; tests/test_review_queue_live.py and _email.py drive chromium under serve):
one SMS and one email handoff, claimed and answered (each submitted twice), their status read
from the two outboxes as the senders move them, and the live poll telling a delivery from a
move made by someone else."""

from __future__ import annotations

import asyncio
import re
from email import message_from_string, policy

from fastapi.testclient import TestClient

from channels.sms.store import SmsStore
from escalation.operators import OperatorStore
from escalation.queue import HumanQueue
from tests.support.review_seed import PASSWORD
from transcripts.store import Event, TranscriptStore
from worker.operator_auth import hash_password
from worker.review import create_review_app

SMS = "sms:+15551230077:+15550000000"
EMAIL = "email:<root-7@example.org>"
FROM = "desk@bank.example"


async def _seed(url: str) -> None:
    store = await TranscriptStore.open(url)
    try:
        await store.append(Event(conversation_id=SMS, channel="sms", direction="in", text="a person please",
                                 time="2026-11-30T01:00:00+00:00"), "account_support")
        await store.append(Event(conversation_id=EMAIL, channel="email", direction="in", text="a person please",
                                 time="2026-11-30T01:01:00+00:00",
                                 metadata={"from": "ana@example.org", "subject": "Help", "message_id": "<m7@example.org>"}),
                           "account_support")
        queue = HumanQueue(store.db)
        await queue.open(SMS, "account_support", "sms", "asks_for_human", "asked", {"summary": "sms one"})
        await queue.open(EMAIL, "account_support", "email", "asks_for_human", "asked", {"summary": "email one"})
        for name, role in (("rita", "reviewer"), ("ada", "admin")):
            await OperatorStore(store.db).add_user(name, role, hash_password(PASSWORD))
    finally:
        await store.close()


async def _sql(url: str, sql: str, params: tuple = ()) -> list[dict]:
    store = await TranscriptStore.open(url)
    try:
        if sql.lstrip().upper().startswith("SELECT"):
            return await store.db.fetchall(sql, params)
        await store.db.execute(sql, params)
        return []
    finally:
        await store.close()


def _log_in(client: TestClient, name: str) -> str:
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/review/login").text).group(1)
    client.post("/review/login", data={"username": name, "password": PASSWORD, "csrf_token": token})
    return re.search(r'name="csrf_token" value="([^"]+)"', client.get("/review/queue").text).group(1)


def _poll(html: str) -> str:
    found = re.search(r'hx-get="(/review/queue/live\?[^"]+)"', html)
    assert found, "no live poll on the page"
    return found.group(1).replace("&amp;", "&")


def test_replies_statuses_and_live_updates(database_url: str) -> None:
    asyncio.run(_seed(database_url))
    app = create_review_app(database_url, "account_support", email_from=FROM)
    with TestClient(app) as rita, TestClient(app) as ada:
        csrf = _log_in(rita, "rita")
        ada_csrf = _log_in(ada, "ada")
        for handoff in (1, 2):
            assert rita.post(f"/review/queue/{handoff}/claim", data={"csrf_token": csrf}).status_code == 200
        page = rita.get("/review/queue").text
        keys = dict(re.findall(r'action="/review/queue/(\d+)/reply">\s*<input[^>]+>\s*'
                               r'<input type="hidden" name="idempotency_key" value="([^"]+)">', page))
        assert set(keys) == {"1", "2"}
        for handoff, words in (("1", "Hi, Rita here: done."), ("2", "Dear Ana,\nit is done.\nRita")):
            form = {"csrf_token": csrf, "idempotency_key": keys[handoff], "body": words}
            assert "reply queued to the person by" in rita.post(f"/review/queue/{handoff}/reply", data=form).text
            assert "already sent (sent once)" in rita.post(f"/review/queue/{handoff}/reply", data=form).text
        page = rita.get("/review/queue").text
        assert page.count('class="delivery delivery-queued"') == 2
        poll = _poll(page)
        assert rita.get(poll).status_code == 204  # nothing changed since the page was drawn

        # The senders move them: the SMS one sent, the email one refused once (still queued, retrying).
        [sms_item] = asyncio.run(_outbox(database_url))
        asyncio.run(_mark_sent(database_url, sms_item.id))
        asyncio.run(_sql(database_url, "UPDATE email_outbox SET attempts = 1, last_error = ? WHERE inbound_key LIKE 'human:%'",
                         ("SMTPResponseException: 451 try later",)))
        live = rita.get(poll)
        assert live.status_code == 200
        assert 'delivery-sent">sent' in live.text and "retrying: SMTPResponseException: 451 try later" in live.text
        assert 'id="queue-news"' not in live.text and "changed while this page was open" not in live.text  # no move
        poll = _poll(live.text)
        assert rita.get(poll).status_code == 204

        # Someone else resolves the email handoff: the row is redrawn, marked and announced.
        assert ada.post("/review/queue/2/resolve", data={"csrf_token": ada_csrf, "note": "by phone"}).status_code == 200
        live = rita.get(poll)
        assert "Handoff 2 is resolved now." in live.text and "changed while this page was open" in live.text
        assert '<tr id="handoff-2" hx-swap-oob="true" class="changed">' in live.text and 'id="handoff-1"' not in live.text
        assert 'action="/review/queue/2/reply"' not in live.text
        assert rita.get(_poll(live.text)).status_code == 204

        shown = rita.get(f"/review/conversations/{SMS}").text
        assert 'class="delivery delivery-sent"' in shown and "rita (a person, from the queue)" in shown

    events = asyncio.run(_sql(database_url, "SELECT conversation_id, channel, direction FROM events "
                                            "WHERE dedupe_key LIKE 'human:%' ORDER BY id"))
    assert [(e["conversation_id"], e["channel"], e["direction"]) for e in events] == [(SMS, "sms", "out"), (EMAIL, "email", "out")]
    [raw] = [r["raw"] for r in asyncio.run(_sql(database_url, "SELECT raw FROM email_outbox"))]
    message = message_from_string(raw, policy=policy.default)
    assert (message["To"], message["From"], message["Subject"], message["In-Reply-To"]) == (
        "ana@example.org", FROM, "Re: Help", "<m7@example.org>")
    assert message["References"].split() == ["<root-7@example.org>", "<m7@example.org>"]


async def _outbox(url: str) -> list:
    store = await TranscriptStore.open(url)
    try:
        return await SmsStore(store.db).outbox(SMS)
    finally:
        await store.close()


async def _mark_sent(url: str, item_id: int) -> None:
    store = await TranscriptStore.open(url)
    try:
        await SmsStore(store.db).mark(item_id, "sent", 1, message_sid="SM" + "0" * 32)
    finally:
        await store.close()
