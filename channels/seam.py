"""The one seam between the channels and the core, as Rasa's InputChannel/OutputChannel and
pipecat's serializers draw it: a channel turns what arrives into a `Turn`, hands it to
`Conversations`, and delivers the `TurnResult`'s reply its own way. Channels see this
protocol, never the concrete engine or its stores, so a channel can be tested against any
core and the core can change its storage without touching a channel.

`ChannelRuntime` is what a channel's `mount(app, runtime)` gets: the core, the database for
the channel's own tables, the settings it needs, and a way to run supervised loops."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from dialogue.events import Turn, TurnResult
from dialogue.spec import WorkerSpec
from escalation.queue import Handoff
from storage.db import Database, Statement



class Conversations(Protocol):
    """The core as a channel sees it."""

    @property
    def spec(self) -> WorkerSpec: ...

    async def handle(self, turn: Turn, after: Callable[[TurnResult], Sequence[Statement]] | None = None) -> TurnResult:
        """Take one turn: recorded, run, the reply and its side effects committed together
        (with the statements `after` adds, in the same transaction)."""
        ...

    async def end(self, conversation_id: str, channel: str, reason: str, *, outcome: str | None = "abandoned",
                  said: str | None = None, metadata: dict[str, Any] | None = None) -> str | None:
        """The conversation ended outside a turn (hang-up, silence); the core decides the outcome."""
        ...

    async def record(self, conversation_id: str, channel: str, event: str, *, said: str | None = None,
                     metadata: dict[str, Any] | None = None) -> None:
        """A channel event outside a turn (a re-prompt, a transfer), with the line said, if any."""
        ...

    async def open_handoff(self, conversation_id: str) -> Handoff | None:
        """The conversation's handoff still waiting for a person."""
        ...

    async def reply_after(self, key: str, metadata_key: str, value: str) -> str | None:
        """The reply already committed to the inbound message `value` (a redelivery), if any."""
        ...


class Loops(Protocol):
    def start(self, name: str, loop: Callable[[], Awaitable[None]]) -> Any:
        """Run `loop` for the life of the process, restarted after a crash; /healthz names it while down."""
        ...


class ChannelRuntime(Protocol):
    """What `mount(app, runtime)` gets from the composition root (worker/runtime.py)."""

    conversations: Conversations
    db: Database
    loops: Loops
    # The settings as worker/settings.py read them once; each channel's mount module declares the
    # part it reads as a Protocol of its own (a channel's settings types belong to that channel).
    settings: Any
    delivery_interval: float  # seconds between passes of a channel's outbox loop

    def on_close(self, closer: Callable[[], Awaitable[None]]) -> None:
        """Run `closer` when the worker stops (in the reverse order of registration)."""
        ...
