"""The worker's voice: Piper in its own process, heard back by the recogniser over the phone path."""

from __future__ import annotations

from pathlib import Path

import pytest

from channels.voice.audio import for_recogniser, telephone
from channels.voice.recogniser import Recogniser
from channels.voice.tts import PiperServer, SpeechUnavailable, voice_path


async def test_what_the_worker_says_is_heard_back_over_the_phone() -> None:
    async with PiperServer() as voice:
        samples, rate = await voice.speak("Lovely. So that's a table for 4 on Tuesday at 19:00. Is that right?")
    assert rate == 22050 and samples.size > rate  # more than a second of speech
    heard = await Recogniser().hear(for_recogniser(telephone(samples, rate), 8000))
    words = heard.text.lower()
    assert "table for" in words and "tuesday" in words and "is that right" in words


async def test_piper_runs_in_its_own_process_and_stops_with_the_worker() -> None:
    import sys

    async with PiperServer() as voice:
        process = voice._process
        assert process is not None and process.pid and process.poll() is None
        assert "piper" not in sys.modules  # the GPL-licensed code is never imported here
    assert process.poll() is not None


async def test_speech_from_a_server_that_went_away_is_a_clear_error() -> None:
    async with PiperServer() as voice:
        assert voice._process is not None
        voice._process.kill()
        voice._process.wait()
        with pytest.raises(SpeechUnavailable, match="Piper at http://127.0.0.1"):
            await voice.speak("Hello?")


def test_a_missing_voice_file_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PIPER_VOICE", str(tmp_path / "nowhere.onnx"))
    with pytest.raises(FileNotFoundError, match="need the .onnx file and its .onnx.json"):
        voice_path()
