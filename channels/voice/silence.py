"""Silence never hangs a call: when the worker has said everything it had to say and the caller
stays quiet for the silence timeout, the question is asked again; after the allowed number of
re-prompts the worker says goodbye and hangs up.

The wait starts when the whole reply has been played, not when the audio first pauses: a reply
is spoken sentence by sentence, and a slow sentence leaves a gap in which the caller is not
yet expected to answer (`speech_pending` says whether more of the reply is still coming).

The wait also starts when the caller falls quiet: speech that gave no words (a cough, a word the
recogniser could not make out, a segment whose text was lost) is no answer, and without this the
worker would wait for ever for a turn that never comes while the caller waits for the worker.
Words recognised cancel it, as a turn follows."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from channels.voice.turn_taking import Spawn


MAX_DEFERRALS = 3
# A caller who speaks but is never understood is asked again this many times in a row before
# the goodbye: more than a silent line gets, since someone is there and trying.
MAX_UNHEARD = 3


class SilenceWatch:
    def __init__(self, seconds: float, prompts: int, *, reprompt: Callable[[bool], Awaitable[None]],
                 give_up: Callable[[int], Awaitable[None]], speech_pending: Callable[[], bool], spawn: Spawn,
                 unheard_seconds: float | None = None):
        self._seconds = seconds
        self._unheard_seconds = seconds if unheard_seconds is None else min(seconds, unheard_seconds)
        self._prompts = prompts
        self._reprompt = reprompt
        self._give_up = give_up
        self._speech_pending = speech_pending
        self._spawn = spawn
        self._task: asyncio.Task[None] | None = None
        self._caller_spoke = False
        self.reprompts = 0
        self.unheard = 0

    def worker_fell_quiet(self) -> None:
        """The worker's speech stopped: the caller's turn to speak starts now (restarting the wait)."""
        self.cancel()
        self._caller_spoke = False
        self._task = self._spawn(self._wait())

    def caller_fell_quiet(self) -> None:
        """The caller paused: unless their words are recognised (which cancels this), the worker
        asks again after the silence timeout, saying it did not catch what was said."""
        self.cancel()
        self._caller_spoke = True
        self._task = self._spawn(self._wait())

    def cancel(self) -> None:
        """Something was heard (speech, keys) or the worker speaks again: no silence."""
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def caller_answered(self) -> None:
        """The caller is there: a later silence gets its re-prompts again."""
        self.reprompts = 0
        self.unheard = 0

    async def _wait(self) -> None:
        await asyncio.sleep(self._unheard_seconds if self._caller_spoke else self._seconds)
        # The rest of the reply is still being made: its end restarts the wait. Waited out a few
        # times at most, so that speech that never finishes cannot keep a silent call open.
        for _ in range(MAX_DEFERRALS):
            if not self._speech_pending():
                break
            await asyncio.sleep(self._seconds)
        self._task = None
        if self._caller_spoke and self.unheard < MAX_UNHEARD:
            self.unheard += 1
            await self._reprompt(True)
            return
        if not self._caller_spoke and self.reprompts < self._prompts:
            self.reprompts += 1
            await self._reprompt(False)
            return
        await self._give_up(self.reprompts + self.unheard)
