"""Numbers said digit by digit by real speakers (the FSDD recordings shipped in tests/data/fsdd),
heard over the phone: what the digit reader's tests feed it."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from channels.voice.audio import for_recogniser, read_wav, telephone


def number_said(recordings: dict[int, list[Path]], digits: str, rng: random.Random, gap: float = 0.12) -> np.ndarray:
    """The number as a caller says it, one recorded digit after another, heard over the phone."""
    parts = [np.zeros(2400, dtype=np.int16)]
    for d in digits:
        samples, rate = read_wav(rng.choice(recordings[int(d)]))
        parts += [samples, np.zeros(int(gap * rate), dtype=np.int16)]
    return for_recogniser(telephone(np.concatenate(parts), 8000), 8000)
