"""A digit field's answer read while the caller is still saying it.

The digit reader (channels/voice/digit_reader.py) costs about 2 s for six digits, nearly all
of it the three encodes per voiced stretch. A stretch's views depend on its samples alone, so
each one is worked out as soon as the caller's pause after it shows it is over, while they say
the next digit. When the recogniser's segment ends (the VAD's pause), the turn's audio is
exactly what will be read if the caller says no more: the whole reading (the last stretch, the
whole-utterance view and the beam) starts then, during the turn-taking hold. At the end of the
turn `read` hands over that reading when the audio is the same, and otherwise reads the audio
it is given with the views already worked out. Either way the digits are those a reading at
the end would give: the same computation of the same samples.

Background work runs one model job at a time per call (the recogniser's own threads), between
jobs it checks whether it is still wanted, and `close` drops it: the worker asked for another
field, or the turn was read.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import numpy as np

from channels.voice.digit_reader import DigitReader, DigitReading, StretchViews, accepted, stretch_key, stretches
from channels.voice.word_spans import GAP_FRAMES, HOP_SECONDS

Spawn = Callable[[Coroutine[Any, Any, Any]], "asyncio.Task[Any]"]
Result = tuple[int, DigitReading | None]  # stretches found, and their reading when the count fits

# A stretch is taken as over once this much audio follows its end: word_spans closes one after
# GAP_FRAMES quiet frames; earlier, the caller may still be in the middle of the digit.
CLOSED_AFTER_SECONDS = (GAP_FRAMES + 2) * HOP_SECONDS

log = logging.getLogger(__name__)


def audio_key(audio: np.ndarray) -> bytes:
    """A reading ahead is handed over only for the very samples it read."""
    return hashlib.blake2b(np.ascontiguousarray(audio, dtype=np.float32).tobytes(), digest_size=16).digest()


class DigitStream:
    """One caller turn answering a digit field of `lengths` (fewest, most digits)."""

    def __init__(self, reader: Callable[[], DigitReader], lengths: tuple[int, int],
                 spawn: Spawn = asyncio.ensure_future, rate: int = 16000):
        self._reader = reader  # called in a worker thread: building the reader runs the model
        self._lengths = lengths
        self._spawn = spawn
        self._closed_after = int(CLOSED_AFTER_SECONDS * rate)
        self._known: StretchViews = {}
        self._latest: np.ndarray | None = None
        self._arrived = asyncio.Event()
        self._busy = False
        # One model job at a time: the background never takes more CPU than one reading does.
        self._lane = asyncio.Lock()
        self._worker: asyncio.Task[Any] | None = None
        self._ahead: tuple[bytes, asyncio.Task[Result]] | None = None
        self.closed = False

    @property
    def wants_audio(self) -> bool:
        """Whether new audio would be looked at now (the caller skips copying it otherwise)."""
        return not self.closed and not self._busy

    @property
    def idle(self) -> bool:
        """No background work running or due on the audio heard so far."""
        return not self._busy and not self._arrived.is_set()

    @property
    def stretches_worked_out(self) -> int:
        """Views kept so far (a stretch cut differently as the audio grew counts again)."""
        return len(self._known)

    def heard_so_far(self, audio: np.ndarray) -> None:
        """The turn's audio up to now (16 kHz float), a prefix of what `read` will be given."""
        if self.closed:
            return
        self._latest = audio
        self._arrived.set()
        if self._worker is None:
            self._worker = self._spawn(self._views_while_speaking())

    def segment_ended(self, audio: np.ndarray) -> None:
        """The turn's audio as it will be read if the caller says no more: read it now."""
        if self.closed:
            return
        self._latest = None  # the reading below covers every stretch of it
        key = audio_key(audio)
        if self._ahead is not None:
            if self._ahead[0] == key:
                return
            self._ahead[1].cancel()
        self._ahead = (key, self._spawn(self._read(audio)))

    def caller_went_on(self) -> None:
        """More speech in the same turn: a reading of the audio before it is of no use."""
        if self._ahead is not None:
            self._ahead[1].cancel()
            self._ahead = None

    async def read(self, audio: np.ndarray, heard: str | None) -> DigitReading | None:
        """The turn's digits, as `DigitReader.read(audio, lengths, heard)` reads them."""
        if self.closed:
            raise RuntimeError("this digit stream was closed")
        ahead = self._ahead
        result = None
        if ahead is not None and ahead[0] == audio_key(audio) and not ahead[1].cancelled():
            result = await ahead[1]  # None when it failed (pipecat's tasks log and swallow errors)
        else:
            self.caller_went_on()
        count, reading = result or await self._read(audio)
        return reading if accepted(count, self._lengths, heard) else None

    def close(self) -> None:
        """Drop all background work: the turn was read, or the worker asks for something else."""
        self.closed = True
        self._latest = None
        for task in (self._worker, self._ahead[1] if self._ahead else None):
            if task is not None:
                task.cancel()
        self._worker = self._ahead = None
        self._known = {}

    async def _views_while_speaking(self) -> None:
        while not self.closed:
            await self._arrived.wait()
            self._arrived.clear()
            audio = self._latest
            if audio is None:
                continue
            self._busy = True
            try:
                async with self._lane:
                    more = await asyncio.to_thread(self._next_closed_stretch, audio)
            finally:
                self._busy = False
            if more and self._latest is not None:
                self._arrived.set()  # one stretch per job: look again, at the newest audio

    def _next_closed_stretch(self, audio: np.ndarray) -> bool:
        """Work out the views of the first stretch of `audio` that is over and not yet known.
        False when there is none, or when there are more stretches than the field has digits
        (not a number read digit by digit: nothing to gain)."""
        spans = stretches(audio)
        closed = [(s, e) for s, e in spans if e + self._closed_after <= len(audio)]
        if len(closed) > self._lengths[1]:
            return False
        reader = self._reader()
        for s, e in closed:
            key = stretch_key(audio[s:e])
            if key not in self._known:
                self._known[key] = reader.stretch_views(audio[s:e])
                return True
        return False

    async def _read(self, audio: np.ndarray) -> Result:
        """The reading of `audio`, stretch by stretch (cancellable between them), then the beam."""
        async with self._lane:
            spans = await asyncio.to_thread(stretches, audio)
        if not accepted(len(spans), self._lengths, None):
            return len(spans), None
        known = self._known
        missing = [(s, e) for s, e in spans if stretch_key(audio[s:e]) not in known]
        # How much was worked out while the caller spoke (kept stretches that were cut
        # differently as the audio grew count as worked out but are not used).
        log.debug("digit stream: %d stretches, %d of them worked out ahead, %d views kept",
                  len(spans), len(spans) - len(missing), len(known))
        for s, e in missing:
            async with self._lane:
                await asyncio.to_thread(self._work_out, audio[s:e], known)
        async with self._lane:
            reading = await asyncio.to_thread(lambda: self._reader().reading(audio, spans, known))
        return len(spans), reading

    def _work_out(self, samples: np.ndarray, known: StretchViews) -> None:
        known[stretch_key(samples)] = self._reader().stretch_views(samples)
