"""Running a worker's tasks (dialogue/flows.py) one turn at a time.

The state keeps the active task, a step pointer into its steps, a stack of tasks to go back
to, the named results of the actions called, and how often each `call` step ran (so a step
run again on purpose gets a new idempotency key, and a turn run again after a write conflict
or a crash gets the same one and reuses the stored result: an action's effect happens once).

Per turn: `route` (in understand) picks or switches the task and finds knowledge answers; then
`run` walks the steps from the pointer, saying lines and calling actions, until it must wait
for the person (an `ask` with a field missing, a `confirm` not yet answered) or the
conversation ends. Everything is deterministic given the spec, the state and the actions'
answers."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from actions.client import ActionClient
from actions.templating import refs
from dialogue.flows import (
    AskStep,
    CallStep,
    ConfirmStep,
    EndStep,
    GotoStep,
    HandoffStep,
    IfStep,
    OutcomeStep,
    SayStep,
    Task,
    advance,
    at,
    step_id,
)
from dialogue.spec import WorkerSpec
from escalation.evaluate import Facts, holds
from extraction.routing import Routed, TaskExamples, TaskRouter

log = logging.getLogger(__name__)
# A turn that answers the pending question is also routed (it may be a switch that gives a value,
# "actually, cancel my booking for Friday") only from this many words: routing costs about 1.5 ms.
SWITCH_MIN_WORDS = 4
MAX_STEPS_PER_TURN = 200  # spec check refuses loops without an ask; this is the belt to its braces


@dataclass
class FlowServices:
    """What running tasks needs beyond the spec: the routers (built from the spec's tasks and
    knowledge) and the client that calls the business's systems."""

    tasks: TaskRouter | None = None
    knowledge: TaskRouter | None = None
    actions: ActionClient | None = None

    @classmethod
    def for_spec(cls, spec: WorkerSpec, actions: ActionClient | None) -> FlowServices:
        threshold = spec.routing.threshold
        extra = {} if threshold is None else {"threshold": threshold}
        tasks = TaskRouter.build([TaskExamples(name=t.name, description=t.description, examples=t.examples)
                                  for t in spec.tasks], **extra) if spec.tasks else None
        knowledge = TaskRouter.build([TaskExamples(name=f"k{i}", description=k.question, examples=k.examples)
                                      for i, k in enumerate(spec.knowledge)], **extra) if spec.knowledge else None
        return cls(tasks=tasks, knowledge=knowledge, actions=actions)

    async def knowledge_entry(self, text: str) -> int | None:
        """The index of the knowledge entry `text` asks about, or None (routed off the loop)."""
        if self.knowledge is None:
            return None
        known = await asyncio.to_thread(self.knowledge.route, text)
        return None if known.task is None else int(known.task.removeprefix("k"))


def task_fields(spec: WorkerSpec, task: Task | None) -> list[Any]:
    """The fields a turn is read for: the active task's, or every field before a task is known."""
    if task is None:
        return spec.fields
    asked = set(task.asked_fields())
    return [f for f in spec.fields if f.name in asked] or spec.fields


def _task_by_values(spec: WorkerSpec, took: list[str]) -> str | None:
    """The one task that asks every field this turn gave, when no phrase named a task ("tomorrow
    at 8pm for 4" is a booking: only `book` asks for a time). None when several tasks fit."""
    if not took:
        return None
    fitting = [t.name for t in spec.tasks if set(took) <= set(t.asked_fields())]
    return fitting[0] if len(fitting) == 1 else None


def rewalk_from(spec: WorkerSpec, task: Task, pointer: list[int], changed: list[str], confirming: bool) -> list[int] | None:
    """Where a task runs again from when values changed, so its checks see the new values: the
    step after the last write (a call that is not a GET) before the pointer, or the first step;
    None: go on from the pointer. While collecting, only when a check in that stretch used a
    changed value (a new time is checked for availability); at the read-back always (the
    read-back and what leads to it are said again). A write already made is never made again."""
    if not confirming and not changed:
        return None
    top = pointer[0]
    start = 0
    for index in range(top):
        step = task.steps[index]
        if isinstance(step, CallStep) and spec.action(step.call).method != "GET":
            start = index + 1
    if confirming:
        return [start]
    for index in range(start, top):
        step = task.steps[index]
        if isinstance(step, CallStep):
            used = {name for _, text in spec.action(step.call).templates() for name in refs(text)}
            if used & set(changed):
                return [start]
    return None


async def route(spec: WorkerSpec, services: FlowServices, state: dict[str, Any], text: str,
                answered: bool, before: dict[str, Any] | None = None, took: list[str] | None = None,
                routed: Routed | None = None) -> dict[str, Any]:
    """Which task this turn belongs to, and whether it is a knowledge question. `answered`: the
    turn gave a value for the active task: then it is no question and never out of scope, but it
    may still be a switch ("actually, I need to cancel my booking for Friday" gives a date).
    `before`: the fields as they were before this turn (what a task left keeps). `routed`: the
    task router's answer for `text` when the caller already has it."""
    active = state.get("task")
    if not text.strip():
        return {}
    answering = answered and active is not None
    if answering and len(text.split()) < SWITCH_MIN_WORDS:
        return {}  # "8pm", "Maria", "make it 7pm": an answer, too short to also name another job
    out: dict[str, Any] = {}
    if services.tasks is not None:
        if routed is None:
            routed = await asyncio.to_thread(services.tasks.route, text)
        out["routed"] = {"task": routed.task, "confidence": round(routed.confidence, 3)}
        target = routed.task if routed.task is not None or active is not None else _task_by_values(spec, took or [])
        if target is not None and target != active:
            stack = list(state.get("stack") or [])
            # A task the person left earlier is taken up where it stopped, with its own values.
            taken_up = take_up(stack, target)
            if active is not None and state.get("phase") != "done":
                # What the task left had collected comes back with it: the new task may take
                # another value for a shared field (the date of the booking to cancel).
                left = spec.task(active)
                fields = (state.get("fields") or {}) if before is None else before
                kept = {n: fields[n] for n in (left.asked_fields() if left else []) if n in fields}
                pointer = list(state.get("pointer") or [0])
                if kept or pointer != [0]:
                    # Only a task the person had begun is offered again afterwards; the task the
                    # greeting started and nobody answered is simply left.
                    stack.append({"task": active, "pointer": pointer, "fields": kept})
            out.update(task=target, pointer=taken_up["pointer"], stack=stack, switched=active or "",
                       restore=taken_up.get("fields") or {})
            return out
        if routed.task is not None:
            out["restated"] = not answered  # the person restates what they are doing
            return out
    if answering:
        # A short answer can look like a question ("8pm" is close to "what time do you close?").
        return out
    entry = await services.knowledge_entry(text)
    if entry is not None:
        out["knowledge"] = entry
        return out
    out["out_of_scope"] = True
    return out


def take_up(stack: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """Take task `name` off the stack if the person left it earlier (its pointer and its own
    values), else a fresh start: a task is never both running and waiting to be resumed, or it
    would run its calls twice."""
    index = next((i for i, entry in enumerate(stack) if entry["task"] == name), None)
    return stack.pop(index) if index is not None else {"task": name, "pointer": [0], "fields": {}}


def record_fields(task: Task, fields: dict[str, Any]) -> dict[str, Any]:
    """The values a task's record carries: the fields it asks (every field when it asks none),
    so a cancellation's record does not carry the booking's allergies."""
    asked = set(task.asked_fields())
    return {name: value for name, value in fields.items() if not asked or name in asked}


class Runner:
    """Walks one turn's steps. `lines` are what decide wants said (rendered by render)."""

    def __init__(self, spec: WorkerSpec, services: FlowServices, state: dict[str, Any], lines: list[dict[str, Any]]):
        self.spec = spec
        self.services = services
        self.state = state
        self.lines = lines
        self.updates: dict[str, Any] = {}
        self.results: dict[str, Any] = dict(state.get("results") or {})
        self.runs: dict[str, int] = dict(state.get("runs") or {})
        # Call steps whose last run failed, with what that run asked (a digest of its values).
        self.failed: dict[str, str] = dict(state.get("failed_calls") or {})
        self.calls: list[dict[str, Any]] = []

    def get(self, key: str, default: Any = None) -> Any:
        return self.updates.get(key, self.state.get(key, default))

    def facts(self) -> Facts:
        fields = dict(self.get("fields") or {})
        fields.update({name: {"value": value, "confidence": 1.0} for name, value in self.results.items()})
        now = datetime.fromisoformat(self.state["incoming"]["time"]) if self.state.get("incoming") else datetime.now()
        started = self.state.get("started_at")
        return Facts(intents=set(self.state.get("intents", [])), fields=fields, turns=self.state.get("turns", 0),
                     reasks=self.state.get("reasks", {}),
                     elapsed_seconds=(now - datetime.fromisoformat(started)).total_seconds() if started else 0.0,
                     channel=self.state.get("channel", "console"), local_time=now.astimezone(ZoneInfo(self.spec.timezone)))

    def _missing(self, step: AskStep) -> str | None:
        if step.when is not None and not holds(step.when, self.facts()):
            return None
        fields = self.get("fields") or {}
        return next((name for name in step.ask if name not in fields), None)

    def finish(self) -> dict[str, Any]:
        self.updates["results"] = self.results
        self.updates["runs"] = self.runs
        self.updates["failed_calls"] = self.failed
        self.updates["calls"] = self.calls
        return self.updates

    async def run(self, resumed: bool = False) -> dict[str, Any]:
        """From the pointer on, until the worker must wait for the person or the conversation ends."""
        for _ in range(MAX_STEPS_PER_TURN):
            task = self.spec.task(self.get("task"))
            if task is None:
                return self.finish()
            pointer = list(self.get("pointer") or [0])
            step = at(task.steps, pointer)
            if step is None:  # past the last step: the task is done
                if await self._task_done(task, None):
                    return self.finish()
                continue
            if isinstance(step, AskStep):
                missing = self._missing(step)
                if missing is not None:
                    self.lines.append({"key": "prompt", "field": missing})
                    self.updates.update(phase="collecting", requested=missing)
                    return self.finish()
                self.updates["pointer"] = advance(task.steps, pointer)
            elif isinstance(step, SayStep):
                self.lines.append({"key": "say", "text": step.say})
                self.updates["pointer"] = advance(task.steps, pointer)
            elif isinstance(step, IfStep):
                branch = 0 if holds(step.if_, self.facts()) else 1
                chosen = step.then if branch == 0 else step.else_
                self.updates["pointer"] = [*pointer, branch, 0] if chosen else advance(task.steps, pointer)
            elif isinstance(step, ConfirmStep):
                if self.get("phase") in ("confirming", "correcting") and self.get("answer") is True:
                    self.updates.update(phase="collecting", answer=None, pointer=advance(task.steps, pointer))
                    continue
                line = step.confirm if isinstance(step.confirm, str) else (task.confirmation or self.spec.script.confirmation)
                self.lines.append({"key": "say", "text": line})
                self.updates.update(phase="confirming", requested=None)
                return self.finish()
            elif isinstance(step, CallStep):
                if not await self._call(task, pointer, step):
                    return self.finish()
            elif isinstance(step, OutcomeStep):
                self.updates["pending_outcome"] = step.outcome
                self.updates["pointer"] = advance(task.steps, pointer)
            elif isinstance(step, GotoStep):
                pending = self.get("pending_outcome")
                if pending:
                    # The task reached its outcome before moving on: its record is its own.
                    self.updates["finished"] = [*self.get("finished", []), {
                        "task": task.name, "outcome": pending, "fields": record_fields(task, self.get("fields") or {})}]
                stack = list(self.get("stack") or [])
                taken_up = take_up(stack, step.goto)
                self.updates.update(task=step.goto, pointer=taken_up["pointer"], stack=stack, pending_outcome=None,
                                    fields={**(self.get("fields") or {}), **taken_up["fields"]})
            elif isinstance(step, HandoffStep):
                # Past the handoff: a conversation given back to the worker goes on after it.
                self.updates["pointer"] = advance(task.steps, pointer)
                self._handoff(f"{task.name}.handoff", step.handoff)
                return self.finish()
            elif isinstance(step, EndStep):
                if await self._task_done(task, step):
                    return self.finish()
        self._handoff("flow_loop", "The conversation design went round without waiting for the person.")
        return self.finish()

    async def _task_done(self, task: Task, step: EndStep | None) -> bool:
        """Say the task's closing; go back to a task the person left, or end. True: stop here."""
        line = step.end if step is not None and isinstance(step.end, str) else (task.closing or self.spec.script.closing)
        self.lines.append({"key": "say", "text": line})
        outcome = self.get("pending_outcome") or task.outcome
        # The record holds the values as they were when this task ended (a task resumed next may
        # take back its own value of a shared field).
        self.updates["finished"] = [*self.get("finished", []), {"task": task.name, "outcome": outcome,
                                                                 "fields": record_fields(task, self.get("fields") or {})}]
        stack = list(self.get("stack") or [])
        if stack:
            back = stack.pop()
            said = dict(self.get("fields") or {})
            for earlier in self.lines:
                earlier.setdefault("fields", said)
            resumed = self.spec.task(back["task"])
            label = (resumed.label if resumed is not None and resumed.label else back["task"].replace("_", " "))
            self.lines.append({"key": "resume", "extra": {"task": label}})
            self.updates.update(task=back["task"], pointer=back["pointer"], stack=stack, pending_outcome=None,
                                phase="collecting", fields={**(self.get("fields") or {}), **back.get("fields", {})})
            return False
        self.updates.update(phase="done", outcome=outcome, requested=None)
        return True

    def _handoff(self, rule: str, reason: str) -> None:
        self.lines.append({"key": "handoff", "extra": {"reason": reason}})
        record = {"rule": rule, "reason": reason, "action": "transfer", "to": None, "say": None}
        self.updates.update(phase="done", outcome="escalated", requested=None, escalation=record, escalated_now=True,
                            fired=[*self.state.get("fired", []), rule])

    async def _call(self, task: Task, pointer: list[int], step: CallStep) -> bool:
        """Call the step's action; False when the turn stops here (an error that says so)."""
        action = self.spec.action(step.call)
        sid = step_id(task.name, pointer)
        conversation_id = (self.state.get("incoming") or {}).get("conversation_id", "")
        values = {name: stored["value"] for name, stored in (self.get("fields") or {}).items()}
        values.update(self.results)
        used = {name for _, text in action.templates() for name in refs(text)}
        digest = hashlib.sha256(json.dumps({n: values.get(n) for n in sorted(used)}, default=str).encode()).hexdigest()[:16]
        failed = self.failed.get(sid)
        if failed is not None and failed != digest:
            # The failed request is given up: this one asks something else (a corrected time), so
            # it must not share the failed one's key (that request may have arrived and be answered).
            self.runs[sid] = self.runs.get(sid, 0) + 1
        runs = self.runs.get(sid, 0)
        if self.services.actions is None:
            raise RuntimeError("this worker calls actions but the engine has no action client")
        outcome = await self.services.actions.run(action, conversation_id=conversation_id, step_id=f"{sid}#{runs}",
                                                  values=values)
        self.calls.append({"name": action.name, "ok": outcome.ok, "status": outcome.status_code,
                           "results": outcome.json_results(), "reused": outcome.reused,
                           "error": outcome.error.model_dump() if outcome.error else None})
        if outcome.ok:
            # The next run of this step is a new request (a re-check after a correction), under a
            # new key; a failed run is retried under the same key, as its request may have arrived.
            self.runs[sid] = runs + 1
            self.failed.pop(sid, None)
            self.results.update(outcome.json_results())
            self.updates["pointer"] = advance(task.steps, pointer)
            return True
        self.failed[sid] = digest
        on_error = action.on_error
        log.warning("action %s failed (%s): %s", action.name, outcome.error.kind if outcome.error else "?",
                    outcome.error.message if outcome.error else "")
        if on_error.say:
            self.lines.append({"key": "say", "text": on_error.say})
        if on_error.then == "continue":
            self.updates["pointer"] = advance(task.steps, pointer)
            return True
        if on_error.then == "retry_later":
            # The pointer stays, and nothing is asked: whatever the person says next runs the step
            # again, under the same key (the failed request may have arrived).
            self.updates["requested"] = None
            return False
        if on_error.then == "end":
            self.lines.append({"key": "goodbye"})
            self.updates.update(phase="done", outcome="abandoned", requested=None)
            return False
        self._handoff(f"action:{action.name}", on_error.reason)
        return False
