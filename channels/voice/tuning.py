"""How a call takes turns: the pauses, holds and silences that decide when the caller has
finished and when the worker speaks again. Built once from the environment by worker/settings.py
(VOICE_PAUSE_SECONDS and friends, see docs/configuration.md) and passed to every call."""

from __future__ import annotations

from pathlib import Path

from pipecat.audio.vad.vad_analyzer import VADParams
from pydantic import BaseModel, Field


class VoiceTuning(BaseModel):
    # 0.3 + 0.3: a caller reading out a booking pauses between words; 0.2 s of quiet, pipecat's
    # default, cut one request into several turns.
    pause_seconds: float = Field(0.3, gt=0, description="A pause this long sends the speech to the recogniser.")
    # 0.1: with pipecat's default 0.2 s of continuous speech before a start, the Silero VAD missed
    # 38 of 128 one-word answers (espeak-ng, four voices, telephone path: "Six", "Eight", "Two",
    # "Anna") and no turn was taken at all; at 0.1 it missed none and still took no hiss, hum or
    # click for speech (tests/test_voice_speech_detection.py).
    speech_start_seconds: float = Field(0.1, gt=0, description="This much speech starts the caller's turn.")
    # 0.4: where a word starts against the detector's 32 ms windows moves its volume estimate
    # (smoothed over windows); at pipecat's 0.6, "Six" and "Eight" were missed at some offsets
    # (4 of 240 clips x offsets), and live calls lost "Four" now and then. 0.4 missed none and
    # still took no hiss (up to -15 dBFS) or click for speech.
    speech_min_volume: float = Field(0.4, ge=0, le=1, description="The quietest speech that starts a turn (0-1).")
    turn_hold_seconds: float = Field(0.3, ge=0, description="The caller's turn ends after this much more quiet.")
    dtmf_pause_seconds: float = Field(3.0, gt=0, description="Key presses end at # or after this pause.")
    silence_seconds: float = Field(8.0, gt=0, description="Re-prompt after this much silence (the spec's value wins).")
    # 2.5: a caller who said something expects an answer within a breath or two; the full silence
    # timeout after a cough or a word the recogniser could not make out felt like a dead line.
    unheard_seconds: float = Field(2.5, gt=0, description="Speech that gave no words is asked again "
                                   "(\"Sorry, I didn't catch that\") after this much quiet.")
    holding_after_seconds: float = Field(1.0, gt=0, description="A turn slower than this (an action on the "
                                         "business's system) gets the script's holding line first.")
    silence_prompts: int = Field(1, ge=0, description="Re-prompts before a polite goodbye and hang-up.")
    # Off unless set: callers may need to be told they are recorded; that is the operator's decision.
    recordings_dir: Path | None = Field(None, description="Record both sides of each call to <CallSid>.wav here.")

    def vad_params(self) -> VADParams:
        """The speech detector's settings for a call (pipecat's confidence and volume floors)."""
        return VADParams(start_secs=self.speech_start_seconds, stop_secs=self.pause_seconds,
                         min_volume=self.speech_min_volume)
