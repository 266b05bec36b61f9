"""Only Twilio starts or joins a call.

A Media Stream is let in only when its upgrade carries Twilio's signature over the stream URL,
it sends `start` in time, and its `start` presents the stream token the signed call webhook issued
for that CallSid, unused and unexpired. Everything else is closed with 1008 before any speech
pipeline is built. Calls beyond VOICE_MAX_CALLS are told the lines are busy.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import websockets

from channels.voice import stream_token
from channels.voice.admission import Announced, CallAdmissions, VoiceLimits
from storage.db import Database
from storage.migrations import migrate
from tests.support.fake_twilio import FakeTwilio
from tests.support.media_stream import Answer, Caller, refusal, ring, start_message, upgrade_signature
from tests.support.server import WorkerServer

TOKEN = "doors-token-0123456789abcdef0123"
ACCOUNT = "AC" + "d" * 32
POLICY_VIOLATION = 1008
SECRET = stream_token.stream_secret(TOKEN)  # what the server derives from its auth token


def new_sid(prefix: str) -> str:
    return prefix + uuid.uuid4().hex


# --- the stream token on its own ---------------------------------------------------------------

def test_a_token_grants_its_own_call_and_the_numbers_of_the_signed_webhook() -> None:
    token, _ = stream_token.issue("CA1", "+12025550123", "+15005550006", SECRET, now=1000, ttl_seconds=30)
    grant = stream_token.verify(token, SECRET, "CA1", now=1010)
    assert (grant.call_sid, grant.caller, grant.service) == ("CA1", "+12025550123", "+15005550006")
    assert len("token" + token) < 500  # Twilio's limit on a <Parameter>'s name and value


@pytest.mark.parametrize("reason, make", [
    ("another call", lambda t: (t, SECRET, "CA2", 1010)),
    ("expired", lambda t: (t, SECRET, "CA1", 1030)),
    ("signature", lambda t: (t, stream_token.stream_secret("another-auth-token"), "CA1", 1010)),
    ("signature", lambda t: (t.rsplit(".", 1)[0] + "." + "A" * 43, SECRET, "CA1", 1010)),
    ("malformed", lambda t: ("v1.e30", SECRET, "CA1", 1010)),
    ("no stream token", lambda t: ("", SECRET, "CA1", 1010)),
])
def test_a_token_is_refused_for_another_call_late_or_forged(reason: str, make) -> None:
    token, _ = stream_token.issue("CA1", "+12025550123", "+15005550006", SECRET, now=1000, ttl_seconds=30)
    with pytest.raises(stream_token.StreamTokenError, match=reason):
        stream_token.verify(*make(token))


def test_a_token_whose_caller_number_was_changed_is_refused() -> None:
    token, _ = stream_token.issue("CA1", "+12025550123", "+15005550006", SECRET, now=1000, ttl_seconds=30)
    version, body, mac = token.split(".")
    payload = json.loads(stream_token._unb64(body))
    payload["caller"] = "+19005550000"  # the attacker's choice of caller ID for a transfer
    changed = stream_token._b64(json.dumps(payload).encode())
    with pytest.raises(stream_token.StreamTokenError, match="signature"):
        stream_token.verify(f"{version}.{changed}.{mac}", SECRET, "CA1", now=1010)


def test_behind_a_proxy_the_signed_stream_url_is_the_public_one_with_wss() -> None:
    from channels.twilio.settings import TwilioSettings
    from channels.voice.webhook import stream_url

    proxied = TwilioSettings(account_sid=ACCOUNT, auth_token=TOKEN, public_base_url="https://worker.example.com")
    assert stream_url(proxied, "http://10.0.0.5:8080/") == "wss://worker.example.com/twilio/media"
    direct = TwilioSettings(account_sid=ACCOUNT, auth_token=TOKEN)
    assert stream_url(direct, "ws://127.0.0.1:8080/") == "ws://127.0.0.1:8080/twilio/media"


# --- admissions, shared by every worker process through the database --------------------------

async def test_a_call_is_admitted_once_across_processes_and_counted_until_it_ends(database_url: str) -> None:
    first, second = await Database.open(database_url), await Database.open(database_url)
    try:
        await migrate(first)
        limits = VoiceLimits(max_calls=2)
        a, b = CallAdmissions(first, limits), CallAdmissions(second, limits)  # two worker processes
        assert await a.announce("CA1", "n1") is Announced.admitted
        assert await b.announce("CA2", "n2") is Announced.admitted
        assert await a.announce("CA3", "n3") is Announced.busy  # two announced calls fill two places
        claims = await asyncio.gather(a.claim("CA1", "n1"), b.claim("CA1", "n1"))
        assert sorted(claims) == [False, True]  # one stream per call, whichever process it reached
        assert not await b.claim("CA2", "forged-nonce")
        assert await b.announce("CA1", "n9") is Announced.known  # no second token for a live call
        await a.end("CA1")
        assert not await a.claim("CA1", "n1")  # an ended call never streams again
        assert await b.announce("CA3", "n3") is Announced.admitted  # its place is free
    finally:
        await first.close()
        await second.close()


async def test_a_burst_of_calls_at_once_takes_the_free_places_and_no_more(database_url: str) -> None:
    first, second = await Database.open(database_url), await Database.open(database_url)
    try:
        await migrate(first)
        limits = VoiceLimits(max_calls=3)
        processes = [CallAdmissions(first, limits), CallAdmissions(second, limits)]
        results = await asyncio.gather(*(processes[n % 2].announce(f"CA{n}", f"n{n}") for n in range(12)))
        assert results.count(Announced.admitted) == 3 and results.count(Announced.busy) == 9
    finally:
        await first.close()
        await second.close()


# --- the real server --------------------------------------------------------------------------

def start_server(var: Path, **env: str) -> WorkerServer:
    server = WorkerServer("tests/data/specs/restaurant_booking.yaml", {
        "TWILIO_ACCOUNT_SID": ACCOUNT, "TWILIO_AUTH_TOKEN": TOKEN, "TWILIO_VOICE": "on", **env,
    }, var)
    server.wait_ready(timeout=120)
    return server


@pytest.fixture(scope="module")
def fake_twilio() -> Iterator[FakeTwilio]:
    with FakeTwilio() as server:
        yield server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, fake_twilio: FakeTwilio) -> Iterator[WorkerServer]:
    # Room for the calls these tests announce and never stream (each holds a place until its token expires).
    running = start_server(tmp_path_factory.mktemp("doors") / "var", TWILIO_API_BASE=fake_twilio.base_url,
                           VOICE_START_TIMEOUT_SECONDS="1", VOICE_MAX_CALLS="20")
    try:
        yield running
    finally:
        running.stop()


def rows(server: WorkerServer, sql: str, params: tuple = ()) -> list[tuple]:
    with sqlite3.connect(f"file:{server.var / 'transcripts.sqlite'}?mode=ro", uri=True) as conn:
        return conn.execute(sql, params).fetchall()


def conversation_started(server: WorkerServer, call_sid: str) -> bool:
    return bool(rows(server, "SELECT 1 FROM conversations WHERE id = ?", (f"voice:{call_sid}",)))


async def announced_call(server: WorkerServer) -> tuple[str, Answer]:
    call_sid = new_sid("CA")
    answer = await ring(server.base_url, TOKEN, call_sid)
    assert answer.stream_url is not None, answer.twiml
    return call_sid, answer


def signed(answer: Answer) -> str:
    assert answer.stream_url is not None
    return upgrade_signature(TOKEN, answer.stream_url)


async def test_an_unsigned_upgrade_is_closed_even_with_a_genuine_token(server: WorkerServer) -> None:
    call_sid, answer = await announced_call(server)
    start = start_message(call_sid, new_sid("MZ"), answer.parameters)
    assert await refusal(answer.stream_url, None, start) == POLICY_VIOLATION
    assert not conversation_started(server, call_sid)  # no pipeline, no greeting, nothing stored
    assert "media stream from 127.0.0.1 refused: missing or invalid X-Twilio-Signature" in server.log.read_text()


async def test_an_upgrade_signed_with_another_token_or_over_another_url_is_closed(server: WorkerServer) -> None:
    call_sid, answer = await announced_call(server)
    start = start_message(call_sid, new_sid("MZ"), answer.parameters)
    other_token = upgrade_signature("not-the-auth-token-0123456789abc", answer.stream_url)
    other_url = upgrade_signature(TOKEN, server.base_url + "/twilio/voice")
    assert await refusal(answer.stream_url, other_token, start) == POLICY_VIOLATION
    assert await refusal(answer.stream_url, other_url, start) == POLICY_VIOLATION
    assert not conversation_started(server, call_sid)


async def test_a_signed_upgrade_without_a_stream_token_is_closed(server: WorkerServer) -> None:
    call_sid, answer = await announced_call(server)
    start = start_message(call_sid, new_sid("MZ"), {"from": "+12025550123", "to": "+15005550006"})
    assert await refusal(answer.stream_url, signed(answer), start) == POLICY_VIOLATION
    assert not conversation_started(server, call_sid)


async def test_a_forged_or_expired_token_or_one_for_another_call_is_closed(server: WorkerServer) -> None:
    call_sid, answer = await announced_call(server)
    forged, _ = stream_token.issue(call_sid, "+12025550123", "+15005550006",
                                   stream_token.stream_secret("guessed-auth-token"), now=time.time(), ttl_seconds=30)
    expired, _ = stream_token.issue(call_sid, "+12025550123", "+15005550006", SECRET,
                                    now=time.time() - 3600, ttl_seconds=30)
    other_sid, other = await announced_call(server)
    for parameters, named in [({"token": forged}, call_sid), ({"token": expired}, call_sid),
                              (other.parameters, call_sid)]:  # another call's genuine token
        start = start_message(named, new_sid("MZ"), parameters)
        assert await refusal(answer.stream_url, signed(answer), start) == POLICY_VIOLATION, parameters
    assert not conversation_started(server, call_sid) and not conversation_started(server, other_sid)


async def test_a_socket_that_never_sends_start_is_closed(server: WorkerServer) -> None:
    _, answer = await announced_call(server)
    # The server waits VOICE_START_TIMEOUT_SECONDS (1 s here); 15 s is only how long this test waits.
    assert await refusal(answer.stream_url, signed(answer), None, timeout=15) == POLICY_VIOLATION
    assert "refused: no start within 1 s" in server.log.read_text()


async def test_a_second_socket_naming_a_live_call_cannot_join_it(server: WorkerServer, fake_twilio: FakeTwilio) -> None:
    async with Caller(server.base_url, TOKEN) as victim:
        await victim.listen()  # the greeting: the call is live
        assert victim.answer is not None
        # The attacker has everything the victim's stream had: the signed upgrade, the CallSid, the token.
        start = start_message(victim.call_sid, new_sid("MZ"), victim.answer.parameters)
        assert await refusal(victim.answer.stream_url, signed(victim.answer), start) == POLICY_VIOLATION
        # Nor does asking the webhook again give a second stream for the call.
        again = await ring(server.base_url, TOKEN, victim.call_sid)
        assert again.stream_url is None and again.hangs_up
        # The victim's call goes on: an answer keyed in is taken and answered.
        await victim.press("4#")
        await victim.listen()
        assert not victim.ended
    conversation = f"voice:{victim.call_sid}"
    assert rows(server, "SELECT text FROM events WHERE conversation_id = ? AND direction = 'in' AND text IS NOT NULL",
                (conversation,)) == [("4",)]
    assert not [u for u in fake_twilio.call_updates if u["CallSid"] == victim.call_sid]  # nobody transferred it
    # Once the call has ended its token opens nothing either.
    assert await refusal(victim.answer.stream_url, signed(victim.answer), start) == POLICY_VIOLATION


async def test_calls_beyond_the_limit_are_told_the_lines_are_busy(tmp_path: Path) -> None:
    server = start_server(tmp_path / "var", TWILIO_API_BASE="http://127.0.0.1:9", VOICE_MAX_CALLS="1")
    try:
        async with Caller(server.base_url, TOKEN) as first:
            await first.listen()  # the greeting: one call in progress
            busy = await ring(server.base_url, TOKEN, new_sid("CA"))
            assert busy.stream_url is None and busy.hangs_up
            assert "busy" in " ".join(busy.said)
        # When the first call has ended its place is free again (the stream's end is recorded as it closes).
        deadline = time.monotonic() + 20
        while (answer := await ring(server.base_url, TOKEN, new_sid("CA"))).stream_url is None:
            assert time.monotonic() < deadline, "the ended call still holds its place"
            await asyncio.sleep(0.1)
        # A call let in but not yet streaming holds its place too: a burst cannot overshoot the limit.
        assert (await ring(server.base_url, TOKEN, new_sid("CA"))).stream_url is None
        # The upgrade's signature covers only the URL, so a captured one can be replayed: sockets
        # waiting for their start are capped too (twice VOICE_MAX_CALLS), the next one is closed at once.
        assert answer.stream_url is not None
        held = [await websockets.connect(answer.stream_url, additional_headers={"X-Twilio-Signature": signed(answer)})
                for _ in range(2)]
        try:
            assert await refusal(answer.stream_url, signed(answer), None, timeout=15) == POLICY_VIOLATION
            assert "2 streams already waiting for their start" in server.log.read_text()
        finally:
            for ws in held:
                await ws.close()
    finally:
        server.stop()
