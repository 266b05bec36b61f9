"""A digit field's answer read while it is said (channels/voice/digit_stream.py): the same
digits as reading the whole turn at the end, with the per-digit work done as the audio comes;
the work dropped when the worker asks for something else. Real recordings, the real model."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from channels.voice.digit_reader import stretches
from channels.voice.recogniser import Heard, Recogniser
from tests.conftest import shipped_data
from tests.support.spoken_numbers import number_said

RATE = 16000
CHUNK = 320  # 20 ms, a Twilio media frame at the recogniser's rate


@pytest.fixture(scope="module")
def recogniser() -> Recogniser:
    return Recogniser()


@pytest.fixture(scope="module")
def recordings() -> dict[int, list[Path]]:
    files = sorted(shipped_data("fsdd").glob("*.wav"))
    return {d: [f for f in files if f.name.startswith(f"{d}_")] for d in range(10)}


async def until(condition: Any, timeout: float = 30.0) -> None:  # noqa: ANN401
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


async def said_into(stream: Any, before: np.ndarray, audio: np.ndarray) -> None:  # noqa: ANN401
    """`audio` arriving frame by frame after `before`, each frame looked at before the next."""
    for end in range(CHUNK, len(audio) + CHUNK, CHUNK):
        stream.heard_so_far(np.concatenate([before, audio[:end]]))
        await asyncio.sleep(0)
        await until(lambda: stream.idle)


@pytest.mark.parametrize("seed", [2026, 7])
async def test_digits_read_as_they_are_said_are_the_digits_read_at_the_end(
        recogniser: Recogniser, recordings: dict[int, list[Path]], seed: int) -> None:
    rng = random.Random(seed)
    number = "".join(str(rng.randrange(10)) for _ in range(6))
    audio = number_said(recordings, number, rng)
    at_the_end = recogniser.digit_reader().read(audio, (1, 20))
    stream = recogniser.digit_stream((1, 20))
    await said_into(stream, np.zeros(0, np.float32), audio)
    # Every stretch followed by its pause was worked out while the number was being said.
    assert stream.stretches_worked_out >= len(stretches(audio)) - 1
    stream.segment_ended(audio)
    assert await stream.read(audio, None) == at_the_end
    assert at_the_end is not None and len(at_the_end.digits) == 6


async def test_a_number_said_in_two_segments_is_read_as_the_whole_turn(
        recogniser: Recogniser, recordings: dict[int, list[Path]]) -> None:
    rng = random.Random(11)
    pad = np.zeros(RATE // 2, np.float32)  # what pipecat appends to each segment it hands over
    first, second = number_said(recordings, "407", rng, gap=0.3), number_said(recordings, "2913", rng, gap=0.3)
    turn = np.concatenate([first, pad, second, pad])
    stream = recogniser.digit_stream((7, 7))
    await said_into(stream, np.zeros(0, np.float32), first)
    stream.segment_ended(np.concatenate([first, pad]))  # a pause: read ahead as if that were all
    stream.caller_went_on()
    await said_into(stream, np.concatenate([first, pad]), second)
    stream.segment_ended(turn)
    heard = Heard("4 0 7 2 9 1 3", 0.5)
    read = await recogniser.read_digits(turn, heard, (7, 7), stream)
    assert read == await recogniser.read_digits(turn, heard, (7, 7))
    assert read.text == "4072913"


async def test_an_answer_that_is_not_digits_is_left_as_heard(recogniser: Recogniser,
                                                            recordings: dict[int, list[Path]]) -> None:
    audio = number_said(recordings, "4071", random.Random(3))
    stream = recogniser.digit_stream((4, 4))
    stream.segment_ended(audio)
    heard = Heard("hold on, let me look", 0.9)  # the transcription says this was not a number
    assert await recogniser.read_digits(audio, heard, (4, 4), stream) == heard


async def test_work_for_a_digit_field_is_dropped_when_the_worker_asks_for_something_else(
        recogniser: Recogniser, recordings: dict[int, list[Path]]) -> None:
    from channels.voice.services import LocalWhisperSTT
    from extraction.fields import FieldSpec

    tasks: list[asyncio.Task[Any]] = []

    def spawn(coroutine: Any) -> asyncio.Task[Any]:  # noqa: ANN401
        tasks.append(asyncio.ensure_future(coroutine))
        return tasks[-1]

    audio = number_said(recordings, "40729135", random.Random(5))
    stream = recogniser.digit_stream((8, 8), spawn)
    stream.heard_so_far(audio[: len(audio) // 2])
    stream.segment_ended(audio[: len(audio) // 2])
    await asyncio.sleep(0.05)
    stream.close()  # the caller's turn is not for the digit field after all
    await asyncio.sleep(0)
    assert tasks and all(t.done() for t in tasks)
    stream.heard_so_far(audio)  # audio that still arrives is not looked at
    stream.segment_ended(audio)
    assert len(tasks) == 2 and stream.stretches_worked_out == 0 and not stream.wants_audio

    # The call's recogniser: a digit field gets a stream, any other question closes it.
    stt = LocalWhisperSTT(recogniser)
    stt.listen_for(FieldSpec.model_validate({"name": "account_number", "type": "digits",
                                             "prompt": "Your account number?",
                                             "constraints": {"min_length": 8, "max_length": 8}}), "Your account number?")
    following = stt.digits
    assert following is not None and stt.digit_lengths == (8, 8)
    stt.listen_for(FieldSpec.model_validate({"name": "reason", "type": "text", "prompt": "What is it about?"}), "What is it about?")
    assert following.closed and stt.digits is None and stt.digit_lengths is None
    assert await stt.read_digits(Heard("4 0 7 2", 0.8)) == Heard("4 0 7 2", 0.8)
