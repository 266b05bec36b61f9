"""Numbers said digit by digit, as the voice channel reads them when it has asked for a digit
field: real recordings of real speakers, through the telephone path, read by the real model."""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from channels.voice.audio import for_recogniser, read_wav, telephone
from channels.voice.digit_reader import digits_heard, one_digit_per_stretch
from channels.voice.recogniser import Recogniser
from channels.voice.word_spans import word_spans
from tests.conftest import shipped_data
from tests.support.spoken_numbers import number_said

RATE = 16000


def tone(seconds: float, level: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (level * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def hush(seconds: float) -> np.ndarray:
    return (np.random.default_rng(1).normal(0, 0.0005, int(seconds * RATE))).astype(np.float32)


def test_each_stretch_of_sound_between_pauses_is_one_word() -> None:
    audio = np.concatenate([hush(0.3), tone(0.25), hush(0.2), tone(0.3), hush(0.15), tone(0.2), hush(0.3)])
    spans = word_spans(audio)
    assert len(spans) == 3
    starts = [0.3, 0.75, 1.2]
    for (start, end), expected in zip(spans, starts):
        assert abs(start / RATE - expected) < 0.04 and end > start


def test_a_click_is_not_a_word_and_a_dip_inside_a_word_does_not_split_it() -> None:
    audio = np.concatenate([hush(0.3), tone(0.03), hush(0.3), tone(0.2), hush(0.04), tone(0.2), hush(0.3)])
    assert len(word_spans(audio)) == 1


def test_a_recording_too_short_to_measure_has_no_spans() -> None:
    assert word_spans(tone(0.015)) == []


@pytest.mark.parametrize(("heard", "count"), [
    ("4 0 7 2 9 1", 6),
    ("457 to die in one", 5),  # tiny.en's reading of six spoken digits: still mostly digits
    ("Four, oh, seven.", 3),
    ("double five three", 3),
    ("Nine.", 1),
    ("hold on, let me look", 0),
    ("yes", 0),
    ("it is my card number 1234", 0),  # more words than digits: an ordinary sentence
    ("", 0),
])
def test_a_transcription_counts_as_digits_when_it_is_mostly_digits(heard: str, count: int) -> None:
    assert digits_heard(heard) == count


@pytest.mark.parametrize(("heard", "stretches", "read"), [
    ("4 0 7 2 9 1", 6, True),
    ("7 0 2 8 3 7 0 2 8 3", 6, True),  # tiny.en repeating a run of digits
    ("2 2 0 2", 6, True),  # and dropping some
    ("seven peaks zero five five", 6, True),  # one misheard digit
    ("My account number is 4 5 7 1 9 0", 10, False),  # a sentence around the number
    ("My count number in four five seven one nine zero.", 1, False),  # said in one breath
    ("four five seven one nine zero", 2, False),
    ("hold on, let me look", 4, False),
])
def test_stretches_are_read_as_digits_only_when_the_transcription_allows_it(heard: str, stretches: int, read: bool) -> None:
    assert one_digit_per_stretch(heard, stretches) is read


@pytest.fixture(scope="module")
def recordings() -> dict[int, list[Path]]:
    # Two recordings per digit, one by each speaker (tests/data/fsdd); bench/voice.py uses all 1,000.
    files = sorted(shipped_data("fsdd").glob("*.wav"))
    by_digit = {d: [f for f in files if f.name.startswith(f"{d}_")] for d in range(10)}
    assert all(len(f) == 2 for f in by_digit.values()), by_digit
    return by_digit


def test_numbers_said_digit_by_digit_by_real_speakers_are_read_exactly(recordings: dict[int, list[Path]]) -> None:
    rng = random.Random(2026)
    numbers = ["".join(str(rng.randrange(10)) for _ in range(6)) for _ in range(6)]
    recogniser = Recogniser()
    read = [recogniser.hear_digits_now(number_said(recordings, n, rng)) for n in numbers]
    right = [h.text == n for h, n in zip(read, numbers)]
    # bench/voice.py measures the rate over hundreds of numbers; here one miss in six is allowed.
    assert sum(right) >= 5, list(zip(numbers, [h.text for h in read]))
    assert all(0 < h.confidence <= 1 for h in read)


def test_a_number_said_in_groups_with_longer_pauses_is_read_whole(recordings: dict[int, list[Path]]) -> None:
    rng = random.Random(11)
    audio = np.concatenate([number_said(recordings, "407", rng, gap=0.3), number_said(recordings, "2913", rng, gap=0.3)])
    assert Recogniser().hear_digits_now(audio, (7, 7)).text == "4072913"


def speak(text: str, path: Path) -> np.ndarray:
    subprocess.run([shutil.which("espeak-ng") or "espeak-ng", "-v", "en-us", "-s", "150", "-w", str(path), text], check=True)
    samples, rate = read_wav(path)
    return for_recogniser(telephone(samples, rate), 8000)


def test_an_answer_that_is_not_a_number_is_heard_as_said(tmp_path: Path) -> None:
    audio = speak("Hold on, let me find my card.", tmp_path / "hold.wav")
    recogniser = Recogniser()
    assert recogniser.hear_digits_now(audio, (1, 8)) == recogniser.hear_now(audio)


def test_a_number_inside_a_sentence_is_left_to_the_transcription(tmp_path: Path) -> None:
    audio = speak("My account number is 4 5 7 1 9 0", tmp_path / "sentence.wav")
    recogniser = Recogniser()
    # More voiced stretches than digits: the stretches are not one digit each.
    assert recogniser.hear_digits_now(audio, (1, 8)) == recogniser.hear_now(audio)


async def test_reading_digits_does_not_block_the_event_loop(recordings: dict[int, list[Path]]) -> None:
    import asyncio

    audio = number_said(recordings, "4071", random.Random(3))
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    recogniser = Recogniser()
    heard = await recogniser.hear(audio)
    ticker = asyncio.create_task(tick())
    read = await recogniser.read_digits(audio, heard)
    ticker.cancel()
    assert read.text == "4071" and ticks > 5
