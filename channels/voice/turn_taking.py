"""When the caller's turn ends: after the VAD's pause, TURN_HOLD_SECONDS more quiet, and every
segment the pause sent to the recogniser recognised. Recognition runs during the hold, not
after it, so the hold costs the caller only what recognition does not already take.

A caller reading out a booking pauses between words; each pause sends a segment to the
recogniser, and the segments heard before the caller goes quiet for good are one turn."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from pydantic import BaseModel

Spawn = Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]]


class HeardTurn(BaseModel):
    """What the caller said in one turn, with where the time went (for timings)."""

    text: str
    confidence: float | None
    timing: dict[str, Any]


# A segment sent to the recogniser whose text has not come back by then is taken as lost (an
# interruption clears the frames queued for the bridge, a transcription among them): the turn
# goes on with what was heard instead of waiting for it for ever.
LOST_SEGMENT_SECONDS = 3.0


class TurnTaking:
    def __init__(self, hold_seconds: float, on_turn: Callable[[HeardTurn], Awaitable[None]], spawn: Spawn,
                 lost_after: float = LOST_SEGMENT_SECONDS):
        self._hold = hold_seconds
        self._lost_after = lost_after
        self._on_turn = on_turn
        self._spawn = spawn
        self._said: list[str] = []
        self._confidences: list[float] = []
        self._caller_talking = False
        self._in_flight = 0
        self._paused_at = 0.0
        self._pause_secs = 0.0
        self._recognised_ms = 0
        self._end: asyncio.Task[None] | None = None

    @property
    def holding_words(self) -> bool:
        """Words heard that are not yet a turn: one is coming."""
        return bool(self._said)

    def caller_started(self) -> None:
        """The caller goes on: what was heard so far waits for the rest."""
        self._caller_talking = True
        if self._end is not None:
            self._end.cancel()
            self._end = None

    def caller_paused(self, vad_stop_secs: float) -> None:
        """A pause: the segment goes to the recogniser now, while the caller may yet go on."""
        self._caller_talking = False
        self._in_flight += 1
        self._paused_at = time.monotonic()
        self._pause_secs = vad_stop_secs
        self._schedule()

    def recognised(self, text: str, confidence: float | None) -> bool:
        """A segment's text (empty when nothing was made out: it still counts back in).
        True when it held words."""
        self._in_flight = max(0, self._in_flight - 1)
        self._recognised_ms = round((time.monotonic() - self._paused_at) * 1000)
        words = text.strip()
        if words:
            self._said.append(words)
            if confidence is not None:
                self._confidences.append(confidence)
        if self._end is not None:  # a wait for a lost segment: this one came, decide again now
            self._end.cancel()
            self._end = None
        self._schedule()
        return bool(words)

    def _schedule(self) -> None:
        if self._end is None and not self._caller_talking and self._said:
            self._end = self._spawn(self._ends())

    async def _wait_for_lost(self) -> None:
        await asyncio.sleep(max(0.0, self._paused_at + self._lost_after - time.monotonic()))
        self._end = None
        await self._ends()

    async def _ends(self) -> None:
        await asyncio.sleep(max(0.0, self._paused_at + self._hold - time.monotonic()))
        self._end = None
        if self._caller_talking or not self._said:
            return  # the caller went on (the next pause reschedules)
        if self._in_flight:
            # A segment is still being recognised: its arrival reschedules. Should it never come,
            # the turn goes on without it after `lost_after`.
            if time.monotonic() - self._paused_at < self._lost_after:
                self._end = self._spawn(self._wait_for_lost())
                return
            self._in_flight = 0
        # Each segment is taken once: the list is emptied before the turn is handed on.
        said, self._said = self._said, []
        confidences, self._confidences = self._confidences, []
        timing = {"input": "speech", "vad_wait_ms": round(self._pause_secs * 1000), "stt_ms": self._recognised_ms,
                  "hold_ms": round((time.monotonic() - self._paused_at) * 1000)}
        await self._on_turn(HeardTurn(text=" ".join(said), confidence=min(confidences) if confidences else None,
                                      timing=timing))
