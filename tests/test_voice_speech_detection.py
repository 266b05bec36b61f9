"""Speech detection on a phone line: every one-word answer starts a turn; line noise does not.

Each clip goes through what a call does to it: espeak-ng speech, 8 kHz G.711 mu-law, back up
to the pipeline's 16 kHz, into the Silero VAD with the settings a call uses
(`VoiceTuning.vad_params`). A word the detector misses is worse than a misheard one: no turn is
taken, and the caller hears "are you still there?" after the silence timeout.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADState

from channels.voice.audio import read_wav, resample, ulaw_decode, ulaw_encode
from channels.voice.tuning import VoiceTuning

RATE = 16000
FRAME_BYTES = 640  # 20 ms of 16-bit audio at 16 kHz, as the media stream delivers it
SHORT_ANSWERS = ["Two", "Six", "Eight", "Four", "Ten", "Yes", "No", "Yeah", "Sure", "Anna", "Maria", "Kim",
                 "Lee", "Ed", "Brown", "Friday"]
VOICES = ["en-us", "en-gb", "en-gb+f3", "en-us+m3"]


def on_the_line(text: str, voice: str, folder: Path, offset: int = 0) -> np.ndarray:
    path = folder / "clip.wav"
    subprocess.run([shutil.which("espeak-ng") or "espeak-ng", "-v", voice, "-s", "150", "-w", str(path), text],
                   check=True)
    samples, rate = read_wav(path)
    line = ulaw_decode(ulaw_encode(resample(samples, rate, 8000)))
    quiet = np.zeros(RATE, np.int16)
    return np.concatenate([quiet, np.zeros(offset, np.int16), resample(line, 8000, RATE).astype(np.int16), quiet])


async def starts_a_turn(audio: np.ndarray) -> bool:
    vad = SileroVADAnalyzer(sample_rate=RATE, params=VoiceTuning().vad_params())
    vad.set_sample_rate(RATE)
    data = audio.astype(np.int16).tobytes()
    for start in range(0, len(data), FRAME_BYTES):
        if await vad.analyze_audio(data[start:start + FRAME_BYTES]) == VADState.SPEAKING:
            return True
    return False


# Where the word starts against the detector's 32 ms windows (512 samples) changes what it hears.
OFFSETS = [0, 97, 211, 330, 420]


async def test_every_one_word_answer_in_every_voice_starts_a_turn_wherever_it_starts(tmp_path: Path) -> None:
    missed = [(word, voice, offset) for word in SHORT_ANSWERS for voice in VOICES for offset in OFFSETS
              if not await starts_a_turn(on_the_line(word, voice, tmp_path, offset))]
    assert not missed


def line_noise() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    quiet = np.zeros(RATE // 2, np.int16)
    noises = {f"hiss at {level}": np.concatenate([quiet, rng.normal(0, level, 2 * RATE).astype(np.int16), quiet])
              for level in (300, 1000, 3000, 6000)}
    click = np.zeros(3 * RATE, np.int16)
    click[RATE:RATE + 400] = (20000 * np.sign(rng.normal(size=400))).astype(np.int16)
    noises["a click"] = click
    noises["mains hum"] = (3000 * np.sin(2 * np.pi * 60 * np.arange(3 * RATE) / RATE)).astype(np.int16)
    return noises


@pytest.mark.parametrize("name", list(line_noise()))
async def test_line_noise_is_not_taken_for_speech(name: str) -> None:
    assert not await starts_a_turn(line_noise()[name])
