"""Where the words are in a short utterance, from its loudness alone.

A number read out digit by digit ("four, oh, seven, two...") has a pause around each digit,
so the voiced stretches are the digits. The threshold follows the recording, not a fixed
level: a stretch counts as voiced when it is within 35 dB of the loudest frame and 12 dB above
the quiet floor (the 10th percentile), which holds for a quiet line and a loud one alike.
"""

from __future__ import annotations

import numpy as np

HOP_SECONDS = 0.01
WINDOW_SECONDS = 0.02
GAP_FRAMES = 6  # 60 ms of quiet ends a word; stops inside a digit ("six", "eight") are shorter
MIN_FRAMES = 8  # 80 ms: anything shorter is a click or a breath
PAD_FRAMES = 2  # keep 20 ms either side so soft onsets ("f", "s", "th") stay in


def word_spans(audio: np.ndarray, rate: int = 16000) -> list[tuple[int, int]]:
    """(start, end) sample offsets of each voiced stretch, in order. A recording too short to
    have a quiet floor gives [] and the caller treats it as one stretch."""
    hop, window = int(HOP_SECONDS * rate), int(WINDOW_SECONDS * rate)
    frames = (len(audio) - window) // hop
    if frames < 2:
        return []
    framed = np.lib.stride_tricks.sliding_window_view(audio[: frames * hop + window], window)[::hop][:frames]
    level = 10 * np.log10(np.mean(np.square(framed.astype(np.float64)), axis=1) + 1e-12)
    voiced = level > max(level.max() - 35, np.percentile(level, 10) + 12)
    spans: list[tuple[int, int]] = []
    start = end = None
    quiet = 0
    for i, v in enumerate(voiced):
        if v:
            start = i if start is None else start
            end, quiet = i, 0
        elif start is not None:
            quiet += 1
            if quiet >= GAP_FRAMES:
                spans.append((start, end))  # type: ignore[arg-type]
                start = None
    if start is not None:
        spans.append((start, end))  # type: ignore[arg-type]
    return [(max(0, (s - PAD_FRAMES) * hop), min(len(audio), e * hop + window + PAD_FRAMES * hop))
            for s, e in spans if e - s >= MIN_FRAMES]
