"""A caller's phone as Twilio presents it to the worker: first the signed call webhook
(`POST /twilio/voice`), then the Media Stream its TwiML names, opened with an upgrade signed as
Twilio signs it (X-Twilio-Signature over the stream URL, no parameters), carrying `connected`,
`start` (with the TwiML's `<Parameter>`s as customParameters), `media` (20 ms of 8 kHz mu-law
each, sent at real-time pace), `dtmf`, `mark` and `stop` messages, and receiving the worker's
`media`, `mark` and `clear`."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from typing import Any
from xml.etree import ElementTree

import httpx
import numpy as np
import websockets
from twilio.request_validator import RequestValidator

from channels.voice.audio import for_recogniser, resample, ulaw_decode, ulaw_encode

FRAME_BYTES = 160  # 20 ms at 8 kHz, one byte per mu-law sample
VOICED_LEVEL = 600  # peak sample level (of 32767) above which a frame counts as speech, not room tone


ACCOUNT = "AC" + "0" * 32


class Answer:
    """What the worker's call webhook answered: the TwiML, and the stream it connects (if any)."""

    def __init__(self, status: int, twiml: str):
        self.status, self.twiml = status, twiml
        root = ElementTree.fromstring(twiml) if status == 200 else None
        stream = root.find("./Connect/Stream") if root is not None else None
        self.stream_url: str | None = stream.get("url") if stream is not None else None
        self.parameters = {p.get("name"): p.get("value") for p in stream.iter("Parameter")} if stream is not None else {}
        self.said = [e.text or "" for e in root.iter("Say")] if root is not None else []
        self.hangs_up = root is not None and root.find("./Hangup") is not None


async def ring(server_url: str, auth_token: str, call_sid: str, caller: str = "+12025550123",
               service: str = "+15005550006") -> Answer:
    """Twilio's request to the call webhook when `caller` calls `service`, signed with the auth token."""
    url = server_url + "/twilio/voice"
    params = {"CallSid": call_sid, "AccountSid": ACCOUNT, "From": caller, "To": service, "CallStatus": "ringing"}
    signature = RequestValidator(auth_token).compute_signature(url, params)
    async with httpx.AsyncClient() as client:
        response = await client.post(url, data=params, headers={"X-Twilio-Signature": signature})
    return Answer(response.status_code, response.text)


def upgrade_signature(auth_token: str, stream_url: str) -> str:
    """Twilio's signature on a Media Stream's upgrade: the stream URL alone, no parameters."""
    return RequestValidator(auth_token).compute_signature(stream_url, {})


def start_message(call_sid: str, stream_sid: str, parameters: dict[str, str]) -> dict[str, Any]:
    return {"event": "start", "sequenceNumber": "1", "streamSid": stream_sid, "start": {
        "accountSid": ACCOUNT, "streamSid": stream_sid, "callSid": call_sid, "tracks": ["inbound"],
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        "customParameters": parameters,
    }}


async def refusal(stream_url: str, signature: str | None, start: dict[str, Any] | None,
                  timeout: float = 15.0) -> int | None:
    """Open a stream as told (any signature, any `start`, or none) and wait for the worker to
    close it: the close code, or None if it is still open after `timeout` seconds."""
    headers = {"X-Twilio-Signature": signature} if signature is not None else {}
    async with websockets.connect(stream_url, additional_headers=headers) as ws:
        try:
            async with asyncio.timeout(timeout):
                await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
                if start is not None:
                    await ws.send(json.dumps(start))
                async for _ in ws:
                    pass  # a stream that was let in would be spoken to; keep reading until it closes
        except TimeoutError:
            return None
        except websockets.ConnectionClosed:
            pass  # closed by the worker, maybe before our messages went out
        return ws.close_code


class CallRefused(Exception):
    pass


class Caller:
    """One call: `async with Caller(server.base_url, auth_token) as caller:` rings the worker
    (signed webhook), opens the stream its TwiML names with a signed upgrade and starts it."""

    def __init__(self, server_url: str, auth_token: str, caller: str = "+12025550123", service: str = "+15005550006"):
        self.server_url = server_url
        self.auth_token = auth_token
        self.stream_sid = "MZ" + uuid.uuid4().hex
        self.call_sid = "CA" + uuid.uuid4().hex
        self.caller, self.service = caller, service
        self.answer: Answer | None = None
        self.heard = bytearray()  # the worker's speech, mu-law
        self.last_audio_at = 0.0
        self._returned = 0  # bytes of `heard` the last listen gave back
        self.audio_arrivals: list[float] = []  # when each of the worker's media frames arrived
        self.events: list[dict[str, Any]] = []
        self._ws: Any = None
        self._sequence = 0
        self._chunk = 0
        self._receiver: asyncio.Task[None] | None = None
        self._silence: asyncio.Task[None] | None = None
        self._talking = asyncio.Lock()

    async def __aenter__(self) -> Caller:
        self.answer = await ring(self.server_url, self.auth_token, self.call_sid, self.caller, self.service)
        if self.answer.stream_url is None:
            raise CallRefused(f"{self.answer.status}: {self.answer.twiml}")
        signature = upgrade_signature(self.auth_token, self.answer.stream_url)
        self._ws = await websockets.connect(self.answer.stream_url, additional_headers={"X-Twilio-Signature": signature})
        await self._send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        start = start_message(self.call_sid, self.stream_sid, self.answer.parameters)["start"]
        await self._send({"event": "start", "start": start})
        self._receiver = asyncio.create_task(self._receive())
        self._silence = asyncio.create_task(self._room_tone())
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in (self._silence, self._receiver):
            if task:
                task.cancel()
        try:
            await self._send({"event": "stop", "stop": {"accountSid": "AC" + "0" * 32, "callSid": self.call_sid}})
            await self._ws.close()
        except websockets.ConnectionClosed:
            pass

    async def _send(self, message: dict[str, Any]) -> None:
        self._sequence += 1
        await self._ws.send(json.dumps({"sequenceNumber": str(self._sequence), "streamSid": self.stream_sid, **message}))

    async def _frame(self, payload: bytes) -> None:
        self._chunk += 1
        await self._send({"event": "media", "media": {
            "track": "inbound", "chunk": str(self._chunk), "timestamp": str(self._chunk * 20),
            "payload": base64.b64encode(payload).decode()}})

    async def _room_tone(self) -> None:
        """A phone line is never silent on the wire: frames of silence between utterances."""
        quiet = ulaw_encode(np.zeros(FRAME_BYTES, dtype=np.int16))
        while True:
            async with self._talking:
                await self._frame(quiet)
            await asyncio.sleep(0.02)

    async def _receive(self) -> None:
        async for raw in self._ws:
            message = json.loads(raw)
            self.events.append(message)
            if message.get("event") == "media":
                self.heard += base64.b64decode(message["media"]["payload"])
                self.last_audio_at = time.monotonic()
                self.audio_arrivals.append(self.last_audio_at)

    async def say(self, samples: np.ndarray, rate: int) -> float:
        """Speak, at the pace of real time, as 20 ms mu-law frames. Returns when (monotonic)
        the last voiced frame went out: where the caller's speech really ended."""
        pcm = resample(samples, rate, 8000)
        audio = ulaw_encode(pcm)
        voiced = [n for n, offset in enumerate(range(0, len(pcm), FRAME_BYTES))
                  if np.abs(pcm[offset:offset + FRAME_BYTES].astype(np.int32)).max(initial=0) > VOICED_LEVEL]
        last_voiced = voiced[-1] if voiced else -1
        last_voiced_at = 0.0
        async with self._talking:
            start = time.monotonic()
            for n, offset in enumerate(range(0, len(audio), FRAME_BYTES)):
                await self._frame(audio[offset:offset + FRAME_BYTES].ljust(FRAME_BYTES, b"\xff"))
                if n == last_voiced:
                    last_voiced_at = time.monotonic()
                await asyncio.sleep(max(0.0, start + (n + 1) * 0.02 - time.monotonic()))
        return last_voiced_at

    def first_audio_after(self, moment: float) -> float | None:
        """When the first of the worker's audio frames after `moment` arrived."""
        return next((t for t in self.audio_arrivals if t > moment), None)

    async def press(self, keys: str) -> None:
        """Key presses, as Twilio reports them: one `dtmf` message per key."""
        for key in keys:
            await self._send({"event": "dtmf", "dtmf": {"track": "inbound_track", "digit": key}})
            await asyncio.sleep(0.15)

    @property
    def ended(self) -> bool:
        """The worker has closed the stream."""
        return self._receiver is not None and self._receiver.done()

    async def hung_up(self, timeout: float = 10.0) -> None:
        """Wait until the worker closes the stream (on a real call, Twilio then hangs up)."""
        assert self._receiver is not None
        await asyncio.wait_for(asyncio.shield(self._receiver), timeout)

    async def listen(self, timeout: float = 30.0, quiet_for: float = 1.5, fresh: bool = True) -> np.ndarray:
        """Wait for the worker to speak and then fall quiet; what it said, as 16 kHz float.
        `fresh=False` keeps what arrived since the last listen returned (while the test was
        recognising it), for a reply that comes in pieces."""
        if fresh:
            self.heard.clear()
        else:
            del self.heard[:self._returned]
        self._returned = 0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.heard and time.monotonic() - self.last_audio_at > quiet_for:
                self._returned = len(self.heard)
                return for_recogniser(ulaw_decode(bytes(self.heard)), 8000)
            await asyncio.sleep(0.05)
        raise TimeoutError(f"the worker said nothing for {timeout} s; events: {[e.get('event') for e in self.events[-5:]]}")


def sentences_of(audio: np.ndarray, rate: int = 16000, gap: float = 0.25) -> list[np.ndarray]:
    """The worker's speech cut at its pauses: Whisper tiny can stop early on a long clip with
    pauses inside (a greeting of three sentences came back as its first one and a half), so a
    test that must hear a whole reply hears it piece by piece."""
    frame = int(rate * 0.02)
    usable = len(audio) // frame * frame
    if usable == 0:
        return [audio]
    loud = np.sqrt((audio[:usable].reshape(-1, frame) ** 2).mean(axis=1)) > 0.01
    pieces, start, quiet = [], None, 0
    for i, voiced in enumerate(loud):
        if voiced:
            start = i if start is None else start
            quiet = 0
        elif start is not None:
            quiet += 1
            if quiet * 0.02 >= gap:
                pieces.append(audio[start * frame:(i - quiet + 1) * frame + frame * 5])
                start, quiet = None, 0
    if start is not None:
        pieces.append(audio[start * frame:])
    return [p for p in pieces if len(p) > rate // 10] or [audio]


async def hear_whole(recogniser: Any, audio: np.ndarray) -> str:
    """What the worker said in `audio`, heard sentence by sentence (see `sentences_of`)."""
    parts = [(await recogniser.hear(piece)).text.strip() for piece in sentences_of(audio)]
    return " ".join(p for p in parts if p).lower()
