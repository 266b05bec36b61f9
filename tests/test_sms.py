"""The SMS channel over Twilio: signed webhooks in, TwiML out, exactly one reply per message,
compliance keywords, segment-aware replies, and the REST outbox with its retries."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree

import httpx
import pytest
from twilio.request_validator import RequestValidator

from channels.sms.segments import segment_count, shape
from channels.sms.sender import SmsSender
from channels.sms.store import SmsStore
from channels.twilio.settings import TwilioSettings
from dialogue.spec import WorkerSpec
from storage.db import Database
from storage.migrations import migrate
from tests.support.fake_openai import FakeOpenAI
from tests.support.fake_twilio import FakeTwilio
from tests.support.server import WorkerServer

TOKEN = "test-auth-token-0123456789abcdef"
ACCOUNT = "AC" + "a" * 32
WORKER_NUMBER = "+15005550006"


def sid() -> str:
    return "SM" + uuid.uuid4().hex


def person() -> str:
    # Seven random digits: four clashed about once in a hundred runs.
    return "+1202" + str(uuid.uuid4().int)[-7:]


@pytest.fixture(scope="module")
def fake_twilio() -> Iterator[FakeTwilio]:
    with FakeTwilio() as server:
        yield server


@pytest.fixture(scope="module")
def sms_server(tmp_path_factory: pytest.TempPathFactory, fake_twilio: FakeTwilio) -> Iterator[WorkerServer]:
    var = tmp_path_factory.mktemp("sms") / "var"
    server = WorkerServer("tests/data/specs/restaurant_booking.yaml", {
        "TWILIO_ACCOUNT_SID": ACCOUNT, "TWILIO_AUTH_TOKEN": TOKEN, "TWILIO_API_BASE": fake_twilio.base_url,
    }, var)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


class Phone:
    """A person's phone, texting the worker through (a stand-in for) Twilio."""

    def __init__(self, server: WorkerServer, number: str | None = None):
        self.server, self.number = server, number or person()
        self.validator = RequestValidator(TOKEN)

    def post(self, path: str, params: dict[str, str], signature: str | None = "sign") -> httpx.Response:
        url = self.server.base_url + path
        headers = {}
        if signature == "sign":
            headers["X-Twilio-Signature"] = self.validator.compute_signature(url, params)
        elif signature:
            headers["X-Twilio-Signature"] = signature
        return httpx.post(url, data=params, headers=headers, timeout=30)

    def params(self, body: str, message_sid: str | None = None, **extra: str) -> dict[str, str]:
        return {"MessageSid": message_sid or sid(), "AccountSid": ACCOUNT, "From": self.number, "To": WORKER_NUMBER,
                "Body": body, "NumMedia": "0", **extra}

    def text(self, body: str, message_sid: str | None = None, **extra: str) -> str | None:
        response = self.post("/twilio/sms", self.params(body, message_sid, **extra))
        assert response.status_code == 200, response.text
        return reply_of(response)


def reply_of(response: httpx.Response) -> str | None:
    root = ElementTree.fromstring(response.text)
    assert root.tag == "Response"
    messages = [m.text or "" for m in root.iter("Message")]
    assert len(messages) <= 1
    return messages[0] if messages else None


def db_rows(server: WorkerServer, sql: str, params: tuple = ()) -> list[tuple]:
    path = server.var / "transcripts.sqlite"
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        return conn.execute(sql, params).fetchall()


def test_twilios_documented_signature_example() -> None:
    validator = RequestValidator("12345")
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    params = {"CallSid": "CA1234567890ABCDE", "Caller": "+14158675309", "Digits": "1234",
              "From": "+14158675309", "To": "+18005551212"}
    assert validator.compute_signature(url, params) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    assert validator.validate(url, params, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")


def test_unsigned_and_forged_requests_are_refused_and_nothing_is_recorded(sms_server: WorkerServer) -> None:
    phone = Phone(sms_server)
    unsigned = phone.params("table for 2 tomorrow")
    assert phone.post("/twilio/sms", unsigned, signature=None).status_code == 403
    forged = phone.params("table for 2 tomorrow")
    assert phone.post("/twilio/sms", forged, signature="bm90IGEgc2lnbmF0dXJl").status_code == 403
    # Signed for other parameters: the body was changed on the way.
    tampered = phone.params("table for 2")
    signature = RequestValidator(TOKEN).compute_signature(sms_server.base_url + "/twilio/sms", tampered)
    tampered["Body"] = "table for 12"
    assert phone.post("/twilio/sms", tampered, signature=signature).status_code == 403
    for params in (unsigned, forged, tampered):
        assert db_rows(sms_server, "SELECT sid FROM sms_messages WHERE sid = ?", (params["MessageSid"],)) == []
    assert db_rows(sms_server, "SELECT id FROM conversations WHERE id LIKE ?", (f"%{phone.number}%",)) == []


def test_a_signed_but_malformed_webhook_gets_a_clear_400(sms_server: WorkerServer) -> None:
    phone = Phone(sms_server)
    params = phone.params("hi")
    del params["MessageSid"]
    response = phone.post("/twilio/sms", params)
    assert response.status_code == 400 and "MessageSid" in response.text


def test_a_full_booking_over_several_messages(sms_server: WorkerServer) -> None:
    phone = Phone(sms_server)
    first = phone.text("hi, can I book a table for 4 tomorrow at 7pm?")
    assert first.startswith("Hi, this is Sam at Trattoria Luigi") and "first name" in first
    assert "last name" in phone.text("Maria")
    confirm = phone.text("Lopez")
    assert "table for 4" in confirm and "Maria Lopez" in confirm and "Is that right?" in confirm
    assert "You're booked, Maria" in phone.text("yes")
    [(outcome, turns)] = db_rows(sms_server, "SELECT outcome, turns FROM conversations WHERE id = ?",
                                 (f"sms:{phone.number}:{WORKER_NUMBER}",))
    assert (outcome, turns) == ("completed", 4)


def test_a_redelivery_after_the_reply_gets_the_stored_reply_and_the_turn_runs_once(sms_server: WorkerServer) -> None:
    # Twilio delivers a message again only when it did not read an answer: the answer it
    # missed is the one committed, so it gets that, and the person's message is not re-run.
    phone = Phone(sms_server)
    message_sid = sid()
    first = phone.text("table for 2 tomorrow at 8pm", message_sid)
    assert first is not None
    assert phone.text("table for 2 tomorrow at 8pm", message_sid) == first
    [(state, via)] = db_rows(sms_server, "SELECT state, reply_via FROM sms_messages WHERE sid = ?", (message_sid,))
    assert (state, via) == ("answered", "twiml")
    key = f"sms:{phone.number}:{WORKER_NUMBER}"
    assert db_rows(sms_server, "SELECT direction, COUNT(*) FROM events WHERE conversation_id = ? AND direction != 'system' "
                               "GROUP BY direction ORDER BY direction", (key,)) == [("in", 1), ("out", 1)]


def test_overlapping_deliveries_run_the_turn_once_and_all_carry_the_same_reply(sms_server: WorkerServer) -> None:
    # Deliveries that overlap are retries of one Twilio request that gave up on the earlier
    # ones: each waits for the one turn and carries its reply; Twilio reads only the last.
    phone = Phone(sms_server)
    params = phone.params("table for 3 on friday at 7pm")
    url = sms_server.base_url + "/twilio/sms"
    headers = {"X-Twilio-Signature": RequestValidator(TOKEN).compute_signature(url, params)}

    async def both() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=30) as client:
            return list(await asyncio.gather(*(client.post(url, data=params, headers=headers) for _ in range(4))))

    responses = asyncio.run(both())
    replies = [reply_of(r) for r in responses]
    assert all(r.status_code == 200 for r in responses)
    assert replies[0] is not None and replies == [replies[0]] * 4
    key = f"sms:{phone.number}:{WORKER_NUMBER}"
    [(turns,)] = db_rows(sms_server, "SELECT turns FROM conversations WHERE id = ?", (key,))
    assert turns == 1
    assert db_rows(sms_server, "SELECT COUNT(*) FROM events WHERE conversation_id = ? AND direction = 'out'", (key,)) == [(1,)]


def test_two_server_processes_on_one_database_answer_every_message_exactly_once(
    tmp_path: Path, fake_twilio: FakeTwilio,
) -> None:
    env = {"TWILIO_ACCOUNT_SID": ACCOUNT, "TWILIO_AUTH_TOKEN": TOKEN, "TWILIO_API_BASE": fake_twilio.base_url}
    # Two processes on one SQLite file, as behind a load balancer: each delivery of a message
    # goes to both of them at once.
    servers = [WorkerServer("tests/data/specs/restaurant_booking.yaml", env, tmp_path / "var") for _ in range(2)]
    try:
        for server in servers:
            server.wait_ready()
        phones = [Phone(servers[0]) for _ in range(12)]
        script = ["a table for 4 tomorrow at 7pm", "Maria Lopez", "yes"]

        async def converse(client: httpx.AsyncClient, phone: Phone) -> list[int]:
            replies_per_message = []
            for line in script:
                params = phone.params(line)
                deliveries = []
                for server in servers:
                    url = server.base_url + "/twilio/sms"
                    signature = phone.validator.compute_signature(url, params)
                    deliveries.append(client.post(url, data=params, headers={"X-Twilio-Signature": signature}))
                pair = await asyncio.gather(*deliveries)
                assert all(r.status_code == 200 for r in pair)
                # Both carry the one reply the turn made (Twilio would read only the retry's).
                replies = {reply_of(r) for r in pair}
                assert None not in replies
                replies_per_message.append(len(replies))
            return replies_per_message

        async def everyone() -> list[list[int]]:
            async with httpx.AsyncClient(timeout=30) as client:
                return list(await asyncio.gather(*(converse(client, p) for p in phones)))

        assert asyncio.run(everyone()) == [[1, 1, 1]] * len(phones)
        outcomes = db_rows(servers[0], "SELECT outcome, turns FROM conversations WHERE channel = 'sms'")
        assert outcomes == [("completed", 3)] * len(phones)
        # Each message ran as one turn: three replies stored per conversation, not six.
        assert db_rows(servers[0], "SELECT COUNT(*) FROM events WHERE channel = 'sms' AND direction = 'out' "
                                   "GROUP BY conversation_id") == [(3,)] * len(phones)
    finally:
        for server in servers:
            server.stop()


def test_serve_workers_starts_several_processes_that_share_the_port(tmp_path: Path, fake_twilio: FakeTwilio) -> None:
    server = WorkerServer("tests/data/specs/restaurant_booking.yaml", {
        "TWILIO_ACCOUNT_SID": ACCOUNT, "TWILIO_AUTH_TOKEN": TOKEN, "TWILIO_API_BASE": fake_twilio.base_url,
    }, tmp_path / "var", args=("--workers", "2"))
    try:
        server.wait_ready()
        children = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _parent_of(p) == server.process.pid]
        workers = [p for p in children if b"spawn_main" in (p / "cmdline").read_bytes()
                   and b"resource_tracker" not in (p / "cmdline").read_bytes()]
        assert len(workers) == 2
        phone = Phone(server)
        assert "first name" in phone.text("a table for 2 tomorrow at 8pm")
        assert "last name" in phone.text("Ana")
    finally:
        server.stop()


def _parent_of(proc: Path) -> int | None:
    try:
        # /proc/PID/stat: "pid (name) state ppid ..."; the name may hold spaces.
        return int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def test_stop_help_and_start(sms_server: WorkerServer) -> None:
    phone = Phone(sms_server)
    assert "Sam" in phone.text("hello")
    help_text = phone.text("HELP")
    assert "I book tables at Trattoria Luigi" in help_text and "STOP" in help_text
    assert "unsubscribed" in phone.text("Stop")
    assert phone.text("STOP") is None  # confirmed once only
    assert phone.text("table for 2 tomorrow at 7pm") is None  # never again until START
    assert db_rows(sms_server, "SELECT 1 FROM sms_optouts WHERE number = ?", (phone.number,)) == [(1,)]
    assert "resubscribed" in phone.text("START")
    assert phone.text("table for 2 tomorrow at 7pm") is not None


def test_unicode_text_is_understood_and_the_reply_fits(sms_server: WorkerServer, restaurant: WorkerSpec) -> None:
    limit = restaurant.channels.sms.max_segments
    assert limit == 2  # the bound the example spec sets, and this test holds replies to
    phone = Phone(sms_server)
    reply = phone.text("Hola 🙂 a table for 2 tomorrow at 7pm — gracias")
    assert "first name" in reply
    assert segment_count(reply) <= limit
    confirm = phone.text("Zoë Ångström")
    assert "under Zoë Ångström" in confirm  # names outside GSM-7 survive the shaping
    assert segment_count(confirm) <= limit


def test_mms_media_is_recorded_and_the_person_told_only_text_is_read(sms_server: WorkerServer) -> None:
    phone = Phone(sms_server)
    message_sid = "MM" + uuid.uuid4().hex
    reply = phone.text("table for 2 tomorrow at 7pm", message_sid, NumMedia="1",
                       MediaUrl0="https://api.twilio.com/2010-04-01/Accounts/AC/Messages/MM/Media/ME1",
                       MediaContentType0="image/jpeg")
    assert reply.startswith("Thanks! I can only read text messages") and "first name" in reply
    [(media,)] = db_rows(sms_server, "SELECT media FROM sms_messages WHERE sid = ?", (message_sid,))
    assert '"image/jpeg"' in media


def test_delivery_status_callbacks_update_the_message(sms_server: WorkerServer) -> None:
    phone = Phone(sms_server)
    phone.text("table for 2 tomorrow at 7pm")
    reply_sid = sid()
    params = {"MessageSid": reply_sid, "MessageStatus": "delivered", "From": WORKER_NUMBER, "To": phone.number,
              "AccountSid": ACCOUNT}
    assert phone.post("/twilio/sms/status", params, signature=None).status_code == 403
    assert phone.post("/twilio/sms/status", params).status_code == 204
    params["MessageStatus"] = "undelivered"
    params["ErrorCode"] = "30003"
    assert phone.post("/twilio/sms/status", params).status_code == 204
    assert db_rows(sms_server, "SELECT status, error_code, conversation_id FROM sms_messages WHERE sid = ?", (reply_sid,)) == [
        ("undelivered", "30003", f"sms:{phone.number}:{WORKER_NUMBER}")
    ]


def test_a_slow_turn_is_answered_through_the_rest_api(tmp_path: Path, fake_twilio: FakeTwilio) -> None:
    with FakeOpenAI() as slow_model:
        slow_model.delay = 1.5  # the turn waits on a language model longer than the webhook may
        server = WorkerServer("tests/data/specs/restaurant_booking.yaml", {
            "TWILIO_ACCOUNT_SID": ACCOUNT, "TWILIO_AUTH_TOKEN": TOKEN, "TWILIO_API_BASE": fake_twilio.base_url,
            "SMS_REPLY_BUDGET_SECONDS": "0.3", "LLM_BASE_URL": slow_model.base_url, "LLM_MODEL": "slow-model",
        }, tmp_path / "var")
        try:
            server.wait_ready()
            phone = Phone(server)
            assert phone.text("table for 2 tomorrow at 7pm") is None  # nothing in the webhook response...
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not [m for m in fake_twilio.sent if m["To"] == phone.number]:
                time.sleep(0.05)
            [sent] = [m for m in fake_twilio.sent if m["To"] == phone.number]  # ...the reply came by REST
            assert sent["From"] == WORKER_NUMBER and "first name" in sent["Body"]
            assert sent["StatusCallback"] == server.base_url + "/twilio/sms/status"
            assert slow_model.requests  # the turn did wait on the model
        finally:
            server.stop()


async def test_the_outbox_retries_429_and_5xx_and_records_4xx(tmp_path: Path, fake_twilio: FakeTwilio) -> None:
    db = await Database.open(str(tmp_path / "t.sqlite"))
    await migrate(db)
    store = SmsStore(db)
    settings = TwilioSettings(account_sid=ACCOUNT, auth_token=TOKEN, api_base=fake_twilio.base_url)
    sender = SmsSender(settings, store, backoff_base=0.0)
    try:
        await store.enqueue("c1", "+12025550143", WORKER_NUMBER, "Your table is booked.", dedupe_key="k1")
        await store.enqueue("c1", "+12025550143", WORKER_NUMBER, "Your table is booked.", dedupe_key="k1")  # same key
        fake_twilio.script = [429, 500, 503]
        for _ in range(4):
            await sender.send_due()
        [item] = await store.outbox("c1")
        assert (item.state, item.attempts) == ("sent", 4) and item.message_sid.startswith("SM")
        assert len([m for m in fake_twilio.sent if m["Body"] == "Your table is booked."]) == 1

        await store.enqueue("c2", "not-a-number", WORKER_NUMBER, "Hello", dedupe_key="k2")
        fake_twilio.script = [400]
        await sender.send_due()
        await sender.send_due()
        [bad] = await store.outbox("c2")
        assert bad.state == "failed" and bad.attempts == 1 and "21211" in bad.last_error

        await store.opt_out("+12025550199", WORKER_NUMBER)
        await store.enqueue("c3", "+12025550199", WORKER_NUMBER, "Hello again", dedupe_key="k3")
        before = len(fake_twilio.requests)
        await sender.send_due()
        [suppressed] = await store.outbox("c3")
        assert suppressed.state == "suppressed" and len(fake_twilio.requests) == before
    finally:
        await sender.close()
        await db.close()


@pytest.mark.parametrize("text,segments,gsm", [
    ("a" * 160, 1, True),
    ("a" * 161, 2, True),
    ("€" * 80, 1, True),  # extension characters count twice
    ("é" * 160, 1, True),
    ("ą" * 70, 1, False),
    ("ą" * 71, 2, False),
    ("🙂" * 35, 1, False),  # one emoji is two UTF-16 units
])
def test_segment_counts(text: str, segments: int, gsm: bool) -> None:
    from channels.sms.segments import is_gsm

    assert segment_count(text) == segments and is_gsm(text) is gsm


def test_replies_prefer_gsm_and_never_split_a_word() -> None:
    assert shape("It’s booked — see you “soon”…", 1) == 'It\'s booked - see you "soon"...'
    long = "Lovely. " + " ".join(["Your table for four is ready and waiting"] * 12)
    shaped = shape(long, 2)
    assert segment_count(shaped) <= 2 and shaped.endswith("...")
    words = set(long.replace(".", "").split())
    assert all(w in words for w in shaped.rstrip(".").replace(".", "").split())
    assert re.search(r"\s\w+\.\.\.$", shaped)


async def test_a_message_left_unanswered_by_a_crash_is_answered_once(restaurant, tmp_path: Path, fake_twilio: FakeTwilio) -> None:  # noqa: ANN001
    from channels.sms.recovery import recover_unanswered
    from dialogue.events import Turn
    from tests.support.talk import engine_for

    async with engine_for(restaurant, str(tmp_path / "db")) as engine:
        store = SmsStore(engine.store.db)
        sender = SmsSender(TwilioSettings(account_sid=ACCOUNT, auth_token=TOKEN, api_base=fake_twilio.base_url), store)
        try:
            # A: recorded, then the process died before the turn ran.
            a, a_sid = person(), sid()
            assert (await store.claim_inbound(a_sid, f"sms:{a}:{WORKER_NUMBER}", a, WORKER_NUMBER, "table for 2 tomorrow at 8pm", [])).won
            # B: the turn ran and its reply was stored, then the process died before sending it.
            b, b_sid = person(), sid()
            key_b = f"sms:{b}:{WORKER_NUMBER}"
            assert (await store.claim_inbound(b_sid, key_b, b, WORKER_NUMBER, "table for 3 on friday at 7pm", [])).won
            made = await engine.handle(Turn(conversation_id=key_b, channel="sms", text="table for 3 on friday at 7pm",
                                            metadata={"message_sid": b_sid}))
            assert await recover_unanswered(engine, store, sender, 3, stale_after=0) == 2
            assert await recover_unanswered(engine, store, sender, 3, stale_after=0) == 0
            to_a = [m for m in fake_twilio.sent if m["To"] == a]
            to_b = [m for m in fake_twilio.sent if m["To"] == b]
            assert len(to_a) == 1 and "first name" in to_a[0]["Body"]
            assert [m["Body"] for m in to_b] == [made.reply]
            conv_b = await engine.store.conversation(key_b)
            assert conv_b.turns == 1  # B's turn was not run twice
        finally:
            await sender.close()
