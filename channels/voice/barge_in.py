"""Barge-in: the caller talks over the worker. Its speech stops at once (Twilio is told to drop
what it has queued) and the cut-off line is remembered as unheard, to be stored with the
caller's next turn so a reviewer (and a later turn) knows which line they never heard out."""

from __future__ import annotations


class BargeIn:
    def __init__(self) -> None:
        self.speaking = False
        self.last_said = ""
        self._unheard: list[str] = []

    def worker_says(self, line: str) -> None:
        self.last_said = line

    def caller_started(self) -> bool:
        """True when the caller cut the worker off (the caller's speech interrupts)."""
        if not self.speaking:
            return False
        self.speaking = False
        self._unheard.append(self.last_said)
        return True

    def take_unheard(self) -> list[str]:
        unheard, self._unheard = self._unheard, []
        return unheard
