"""Key presses as answers: digits collect until `#` (or a pause of DTMF_PAUSE_SECONDS) and then
count as one turn whose text is the digits, as if said; `*` starts the number again. This is
how callers give account numbers that the recogniser would mishear."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from channels.voice.turn_taking import Spawn


class Keypad:
    def __init__(self, pause_seconds: float, on_number: Callable[[str], Awaitable[None]], spawn: Spawn):
        self._pause = pause_seconds
        self._on_number = on_number
        self._spawn = spawn
        self._keys = ""
        self._waiting: asyncio.Task[None] | None = None

    async def press(self, key: str) -> None:
        if self._waiting is not None:
            self._waiting.cancel()
            self._waiting = None
        if key == "*":
            self._keys = ""
        elif key == "#":
            await self._done()
        else:
            self._keys += key
            self._waiting = self._spawn(self._after_pause())

    async def _after_pause(self) -> None:
        await asyncio.sleep(self._pause)
        self._waiting = None
        await self._done()

    async def _done(self) -> None:
        keys, self._keys = self._keys, ""
        if keys:
            await self._on_number(keys)
