"""A phone call for the review console's tests, stored by the real engine as the voice channel
stores one (channels/voice/bridge.py: the caller's turns with their metadata, the digit re-read
beside the plain transcription, and the `call ended` event with per-turn timings and the
recording's path), and its recording: a stereo 8 kHz WAV (caller left, worker right) with a tone
wherever either side speaks.

Also two calls whose recording the console must not serve: one never recorded, one whose stored
path points outside VOICE_RECORDINGS_DIR."""

from __future__ import annotations

import wave
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from dialogue.events import Turn
from dialogue.spec_loader import load_spec
from tests.conftest import ROOT
from tests.support.talk import engine_for

SID = "CA" + "7" * 32
CALL = f"voice:{SID}"
UNRECORDED = "voice:CA" + "8" * 32
ELSEWHERE = "voice:CA" + "9" * 32
DURATION = 26.0
FIRST = "I lost my card on Friday"
SECOND = "my account number is 45721198"
HEARD = "my account number is for five seven two one one nine eight"  # plain transcription of SECOND
# As the bridge measures them: 0 = the greeting, 1 and 2 the caller's turns.
TIMINGS = [
    {"turn": 0, "input": "start", "dialogue_ms": 40, "tts_first_audio_ms": 350},
    {"turn": 1, "input": "speech", "vad_wait_ms": 300, "stt_ms": 410, "hold_ms": 520, "dialogue_ms": 35,
     "tts_first_audio_ms": 310},
    {"turn": 2, "input": "speech", "vad_wait_ms": 300, "stt_ms": 450, "hold_ms": 520, "digits_ms": 180,
     "dialogue_ms": 60, "tts_first_audio_ms": 330},
]
TURN_AT = (7.2, 16.4)  # seconds after the call started that each caller's turn was taken
# Where the page should place each line in the recording (worker/review/calls.py):
# the greeting at 0 + 0.04 + 0.35; turn 1 ends at 7.2 - 0.52 - 0.3 = 6.38 and its six words take
# 6 / 2.5 + 0.5 s, so it starts at 3.48; its reply at 7.2 + 0.035 + 0.31; turn 2 ends at
# 16.4 - 0.18 - 0.52 - 0.3 = 15.4 and starts 5 / 2.5 + 0.5 s before; its reply at 16.4 + 0.06 + 0.33.
EXPECTED = {"greeting": 0.4, "turn 1": 3.5, "reply 1": 7.5, "turn 2": 12.9, "reply 2": 16.8}


def write_recording(path: Path, seconds: float = DURATION) -> None:
    rate = 8000
    t = np.arange(int(seconds * rate)) / rate
    left, right = np.zeros_like(t), np.zeros_like(t)
    for a, b in ((3.5, 6.4), (12.9, 15.4)):  # the caller
        left[(t >= a) & (t < b)] = 0.3 * np.sin(2 * np.pi * 220 * t[(t >= a) & (t < b)])
    for a, b in ((0.4, 3.2), (7.5, 11.0), (16.8, 21.0)):  # the worker
        right[(t >= a) & (t < b)] = 0.3 * np.sin(2 * np.pi * 440 * t[(t >= a) & (t < b)])
    frames = (np.stack([left, right], axis=1) * 32767).astype("<i2").tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(frames)


async def seed_calls(url: str, recordings: Path, outside: Path) -> None:
    """The calls, into the database the engine of `talk.engine_for(spec, url)` writes;
    the recording into `recordings`; a WAV named as ELSEWHERE's into `outside`."""
    start = datetime.now(timezone.utc) - timedelta(seconds=30)
    bank = load_spec(ROOT / "examples/account_support.yaml")
    async with engine_for(bank, url) as engine:
        meta = {"call_sid": SID, "from": "+15551230009", "to": "+15550000000"}
        await engine.handle(Turn(conversation_id=CALL, channel="voice", text=None, time=start, metadata=meta))
        await engine.handle(Turn(conversation_id=CALL, channel="voice", text=FIRST, time=start + timedelta(seconds=TURN_AT[0]),
                                 metadata={**meta, "confidence": 0.91}))
        await engine.handle(Turn(conversation_id=CALL, channel="voice", text=SECOND,
                                 time=start + timedelta(seconds=TURN_AT[1]),
                                 metadata={**meta, "confidence": 0.62, "transcribed": HEARD}))
        write_recording(recordings / f"{SID}.wav")
        await engine.end(CALL, "voice", "call ended", outcome=None, metadata={
            "ended_by": "caller", "duration_seconds": DURATION, "turns": TIMINGS,
            "recording": str(recordings / f"{SID}.wav")})
        for other, path in ((UNRECORDED, None), (ELSEWHERE, outside / f"{ELSEWHERE.removeprefix('voice:')}.wav")):
            sid = other.removeprefix("voice:")
            await engine.handle(Turn(conversation_id=other, channel="voice", text=None, time=start,
                                     metadata={"call_sid": sid, "from": "+15551230010", "to": "+15550000000"}))
            if path is not None:
                write_recording(path, 2.0)
            await engine.end(other, "voice", "call ended", outcome=None, metadata={
                "ended_by": "caller", "duration_seconds": 2.0, "turns": TIMINGS[:1],
                "recording": str(path) if path else None})
