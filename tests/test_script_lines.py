"""Decisions live in the core, not in the channels. Every sentence a person reads or hears
comes from the spec's script: the lines the channels say themselves (compliance answers,
notices, the voice lines around a call) have defaults and a spec can change them; `spec check`
holds them to the same template rules as any line. The compliance keywords are one list, and
how a conversation that ends outside a turn ends is the engine's call."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from pipecat.frames.frames import BotStartedSpeakingFrame, BotStoppedSpeakingFrame, TTSSpeakFrame
from pipecat.tests.utils import SleepFrame, run_test

from channels.twilio.settings import TwilioSettings
from channels.voice.bridge import DialogueBridge
from channels.voice.transfer import CallControl
from dialogue.events import Turn
from dialogue.spec import Script, WorkerSpec
from extraction.intents import compliance_keyword, detect_intents
from storage.clock import utcnow
from tests.conftest import ROOT, SPECS
from tests.support.fake_twilio import FakeTwilio
from tests.support.server import WorkerServer
from tests.test_sms import ACCOUNT, Phone
from tests.test_voice_bridge import spoken
from worker.config import Settings
from worker.runtime import open_engine

TOKEN = "test-auth-token-0123456789abcdef"  # the token tests.test_sms.Phone signs with
OPTED_OUT = "Done: no more texts from Luigi's. Text START if you change your mind."
EMPTY = "That one arrived blank. What can I do for you?"
TRANSFER_FAILED = "Our host is away from the phone. We'll ring you back soon."
NO_ANSWER = "Nobody picked up at the restaurant; we'll ring you back soon."
CALL = "CA" + "e" * 32


def restaurant_with(**lines: str) -> dict:
    spec = yaml.safe_load((SPECS / "restaurant_booking.yaml").read_text())
    spec["script"].update(lines)
    return spec


@pytest.fixture(scope="module")
def sms_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerServer]:
    home = tmp_path_factory.mktemp("script-lines")
    spec = home / "restaurant.yaml"
    spec.write_text(yaml.safe_dump(restaurant_with(sms_opted_out=OPTED_OUT, sms_empty=EMPTY)))
    with FakeTwilio() as fake:
        server = WorkerServer(str(spec), {
            "TWILIO_ACCOUNT_SID": ACCOUNT, "TWILIO_AUTH_TOKEN": TOKEN, "TWILIO_API_BASE": fake.base_url,
        }, home / "var")
        try:
            server.wait_ready()
            yield server
        finally:
            server.stop()


def test_the_sms_opt_out_and_empty_message_answers_are_the_specs(sms_server: WorkerServer) -> None:
    phone = Phone(sms_server)
    assert phone.text("   ") == EMPTY
    assert phone.text("Stop") == OPTED_OUT


async def test_a_failed_transfer_is_apologised_for_in_the_specs_words(restaurant: WorkerSpec, tmp_path: Path) -> None:
    spec = restaurant.model_copy(update={"script": restaurant.script.model_copy(
        update={"voice_transfer_failed": TRANSFER_FAILED, "voice_no_answer": NO_ANSWER})})
    with FakeTwilio() as fake:
        fake.script = [404]
        calls = CallControl(TwilioSettings(account_sid="AC" + "a" * 32, auth_token="t" * 32, api_base=fake.base_url))
        async with open_engine(spec, Settings(var_dir=tmp_path)) as engine:
            bridge = DialogueBridge(engine, f"voice:{CALL}:{uuid.uuid4().hex}", {"call_sid": CALL, "from": "+12025550123"},
                                    calls=calls)
            down, _ = await run_test(bridge, send_end_frame=False, frames_to_send=[
                *spoken("I want to talk to a person"), SleepFrame(sleep=0.8),
                BotStartedSpeakingFrame(), BotStoppedSpeakingFrame(), SleepFrame(sleep=1.0),
            ])
        await calls.close()
    said = [f.text for f in down if isinstance(f, TTSSpeakFrame)]
    assert said[-1] == TRANSFER_FAILED
    [update] = [r for r in fake.requests if "/Calls/" in r["path"]]
    assert NO_ANSWER in update["form"]["Twiml"]  # what the caller hears if the person does not pick up


def spec_check(tmp_path: Path, spec: dict) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "worker.yaml"
    path.write_text(yaml.safe_dump(spec))
    return subprocess.run([sys.executable, "-m", "worker.cli", "spec", "check", str(path)],
                          capture_output=True, text=True, cwd=ROOT)


def test_spec_check_accepts_the_channel_lines_and_refuses_a_bad_placeholder(tmp_path: Path) -> None:
    good = spec_check(tmp_path, restaurant_with(sms_resubscribed="Welcome back to {worker}!", email_no_text=EMPTY))
    assert good.returncode == 0, good.stderr
    bad = spec_check(tmp_path, restaurant_with(sms_resubscribed="Welcome back, {customer.__class__}!"))
    assert bad.returncode == 2 and "script.sms_resubscribed" in bad.stderr and "Traceback" not in bad.stderr


def test_every_channel_line_has_a_default_and_a_description() -> None:
    channel_lines = [name for name in Script.model_fields if name.startswith(("sms_", "email_", "voice_"))]
    assert len(channel_lines) >= 8
    for name in channel_lines:
        field = Script.model_fields[name]
        assert field.default and field.description, name


def test_the_compliance_keywords_are_one_list_for_sms_and_the_dialogue() -> None:
    assert [compliance_keyword(t) for t in ("Stop!", "end", "S.T.O.P", "unstop", "Info", "please stop texting")] == [
        "stop", "stop", "stop", "start", "help", None]
    # The dialogue reads a turn the way the SMS webhook does: END and CANCEL leave, INFO asks for help.
    assert "stop" in detect_intents("END") and "stop" in detect_intents("Cancel.")
    assert "help" in detect_intents("info!") and "help" in detect_intents("what can you do?")


async def test_a_conversation_ended_outside_a_turn_is_abandoned_unless_it_already_had_an_outcome(
        restaurant: WorkerSpec, tmp_path: Path) -> None:
    async with open_engine(restaurant, Settings(var_dir=tmp_path)) as engine:
        silent, handed_over = f"voice:{uuid.uuid4().hex}", f"voice:{uuid.uuid4().hex}"
        await engine.handle(Turn(conversation_id=silent, channel="voice", text=None, time=utcnow()))
        assert await engine.end(silent, "voice", "caller silent", said="Goodbye.") == "abandoned"
        assert await engine.end(silent, "voice", "call ended") is None  # the hang-up after it changes nothing
        await engine.handle(Turn(conversation_id=handed_over, channel="voice", text="I want to talk to a person",
                                 time=utcnow()))
        assert await engine.end(handed_over, "voice", "caller silent") is None
        with pytest.raises(ValueError):
            await engine.end(silent, "voice", "call ended", outcome="vanished")  # not an outcome of this worker
        assert (await engine.store.conversation(silent)).outcome == "abandoned"
        assert (await engine.store.conversation(handed_over)).outcome == "escalated"
        events = await engine.store.db.fetchall(
            "SELECT direction, text, outcome, metadata FROM events WHERE conversation_id = ? AND metadata IS NOT NULL "
            "ORDER BY id", (silent,), ("metadata",))
    ends = [(e["direction"], e["text"], e["outcome"], e["metadata"]["event"]) for e in events
            if e["metadata"].get("event") in ("caller silent", "call ended")]
    assert ends == [("out", "Goodbye.", "abandoned", "caller silent"), ("system", None, None, "call ended")]
