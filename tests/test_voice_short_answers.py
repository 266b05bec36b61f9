"""Short answers on a phone line: a one-word answer is heard once, in the context of the
question just asked, and silence is not taken for an answer.

Clips are made with espeak-ng and put through the telephone path of a call (8 kHz G.711
mu-law), with the 0.5 s of silence pipecat pads each segment with, as `LocalWhisperSTT` hears them.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from channels.voice.audio import for_recogniser, read_wav, telephone
from channels.voice.recogniser import Recogniser, without_repeats
from channels.voice.vocabulary import expectation, is_yes_no_question
from dialogue.spec_loader import load_spec
from extraction.intents import yes_no
from tests.support.media_stream import Caller
from tests.support.server import WorkerServer
from worker.extract_io import ExtractRequest, run_one
from worker.extraction_setup import build_extractor

ROOT = Path(__file__).resolve().parent.parent
SPEC = load_spec(ROOT / "tests" / "data" / "specs" / "restaurant_booking.yaml")
EXTRACTOR = build_extractor(SPEC)
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=ZoneInfo("Europe/London"))
TOKEN = "short-answers-token-0123456789ab"
CONFIRMATION = "So that's a table for 4 on Friday 04 December at 19:00, under Maria Lopez. Is that right?"


@pytest.fixture(scope="module")
def recogniser() -> Recogniser:
    return Recogniser()


def spoken(text: str, folder: Path, voice: str = "en-us") -> tuple[np.ndarray, int]:
    path = folder / f"{uuid.uuid4().hex}.wav"
    subprocess.run([shutil.which("espeak-ng") or "espeak-ng", "-v", voice, "-s", "150", "-w", str(path), text], check=True)
    return read_wav(path)


def on_the_phone(samples: np.ndarray, rate: int) -> np.ndarray:
    audio = for_recogniser(telephone(samples, rate), 8000)
    return np.concatenate([audio, np.zeros(8000, np.float32)])


def field(name: str):  # noqa: ANN201
    return next(f for f in SPEC.fields if f.name == name)


def repeated(text: str) -> bool:
    """Whether a run of 1-3 words comes twice in a row ("Maria Maria", "Love it. Love it.")."""
    words = re.findall(r"[a-z0-9']+", text.lower())
    return any(words[i:i + n] == words[i + n:i + 2 * n] for n in (1, 2, 3) for i in range(len(words) - 2 * n + 1))


@pytest.mark.parametrize("said", ["Maria", "Lopez", "Nguyen", "Priya", "four", "seven thirty", "half past eight", "yes"])
def test_a_short_answer_is_written_once(recogniser: Recogniser, tmp_path: Path, said: str) -> None:
    for voice in ("en-us", "en-gb+f3"):
        heard = recogniser.hear_now(on_the_phone(*spoken(said, tmp_path, voice)))
        assert not repeated(heard.text), f"{said!r} ({voice}) heard as {heard.text!r}"


def test_a_phrase_said_over_and_over_by_the_model_is_kept_once() -> None:
    assert without_repeats("Maria Maria") == "Maria"
    assert without_repeats("Love it. Love it.") == "Love it."
    assert without_repeats("New Inn New Inn New Inn") == "New Inn"
    assert without_repeats("December the 5th. December the 5th") == "December the 5th."
    # The full decoder loops on whole sentences too.
    assert without_repeats("Can I bring my dog with me? Can I bring my dog with me") == "Can I bring my dog with me?"
    assert (without_repeats("I'd like a table for four people tomorrow. I'd like a table for four people tomorrow.")
            == "I'd like a table for four people tomorrow.")
    # Numbers repeat for real ("4 4 7 7"), and so may different words.
    assert without_repeats("4 4 7 7") == "4 4 7 7"
    assert without_repeats("No, I said no") == "No, I said no"


def value_of(name: str, text: str) -> object:
    """The value the restaurant worker takes from a turn's text when it has asked for `name`."""
    found = run_one(EXTRACTOR, SPEC, ExtractRequest(text=text, requested=[name], now=NOW))
    return (found["fields"].get(name) or {}).get("value")


@pytest.mark.parametrize(("name", "said"), [
    ("first_name", "Maria"), ("last_name", "Brown"), ("people", "four"), ("time", "seven pm"), ("date", "tomorrow"),
])
def test_an_answer_is_heard_in_the_context_of_its_question(recogniser: Recogniser, tmp_path: Path,
                                                            name: str, said: str) -> None:
    asked = field(name)
    heard = recogniser.hear_now(on_the_phone(*spoken(said, tmp_path)), expectation(asked, asked.prompt))
    assert value_of(name, heard.text) == value_of(name, said), heard


def test_the_confirmation_is_heard_as_a_yes_no_question(recogniser: Recogniser, tmp_path: Path) -> None:
    assert is_yes_no_question(CONFIRMATION) and not is_yes_no_question("And your last name?")
    for said, meaning in (("yes", True), ("yeah that's right", True), ("no", False)):
        heard = recogniser.hear_now(on_the_phone(*spoken(said, tmp_path)), expectation(None, CONFIRMATION))
        assert yes_no(heard.text) is meaning, (said, heard)


@pytest.mark.parametrize("said", ["half past seven then", "can we make it five people", "no, make it Friday"])
def test_a_new_value_said_at_the_read_back_is_heard_not_dropped_as_a_doubtful_yes(
        recogniser: Recogniser, tmp_path: Path, said: str) -> None:
    # At the confirmation (or an offer of other times) the caller may answer with a value, not a
    # yes or no: only a short answer is held to the yes/no no-speech bar (the examples' voice
    # conversation test lost "half past seven then" to it).
    offer = "Sorry, we're fully booked at 20:00 that day. I could do 19:00, 19:30 or 20:30. Which would suit you?"
    for question in (offer, CONFIRMATION):
        heard = recogniser.hear_now(on_the_phone(*spoken(said, tmp_path)), expectation(None, question, confirming=True))
        assert len(heard.text.split()) >= 3, (question, heard)


def test_a_caller_asking_to_hear_the_question_again_is_not_heard_as_an_answer(
        recogniser: Recogniser, tmp_path: Path) -> None:
    expect = expectation(field("people"), "Lovely. How many people will there be?")
    # Voices whose "pardon?" tiny.en hears at all (in en-gb+f3 it hears "5" before any rule applies).
    for said in ("Pardon?", "Excuse me?", "Hello?", "What?"):
        for voice in ("en-us", "en-us+m3"):
            heard = recogniser.hear_now(on_the_phone(*spoken(said, tmp_path, voice)), expect)
            assert not re.search(r"\d|one|two|three|four|five|six|seven|eight|nine|ten", heard.text.lower()), (said, voice, heard)


def test_silence_and_room_noise_are_neither_yes_nor_no(recogniser: Recogniser) -> None:
    expect = expectation(None, CONFIRMATION)
    quiet = np.zeros(16000, np.float32)
    hiss = np.random.default_rng(7).normal(0, 0.003, 16000).astype(np.float32)
    for audio in (quiet, hiss):
        heard = recogniser.hear_now(on_the_phone((audio * 32767).astype(np.int16), 16000), expect)
        assert yes_no(heard.text) is None, heard


# --- a live call -------------------------------------------------------------------------

ANSWERS = [("is that right", "Yes"), ("a table for", "Yes"), ("last name", "Brown"), ("first name", "Maria"), ("name", "Maria"),
           ("time", "Seven pm"), ("how many", "Four"), ("day", "Tomorrow")]


@pytest.fixture(scope="module")
def voice_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerServer]:
    server = WorkerServer("tests/data/specs/restaurant_booking.yaml", {
        "TWILIO_ACCOUNT_SID": "AC" + "e" * 32, "TWILIO_AUTH_TOKEN": TOKEN, "TWILIO_VOICE": "on",
        "TWILIO_API_BASE": "http://127.0.0.1:9"}, tmp_path_factory.mktemp("short") / "var")
    server.wait_ready(timeout=120)
    try:
        yield server
    finally:
        server.stop()


def stored_turns(server: WorkerServer, call_sid: str) -> list[str]:
    with sqlite3.connect(f"file:{server.var / 'transcripts.sqlite'}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT text FROM events WHERE conversation_id = ? AND direction = 'in' AND text IS NOT NULL "
                            "ORDER BY id", (f"voice:{call_sid}",)).fetchall()
    return [text for (text,) in rows]


async def test_a_call_answered_in_single_words_stores_each_answer_once_and_completes(
        voice_server: WorkerServer, recogniser: Recogniser, tmp_path: Path) -> None:
    said: list[str] = []
    answers: list[str] = []
    async with Caller(voice_server.base_url, TOKEN) as caller:
        await caller.listen()  # the greeting
        answers.append("I would like to book a table please")
        await caller.say(*spoken(answers[-1], tmp_path))
        for _ in range(12):  # room for a misheard answer or two
            said.append((await recogniser.hear(await caller.listen(quiet_for=2.0))).text.lower())
            if "booked" in said[-1] or caller.ended:
                break
            # Asked "are you still there?", a caller says their answer again.
            again = answers[-1] if "still there" in said[-1] else "Sorry?"
            answers.append(next((a for question, a in ANSWERS if question in said[-1]), again))
            await caller.say(*spoken(answers[-1], tmp_path))
        await caller.hung_up(timeout=20)
    turns = stored_turns(voice_server, caller.call_sid)
    transcript = f"caller said {answers}; worker said {said}; stored {turns}"
    # Each utterance is stored once: never written twice over, never two utterances in one turn.
    assert not any(repeated(t) for t in turns), transcript
    assert len(turns) <= len(answers) and all(len(t.split()) <= 8 for t in turns), transcript
    # Each answer came after the worker's line had ended: none is taken as talking over it.
    with sqlite3.connect(f"file:{voice_server.var / 'transcripts.sqlite'}?mode=ro", uri=True) as conn:
        metadata = [json.loads(m) for (m,) in conn.execute(
            "SELECT metadata FROM events WHERE conversation_id = ? AND direction = 'in' AND text IS NOT NULL",
            (f"voice:{caller.call_sid}",))]
    assert not [m for m in metadata if "talked_over" in m], transcript
    with sqlite3.connect(f"file:{voice_server.var / 'transcripts.sqlite'}?mode=ro", uri=True) as conn:
        [(outcome, fields)] = conn.execute("SELECT outcome, fields FROM conversations WHERE id = ?",
                                           (f"voice:{caller.call_sid}",)).fetchall()
    assert outcome == "completed", transcript
    booked = {name: value["value"] for name, value in json.loads(fields).items()}
    assert booked["people"] == 4 and booked["time"] == "19:00", transcript
