"""The bridge between a call's pipeline and the dialogue engine: one `Turn` per caller
utterance or keyed-in number; the graph's actions come back as speech and call control
(hang up after the closing line; put the call through to a person after the handoff line).

Key presses: digits collect until `#` (or a pause of DTMF_PAUSE_SECONDS), then count as one
turn whose text is the digits, as if said; `*` starts the number again. This is how callers
give account numbers that the recogniser would mishear."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from datetime import datetime, timezone
from typing import Any

from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    EndWorkerFrame,
    Frame,
    InputDTMFFrame,
    StartFrame,
    TranscriptionFrame,
    TTSSpeakFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from channels.voice.recogniser import Heard
from channels.voice.services import LocalWhisperSTT
from channels.voice.speakable import speakable
from channels.voice.transfer import CallControl
from dialogue.engine import DialogueEngine
from dialogue.events import Transfer, Turn, TurnResult
from dialogue.render import render
from dialogue.spec import Script
from escalation.queue import HumanQueue
from transcripts.store import Event

log = logging.getLogger(__name__)
SILENCE_SECONDS = float(os.environ.get("VOICE_SILENCE_SECONDS", "8"))
SILENCE_PROMPTS = int(os.environ.get("VOICE_SILENCE_PROMPTS", "1"))
DTMF_PAUSE_SECONDS = float(os.environ.get("VOICE_DTMF_PAUSE_SECONDS", "3"))
TURN_HOLD_SECONDS = float(os.environ.get("VOICE_TURN_HOLD_SECONDS", "0.3"))


TRANSFER_GRACE_SECONDS = 0.5  # Twilio plays what it has buffered before the handoff line ends


class DialogueBridge(FrameProcessor):
    def __init__(self, engine: DialogueEngine, conversation_id: str, metadata: dict[str, Any],
                 calls: CallControl | None = None, stt: LocalWhisperSTT | None = None):
        super().__init__()
        self._engine = engine
        self._stt = stt
        self._calls = calls
        self._transfer: Transfer | None = None
        self._conversation_id = conversation_id
        self._metadata = metadata
        self.results: list[TurnResult] = []
        self._keys = ""
        self._keys_pause: asyncio.Task[None] | None = None
        self._speaking = False
        self._silence: asyncio.Task[None] | None = None
        self._reprompts = 0
        self._ending = False
        self._last_said = ""
        self.unheard: list[str] = []  # lines the caller talked over
        self._call_started = time.monotonic()
        # Per turn, where the time between the caller's last word and the worker's first went:
        # the VAD's quiet period, recognition, the dialogue turn, and speech synthesis to first audio.
        self.timings: list[dict[str, Any]] = []
        # The caller's turn ends after TURN_HOLD_SECONDS more quiet beyond the VAD's pause, when
        # every segment is recognised. Recognition runs during the hold, not after it.
        self._said: list[str] = []
        self._confidences: list[float] = []
        self._timing: dict[str, Any] | None = None
        self._caller_talking = False
        self._segments_in_flight = 0
        self._paused_at = 0.0
        self._pause_secs = 0.0
        self._recognised_ms = 0
        self._end_of_turn: asyncio.Task[None] | None = None
        self._turns = asyncio.Lock()
        self._awaiting_audio: tuple[float, dict[str, Any]] | None = None

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, StartFrame):
            await self.push_frame(frame, direction)
            await self._take_turn(None)  # the greeting, as soon as the stream starts
            return
        if isinstance(frame, TranscriptionFrame):
            self._segments_in_flight = max(0, self._segments_in_flight - 1)
            self._recognised_ms = round((time.monotonic() - self._paused_at) * 1000)
            if frame.text.strip():
                self._heard_something()
                self._said.append(frame.text.strip())
                if self._timing is None:
                    self._timing = {"input": "speech"}
                if isinstance(frame.result, dict) and "confidence" in frame.result:
                    self._confidences.append(float(frame.result["confidence"]))
            self._schedule_end_of_turn()
            return
        if isinstance(frame, VADUserStoppedSpeakingFrame):
            # A pause: recognition of the segment starts now, while the caller may yet go on.
            self._caller_talking = False
            self._segments_in_flight += 1
            self._paused_at = time.monotonic()
            self._pause_secs = frame.stop_secs
            self._schedule_end_of_turn()
        elif isinstance(frame, VADUserStartedSpeakingFrame):
            self._caller_talking = True  # the caller goes on: what was heard so far waits for the rest
            if self._end_of_turn is not None:
                self._end_of_turn.cancel()
                self._end_of_turn = None
        if isinstance(frame, InputDTMFFrame):
            self._heard_something()
            await self._key(str(frame.button.value))
            return
        if isinstance(frame, BotStartedSpeakingFrame):
            self._speaking = True
            self._heard_something()
            if self._awaiting_audio is not None:
                asked_at, timing = self._awaiting_audio
                timing["tts_first_audio_ms"] = round((time.monotonic() - asked_at) * 1000)
                self._awaiting_audio = None
        elif isinstance(frame, BotStoppedSpeakingFrame):
            self._speaking = False
            if self._transfer is not None:
                transfer, self._transfer = self._transfer, None
                self.create_task(self._put_through(transfer))
            elif not self._ending:
                self._silence = self.create_task(self._wait_for_the_caller())
        elif isinstance(frame, VADUserStartedSpeakingFrame):
            self._heard_something()
        if isinstance(frame, VADUserStartedSpeakingFrame) and self._speaking:
            # Barge-in: the caller talks over the worker. Its speech stops at once (Twilio is
            # told to drop what it has queued) and the cut-off line is remembered as unheard.
            self._speaking = False
            self.unheard.append(self._last_said)
            log.info("%s: caller spoke over %r", self._conversation_id, self._last_said)
            await self.push_frame(frame, direction)
            await self.broadcast_interruption()
            return
        await self.push_frame(frame, direction)

    def _schedule_end_of_turn(self) -> None:
        if self._end_of_turn is None and not self._caller_talking and self._said:
            self._end_of_turn = self.create_task(self._turn_ends())

    async def _turn_ends(self) -> None:
        await asyncio.sleep(max(0.0, self._paused_at + TURN_HOLD_SECONDS - time.monotonic()))
        self._end_of_turn = None
        if self._caller_talking or self._segments_in_flight or not self._said:
            return  # the caller went on, or a segment is still being recognised (its arrival reschedules)
        text = " ".join(self._said)
        # stt_ms runs inside hold_ms (pause to turn): the hold costs the caller only what
        # recognition does not already take.
        timing = {**(self._timing or {"input": "speech"}), "vad_wait_ms": round(self._pause_secs * 1000),
                  "stt_ms": self._recognised_ms, "hold_ms": round((time.monotonic() - self._paused_at) * 1000)}
        confidence = min(self._confidences) if self._confidences else None
        self._said, self._confidences, self._timing = [], [], None
        transcribed = None
        if self._stt is not None and self._stt.digit_lengths is not None:
            began = time.monotonic()
            read = await self._stt.read_digits(Heard(text, confidence or 0.0))
            timing["digits_ms"] = round((time.monotonic() - began) * 1000)
            if read.text != text:
                transcribed, text, confidence = text, read.text, read.confidence
        await self._take_turn(text, timing=timing, confidence=confidence, transcribed=transcribed)

    def _listen_for(self, requested: str | None, question: str | None) -> None:
        """Tell the recogniser what the next answer is for (the field asked and the line said)."""
        if self._stt is None:
            return
        self._stt.listen_for(next((f for f in self._engine.spec.fields if f.name == requested), None), question)

    @property
    def _script(self) -> Script:
        return self._engine.spec.script

    def _line(self, template: str, **extra: str) -> str:
        """A line of the spec's script (every sentence a caller hears comes from the spec)."""
        return render(template, self._engine.spec.fields, {}, **extra)

    def _heard_something(self) -> None:
        if self._silence is not None:
            self._silence.cancel()
            self._silence = None

    async def _wait_for_the_caller(self) -> None:
        """Silence never hangs: after SILENCE_SECONDS the question is asked again, and after
        SILENCE_PROMPTS re-prompts the worker says goodbye and hangs up."""
        await asyncio.sleep(self._engine.spec.channels.voice.silence_timeout_seconds or SILENCE_SECONDS)
        self._silence = None
        if self._reprompts < SILENCE_PROMPTS:
            self._reprompts += 1
            await self.push_frame(TTSSpeakFrame(speakable(self._line(self._script.voice_still_there, prompt=self._last_said))))
            return
        self._ending = True
        goodbye = self._line(self._script.voice_silence_goodbye)
        await self._engine.end(self._conversation_id, "voice", "caller silent", outcome="abandoned", said=goodbye,
                               metadata={"reprompts": self._reprompts})
        await self.push_frame(TTSSpeakFrame(goodbye))
        await self.push_frame(EndWorkerFrame())

    async def _key(self, key: str) -> None:
        if self._keys_pause is not None:
            self._keys_pause.cancel()
            self._keys_pause = None
        if key == "*":
            self._keys = ""
        elif key == "#":
            await self._keys_done()
        else:
            self._keys += key
            self._keys_pause = self.create_task(self._keys_after_pause())

    async def _keys_after_pause(self) -> None:
        await asyncio.sleep(DTMF_PAUSE_SECONDS)
        self._keys_pause = None
        await self._keys_done()

    async def _keys_done(self) -> None:
        keys, self._keys = self._keys, ""
        if keys:
            await self._take_turn(keys, keyed=True, timing={"input": "dtmf"})

    async def _take_turn(self, text: str | None, keyed: bool = False, timing: dict[str, Any] | None = None,
                         confidence: float | None = None, transcribed: str | None = None) -> None:
        metadata = {**self._metadata, "input": "dtmf"} if keyed else dict(self._metadata)
        if confidence is not None:
            metadata["confidence"] = round(confidence, 3)
        if transcribed is not None:
            metadata["transcribed"] = transcribed  # what plain transcription made of the digits, for reviewers
        if self.unheard:
            # Stored with the caller's next turn: what they talked over, so a reviewer (and a
            # later turn) knows which line they never heard to the end.
            metadata["talked_over"] = list(self.unheard)
            self.unheard.clear()
        turn = Turn(conversation_id=self._conversation_id, channel="voice", text=text,
                    time=datetime.now(timezone.utc), metadata=metadata)
        began = time.monotonic()
        async with self._turns:
            result = await self._engine.handle(turn)
        self.results.append(result)
        self._listen_for(result.requested, result.reply)
        timing = {"turn": len(self.results) - 1, **(timing or {"input": "start"}),
                  "dialogue_ms": round((time.monotonic() - began) * 1000)}
        self.timings.append(timing)
        if text is not None:
            self._reprompts = 0  # the caller is there: a later silence gets its re-prompt again
        if result.reply:
            self._last_said = result.reply
            self._awaiting_audio = (time.monotonic(), timing)
            await self.push_frame(TTSSpeakFrame(speakable(result.reply)))
        transfer = next((a for a in result.actions if isinstance(a, Transfer)), None)
        if transfer is not None:
            self._ending = True
            if transfer.to and self._calls is not None:
                # Put through once the handoff line has been heard (BotStoppedSpeaking).
                self._transfer = transfer
                if not result.reply:
                    self.create_task(self._put_through(transfer))
                return
            await self.push_frame(EndWorkerFrame())  # no one to dial: the handoff line said a person will call back
            return
        if result.outcome is not None and any(a.kind == "end" for a in result.actions):
            # Downstream, behind the closing line: the call ends once it has been said.
            self._ending = True
            await self.push_frame(EndWorkerFrame())

    async def _put_through(self, transfer: Transfer) -> None:
        """Update the live call to dial the rule's number; the handoff packet is linked by id."""
        assert self._calls is not None and transfer.to
        await asyncio.sleep(TRANSFER_GRACE_SECONDS)
        handoff = await HumanQueue(self._engine.store.db).open_for(self._conversation_id)
        outcome = await self._calls.transfer(self._metadata.get("call_sid", ""), transfer.to,
                                             caller_id=self._metadata.get("from") or None,
                                             no_answer=self._line(self._script.voice_no_answer))
        apology = None if outcome.ok else self._line(self._script.voice_transfer_failed)
        await self._engine.store.append(
            Event(conversation_id=self._conversation_id, channel="voice", direction="system", text=apology,
                  time=datetime.now(timezone.utc),
                  metadata={"event": "transfer", "rule": transfer.rule, "handoff_id": handoff.id if handoff else None,
                            **outcome.model_dump()}),
            worker=self._engine.spec.name,
        )
        if apology:
            await self.push_frame(TTSSpeakFrame(apology))
        # Twilio ends the stream itself once the call is updated; ending here also covers a refusal.
        await self.push_frame(EndWorkerFrame())

    async def call_ended(self, recording: str | None = None) -> None:
        """Stored with the transcript once the stream is gone: how long the call lasted, who
        ended it, the per-turn timings, and the recording's path. A caller who hangs up before
        the conversation reached an outcome has abandoned it."""
        ended_by = "worker" if self._ending else "caller"
        # The engine decides the outcome: abandoned, unless the dialogue already reached one.
        await self._engine.end(self._conversation_id, "voice", "call ended",
                               outcome=None if self._ending else "abandoned",
                               metadata={"ended_by": ended_by,
                                         "duration_seconds": round(time.monotonic() - self._call_started, 2),
                                         "turns": self.timings, "recording": recording})
