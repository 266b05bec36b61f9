"""The dialogue engine: one `Turn` in, recorded, run through the graph, `Action`s out."""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from pydantic import TypeAdapter

from dialogue.events import Action, Escalation, FieldValue, Turn, TurnResult
from dialogue.graph import build_graph
from dialogue.spec import WorkerSpec
from extraction.base import Extractor
from transcripts.store import Event, TranscriptStore

_ACTIONS = TypeAdapter(list[Action])


class DialogueEngine:
    """Runs turns of any conversation of one worker. Turns of one conversation are
    serialised in this process; the checkpointer carries state across processes."""

    def __init__(
        self,
        spec: WorkerSpec,
        checkpointer: Any,
        store: TranscriptStore | None = None,
        extractor: Extractor | None = None,
        durability: str = "exit",
        handoffs: Any = None,
    ):
        self.spec = spec
        self.store = store
        self.handoffs = handoffs
        self.graph = build_graph(spec, extractor, checkpointer)
        self.durability = durability
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    def _lock(self, key: str) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[key] = lock
        return lock

    async def handle(self, turn: Turn) -> TurnResult:
        config = {"configurable": {"thread_id": turn.conversation_id}}
        async with self._lock(turn.conversation_id):
            if self.store is not None:
                # Recorded before anything else, so a crash mid-turn still leaves what the person said.
                started = turn.text is None
                await self.store.append(
                    Event(conversation_id=turn.conversation_id, channel=turn.channel,
                          direction="system" if started else "in", text=turn.text, time=turn.time,
                          metadata={**turn.metadata, "event": "started"} if started else turn.metadata),
                    worker=self.spec.name,
                )
            state = await self.graph.ainvoke(
                {"incoming": {"text": turn.text, "time": turn.time.isoformat(), "channel": turn.channel}},
                config,
                durability=self.durability,
            )
            result = self._result(turn.conversation_id, state)
            if self.store is not None and result.actions:
                await self.store.append(
                    Event(
                        conversation_id=turn.conversation_id, channel=turn.channel, direction="out",
                        text=result.reply or None, time=Turn(conversation_id="", channel="console").time,
                        fields=state.get("fields", {}), outcome=result.outcome,
                        escalation=result.escalation.model_dump() if result.escalation else None,
                        actions=[a.model_dump() for a in result.actions],
                    ),
                    worker=self.spec.name,
                )
            if self.handoffs is not None:
                # After the reply is stored, so the packet's transcript ends with what the person was told.
                await self.handoffs.after_turn(turn.conversation_id, turn.channel, state)
            return result

    async def release(self, conversation_id: str) -> TurnResult:
        """Give a handed-over conversation back to the worker: its next turn is answered again."""
        config = {"configurable": {"thread_id": conversation_id}}
        async with self._lock(conversation_id):
            current = await self.graph.aget_state(config)
            values = current.values if current else {}
            fields = values.get("fields") or {}
            missing = next((f.name for f in self.spec.fields if f.required and f.name not in fields), None)
            await self.graph.aupdate_state(
                config,
                {"escalation": None, "escalated_now": False, "outcome": None, "reasks": {}, "actions": [],
                 "phase": "collecting" if missing else "confirming", "requested": missing},
                as_node="render",
            )
            if self.store is not None:
                await self.store.reopen(conversation_id)
                await self.store.append(
                    Event(conversation_id=conversation_id, channel=values.get("channel", "console"), direction="system",
                          text=None, time=Turn(conversation_id="", channel="console").time,
                          fields=fields, metadata={"event": "released to the worker"}),
                    worker=self.spec.name,
                )
        result = await self.snapshot(conversation_id)
        assert result is not None
        return result

    async def snapshot(self, conversation_id: str) -> TurnResult | None:
        """The conversation as it stands, without taking a turn."""
        state = await self.graph.aget_state({"configurable": {"thread_id": conversation_id}})
        if not state or not state.values:
            return None
        return self._result(conversation_id, {**state.values, "actions": []})

    def _result(self, conversation_id: str, state: dict[str, Any]) -> TurnResult:
        esc = state.get("escalation")
        return TurnResult(
            conversation_id=conversation_id,
            actions=_ACTIONS.validate_python(state.get("actions", [])),
            fields={
                f.name: FieldValue(**state["fields"][f.name])
                for f in self.spec.fields if f.name in (state.get("fields") or {})
            },
            outcome=state.get("outcome"),
            escalation=Escalation(rule=esc["rule"], reason=esc["reason"], action=esc["action"], to=esc.get("to")) if esc else None,
            phase=state.get("phase", "new"),
        )
