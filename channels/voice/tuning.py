"""How a call takes turns: the pauses, holds and silences that decide when the caller has
finished and when the worker speaks again. Built once from the environment by worker/settings.py
(VOICE_PAUSE_SECONDS and friends, see docs/configuration.md) and passed to every call."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field


class VoiceTuning(BaseModel):
    # 0.3 + 0.3: a caller reading out a booking pauses between words; 0.2 s of quiet, pipecat's
    # default, cut one request into several turns.
    pause_seconds: float = Field(0.3, gt=0, description="A pause this long sends the speech to the recogniser.")
    turn_hold_seconds: float = Field(0.3, ge=0, description="The caller's turn ends after this much more quiet.")
    dtmf_pause_seconds: float = Field(3.0, gt=0, description="Key presses end at # or after this pause.")
    silence_seconds: float = Field(8.0, gt=0, description="Re-prompt after this much silence (the spec's value wins).")
    holding_after_seconds: float = Field(1.0, gt=0, description="A turn slower than this (an action on the "
                                         "business's system) gets the script's holding line first.")
    silence_prompts: int = Field(1, ge=0, description="Re-prompts before a polite goodbye and hang-up.")
    # Off unless set: callers may need to be told they are recorded; that is the operator's decision.
    recordings_dir: Path | None = Field(None, description="Record both sides of each call to <CallSid>.wav here.")
