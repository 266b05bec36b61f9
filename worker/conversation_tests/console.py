"""The console channel, as `channel-worker chat` drives it: every line a `Turn` of channel
`console` handed to the engine, the greeting first, the `Say` actions the reply."""

from __future__ import annotations

from channels.console.chat import new_conversation_id
from dialogue.engine import DialogueEngine
from dialogue.events import Turn
from worker.conversation_tests.channel import Clock, Reply


class ConsoleChannel:
    def __init__(self, engine: DialogueEngine, clock: Clock):
        self.engine, self.clock = engine, clock
        self.conversation_id = new_conversation_id()

    async def _turn(self, text: str | None) -> Reply:
        result = await self.engine.handle(Turn(conversation_id=self.conversation_id, channel="console", text=text,
                                               time=self.clock()))
        return Reply(text=result.reply or None)

    async def start(self) -> Reply:
        return await self._turn(None)

    async def send(self, line: str) -> Reply:
        return await self._turn(line.strip())

    async def close(self) -> None:
        return None
