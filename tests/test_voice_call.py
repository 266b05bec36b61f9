"""A phone call end to end: Twilio's webhook and Media Stream against the real server, the
caller's speech made with espeak-ng, the worker's speech transcribed back."""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
import subprocess
import wave
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree

import httpx
import numpy as np
import pytest
from twilio.request_validator import RequestValidator

from channels.voice.audio import read_wav
from channels.voice.recogniser import Recogniser
from tests.support.fake_twilio import FakeTwilio
from tests.support.media_stream import Caller
from tests.support.server import WorkerServer

TOKEN = "voice-token-0123456789abcdef0123"
ACCOUNT = "AC" + "c" * 32


def start_voice_server(worker: str, var: Path, **env: str) -> WorkerServer:
    server = WorkerServer(worker, {
        "TWILIO_ACCOUNT_SID": ACCOUNT, "TWILIO_AUTH_TOKEN": TOKEN, "TWILIO_VOICE": "on",
        "TWILIO_API_BASE": "http://127.0.0.1:9",
        # These calls time and transcribe what they hear; the holding line has its own test
        # (tests/test_voice_bridge.py), and a turn slowed by a busy CI machine must not add one.
        "VOICE_HOLDING_AFTER_SECONDS": "5", **env,
    }, var)
    server.wait_ready(timeout=120)
    return server


@pytest.fixture(scope="module")
def fake_twilio() -> Iterator[FakeTwilio]:
    with FakeTwilio() as server:
        yield server


@pytest.fixture(scope="module")
def voice_server(tmp_path_factory: pytest.TempPathFactory, fake_twilio: FakeTwilio) -> Iterator[WorkerServer]:
    var = tmp_path_factory.mktemp("voice") / "var"
    server = start_voice_server("tests/data/specs/restaurant_booking.yaml", var, TWILIO_API_BASE=fake_twilio.base_url,
                                VOICE_RECORDINGS_DIR=str(var / "recordings"))
    try:
        yield server
    finally:
        server.stop()


def speech(text: str, tmp_path: Path) -> tuple:
    path = tmp_path / f"{abs(hash(text))}.wav"
    subprocess.run([shutil.which("espeak-ng") or "espeak-ng", "-v", "en-us", "-s", "150", "-w", str(path), text], check=True)
    return read_wav(path)


def test_the_call_webhook_connects_a_media_stream(voice_server: WorkerServer) -> None:
    url = voice_server.base_url + "/twilio/voice"
    params = {"CallSid": "CA" + "1" * 32, "AccountSid": ACCOUNT, "From": "+12025550123", "To": "+15005550006"}
    signed = {"X-Twilio-Signature": RequestValidator(TOKEN).compute_signature(url, params)}
    response = httpx.post(url, data=params, headers=signed)
    assert response.status_code == 200
    stream = ElementTree.fromstring(response.text).find("./Connect/Stream")
    assert stream is not None and stream.get("url") == voice_server.base_url.replace("http", "ws") + "/twilio/media"
    # The stream gets a token for this call alone; the caller's number travels inside it, signed.
    assert [p.get("name") for p in stream.iter("Parameter")] == ["token"]
    forged = httpx.post(url, data=params, headers={"X-Twilio-Signature": "AAAA"})
    assert forged.status_code == 403


# What a caller says to each question, as a person would answer a receptionist. The caller answers
# what is asked, so a word the recogniser misses is asked for again and the test still checks the
# conversation rather than one recognition.
# The read-back is known by several of its words: Whisper tiny hearing "is that right" as "is
# that alright" once sent "Tomorrow please" (for the "Tuesday" in it) three times over.
BOOKING_ANSWERS = [
    (("is that right", "that right", "so that's", "under maria"), "Yes, that's right"),
    (("last name",), "Lopez"),
    (("name",), "My name is Maria Lopez"),
    (("time",), "At seven p m"),
    (("how many",), "Four people"),
    (("day",), "Tomorrow please"),
]


async def test_a_booking_by_phone_from_greeting_to_hang_up(voice_server: WorkerServer, tmp_path: Path) -> None:
    recogniser = Recogniser()
    said: list[str] = []
    async with Caller(voice_server.base_url, TOKEN) as caller:
        greeting = await recogniser.hear(await caller.listen())
        assert "table" in greeting.text.lower()  # the persona's name is checked in the stored greeting below
        await caller.say(*speech("A table for four people tomorrow at seven p m please", tmp_path))
        for _ in range(12):  # room for a misheard answer or two on a loaded machine
            try:
                heard_now = await caller.listen(quiet_for=2.0)
            except TimeoutError as exc:  # say what the worker stored, so a failure can be read
                raise AssertionError(f"{exc}; stored: {stored_events(voice_server, caller.call_sid)}") from exc
            said.append((await recogniser.hear(heard_now)).text.lower())
            if "booked" in said[-1] or caller.ended:
                break
            answer = next((a for cues, a in BOOKING_ANSWERS if any(cue in said[-1] for cue in cues)), "Sorry, say that again?")
            await caller.say(*speech(answer, tmp_path))
        await caller.hung_up(timeout=20)  # the worker ends the call after its closing line
    rows = db_rows(voice_server, "SELECT text, metadata FROM events WHERE conversation_id = ? AND direction = 'in' "
                   "AND text IS NOT NULL ORDER BY id", (f"voice:{caller.call_sid}",))
    heard = [text for text, _ in rows]
    transcript = f"worker said {said}; worker heard {heard}"
    [(greeted,)] = db_rows(voice_server, "SELECT text FROM events WHERE conversation_id = ? AND direction = 'out' "
                           "AND text IS NOT NULL ORDER BY id LIMIT 1", (f"voice:{caller.call_sid}",))
    assert greeted.startswith("Hi, this is Sam"), greeted
    # The caller waited for each line to end: no answer is taken as talking over the worker.
    assert not [m for _, m in rows if "talked_over" in json.loads(m)], transcript
    confirmation = next((s for s in said if "table for" in s), "")  # the read-back
    assert "table for 4" in confirmation.replace("four", "4"), transcript
    assert "7pm" in said[-1].replace(" ", "").replace(".", ""), transcript  # "19:00" said as a person would
    [(outcome, fields)] = db_rows(voice_server, "SELECT outcome, fields FROM conversations WHERE id = ?",
                                  (f"voice:{caller.call_sid}",))
    assert outcome == "completed", transcript
    booked = {name: value["value"] for name, value in json.loads(fields).items()}
    assert booked["people"] == 4 and booked["time"] == "19:00" and booked["last_name"] == "Lopez", transcript
    ended = call_ended(voice_server, caller.call_sid)
    assert ended["ended_by"] == "worker" and ended["duration_seconds"] > 10
    spoken = [t for t in ended["turns"] if t["input"] == "speech"]
    assert len(spoken) == len(said)  # every answer the caller gave, timed stage by stage
    assert all(t["stt_ms"] > 0 and t["dialogue_ms"] >= 0 and t["tts_first_audio_ms"] > 0 for t in spoken)


def stored_events(server: WorkerServer, call_sid: str) -> list[tuple]:
    return db_rows(server, "SELECT direction, text, metadata FROM events WHERE conversation_id = ? ORDER BY id",
                   (f"voice:{call_sid}",))


def call_ended(server: WorkerServer, call_sid: str) -> dict:
    [(metadata,)] = db_rows(server, "SELECT metadata FROM events WHERE conversation_id = ? "
                            "AND json_extract(metadata, '$.event') = 'call ended'", (f"voice:{call_sid}",))
    return json.loads(metadata)


def db_rows(server: WorkerServer, sql: str, params: tuple = ()) -> list[tuple]:
    with sqlite3.connect(f"file:{server.var / 'transcripts.sqlite'}?mode=ro", uri=True) as conn:
        return conn.execute(sql, params).fetchall()


async def test_an_account_number_keyed_in_on_the_phone_keypad(tmp_path: Path) -> None:
    server = start_voice_server("tests/data/specs/account_support.yaml", tmp_path / "var")
    try:
        recogniser = Recogniser()
        async with Caller(server.base_url, TOKEN) as caller:
            greeting = (await recogniser.hear(await caller.listen())).text.lower()
            assert "account number" in greeting
            await caller.press("9*45719023#")  # a slip, star to start again, then the number and hash
            reply = (await recogniser.hear(await caller.listen())).text.lower()
            assert "fraud" in reply and "account number" not in reply  # on to the next question (the reason)
        [(text, metadata)] = db_rows(server, "SELECT text, metadata FROM events WHERE direction = 'in' AND text IS NOT NULL")
        assert text == "45719023" and json.loads(metadata)["input"] == "dtmf"
        [(fields,)] = db_rows(server, "SELECT fields FROM events WHERE direction = 'out' ORDER BY id DESC LIMIT 1")
        assert json.loads(fields)["account_number"]["value"] == "45719023"
    finally:
        server.stop()


async def test_talking_over_the_worker_stops_its_speech_at_once(voice_server: WorkerServer, tmp_path: Path) -> None:
    async with Caller(voice_server.base_url, TOKEN) as caller:
        while not caller.heard:  # the greeting has started
            await asyncio.sleep(0.02)
        await caller.say(*speech("Sorry, can I book a table for two tonight", tmp_path))
        clears = [e for e in caller.events if e.get("event") == "clear"]
        assert clears, "Twilio was not told to drop the worker's queued speech"
        reply = (await Recogniser().hear(await caller.listen())).text.lower()
        # answered with the next question (which one depends on what the recogniser caught), not the greeting again
        assert any(question in reply for question in ("time", "day", "how many", "name")), reply
        assert "trattoria" not in reply
    [(metadata,)] = db_rows(voice_server, "SELECT metadata FROM events WHERE conversation_id = ? AND direction = 'in' "
                            "AND text IS NOT NULL", (f"voice:{caller.call_sid}",))
    assert json.loads(metadata)["talked_over"][0].startswith("Hi, this is Sam")


async def test_a_silent_caller_is_asked_again_then_told_goodbye(tmp_path: Path) -> None:
    server = start_voice_server("tests/data/specs/restaurant_booking.yaml", tmp_path / "var", VOICE_SILENCE_SECONDS="2")
    try:
        recogniser = Recogniser()
        async with Caller(server.base_url, TOKEN) as caller:
            await caller.listen()  # the greeting; then the caller says nothing at all
            # The re-prompt is spoken sentence by sentence: collect what is said until the goodbye.
            heard: list[str] = []
            while not any("let you go" in h for h in heard) and len(heard) < 6 and not caller.ended:
                heard.append((await recogniser.hear(await caller.listen(timeout=15))).text.lower())
            said = " ".join(heard)
            assert "still there" in said.split("let you go")[0] and "let you go" in said, heard
            await caller.hung_up(timeout=10)
        conversation = f"voice:{caller.call_sid}"
        [(outcome,)] = db_rows(server, "SELECT outcome FROM conversations WHERE id = ?", (conversation,))
        assert outcome == "abandoned"
        # Every line the caller heard is in the transcript, in order: the re-prompt repeats the question.
        lines = [text for (text,) in db_rows(server, "SELECT text FROM events WHERE conversation_id = ? AND direction = 'out' "
                                                     "ORDER BY id", (conversation,))]
        assert len(lines) == 3 and lines[1].startswith("Are you still there?") and "What day" in lines[1], lines
        assert "let you go" in lines[2]
    finally:
        server.stop()



async def test_a_caller_asking_for_a_person_is_told_then_put_through(
    voice_server: WorkerServer, fake_twilio: FakeTwilio, tmp_path: Path,
) -> None:
    async with Caller(voice_server.base_url, TOKEN, caller="+12025550188") as caller:
        await caller.listen()  # the greeting
        await caller.say(*speech("Can I speak to a real person please", tmp_path))
        told = (await Recogniser().hear(await caller.listen())).text.lower()
        assert "colleague" in told
        await caller.hung_up(timeout=15)  # the stream ends: from here Twilio carries the call
    [update] = [u for u in fake_twilio.call_updates if u["CallSid"] == caller.call_sid]
    dial = ElementTree.fromstring(update["Twiml"]).find("./Dial")
    assert dial is not None and dial.get("callerId") == "+12025550188"  # the person answering sees who is calling
    assert dial.findtext("Number") == "+441632960000"  # the rule's number
    conversation = f"voice:{caller.call_sid}"
    [(metadata,)] = db_rows(voice_server, "SELECT metadata FROM events WHERE conversation_id = ? "
                            "AND json_extract(metadata, '$.event') = 'transfer'", (conversation,))
    transfer = json.loads(metadata)
    [(handoff_id, rule, packet)] = db_rows(voice_server, "SELECT id, rule, packet FROM handoffs WHERE conversation_id = ?",
                                           (conversation,))
    assert transfer["ok"] and transfer["handoff_id"] == handoff_id and rule == "asks_for_human"
    # The packet carries what the caller said, as it was heard and stored (the rule's own reason,
    # "You asked to speak to someone.", is elsewhere in the packet and must not be what is found).
    heard = [text for (text,) in db_rows(voice_server, "SELECT text FROM events WHERE conversation_id = ? AND direction = 'in' "
                                         "AND text IS NOT NULL ORDER BY id", (conversation,))]
    said = [t["text"] for t in json.loads(packet)["transcript"] if t["role"] == "user"]
    assert said == heard and len(said) == 1 and "person" in said[0].lower(), said
    [(outcome,)] = db_rows(voice_server, "SELECT outcome FROM conversations WHERE id = ?", (conversation,))
    assert outcome == "escalated"


async def test_a_caller_hanging_up_mid_sentence_leaves_an_abandoned_call_and_its_recording(
    voice_server: WorkerServer, tmp_path: Path,
) -> None:
    async with Caller(voice_server.base_url, TOKEN) as caller:
        await caller.listen()  # the greeting
        samples, rate = speech("I would like a table for six people on Friday evening", tmp_path)
        await caller.say(samples[: len(samples) // 2], rate)
    # the caller is gone; the worker notices, stores what it knows and stays up for the next call
    for _ in range(100):
        if db_rows(voice_server, "SELECT 1 FROM events WHERE conversation_id = ? AND json_extract(metadata, '$.event') "
                   "= 'call ended'", (f"voice:{caller.call_sid}",)):
            break
        await asyncio.sleep(0.1)
    ended = call_ended(voice_server, caller.call_sid)
    assert ended["ended_by"] == "caller"
    [(outcome,)] = db_rows(voice_server, "SELECT outcome FROM conversations WHERE id = ?", (f"voice:{caller.call_sid}",))
    assert outcome == "abandoned"
    audio, _ = read_wav(ended["recording"])
    assert abs(audio.astype(int)).max() > 1000  # not silence: both sides are in it
    with wave.open(ended["recording"]) as recorded:
        assert recorded.getnchannels() == 2 and recorded.getframerate() == 8000  # caller left, worker right
        assert recorded.getnframes() / 8000 > 3  # the greeting and the half sentence
    assert httpx.get(voice_server.base_url + "/healthz").status_code == 200


async def test_an_account_number_said_digit_by_digit_by_a_real_speaker(tmp_path: Path) -> None:
    from tests.conftest import shipped_data

    number = "40729135"
    # One speaker's recordings, one per digit, with the short pauses of someone reading a card.
    parts = [np.zeros(1600, dtype=np.int16)]
    for d in number:
        samples, rate = read_wav(shipped_data("fsdd", f"{d}_jackson_{(7 * int(d) + 3) % 50}.wav"))
        parts += [samples, np.zeros(int(0.15 * rate), dtype=np.int16)]
    server = start_voice_server("tests/data/specs/account_support.yaml", tmp_path / "var")
    try:
        recogniser = Recogniser()
        async with Caller(server.base_url, TOKEN) as caller:
            greeting = (await recogniser.hear(await caller.listen())).text.lower()
            assert "account number" in greeting
            await caller.say(np.concatenate(parts), 8000)
            reply = (await recogniser.hear(await caller.listen())).text.lower()
        [(text, metadata)] = db_rows(server, "SELECT text, metadata FROM events WHERE direction = 'in' AND text IS NOT NULL")
        assert text == number, (text, metadata, reply)
        assert "transcribed" in json.loads(metadata)  # what plain transcription made of it, kept for review
        [(fields,)] = db_rows(server, "SELECT fields FROM events WHERE direction = 'out' ORDER BY id DESC LIMIT 1")
        assert json.loads(fields)["account_number"]["value"] == number
        assert "account number" not in reply  # on to the next question
    finally:
        server.stop()
