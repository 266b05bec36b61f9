"""What flows between channels and the dialogue: a `Turn` in, `Action`s out.

Small typed records in the manner of pipecat's frames: a channel builds a `Turn` from
what arrived and carries out the actions; it never touches the graph's state.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, Field

from storage.clock import utcnow

ChannelName = Literal["console", "sms", "email", "voice", "web"]


class Turn(BaseModel):
    """One thing the person said or wrote, or the start of a conversation (`text=None`)."""

    conversation_id: str
    channel: ChannelName
    text: str | None = None
    time: datetime = Field(default_factory=utcnow, description="When it was sent; relative dates use it.")
    metadata: dict[str, Any] = Field(default_factory=dict)
    dedupe_key: str | None = Field(
        None, description="The channel's own id for this message (an SMS MessageSid): a redelivery or a crash "
                          "recovery that runs the turn again records the message once.")


class Say(BaseModel):
    kind: Literal["say"] = "say"
    text: str


class Transfer(BaseModel):
    kind: Literal["transfer"] = "transfer"
    to: str | None
    rule: str
    reason: str


class Notify(BaseModel):
    kind: Literal["notify"] = "notify"
    rule: str
    reason: str


class End(BaseModel):
    kind: Literal["end"] = "end"
    outcome: str


Action = Annotated[Union[Say, Transfer, Notify, End], Field(discriminator="kind")]


class FieldValue(BaseModel):
    """A collected value as stored: the value, the words it came from, when and how sure."""

    value: Any
    text: str
    start: int
    end: int
    turn: int
    confidence: float


class Escalation(BaseModel):
    rule: str
    reason: str
    action: str
    to: str | None = None


class TurnResult(BaseModel):
    """What the engine returns for one turn: the actions plus the state a channel may show."""

    conversation_id: str
    actions: list[Action]
    fields: dict[str, FieldValue]
    outcome: str | None
    escalation: Escalation | None
    phase: str
    requested: str | None = None  # the field the worker has just asked for, if any
    task: str | None = None  # the active task, for a worker with tasks
    calls: list[dict[str, Any]] = Field(default_factory=list, description="Actions called this turn: name, ok, status, results.")

    @property
    def reply(self) -> str:
        return " ".join(a.text for a in self.actions if isinstance(a, Say))

    @property
    def ended(self) -> bool:
        return any(isinstance(a, End) for a in self.actions)
