"""The bridge between a call's pipeline and the dialogue core: pipecat frames in, one `Turn`
per caller utterance or keyed-in number, the reply back as speech and call control (hang up
after the closing line; put the call through after the handoff line).

Each job lives in its own module, testable alone; this class only routes frames to them:
- when the caller's turn ends: `turn_taking.py` (the hold after the VAD's pause)
- key presses: `keypad.py`
- silence and re-prompts: `silence.py`
- the caller talking over the worker: `barge_in.py`
- putting the call through to a person: `put_through.py`
The outcome of a call that ends without one (hang-up, silence) is decided by the core
(`Conversations.end`)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
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

from channels.seam import Conversations
from channels.voice.barge_in import BargeIn
from channels.voice.keypad import Keypad
from channels.voice.put_through import put_through
from channels.voice.recogniser import Heard
from channels.voice.services import LocalWhisperSTT
from channels.voice.silence import SilenceWatch
from channels.voice.speakable import speakable
from channels.voice.transfer import CallControl
from channels.voice.turn_taking import HeardTurn, TurnTaking
from channels.voice.tuning import VoiceTuning
from dialogue.events import Transfer, Turn, TurnResult
from dialogue.render import render
from dialogue.spec import Script

log = logging.getLogger(__name__)


class DialogueBridge(FrameProcessor):
    def __init__(self, conversations: Conversations, conversation_id: str, metadata: dict[str, Any],
                 calls: CallControl | None = None, stt: LocalWhisperSTT | None = None,
                 tuning: VoiceTuning | None = None, speech_pending: Callable[[], bool] = lambda: False):
        super().__init__()
        tuning = tuning or VoiceTuning()
        self._core = conversations
        self._stt = stt
        self._calls = calls
        self._transfer: Transfer | None = None
        self._conversation_id = conversation_id
        self._metadata = metadata
        self.results: list[TurnResult] = []
        self._ending = False
        self._call_started = time.monotonic()
        # Per turn, where the time between the caller's last word and the worker's first went:
        # the VAD's quiet period, recognition, the dialogue turn, and speech synthesis to first audio.
        self.timings: list[dict[str, Any]] = []
        self._turns = asyncio.Lock()
        self._awaiting_audio: tuple[float, dict[str, Any]] | None = None
        self._holding_after = tuning.holding_after_seconds
        self._turn_taking = TurnTaking(tuning.turn_hold_seconds, self._heard_turn, self.create_task)
        self._keypad = Keypad(tuning.dtmf_pause_seconds, self._keyed_number, self.create_task)
        self._barge_in = BargeIn()
        # The spec's timeout, else VOICE_SILENCE_SECONDS: what the re-prompt's audit row reports.
        self._silence_after = conversations.spec.channels.voice.silence_timeout_seconds or tuning.silence_seconds
        self._unheard_after = min(self._silence_after, tuning.unheard_seconds)
        self._silence = SilenceWatch(
            self._silence_after,
            tuning.silence_prompts, reprompt=self._reprompt, give_up=self._give_up,
            speech_pending=speech_pending, spawn=self.create_task, unheard_seconds=tuning.unheard_seconds)

    @property
    def unheard(self) -> list[str]:
        return self._barge_in.take_unheard()

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, StartFrame):
            await self.push_frame(frame, direction)
            await self._take_turn(None)  # the greeting, as soon as the stream starts
            return
        if isinstance(frame, TranscriptionFrame):
            confidence = frame.result.get("confidence") if isinstance(frame.result, dict) else None
            if self._turn_taking.recognised(frame.text, None if confidence is None else float(confidence)):
                self._silence.cancel()
            return
        if isinstance(frame, InputDTMFFrame):
            self._silence.cancel()
            await self._keypad.press(str(frame.button.value))
            return
        if isinstance(frame, VADUserStoppedSpeakingFrame):
            self._turn_taking.caller_paused(frame.stop_secs)
            if not (self._barge_in.speaking or self._ending or self._turn_taking.holding_words or self._turns.locked()):
                self._silence.caller_fell_quiet()  # words recognised from this pause cancel it
        elif isinstance(frame, VADUserStartedSpeakingFrame):
            self._silence.cancel()
            self._turn_taking.caller_started()
            if self._barge_in.caller_started():
                log.info("%s: caller spoke over %r", self._conversation_id, self._barge_in.last_said)
                await self.push_frame(frame, direction)
                await self.broadcast_interruption()
                return
        elif isinstance(frame, BotStartedSpeakingFrame):
            self._barge_in.speaking = True
            self._silence.cancel()
            if self._awaiting_audio is not None:
                asked_at, timing = self._awaiting_audio
                timing["tts_first_audio_ms"] = round((time.monotonic() - asked_at) * 1000)
                self._awaiting_audio = None
        elif isinstance(frame, BotStoppedSpeakingFrame):
            self._barge_in.speaking = False
            if self._transfer is not None:
                transfer, self._transfer = self._transfer, None
                self.create_task(self._put_through(transfer))
            elif not self._ending:
                self._silence.worker_fell_quiet()
        await self.push_frame(frame, direction)

    async def _heard_turn(self, heard: HeardTurn) -> None:
        text, confidence, transcribed = heard.text, heard.confidence, None
        timing = dict(heard.timing)
        if self._stt is not None and self._stt.digit_lengths is not None:
            began = time.monotonic()
            read = await self._stt.read_digits(Heard(text, confidence or 0.0))
            timing["digits_ms"] = round((time.monotonic() - began) * 1000)
            if read.text != text:
                transcribed, text, confidence = text, read.text, read.confidence
        await self._take_turn(text, timing=timing, confidence=confidence, transcribed=transcribed)

    async def _keyed_number(self, keys: str) -> None:
        await self._take_turn(keys, keyed=True, timing={"input": "dtmf"})

    def _listen_for(self, requested: str | None, question: str | None, confirming: bool = False) -> None:
        """Tell the recogniser what the next answer is for (the field asked, the line said, and
        whether the worker is waiting for a yes or no to its read-back)."""
        if self._stt is None:
            return
        self._stt.listen_for(next((f for f in self._core.spec.fields if f.name == requested), None), question,
                             confirming)

    @property
    def _script(self) -> Script:
        return self._core.spec.script

    def _line(self, template: str, **extra: str) -> str:
        """A line of the spec's script (every sentence a caller hears comes from the spec)."""
        return render(template, self._core.spec.fields, {}, **extra)

    async def _reprompt(self, not_heard: bool) -> None:
        template = self._script.voice_not_heard if not_heard else self._script.voice_still_there
        line = self._line(template, prompt=self._question_again())
        metadata: dict[str, Any] = ({"not_heard": True, "after_silence_seconds": self._unheard_after} if not_heard
                                    else {"after_silence_seconds": self._silence_after})
        await self._core.record(self._conversation_id, "voice", "reprompt", said=line, metadata=metadata)
        await self.push_frame(TTSSpeakFrame(speakable(line)))

    def _question_again(self) -> str:
        """What was last said, without the greeting or the acknowledgement of the answer before
        it: "Are you still there? Lovely. What time?" thanks the caller for an answer they did
        not give, and "Sorry, I didn't catch that. Hi, this is Sam…" introduces the worker twice."""
        said = self._barge_in.last_said
        greeting = self._core.spec.channels.voice.greeting or self._script.greeting
        for opening in (greeting, self._script.acknowledge):
            start = self._line(opening).strip() if opening else ""
            if start and said.startswith(start) and said[len(start):].strip():
                said = said[len(start):].strip()
        return said

    async def _give_up(self, reprompts: int) -> None:
        self._ending = True
        goodbye = self._line(self._script.voice_silence_goodbye)
        await self._core.end(self._conversation_id, "voice", "caller silent", outcome="abandoned", said=goodbye,
                             metadata={"reprompts": reprompts})
        await self.push_frame(TTSSpeakFrame(goodbye))
        await self.push_frame(EndWorkerFrame())

    async def _take_turn(self, text: str | None, keyed: bool = False, timing: dict[str, Any] | None = None,
                         confidence: float | None = None, transcribed: str | None = None) -> None:
        metadata = {**self._metadata, "input": "dtmf"} if keyed else dict(self._metadata)
        if confidence is not None:
            metadata["confidence"] = round(confidence, 3)
        if transcribed is not None:
            metadata["transcribed"] = transcribed  # what plain transcription made of the digits, for reviewers
        unheard = self._barge_in.take_unheard()
        if unheard:
            metadata["talked_over"] = unheard  # stored with the caller's next turn
        if text is not None:
            self._silence.cancel()  # an answer: its reply follows, however long it takes
        turn = Turn(conversation_id=self._conversation_id, channel="voice", text=text,
                    time=datetime.now(timezone.utc), metadata=metadata)
        began = time.monotonic()
        holding = self.create_task(self._hold_the_line()) if text is not None else None
        try:
            async with self._turns:
                result = await self._core.handle(turn)
        finally:
            if holding is not None:
                holding.cancel()
        self.results.append(result)
        self._listen_for(result.requested, result.reply, confirming=result.phase == "confirming")
        timing = {"turn": len(self.results) - 1, **(timing or {"input": "start"}),
                  "dialogue_ms": round((time.monotonic() - began) * 1000)}
        self.timings.append(timing)
        if text is not None:
            self._silence.caller_answered()
        if result.reply:
            self._barge_in.worker_says(result.reply)
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

    async def _hold_the_line(self) -> None:
        """A turn that takes long (an action on the business's system) gets a short line first,
        so the caller does not sit in silence wondering whether anyone is there."""
        await asyncio.sleep(self._holding_after)
        line = self._line(self._script.voice_holding)
        if line:
            self._silence.cancel()
            await self.push_frame(TTSSpeakFrame(speakable(line)))

    async def _put_through(self, transfer: Transfer) -> None:
        assert self._calls is not None
        apology = await put_through(self._core, self._calls, self._conversation_id, self._metadata.get("call_sid", ""),
                                    transfer, caller_id=self._metadata.get("from") or None,
                                    no_answer=self._line(self._script.voice_no_answer),
                                    refused=self._line(self._script.voice_transfer_failed))
        if apology:
            await self.push_frame(TTSSpeakFrame(apology))
        # Twilio ends the stream itself once the call is updated; ending here also covers a refusal.
        await self.push_frame(EndWorkerFrame())

    async def call_ended(self, recording: str | None = None) -> None:
        """Stored with the transcript once the stream is gone: how long the call lasted, who
        ended it, the per-turn timings, and the recording's path. A caller who hangs up before
        the conversation reached an outcome has abandoned it."""
        ended_by = "worker" if self._ending else "caller"
        await self._core.end(self._conversation_id, "voice", "call ended",
                             outcome=None if self._ending else "abandoned",
                             metadata={"ended_by": ended_by,
                                       "duration_seconds": round(time.monotonic() - self._call_started, 2),
                                       "turns": self.timings, "recording": recording})
