"""A phone call as the conversation page shows it: where each turn is in the recording, how
long each stage of a turn took, and where the recording is.

What is stored (channels/voice/bridge.py): each turn's event time (the caller's turn: when it
was taken, after the VAD's pause and the hold; the greeting: the `started` event, when the stream
started), and in the `call ended` event's metadata `turns`, one entry per dialogue turn (0 = the
greeting, n = the caller's n-th turn) with `vad_wait_ms`, `stt_ms`, `hold_ms`, `digits_ms`,
`dialogue_ms` and `tts_first_audio_ms`, and `recording`, the WAV's path (VOICE_RECORDINGS_DIR).

Offsets into the recording are computed from those, relative to the `started` event (the
recording starts with the stream; pipecat's AudioBufferProcessor pads quiet stretches with
silence, so recording time follows the wall clock):
- the worker's reply to turn n: the turn's time + `dialogue_ms` + `tts_first_audio_ms`, i.e. when
  its first audio went out (within a few tens of milliseconds: the transport's buffering);
- a line said outside a turn (a re-prompt, the goodbye after silence): its event time plus the
  call's median time to first audio;
- the caller's turn n: its end is the turn's time less `digits_ms`, `hold_ms` and `vad_wait_ms`
  (as exact as the VAD, about 10 ms); its start is not stored, so it is estimated from its words
  at 2.5 words a second plus half a second, and never before the worker's line it answers began.
  The link lands up to a second or two early for a slow speaker, and late only for a caller
  speaking faster than 2.5 words a second who also paused before the last words (rare);
- a keyed number: its time less the keypad's 3-second pause and half a second a key.
"""

from __future__ import annotations

import statistics
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from transcripts.store import Event

WORDS_PER_SECOND = 2.5
LEAD_SECONDS = 0.5
DTMF_PAUSE_SECONDS = 3.0
SECONDS_PER_KEY = 0.5

# The stages of a turn as the page names them, in the order they happen.
STAGES = (("vad_wait_ms", "VAD wait"), ("stt_ms", "speech to text"), ("hold_ms", "hold"), ("digits_ms", "digit re-read"),
          ("dialogue_ms", "dialogue"), ("tts_first_audio_ms", "TTS first audio"))


class Stage(BaseModel):
    name: str
    ms: int


class TurnTiming(BaseModel):
    stages: list[Stage]
    # From the caller's last word to the worker's first audio (recognition runs inside the hold).
    reply_ms: int | None = None


class Call(BaseModel):
    started: datetime | None
    duration_seconds: float | None
    ended_by: str | None
    recording: str | None  # the stored path: never shown, never taken from a request
    timings: dict[int, dict[str, Any]]  # by dialogue turn (0 = the greeting)


def when(value: datetime | str) -> datetime | None:
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def call_of(events: list[Event]) -> Call:
    started = next((when(e.time) for e in events if (e.metadata or {}).get("event") == "started"), None)
    if started is None and events:
        started = when(events[0].time)
    ended = next((e.metadata for e in reversed(events) if (e.metadata or {}).get("event") == "call ended"), {})
    timings: dict[int, dict[str, Any]] = {}
    for entry in ended.get("turns") or []:
        if isinstance(entry, dict) and isinstance(entry.get("turn"), int):
            timings[entry["turn"]] = entry
    duration = ended.get("duration_seconds")
    recording = ended.get("recording")
    return Call(started=started, duration_seconds=float(duration) if isinstance(duration, (int, float)) else None,
                ended_by=ended.get("ended_by"), recording=recording if isinstance(recording, str) else None,
                timings=timings)


def timing_of(entry: dict[str, Any] | None) -> TurnTiming | None:
    if not entry:
        return None
    stages = [Stage(name=name, ms=int(entry[key])) for key, name in STAGES if isinstance(entry.get(key), (int, float))]
    if not stages:
        return None
    reply = None
    if isinstance(entry.get("tts_first_audio_ms"), (int, float)):
        reply = sum(int(entry.get(k) or 0) for k in ("vad_wait_ms", "hold_ms", "digits_ms", "dialogue_ms", "tts_first_audio_ms"))
    return TurnTiming(stages=stages, reply_ms=reply)


def _ms(entry: dict[str, Any] | None, *keys: str) -> float:
    return sum(float((entry or {}).get(k) or 0) for k in keys) / 1000


def offsets(events: list[Event], call: Call) -> dict[int, float]:
    """Seconds into the recording for each event (by its index in `events`) that is a line
    spoken by either side; see the module docstring for how, and how exact."""
    if call.started is None:
        return {}
    first_audio = [float(t["tts_first_audio_ms"]) / 1000 for t in call.timings.values()
                   if isinstance(t.get("tts_first_audio_ms"), (int, float))]
    typical = statistics.median(first_audio) if first_audio else 0.0
    out: dict[int, float] = {}
    turn, anchor = -1, None  # the dialogue turn running and its start
    last_worker = 0.0
    for i, event in enumerate(events):
        at = when(event.time)
        if at is None:
            continue
        seconds = (at - call.started).total_seconds()
        meta = event.metadata or {}
        if meta.get("event") == "started":
            turn, anchor = 0, seconds
        elif event.direction == "in" and event.text is not None:
            turn += 1
            anchor = seconds
            timing = call.timings.get(turn)
            if meta.get("input") == "dtmf":
                start = seconds - DTMF_PAUSE_SECONDS - SECONDS_PER_KEY * len(event.text)
            else:
                end = seconds - _ms(timing, "digits_ms", "hold_ms", "vad_wait_ms")
                start = end - len(event.text.split()) / WORDS_PER_SECOND - LEAD_SECONDS
            out[i] = max(start, last_worker, 0.0)
        elif event.direction == "out" and event.text:
            timing = call.timings.get(turn) if not meta.get("event") else None
            if timing is not None and anchor is not None and isinstance(timing.get("tts_first_audio_ms"), (int, float)):
                out[i] = anchor + _ms(timing, "dialogue_ms", "tts_first_audio_ms")
            else:
                out[i] = seconds + typical
            out[i] = max(out[i], 0.0)
            last_worker = out[i]
    if call.duration_seconds:
        out = {i: min(s, call.duration_seconds) for i, s in out.items()}
    return out


def clock(seconds: float) -> str:
    """0:07.4, 1:02.0"""
    minutes, rest = divmod(max(seconds, 0.0), 60)
    return f"{int(minutes)}:{rest:04.1f}"


def recording_file(conversation_id: str, stored: str | None, folder: str | Path | None) -> Path | None:
    """The call's WAV, from the path stored with the call and nowhere else, and only if it is
    `<CallSid>.wav` of this very call inside VOICE_RECORDINGS_DIR (symbolic links resolved), so
    no stored or requested path can make the console read another file."""
    if not stored or not folder or not conversation_id.startswith("voice:"):
        return None
    call_sid = conversation_id.removeprefix("voice:")
    try:
        root = Path(folder).resolve(strict=True)
        path = Path(stored).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if path.name != f"{call_sid}.wav" or path.parent != root or not path.is_file():
        return None
    return path
