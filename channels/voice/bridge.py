"""The bridge between a call's pipeline and the dialogue engine: one `Turn` per caller
utterance; the graph's actions come back as speech (and, later, call control)."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

from pipecat.frames.frames import EndWorkerFrame, Frame, StartFrame, TranscriptionFrame, TTSSpeakFrame
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from channels.voice.speakable import speakable
from dialogue.engine import DialogueEngine
from dialogue.events import Turn, TurnResult

log = logging.getLogger(__name__)


class DialogueBridge(FrameProcessor):
    def __init__(self, engine: DialogueEngine, conversation_id: str, metadata: dict[str, Any]):
        super().__init__()
        self._engine = engine
        self._conversation_id = conversation_id
        self._metadata = metadata
        self.results: list[TurnResult] = []

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, StartFrame):
            await self.push_frame(frame, direction)
            await self._take_turn(None)  # the greeting, as soon as the stream starts
            return
        if isinstance(frame, TranscriptionFrame):
            await self._take_turn(frame.text)
            return
        await self.push_frame(frame, direction)

    async def _take_turn(self, text: str | None) -> None:
        turn = Turn(conversation_id=self._conversation_id, channel="voice", text=text,
                    time=datetime.now(timezone.utc), metadata=self._metadata)
        result = await self._engine.handle(turn)
        self.results.append(result)
        if result.reply:
            await self.push_frame(TTSSpeakFrame(speakable(result.reply)))
        if result.outcome is not None and any(a.kind == "end" for a in result.actions):
            # Downstream, behind the closing line: the call ends once it has been said.
            await self.push_frame(EndWorkerFrame())
