"""Drive a dialogue engine turn by turn, as a channel would, with a controllable clock."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

from dialogue.engine import DialogueEngine
from dialogue.events import Turn, TurnResult
from dialogue.spec import WorkerSpec
from worker.config import Settings
from worker.runtime import open_engine

MONDAY_MORNING = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)


def settings_for(url: str) -> Settings:
    if url.startswith("postgres"):
        return Settings(database_url=url)
    return Settings(var_dir=Path(url).parent / "var")


@contextlib.asynccontextmanager
async def engine_for(spec: WorkerSpec, url: str) -> AsyncIterator[DialogueEngine]:
    async with open_engine(spec, settings_for(url)) as engine:
        yield engine


class Talk:
    """One conversation: `await talk.start()`, then `await talk.say("...")` returns the reply."""

    def __init__(self, engine: DialogueEngine, conversation_id: str = "conv-1", channel: str = "console",
                 start: datetime = MONDAY_MORNING):
        self.engine, self.id, self.channel = engine, conversation_id, channel
        self.clock = start
        self.last: TurnResult | None = None

    async def _turn(self, text: str | None) -> TurnResult:
        self.clock += timedelta(seconds=5)
        self.last = await self.engine.handle(Turn(conversation_id=self.id, channel=self.channel, text=text, time=self.clock))
        return self.last

    async def start(self) -> str:
        return (await self._turn(None)).reply

    async def say(self, text: str) -> str:
        return (await self._turn(text)).reply

    def values(self) -> dict[str, object]:
        assert self.last is not None
        return {k: v.value for k, v in self.last.fields.items()}
