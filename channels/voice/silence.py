"""Silence never hangs a call: when the worker has said everything it had to say and the caller
stays quiet for the silence timeout, the question is asked again; after the allowed number of
re-prompts the worker says goodbye and hangs up.

The wait starts when the whole reply has been played, not when the audio first pauses: a reply
is spoken sentence by sentence, and a slow sentence leaves a gap in which the caller is not
yet expected to answer (`speech_pending` says whether more of the reply is still coming)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from channels.voice.turn_taking import Spawn


MAX_DEFERRALS = 3


class SilenceWatch:
    def __init__(self, seconds: float, prompts: int, *, reprompt: Callable[[], Awaitable[None]],
                 give_up: Callable[[int], Awaitable[None]], speech_pending: Callable[[], bool], spawn: Spawn):
        self._seconds = seconds
        self._prompts = prompts
        self._reprompt = reprompt
        self._give_up = give_up
        self._speech_pending = speech_pending
        self._spawn = spawn
        self._task: asyncio.Task[None] | None = None
        self.reprompts = 0

    def worker_fell_quiet(self) -> None:
        """The worker's speech stopped: the caller's turn to speak starts now (restarting the wait)."""
        self.cancel()
        self._task = self._spawn(self._wait())

    def cancel(self) -> None:
        """Something was heard (speech, keys) or the worker speaks again: no silence."""
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def caller_answered(self) -> None:
        """The caller is there: a later silence gets its re-prompts again."""
        self.reprompts = 0

    async def _wait(self) -> None:
        await asyncio.sleep(self._seconds)
        # The rest of the reply is still being made: its end restarts the wait. Waited out a few
        # times at most, so that speech that never finishes cannot keep a silent call open.
        for _ in range(MAX_DEFERRALS):
            if not self._speech_pending():
                break
            await asyncio.sleep(self._seconds)
        self._task = None
        if self.reprompts < self._prompts:
            self.reprompts += 1
            await self._reprompt()
            return
        await self._give_up(self.reprompts)
