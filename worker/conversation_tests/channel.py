"""What the runner needs from a channel: one conversation, a line in, the worker's reply out.

A channel module (console.py, sms.py, email.py, voice.py) implements `CaseChannel` and is
named in runner.py's `open_channel`; the runner never knows which one it drives."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from pydantic import BaseModel



class Reply(BaseModel):
    """What the person got back for one line (None: nothing)."""

    text: str | None
    heard: str | None = None  # what the worker took as the person's words, where a channel reads them
    # (email: the parser's new text; voice: what the recogniser heard); None: the line as sent


class NotSupported(Exception):
    """The runner cannot drive this case's channel (no speech models for a voice case); the case fails
    with this reason."""


class CaseChannel(Protocol):
    conversation_id: str

    async def start(self) -> Reply:
        """Begin the conversation (the console's greeting; SMS: nothing, the person writes first)."""
        ...

    async def send(self, line: str) -> Reply:
        ...

    async def close(self) -> None:
        ...


Clock = Callable[[], datetime]

