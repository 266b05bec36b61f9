"""The dialogue engine: one `Turn` in, recorded, run through the graph, `Action`s out.

A turn is two database round trips. The first records what the person said and reads the
conversation's latest checkpoint; the second commits, in one transaction, the new
checkpoint, the reply event, the audit rows and whatever the channel adds (an SMS marked
answered). The graph's nodes run in between, in the order `dialogue/graph.py` declares.

Why not `graph.ainvoke`: the flow is a straight line, and LangGraph's Pregel loop (task
scheduling, channel bookkeeping, a checkpointer call per read and write) cost about ten
times the business logic per turn, which kept the SMS webhook far below its throughput
target. The checkpoint written here is the one LangGraph writes for
`aupdate_state(..., as_node="render")`, so `graph.aget_state`, `aupdate_state` and the
checkpoint history keep working on the same conversations.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import TypeAdapter

from actions.client import ActionClient
from actions.deliveries import OutcomeRecord, RecordField, enqueue_statement
from dialogue.events import Action, Escalation, FieldValue, Turn, TurnResult
from dialogue.flow_runner import FlowServices, record_fields
from dialogue.graph import build_graph, make_nodes
from dialogue.spec import WorkerSpec
from escalation.queue import Handoff, HumanQueue
from extraction.base import Extractor
from storage.checkpoints import ConversationSaver
from storage.clock import utcnow
from storage.crash_points import crash_point
from storage.db import Statement, WriteConflict
from transcripts.kpis import turn_marks
from transcripts.store import Event, SpecStamp, TranscriptStore

log = logging.getLogger(__name__)
_ACTIONS = TypeAdapter(list[Action])
MAX_ATTEMPTS = 5

AfterTurn = Callable[[TurnResult], Sequence[Statement]]


class DialogueEngine:
    """Runs turns of any conversation of one worker. Turns of one conversation are serialised
    in this process by a lock and across processes by the checkpoint's one-child rule."""

    def __init__(
        self,
        spec: WorkerSpec,
        store: TranscriptStore,
        extractor: Extractor | None = None,
        handoffs: Any = None,
        action_env: Mapping[str, str] | None = None,
    ):
        self.spec = spec
        self.store = store
        # Stored on every conversation this engine starts (migration 14): which spec ran it.
        self.spec_stamp = SpecStamp(version=spec.version, hash=spec.content_hash())
        self.handoffs = handoffs
        self.saver = ConversationSaver(store.db)
        # A worker that calls the business's systems: one client, its results stored per step.
        # `action_env`: where its ${VAR}s are read (the process environment when None).
        self.actions = ActionClient(store.db, env=action_env) if spec.actions else None
        self.flows = FlowServices.for_spec(spec, self.actions) if spec.tasks else None
        self.nodes = make_nodes(spec, extractor, self.flows)
        self.graph = build_graph(spec, checkpointer=self.saver, nodes=self.nodes)
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self.conflicts = 0  # turns rerun because another process changed the state meanwhile

    def _lock(self, key: str) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[key] = lock
        return lock

    async def handle(self, turn: Turn, after: AfterTurn | None = None) -> TurnResult:
        """Run one turn. `after` gives statements the channel wants committed with the turn."""
        key = turn.conversation_id
        db = self.store.db
        started = turn.text is None
        # Recorded with the first read, so a crash mid-turn still leaves what the person said.
        inbound = self.store.append_statements(
            Event(conversation_id=key, channel=turn.channel, direction="system" if started else "in", text=turn.text,
                  time=turn.time, metadata={**turn.metadata, "event": "started"} if started else turn.metadata,
                  dedupe_key=turn.dedupe_key),
            worker=self.spec.name, spec=self.spec_stamp,
        )
        incoming = {"incoming": {"text": turn.text, "time": turn.time.isoformat(), "channel": turn.channel,
                                 "conversation_id": key}}
        async with self._lock(key):
            for attempt in range(MAX_ATTEMPTS):
                rows = await db.batch([*inbound, self.saver.latest_statement(key)], json_columns=("metadata",))
                if inbound:
                    crash_point("turn.after_record")  # the message is stored, the turn is not
                inbound = []
                saved = self.saver.decode_latest(rows)
                state: dict[str, Any] = {**saved.values, **incoming}
                updates: dict[str, Any] = dict(incoming)
                for _, node in self.nodes:
                    out = await node(state)
                    state.update(out)
                    updates.update(out)
                result = self._result(key, state)
                marks = turn_marks(saved.values, state, updates)  # the task and KPI counts (migration 19)
                writes: list[Statement] = [
                    self.saver.put_statement(key, self.saver.next_checkpoint(saved, updates), saved.checkpoint_id,
                                             saved.step + 1),
                ]
                if result.actions:
                    writes += self.store.append_statements(
                        Event(
                            conversation_id=key, channel=turn.channel, direction="out", text=result.reply or None,
                            time=utcnow(), fields=state.get("fields", {}), outcome=result.outcome,
                            escalation=result.escalation.model_dump() if result.escalation else None,
                            actions=[a.model_dump() for a in result.actions], metadata=marks,
                        ),
                        worker=self.spec.name, spec=self.spec_stamp,
                    )
                if self.handoffs is not None:
                    writes += self.handoffs.audit_statements(key, turn.channel, state)
                writes += self._deliveries(key, turn.channel, state)
                if after is not None:
                    writes += after(result)
                crash_point("turn.before_commit")  # the turn's calls are made and stored, the turn is not
                try:
                    await db.batch(writes, guard=0)
                    break
                except WriteConflict:
                    self.conflicts += 1
                    # Another process took a turn of this conversation meanwhile: redo ours on top.
                    log.info("conversation %s: state changed under turn (attempt %d); running it again", key, attempt + 1)
            else:
                raise RuntimeError(f"conversation {key}: state kept changing under the turn; gave up after {MAX_ATTEMPTS} tries")
            if self.handoffs is not None:
                await self.handoffs.after_turn(key, turn.channel, state)
            return result

    def _deliveries(self, key: str, channel: str, state: dict[str, Any]) -> list[Statement]:
        """The finished records of this turn, queued with the turn (exactly once per conversation,
        task and outcome: a repeat is a no-op in the outbox)."""
        if not self.spec.on_outcome:
            return []
        finished = list(state.get("finished") or [])
        if state.get("outcome") and state.get("actions") and any(a.get("kind") == "end" for a in state["actions"]):
            if not any(f["outcome"] == state["outcome"] and f["task"] == (state.get("task") or "") for f in finished):
                finished.append({"task": state.get("task") or "", "outcome": state["outcome"]})
        statements: list[Statement] = []
        for done in finished:
            task = self.spec.task(done["task"])
            values = done.get("fields") or state.get("fields") or {}
            if task is not None:
                values = record_fields(task, values)  # a task's record carries the fields it asks
            record = OutcomeRecord(
                worker=self.spec.name, conversation_id=key, channel=channel, task=done["task"] or None,
                outcome=done["outcome"],
                fields={name: RecordField(value=v.get("value"), text=v.get("text"), start=v.get("start"), end=v.get("end"),
                                          confidence=v.get("confidence"))
                        for name, v in values.items()},
                results=state.get("results") or {}, started_at=str(state.get("started_at") or ""),
                ended_at=utcnow().isoformat())
            statements += [enqueue_statement(d, record, turn=int(state.get("turns") or 0))
                           for d in self.spec.on_outcome if d.wants(done["outcome"])]
        return statements

    async def release(self, conversation_id: str) -> TurnResult:
        """Give a handed-over conversation back to the worker: its next turn is answered again."""
        config = {"configurable": {"thread_id": conversation_id}}
        async with self._lock(conversation_id):
            current = await self.graph.aget_state(config)
            values = current.values if current else {}
            fields = values.get("fields") or {}
            missing = next((f.name for f in self.spec.fields if f.required and f.name not in fields), None)
            phase = "collecting" if missing else "confirming"
            if self.spec.tasks:
                # The task's steps go on from where it stopped (the call that failed runs again).
                phase, missing = "collecting", None
            await self.graph.aupdate_state(
                config,
                {"escalation": None, "escalated_now": False, "outcome": None, "reasks": {}, "actions": [],
                 "phase": phase, "requested": missing},
                as_node="render",
            )
            await self.store.reopen(conversation_id)
            await self.store.append(
                Event(conversation_id=conversation_id, channel=values.get("channel", "console"), direction="system",
                      text=None, time=utcnow(), fields=fields, metadata={"event": "released to the worker"}),
                worker=self.spec.name, spec=self.spec_stamp,
            )
        result = await self.snapshot(conversation_id)
        assert result is not None
        return result

    async def end(self, conversation_id: str, channel: str, reason: str, *, outcome: str | None = "abandoned",
                  said: str | None = None, metadata: dict[str, Any] | None = None) -> str | None:
        """Record that a conversation ended outside a turn (a hang-up, a silence): the end
        event, with `said` as what the worker said last, and `outcome` when the conversation
        has none yet, since an outcome the dialogue reached (completed, escalated) is the truer
        one. The outcome is decided here, not by the channel. Returns the outcome recorded."""
        if outcome is not None and outcome not in {o.name for o in self.spec.outcomes}:
            raise ValueError(f"{outcome!r} is not an outcome of worker {self.spec.name}")
        async with self._lock(conversation_id):
            if outcome is not None:
                record = await self.store.conversation(conversation_id)
                if record is None or record.outcome is not None:
                    outcome = None
            await self._record(conversation_id, channel, reason, said, metadata, outcome)
        return outcome

    async def record(self, conversation_id: str, channel: str, event: str, *, said: str | None = None,
                     metadata: dict[str, Any] | None = None) -> None:
        """Record something a channel did outside a turn (a re-prompt after a silence, a call put
        through to a person), with what the worker said, if anything, so the transcript holds
        every line the person heard."""
        async with self._lock(conversation_id):
            await self._record(conversation_id, channel, event, said, metadata, None)

    async def _record(self, conversation_id: str, channel: str, event: str, said: str | None,
                      metadata: dict[str, Any] | None, outcome: str | None) -> None:
        await self.store.append(
            Event(conversation_id=conversation_id, channel=channel, direction="out" if said else "system",
                  text=said, time=utcnow(), outcome=outcome, metadata={**(metadata or {}), "event": event}),
            worker=self.spec.name, spec=self.spec_stamp,
        )

    async def reply_after(self, conversation_id: str, metadata_key: str, value: str) -> str | None:
        """The reply already committed to the inbound turn whose metadata has `metadata_key ==
        value` (a redelivered message), if that turn ran to the end."""
        return await self.store.reply_after(conversation_id, metadata_key, value)

    async def open_handoff(self, conversation_id: str) -> Handoff | None:
        """The conversation's handoff still waiting for a person, if any."""
        return await HumanQueue(self.store.db).open_for(conversation_id)

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
            requested=state.get("requested"),
            task=state.get("task"),
            calls=state.get("calls") or [],
        )
