"""The understand and decide steps for a worker with tasks (render and escalate are shared with
flat workers, dialogue/nodes.py). understand reads the turn for the active task's fields and
routes it (a task to start or switch to, a knowledge question, or out of scope); decide answers
what must be answered first (a handover, a goodbye, a question, a refused value) and then runs
the task's steps (dialogue/flow_runner.py)."""

from __future__ import annotations

import asyncio
from typing import Any

from dialogue.flows import ConfirmStep, at
from dialogue.flow_runner import FlowServices, Runner, rewalk_from, route, task_fields
from dialogue.nodes import ConversationState, afresh, greeting_first, make_understand, typo_repair
from dialogue.spec import WorkerSpec
from extraction.base import Extractor
from extraction.fields import FieldType
from extraction.intents import detect_intents
from extraction.routing import Routed
from extraction.rules import is_question

# What starting afresh forgets. Not `runs`: a call made after a fresh start is a new request
# (a new idempotency key), never the stored answer to the call before it.
_FRESH = {"task": None, "pointer": [0], "stack": [], "results": {}, "pending_outcome": None}
_PER_TURN = {"calls": [], "finished": [], "knowledge": None, "switched": None, "routed": None, "restated": False}
_QUIET = {"greeting", "help", "goodbye", "human", "stop", "start_over"}


def make_flow_understand(spec: WorkerSpec, extractor: Extractor, services: FlowServices):
    typos = typo_repair(spec)
    read = make_understand(spec, extractor, fields_of=lambda s: task_fields(spec, spec.task(s.get("task"))), typos=typos)

    async def understand(state: ConversationState) -> ConversationState:
        incoming_text = (state.get("incoming") or {}).get("text")
        # What the person wants is read from their words with slips repaired, once per turn.
        meant = typos.repair(incoming_text) if incoming_text else ""
        first = await _route_first(state, meant)
        # A person's first words that name a job are read once, for that job's fields: reading
        # them for every field and again for the job was a third of a first turn's time.
        out: dict[str, Any] = {**_PER_TURN, **await read(state if first is None or first.task is None
                                                         else {**state, "task": first.task})}
        if state.get("phase") == "done" and state.get("outcome") != "escalated" and "outcome" in out:
            out.update(_FRESH)  # a finished conversation that hears again starts afresh (understand reset it)
            # Everything below reads "before this turn" from the fresh state, or a re-read for the
            # routed task brought the finished task's values back (and its call ran again).
            state = {**state, **_FRESH, **afresh()}
        text = (state.get("incoming") or {}).get("text")
        merged = {**state, **out}
        if text is None or merged.get("phase") == "done" or set(out.get("intents", [])) & _QUIET:
            return out
        if services.knowledge is not None and _free_text_only(spec, out.get("took") or []) and is_question(text):
            # Any words fill a free-text field: "is there parking?" asked where the worker wanted
            # the allergies is a question first, and is only kept as the answer if it is none.
            entry = await services.knowledge_entry(meant)
            if entry is not None:
                return {**out, "fields": dict(state.get("fields") or {}), "took": [], "changed": [],
                        "knowledge": entry, "reasks": dict(state.get("reasks") or {})}
        answered = bool(out.get("took")) or out.get("answer") is not None
        routed = await route(spec, services, merged, meant, answered, before=state.get("fields") or {},
                             took=out.get("took") or [], routed=first)
        restore = routed.pop("restore", {})
        if routed.get("switched") is not None and not (first is not None and first.task == routed["task"]):
            # Read again for the new task's fields; what was collected and is shared stays, and a
            # task taken up again has its own values back (this turn's words still win).
            again = await read({**state, **{k: merged[k] for k in _FRESH if k in merged}, "task": routed["task"],
                                "fields": {**(state.get("fields") or {}), **restore},
                                "requested": None, "phase": "collecting" if state.get("phase") not in (None, "new") else "new"})
            out.update(again)
            out["requested"] = None
        out.update(routed)
        if routed.get("knowledge") is not None or routed.get("switched") is not None or routed.get("restated"):
            # A question or a move to another job is not a failed answer: no re-ask is counted.
            out["reasks"] = dict(state.get("reasks") or {})
        if routed.get("out_of_scope"):
            out["intents"] = sorted({*out.get("intents", []), "out_of_scope"})
        return out

    async def _route_first(state: ConversationState, meant: str) -> Routed | None:
        """The router's answer, asked before the read, for a conversation no job has started
        yet: the read that follows is then for that job alone, as the re-read after a switch
        would have been (no task, no question pending, no values)."""
        if (services.tasks is None or not meant.strip() or state.get("task") is not None
                or state.get("phase", "new") != "new" or state.get("fields") or state.get("requested")
                or detect_intents(meant) & _QUIET):
            return None
        return await asyncio.to_thread(services.tasks.route, meant)

    return understand


def _free_text_only(spec: WorkerSpec, took: list[str]) -> bool:
    return bool(took) and all(spec.field(name).type is FieldType.free_text for name in took)


def make_flow_decide(spec: WorkerSpec, services: FlowServices):
    script = spec.script

    def start_task(state: dict[str, Any]) -> str | None:
        if spec.routing.start_task:
            return spec.routing.start_task
        return spec.tasks[0].name if len(spec.tasks) == 1 else None

    async def decide(state: ConversationState) -> ConversationState:
        incoming = state.get("incoming") or {}
        text = incoming.get("text")
        phase = state.get("phase", "new")
        intents = set(state.get("intents", []))
        lines: list[dict[str, Any]] = []
        if state.get("escalated_now"):
            esc = state["escalation"]
            if esc["action"] == "end":
                lines.append({"key": "goodbye", "say": esc.get("say")})
                return {"lines": lines, "phase": "done", "outcome": "abandoned", "requested": None}
            lines.append({"key": "handoff", "extra": {"reason": esc["reason"]}, "say": esc.get("say")})
            return {"lines": lines, "phase": "done", "outcome": "escalated", "requested": None}
        if phase == "done":
            return {"lines": []}

        def run(extra: dict[str, Any] | None = None) -> Runner:
            return Runner(spec, services, {**state, **(extra or {})}, lines)

        if text is None:
            lines.append({"key": "greeting"})
            first = start_task(state)
            if first is None:
                lines.append({"key": "task_prompt"})
                return {"lines": lines, "phase": "collecting", "requested": None}
            runner = run({"task": first, "pointer": [0]})
            runner.updates.update(task=first, pointer=[0])
            return {**await runner.run(), "lines": lines}
        if "start_over" in intents:
            lines.append({"key": "start_over"})
            runner = run({"fields": {}, "reasks": {}, **_FRESH, "task": state.get("task") or start_task(state)})
            runner.updates.update(fields={}, reasks={}, **{**_FRESH, "task": state.get("task") or start_task(state)})
            return {**await runner.run(), "lines": lines}
        answer = state.get("answer")
        took = state.get("took", [])
        if "goodbye" in intents and not (answer is not None and phase in ("confirming", "correcting")) and not took:
            lines.append({"key": "goodbye"})
            return {"lines": lines, "phase": "done", "outcome": "abandoned", "requested": None}
        over = [f for f, n in state.get("reasks", {}).items() if n > spec.escalation.max_reasks]
        if over:  # on_reask_limit == "end"; "escalate" was handled by the escalate step
            lines += [{"key": "reask_limit"}, {"key": "goodbye"}]
            return {"lines": lines, "phase": "done", "outcome": "abandoned", "requested": None}
        if "help" in intents and script.help:
            lines.append({"key": "help"})
        task = spec.task(state.get("task"))
        requested = state.get("requested")
        pending = _pending_line(spec, task, phase, requested, list(state.get("pointer") or [0]))
        if state.get("knowledge") is not None:
            lines.append({"key": "knowledge", "entry": state["knowledge"]})
            if pending:
                lines.append(pending)
            return {"lines": lines}
        if state.get("restated") and not took and pending:
            # "I'd like to book a table" while the booking waits for its day: yes, on with it.
            return {"lines": [*lines, {"key": "switch"}, pending]}
        if task is None:
            if state.get("routed") is not None or "out_of_scope" in intents:
                lines.append({"key": "out_of_scope"})
            lines.append({"key": "task_prompt"})
            return {"lines": lines, "phase": "collecting", "requested": None}
        if state.get("switched") is not None:
            # Moving from one task to another is acknowledged; the first task chosen is not a move.
            lines.append({"key": "switch"} if state["switched"] else {"key": "acknowledge"} if took else {"key": "switch"})
            errors = state.get("errors", {})
            if errors:
                # "A table for 20" as the first words (by SMS, before any task): the refusal and
                # its reason come first, then that field is asked again, as within a task.
                name = next(iter(errors))
                lines.append({"key": "invalid", "field": name, "extra": {"error": errors[name]}})
                return {"lines": lines, "requested": name}
            return {**await run().run(), "lines": lines}
        errors = state.get("errors", {})
        if errors:
            name = requested if requested in errors else next(iter(errors))
            lines.append({"key": "invalid", "field": name, "extra": {"error": errors[name]}})
            return {"lines": lines, "requested": name}
        if took:
            changed = state.get("changed", [])
            lines += [{"key": "changed", "field": n} for n in changed] or [{"key": "acknowledge"}]
            confirming = phase in ("confirming", "correcting")
            again = rewalk_from(spec, task, list(state.get("pointer") or [0]), changed, confirming)
            if again is not None:
                # A value changed after a check used it, or at the read-back: the task runs again
                # from its start (or its last write), so its checks (a call for availability) see
                # the new value; filled asks are passed over.
                runner = run({"pointer": again, "phase": "collecting"})
                runner.updates.update(pointer=again, phase="collecting")
                return {**await runner.run(), "lines": lines}
            return {**await run().run(), "lines": lines}
        if phase in ("confirming", "correcting"):
            if answer is True:
                return {**await run().run(), "lines": lines}
            if answer is False:
                lines.append({"key": "correction_prompt"})
                return {"lines": lines, "phase": "correcting", "requested": None}
            if "help" not in intents:
                lines.append({"key": "fallback", "prompt_text": _confirmation(spec, task, list(state.get("pointer") or [0]))})
            return {"lines": lines}
        if requested is None:
            return {**await run().run(), "lines": lines}
        if "out_of_scope" in intents:
            lines.append({"key": "out_of_scope"})
            lines.append({"key": "prompt", "field": requested})
            return {"lines": lines}
        key = "reask" if state.get("reasks", {}).get(requested, 0) > 1 else "fallback"
        lines.append({"key": key, "field": requested})
        return {"lines": lines}

    return greeting_first(decide)


def _confirmation(spec: WorkerSpec, task: Any, pointer: list[int] | None = None) -> str:
    """The read-back the worker waits on: the `confirm` step's own line when it has one (the
    offer of other times when full), else the task's, else the script's."""
    if task is not None and pointer:
        step = at(task.steps, pointer)
        if isinstance(step, ConfirmStep) and isinstance(step.confirm, str):
            return step.confirm
    return (task.confirmation if task is not None and task.confirmation else None) or spec.script.confirmation


def _pending_line(spec: WorkerSpec, task: Any, phase: str, requested: str | None,
                  pointer: list[int] | None = None) -> dict[str, Any] | None:
    """What the worker was waiting for, asked again after an answered question."""
    if requested:
        return {"key": "prompt", "field": requested}
    if phase in ("confirming", "correcting") and task is not None:
        return {"key": "say", "text": _confirmation(spec, task, pointer)}
    if task is None:
        return {"key": "task_prompt"}
    return None
