"""The bridge between a call's pipeline and the dialogue engine: one `Turn` per caller
utterance or keyed-in number; the graph's actions come back as speech (and, later, call
control).

Key presses: digits collect until `#` (or a pause of DTMF_PAUSE_SECONDS), then count as one
turn whose text is the digits, as if said; `*` starts the number again. This is how callers
give account numbers that the recogniser would mishear."""

from __future__ import annotations

import asyncio
import logging
import os
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
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from channels.voice.speakable import speakable
from dialogue.engine import DialogueEngine
from dialogue.events import Turn, TurnResult

log = logging.getLogger(__name__)
DTMF_PAUSE_SECONDS = float(os.environ.get("VOICE_DTMF_PAUSE_SECONDS", "3"))


class DialogueBridge(FrameProcessor):
    def __init__(self, engine: DialogueEngine, conversation_id: str, metadata: dict[str, Any]):
        super().__init__()
        self._engine = engine
        self._conversation_id = conversation_id
        self._metadata = metadata
        self.results: list[TurnResult] = []
        self._keys = ""
        self._keys_pause: asyncio.Task[None] | None = None
        self._speaking = False
        self._last_said = ""
        self.unheard: list[str] = []  # lines the caller talked over

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, StartFrame):
            await self.push_frame(frame, direction)
            await self._take_turn(None)  # the greeting, as soon as the stream starts
            return
        if isinstance(frame, TranscriptionFrame):
            await self._take_turn(frame.text)
            return
        if isinstance(frame, InputDTMFFrame):
            await self._key(str(frame.button.value))
            return
        if isinstance(frame, BotStartedSpeakingFrame):
            self._speaking = True
        elif isinstance(frame, BotStoppedSpeakingFrame):
            self._speaking = False
        elif isinstance(frame, VADUserStartedSpeakingFrame) and self._speaking:
            # Barge-in: the caller talks over the worker. Its speech stops at once (Twilio is
            # told to drop what it has queued) and the cut-off line is remembered as unheard.
            self._speaking = False
            self.unheard.append(self._last_said)
            log.info("%s: caller spoke over %r", self._conversation_id, self._last_said)
            await self.push_frame(frame, direction)
            await self.broadcast_interruption()
            return
        await self.push_frame(frame, direction)

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
            await self._take_turn(keys, keyed=True)

    async def _take_turn(self, text: str | None, keyed: bool = False) -> None:
        metadata = {**self._metadata, "input": "dtmf"} if keyed else dict(self._metadata)
        if self.unheard:
            # Stored with the caller's next turn: what they talked over, so a reviewer (and a
            # later turn) knows which line they never heard to the end.
            metadata["talked_over"] = list(self.unheard)
            self.unheard.clear()
        turn = Turn(conversation_id=self._conversation_id, channel="voice", text=text,
                    time=datetime.now(timezone.utc), metadata=metadata)
        result = await self._engine.handle(turn)
        self.results.append(result)
        if result.reply:
            self._last_said = result.reply
            await self.push_frame(TTSSpeakFrame(speakable(result.reply)))
        if result.outcome is not None and any(a.kind == "end" for a in result.actions):
            # Downstream, behind the closing line: the call ends once it has been said.
            await self.push_frame(EndWorkerFrame())
