"""A candidate spec beside the live one: `serve --worker A.yaml --candidate B.yaml --share 10`.

`SpecRollout` is the core the channels see (`channels.seam.Conversations`) when a candidate runs:
it holds one `DialogueEngine` per spec, over the same store, and sends every turn of a
conversation to one of them:

- a conversation already stored runs on the spec it started with, by the content hash stored on
  it when it started (migration 14): the candidate's hash goes to the candidate, anything else
  (the live spec's hash, an older version's, none from before versions were recorded) to the
  live spec. So a conversation never changes spec, across messages, restarts, processes and
  changes of the share;
- a new conversation goes to the candidate when a stable hash of its id falls in the share:
  the first 8 hex digits of sha256(id), mod 10000, below share x 100. The same id gives the same
  answer in every process, so two processes that race to start it agree.

Promoting the candidate is replacing the live file with it (and serving without `--candidate`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

from dialogue.engine import DialogueEngine
from dialogue.events import Turn, TurnResult
from dialogue.spec import WorkerSpec
from escalation.queue import Handoff
from storage.db import Statement


class CandidateRefused(ValueError):
    """The candidate cannot run beside the live spec (another worker, other channels)."""


def check_candidate(live: WorkerSpec, candidate: WorkerSpec) -> None:
    """Both specs must be the same worker on the same channels: the conversations, the queue and
    the KPIs are keyed by the worker's name, and a channel on in one and off in the other would
    answer some people and not others."""
    if candidate.name != live.name:
        raise CandidateRefused(f"the candidate is worker {candidate.name!r}, the live spec is {live.name!r}: "
                               "a candidate must keep the worker's `name`")
    on_live = {name for name, settings in live.channels if settings.enabled}
    on_candidate = {name for name, settings in candidate.channels if settings.enabled}
    if on_live != on_candidate:
        raise CandidateRefused(f"the candidate's channels ({', '.join(sorted(on_candidate)) or 'none'}) differ from "
                               f"the live spec's ({', '.join(sorted(on_live)) or 'none'}): a candidate must keep the "
                               "worker's channels")


def in_share(conversation_id: str, share: float) -> bool:
    """Whether a new conversation with this id goes to the candidate (share: percent, 0 to 100)."""
    bucket = int(hashlib.sha256(conversation_id.encode("utf-8")).hexdigest()[:8], 16) % 10000
    return bucket < round(share * 100)


class SpecRollout:
    """Two engines, one store: each conversation's turns go to the engine of the spec it started on."""

    def __init__(self, live: DialogueEngine, candidate: DialogueEngine, share: float):
        if not 0 <= share <= 100:
            raise ValueError(f"share {share} is not a percentage from 0 to 100")
        check_candidate(live.spec, candidate.spec)
        # The same spec twice is one spec: every turn to one engine (one lock per conversation).
        same = candidate.spec_stamp.hash == live.spec_stamp.hash
        self.live, self.candidate, self.share = live, live if same else candidate, share

    # What the operator routes and the runtime read of the core: the live engine's.
    @property
    def spec(self) -> WorkerSpec:
        return self.live.spec

    @property
    def store(self) -> Any:
        return self.live.store

    @property
    def handoffs(self) -> Any:
        return self.live.handoffs

    async def engine_for(self, conversation_id: str) -> DialogueEngine:
        stamp = await self.live.store.spec_of(conversation_id)
        if stamp is not None:
            return self.candidate if stamp.hash == self.candidate.spec_stamp.hash else self.live
        return self.candidate if in_share(conversation_id, self.share) else self.live

    async def handle(self, turn: Turn, after: Callable[[TurnResult], Sequence[Statement]] | None = None) -> TurnResult:
        return await (await self.engine_for(turn.conversation_id)).handle(turn, after)

    async def end(self, conversation_id: str, channel: str, reason: str, *, outcome: str | None = "abandoned",
                  said: str | None = None, metadata: dict[str, Any] | None = None) -> str | None:
        engine = await self.engine_for(conversation_id)
        return await engine.end(conversation_id, channel, reason, outcome=outcome, said=said, metadata=metadata)

    async def record(self, conversation_id: str, channel: str, event: str, *, said: str | None = None,
                     metadata: dict[str, Any] | None = None) -> None:
        engine = await self.engine_for(conversation_id)
        await engine.record(conversation_id, channel, event, said=said, metadata=metadata)

    async def release(self, conversation_id: str) -> TurnResult:
        return await (await self.engine_for(conversation_id)).release(conversation_id)

    async def snapshot(self, conversation_id: str) -> TurnResult | None:
        return await (await self.engine_for(conversation_id)).snapshot(conversation_id)

    async def open_handoff(self, conversation_id: str) -> Handoff | None:
        return await self.live.open_handoff(conversation_id)

    async def reply_after(self, key: str, metadata_key: str, value: str) -> str | None:
        return await self.live.reply_after(key, metadata_key, value)
