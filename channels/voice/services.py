"""pipecat services over the worker's own speech parts: the shared local recogniser and the
Piper server in its own process. (pipecat's own Whisper service loads a model per instance
in its constructor, and its Piper module imports the GPL-licensed piper package.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator

import numpy as np
from pipecat.frames.frames import (
    ErrorFrame,
    Frame,
    InputAudioRawFrame,
    TranscriptionFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.settings import STTSettings, TTSSettings
from pipecat.services.stt_service import SegmentedSTTService
from pipecat.services.tts_service import TTSService
from pipecat.utils.time import time_now_iso8601

from channels.voice.digit_stream import DigitStream
from channels.voice.recogniser import Heard, Recogniser
from channels.voice.tts import PiperServer, SpeechUnavailable, sentences
from channels.voice.vocabulary import Expectation, expectation
from extraction.fields import FieldSpec, FieldType


class LocalWhisperSTT(SegmentedSTTService):
    """One transcription per caller utterance (the VAD decides where utterances end)."""

    def __init__(self, recogniser: Recogniser, **kwargs: object):
        super().__init__(settings=STTSettings(model="whisper-local", language="en"), **kwargs)
        self._recogniser = recogniser
        self.last_confidence = 0.0
        # Set by the bridge while the worker waits for a digit field (the fewest and most
        # digits the answer may hold): the turn's audio is then kept, so that the whole answer,
        # however the VAD cut it, can be read digit by digit when the turn ends.
        self.digit_lengths: tuple[int, int] | None = None
        self._turn_audio: list[np.ndarray] = []
        # Meanwhile the digits are read as they are said (channels/voice/digit_stream.py), so
        # that little of the reading is left when the turn ends.
        self.digits: DigitStream | None = None
        self._speaking = False
        # What the next answer is for (the question just said and the phrases that answer it):
        # the recogniser hears each segment of the turn in that context.
        self.expecting: Expectation | None = None

    @property
    def wants_wav_segments(self) -> bool:
        return False  # raw 16-bit PCM at the pipeline's input rate (16 kHz)

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, VADUserStartedSpeakingFrame):
            self._speaking = True
            if self.digits is not None:
                self.digits.caller_went_on()
        elif isinstance(frame, VADUserStoppedSpeakingFrame):
            self._speaking = False

    async def process_audio_frame(self, frame: InputAudioRawFrame, direction: FrameDirection) -> None:
        await super().process_audio_frame(frame, direction)
        if self.digits is not None and self._speaking and self.digits.wants_audio:
            # The segment so far is the base class's buffer: from the VAD's start it only grows,
            # and at the pause it is what `run_stt` receives (with the padding after it), so the
            # turn's earlier segments and it are the start of the audio read at the end.
            current = np.frombuffer(bytes(self._audio_buffer), dtype=np.int16).astype(np.float32) / 32768.0
            self.digits.heard_so_far(np.concatenate([*self._turn_audio, current]))

    async def run_stt(self, audio: bytes) -> AsyncGenerator[Frame, None]:
        samples = np.frombuffer(audio, dtype=np.int16).astype(np.float32) / 32768.0
        if self.digit_lengths is not None:
            self._turn_audio.append(samples)
            if self.digits is not None:
                # What the turn will be read as if the caller says no more: its reading starts
                # now, alongside this segment's transcription and the turn-taking hold.
                self.digits.segment_ended(np.concatenate(self._turn_audio))
        heard = await self._recogniser.hear(samples, self.expecting)
        self.last_confidence = heard.confidence
        # Also when nothing was made out: the bridge counts segments back in before it ends a turn.
        yield TranscriptionFrame(heard.text, self._user_id, time_now_iso8601(), result={"confidence": heard.confidence})

    def listen_for(self, field: FieldSpec | None, question: str | None = None, confirming: bool = False) -> None:
        """Told by the bridge before each caller turn: the field asked for next (or None) and
        the line just said, so the next answer is heard in the context of its question: the
        question as Whisper's previous text, and the phrases that would answer it (names for a
        name field, times, party sizes, dates, the spec's choices; yes/no after a yes/no
        question such as the confirmation) scored against the audio
        (channels/voice/vocabulary.py, channels/voice/constrained.py). Digit fields are also
        read digit by digit, worked on while the caller says them (channels/voice/digit_stream.py)."""
        self.expecting = expectation(field, question, confirming)
        if field is None or field.type is not FieldType.digits:
            self.expect_digits(None)
        else:
            self.expect_digits((field.constraints.min_length or 1, field.constraints.max_length or 20))

    def expect_digits(self, lengths: tuple[int, int] | None) -> None:
        """Listen for a digit field of `lengths` (fewest, most digits), or for none: either way
        what was worked out for the previous question is dropped."""
        self.digit_lengths = lengths
        self._turn_audio = []
        self._follow_digits()

    def _follow_digits(self) -> None:
        if self.digits is not None:
            self.digits.close()
        self.digits = None
        if self.digit_lengths is not None:
            self.digits = self._recogniser.digit_stream(self.digit_lengths, self.create_task)

    async def read_digits(self, heard: Heard) -> Heard:
        """The turn that was heard as `heard`, read again as digits (or as it was)."""
        audio, self._turn_audio = self._turn_audio, []
        stream = self.digits
        self.digits = None
        try:
            if self.digit_lengths is None or not audio:
                return heard
            return await self._recogniser.read_digits(np.concatenate(audio), heard, self.digit_lengths, stream)
        finally:
            if stream is not None:
                stream.close()
            if self.digits is None:  # the next turn, should the caller go on before the next question
                self._follow_digits()

    async def cleanup(self) -> None:
        if self.digits is not None:
            self.digits.close()
        await super().cleanup()


class PiperVoice(TTSService):
    """Speech from the Piper server; pipecat resamples it to the call's 8 kHz."""

    def __init__(self, server: PiperServer, **kwargs: object):
        # Start and stop frames, as pipecat's own Piper service sends them: without the stop frame
        # the transport only learns the worker fell quiet after its 3 s fallback, so a caller who
        # answered within 3 s was taken as talking over the worker (an interruption per turn).
        super().__init__(settings=TTSSettings(model="piper", voice=server.voice.stem, language="en"),
                         push_start_frame=True, push_stop_frames=True, **kwargs)
        self._server = server
        self.replies_in_progress = 0  # replies still being made: the caller is not expected to answer yet

    def can_generate_metrics(self) -> bool:
        return True

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame | None, None]:
        self.replies_in_progress += 1
        try:
            async for frame in self._spoken(text, context_id):
                yield frame
        finally:
            self.replies_in_progress -= 1

    async def _spoken(self, text: str, context_id: str) -> AsyncGenerator[Frame | None, None]:
        parts = sentences(text)
        # The next sentence is made while this one plays.
        upcoming = asyncio.ensure_future(self._server.speak(parts[0])) if parts else None
        for n in range(len(parts)):
            assert upcoming is not None
            try:
                samples, rate = await upcoming
            except SpeechUnavailable as exc:
                yield ErrorFrame(error=str(exc))
                return
            upcoming = asyncio.ensure_future(self._server.speak(parts[n + 1])) if n + 1 < len(parts) else None

            async def chunks(data: bytes = samples.tobytes(), step: int = rate * 2 // 10) -> AsyncIterator[bytes]:
                for start in range(0, len(data), step):  # 100 ms pieces
                    yield data[start:start + step]

            async for frame in self._stream_audio_frames_from_iterator(chunks(), in_sample_rate=rate, context_id=context_id):
                await self.stop_ttfb_metrics()
                yield frame
