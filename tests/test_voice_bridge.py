"""The dialogue bridge on its own, driven with pipecat's test utilities: frames in, frames out,
against a real engine on a SQLite file."""

from __future__ import annotations

import json
import time
from pathlib import Path

from pipecat.audio.dtmf.types import KeypadEntry
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    EndFrame,
    InputDTMFFrame,
    InterruptionFrame,
    TranscriptionFrame,
    TTSSpeakFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.tests.utils import SleepFrame, run_test

from channels.twilio.settings import TwilioSettings
from channels.voice.bridge import DialogueBridge
from channels.voice.tuning import VoiceTuning
from channels.voice.transfer import CallControl
from dialogue.spec import WorkerSpec
from tests.support.fake_twilio import FakeTwilio
from tests.support.http_stub import HttpStub, JsonHandler
from worker.config import Settings
from worker.runtime import open_engine

CALL = "CA" + "f" * 32
TURN_HOLD_SECONDS = VoiceTuning().turn_hold_seconds


def said(frames: list) -> list[str]:
    return [f.text for f in frames if isinstance(f, TTSSpeakFrame)]


def heard(text: str) -> TranscriptionFrame:
    return TranscriptionFrame(text=text, user_id="caller", timestamp="2026-11-22T10:00:00Z")


def spoken(text: str) -> list:
    """What the VAD and the recogniser send for one stretch of speech."""
    return [VADUserStartedSpeakingFrame(), SleepFrame(sleep=0.05), VADUserStoppedSpeakingFrame(), heard(text)]


async def test_the_greeting_is_spoken_as_soon_as_the_call_starts(restaurant: WorkerSpec, tmp_path: Path) -> None:
    async with open_engine(restaurant, Settings(var_dir=tmp_path)) as engine:
        down, _ = await run_test(DialogueBridge(engine, "voice:" + CALL, {"call_sid": CALL}), frames_to_send=[])
    [greeting] = said(down)
    assert greeting.startswith("Hi, this is Sam at Trattoria Luigi")


async def test_keyed_digits_up_to_the_hash_are_one_answer(account_support: WorkerSpec, tmp_path: Path) -> None:
    keys = [InputDTMFFrame(button=KeypadEntry(k)) for k in "7*45719023#"]
    async with open_engine(account_support, Settings(var_dir=tmp_path)) as engine:
        bridge = DialogueBridge(engine, "voice:" + CALL, {"call_sid": CALL})
        down, _ = await run_test(bridge, frames_to_send=[*keys, SleepFrame(sleep=0.2)])
        [turn] = [r for r in bridge.results[1:]]
    assert turn.fields["account_number"].value == "45719023"  # the 7 before the star was dropped
    assert len(said(down)) == 2  # the greeting, then the next question: one turn for the whole number


async def test_the_caller_talking_over_the_worker_interrupts_it(restaurant: WorkerSpec, tmp_path: Path) -> None:
    async with open_engine(restaurant, Settings(var_dir=tmp_path)) as engine:
        bridge = DialogueBridge(engine, "voice:" + CALL, {"call_sid": CALL})
        down, up = await run_test(bridge, frames_to_send=[
            BotStartedSpeakingFrame(), SleepFrame(sleep=0.05), *spoken("a table for two tomorrow"), SleepFrame(sleep=0.8),
        ])
        rows = await engine.store.db.fetchall(
            "SELECT metadata FROM events WHERE direction = 'in' AND text IS NOT NULL", (), ("metadata",))
    assert any(isinstance(f, InterruptionFrame) for f in [*down, *up])
    assert rows[0]["metadata"]["talked_over"][0].startswith("Hi, this is Sam")


async def test_a_transfer_twilio_refuses_is_apologised_for_and_the_call_ends(restaurant: WorkerSpec, tmp_path: Path) -> None:
    with FakeTwilio() as fake:
        fake.script = [404]
        calls = CallControl(TwilioSettings(account_sid="AC" + "a" * 32, auth_token="t" * 32, api_base=fake.base_url))
        async with open_engine(restaurant, Settings(var_dir=tmp_path)) as engine:
            bridge = DialogueBridge(engine, "voice:" + CALL, {"call_sid": CALL, "from": "+12025550123"}, calls=calls)
            down, _ = await run_test(bridge, send_end_frame=False, frames_to_send=[
                *spoken("I want to talk to a person"), SleepFrame(sleep=0.8),
                BotStartedSpeakingFrame(), BotStoppedSpeakingFrame(), SleepFrame(sleep=1.0),
            ])
            [row] = await engine.store.db.fetchall(
                "SELECT text, metadata FROM events WHERE direction = 'out' AND text LIKE '%put you through%'", (), ("metadata",))
        await calls.close()
    assert "colleague" in said(down)[1] and "couldn't put you through" in said(down)[2]
    assert isinstance(down[-1], EndFrame)  # the worker's EndWorkerFrame, as the pipeline ends (the test sent no end)
    assert row["metadata"]["event"] == "transfer" and not row["metadata"]["ok"]
    assert json.dumps(row["metadata"]["error"]).startswith('"404')


async def test_a_pause_mid_sentence_does_not_cut_the_callers_turn_in_two(restaurant: WorkerSpec, tmp_path: Path) -> None:
    async with open_engine(restaurant, Settings(var_dir=tmp_path)) as engine:
        bridge = DialogueBridge(engine, "voice:" + CALL, {"call_sid": CALL})
        down, _ = await run_test(bridge, frames_to_send=[
            *spoken("A table for four"), SleepFrame(sleep=0.15),  # a breath, shorter than the hold
            *spoken("tomorrow at seven pm"), SleepFrame(sleep=0.8),
        ])
        rows = await engine.store.db.fetchall("SELECT text FROM events WHERE direction = 'in' AND text IS NOT NULL")
    assert [r["text"] for r in rows] == ["A table for four tomorrow at seven pm"]
    assert len(said(down)) == 2  # the greeting and one answer
    assert bridge.timings[-1]["hold_ms"] >= TURN_HOLD_SECONDS * 1000 - 5 and bridge.timings[-1]["vad_wait_ms"] == 0


async def test_nothing_recognised_is_not_a_turn(restaurant: WorkerSpec, tmp_path: Path) -> None:
    async with open_engine(restaurant, Settings(var_dir=tmp_path)) as engine:
        bridge = DialogueBridge(engine, "voice:" + CALL, {"call_sid": CALL})
        down, _ = await run_test(bridge, frames_to_send=[*spoken(""), SleepFrame(sleep=0.8)])
    assert len(said(down)) == 1 and len(bridge.results) == 1  # a cough: the greeting only, no "sorry?"


async def test_speech_that_gave_no_words_is_asked_again_instead_of_waiting_for_ever(
        restaurant: WorkerSpec, tmp_path: Path) -> None:
    # A CI call waited 30 s for a reply here: the caller's answer was not made out, the speech had
    # cancelled the silence wait, and the worker waited for a turn that never came.
    tuning = VoiceTuning(unheard_seconds=0.3)
    async with open_engine(restaurant, Settings(var_dir=tmp_path)) as engine:
        bridge = DialogueBridge(engine, "voice:" + CALL, {"call_sid": CALL}, tuning=tuning)
        down, _ = await run_test(bridge, frames_to_send=[
            BotStartedSpeakingFrame(), BotStoppedSpeakingFrame(), *spoken(""), SleepFrame(sleep=0.6)])
        rows = await engine.store.db.fetchall(
            "SELECT metadata FROM events WHERE json_extract(metadata, '$.event') = 'reprompt'", (), ("metadata",))
    greeting, again = said(down)
    # The question again, not the whole greeting: the caller has been introduced already.
    assert again == "Sorry, I didn't catch that. " + greeting.split(". ")[-1]
    assert [(r["metadata"]["not_heard"], r["metadata"]["after_silence_seconds"]) for r in rows] == [(True, 0.3)]


async def test_words_heard_after_the_pause_get_their_answer_and_no_sorry(restaurant: WorkerSpec, tmp_path: Path) -> None:
    tuning = VoiceTuning(unheard_seconds=0.3)
    async with open_engine(restaurant, Settings(var_dir=tmp_path)) as engine:
        bridge = DialogueBridge(engine, "voice:" + CALL, {"call_sid": CALL}, tuning=tuning)
        down, _ = await run_test(bridge, frames_to_send=[
            BotStartedSpeakingFrame(), BotStoppedSpeakingFrame(), *spoken("a table for two"), SleepFrame(sleep=0.8)])
    assert not [line for line in said(down) if "catch that" in line]
    assert len(said(down)) == 2


async def test_a_question_asked_again_after_silence_does_not_thank_for_an_answer_again(
        restaurant: WorkerSpec, tmp_path: Path) -> None:
    tuning = VoiceTuning(silence_seconds=0.3)
    async with open_engine(restaurant, Settings(var_dir=tmp_path)) as engine:
        bridge = DialogueBridge(engine, "voice:" + CALL, {"call_sid": CALL}, tuning=tuning)
        down, _ = await run_test(bridge, frames_to_send=[
            BotStartedSpeakingFrame(), BotStoppedSpeakingFrame(), *spoken("a table for two tomorrow"),
            SleepFrame(sleep=TURN_HOLD_SECONDS + 0.2), BotStartedSpeakingFrame(), BotStoppedSpeakingFrame(),
            SleepFrame(sleep=0.6)])
    _, answer, again = said(down)[:3]
    assert answer.startswith("Lovely. ") and "time" in answer
    assert again == "Are you still there? " + answer.removeprefix("Lovely. ")


async def test_the_recogniser_listens_for_digits_only_while_a_digit_field_is_asked(
        account_support: WorkerSpec, tmp_path: Path) -> None:
    from channels.voice.recogniser import Recogniser
    from channels.voice.services import LocalWhisperSTT

    stt = LocalWhisperSTT(Recogniser())
    async with open_engine(account_support, Settings(var_dir=tmp_path)) as engine:
        bridge = DialogueBridge(engine, "voice:" + CALL, {"call_sid": CALL}, stt=stt)
        await run_test(bridge, frames_to_send=[])
        assert bridge.results[0].requested == "account_number"
        assert stt.digit_lengths == (8, 8)  # the spec's account number: exactly 8 digits
        await run_test(bridge, frames_to_send=[*spoken("45719023"), SleepFrame(sleep=TURN_HOLD_SECONDS + 0.3)])
        assert bridge.results[-1].requested == "reason"
        assert stt.digit_lengths is None  # a free-text answer is transcribed as it is


async def test_after_the_read_back_the_recogniser_listens_for_yes_or_no_however_the_line_is_worded(
        restaurant: WorkerSpec, tmp_path: Path) -> None:
    from channels.voice.recogniser import Recogniser
    from channels.voice.services import LocalWhisperSTT

    # A read-back that is no question in its words: the dialogue's phase says a yes or no is due.
    plain = restaurant.script.model_copy(update={"confirmation": "A table for {people} at {time:%H:%M} under {first_name} {last_name}."})
    spec = restaurant.model_copy(update={"script": plain})
    stt = LocalWhisperSTT(Recogniser())
    async with open_engine(spec, Settings(var_dir=tmp_path)) as engine:
        bridge = DialogueBridge(engine, "voice:" + CALL, {"call_sid": CALL}, stt=stt)
        await run_test(bridge, frames_to_send=[])
        for answer in ("A table for four tomorrow at seven pm", "Maria", "Lopez"):
            await run_test(bridge, frames_to_send=[*spoken(answer), SleepFrame(sleep=TURN_HOLD_SECONDS + 0.3)])
        assert bridge.results[-1].phase == "confirming", [r.phase for r in bridge.results]
        assert stt.expecting is not None and stt.expecting.kind == "yes_no"


class _SlowSystem(JsonHandler):
    """The business's availability API, answering after 1.5 s."""

    def do_GET(self) -> None:  # noqa: N802
        time.sleep(1.5)
        self.send_json(200, {"available": True})


class SlowSystem(HttpStub):
    handler_class = _SlowSystem


def slow_line(origin: str) -> WorkerSpec:
    return WorkerSpec.model_validate({
        "name": "slow_line", "persona": "Sam", "goal": "Check a table",
        "script": {"greeting": "Hi.", "confirmation": "Right?", "closing": "Bye."},
        "fields": [{"name": "people", "type": "count", "prompt": "How many of you?"}],
        "routing": {"start_task": "check"},
        "tasks": [{"name": "check", "examples": ["is there a table"],
                   "steps": [{"ask": "people"}, {"call": "availability"}, {"say": "There is a table."}, "end"]}],
        "actions": [{"name": "availability", "method": "GET", "url": f"{origin}/availability?people={{people}}",
                     "timeout": 5, "retries": 0, "result": {"type": "object", "properties": {"available": {"type": "boolean"}}}}],
    })


async def test_a_slow_action_gets_a_holding_line_before_its_answer(tmp_path: Path) -> None:
    with SlowSystem() as system:
        spec = slow_line(system.origin)
        async with open_engine(spec, Settings(var_dir=tmp_path)) as engine:
            bridge = DialogueBridge(engine, "voice:" + CALL, {"call_sid": CALL})
            down, _ = await run_test(bridge, frames_to_send=[*spoken("four of us"), SleepFrame(sleep=2.5)])
    lines = said(down)
    assert lines[1] == "One moment, please." and "There is a table" in lines[2], lines


async def test_a_quick_turn_has_no_holding_line(restaurant: WorkerSpec, tmp_path: Path) -> None:
    async with open_engine(restaurant, Settings(var_dir=tmp_path)) as engine:
        bridge = DialogueBridge(engine, "voice:" + CALL, {"call_sid": CALL})
        down, _ = await run_test(bridge, frames_to_send=[*spoken("a table for four tomorrow at seven pm"), SleepFrame(sleep=1.5)])
    assert "One moment, please." not in said(down)
