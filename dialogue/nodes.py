"""The steps of one turn, as functions of the conversation state.

understand -> escalate -> decide -> render. Each returns the keys it changes. All
business logic is here and deterministic: the spec decides what may be asked and done.
Nodes are `async def` although they do no I/O: LangGraph runs sync nodes in a thread
pool under `ainvoke`, and that hop cost more than the work (about 2 ms a turn). Rule
extraction takes about 0.15 ms, well within what the event loop can spare.
"""

from __future__ import annotations

import asyncio

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypedDict
from zoneinfo import ZoneInfo

from dialogue.render import display, render
from dialogue.spec import WorkerSpec
from escalation.evaluate import Facts, fired_rules
from escalation.rules import ActionKind
from extraction.base import ExtractionContext, Extractor
from extraction.fields import FieldSpec
from extraction.intents import detect_intents, yes_no
from extraction.rules import is_question
from extraction.typos import TypoRepair
from extraction.validate import validate


class ConversationState(TypedDict, total=False):
    incoming: dict[str, Any] | None  # {text, time, channel}; set by the caller each turn
    channel: str
    started_at: str
    phase: str  # new | collecting | confirming | correcting | done
    fields: dict[str, dict[str, Any]]
    requested: str | None
    reasks: dict[str, int]
    turns: int
    intents: list[str]
    answer: bool | None  # yes/no of this turn
    took: list[str]  # fields taken this turn
    changed: list[str]  # fields taken this turn that replaced a different value
    errors: dict[str, str]  # field -> why its value was refused this turn
    escalation: dict[str, Any] | None
    escalated_now: bool
    fired: list[str]  # ids of every rule that held this turn (all are audited)
    notice: dict[str, Any] | None  # a notify rule that fired this turn
    notified: list[str]  # notify rules already acted on in this conversation
    refused: list[dict[str, Any]]  # actions the spec does not authorise, refused this turn
    outcome: str | None
    lines: list[dict[str, Any]]  # what decide wants said: {key, field?, extra}
    greeted: bool  # the greeting was said (the console greets first; on SMS the person writes first)
    actions: list[dict[str, Any]]
    # Tasks (dialogue/flows.py, run by dialogue/flow_runner.py); absent for a spec without tasks.
    task: str | None  # the active task
    pointer: list[int]  # the step the active task waits at
    stack: list[dict[str, Any]]  # tasks the person left for another, to go back to
    results: dict[str, Any]  # named action results, JSON form
    runs: dict[str, int]  # how often each call step ran (its idempotency key's suffix)
    failed_calls: dict[str, str]  # call steps whose last run failed, with a digest of what it asked
    pending_outcome: str | None  # set by an `outcome` step, used when the task ends
    calls: list[dict[str, Any]]  # actions called this turn
    finished: list[dict[str, Any]]  # tasks that ended this turn, with their outcomes
    knowledge: int | None  # the knowledge entry this turn asked about
    switched: str | None  # this turn moved from that task to another ("" from none)
    routed: dict[str, Any] | None  # the router's answer this turn
    restated: bool  # this turn named the task already under way ("I'd like to book a table")


MAX_UNDERSTOOD_CHARS = 1000  # what a person writes to book or change something fits well within this
INLINE_CHARS = 200  # shorter texts are read on the event loop: a thread hop would cost more than the reading

def _now(state: ConversationState) -> datetime:
    return datetime.fromisoformat(state["incoming"]["time"])


def make_understand(spec: WorkerSpec, extractor: Extractor,
                    fields_of: Callable[[ConversationState], list[FieldSpec]] | None = None,
                    typos: TypoRepair | None = None):
    """`fields_of`: the fields a turn is read for (default: every field of the worker);
    `typos`: the worker's slip repair, when the caller already built it."""
    zone = ZoneInfo(spec.timezone)
    typos = typos or typo_repair(spec)

    async def understand(state: ConversationState) -> ConversationState:
        incoming = state.get("incoming") or {}
        text = incoming.get("text")
        base: ConversationState = {
            "took": [], "changed": [], "errors": {}, "intents": [], "answer": None, "lines": [], "actions": [],
            "escalated_now": False, "fired": [], "notice": None, "refused": [], "channel": incoming.get("channel", state.get("channel", "console")),
        }
        if "started_at" not in state:
            base["started_at"] = incoming["time"]
        phase = state.get("phase", "new")
        if phase == "done" and state.get("outcome") != "escalated" and text is not None:
            # A finished (not handed-over) conversation that hears again starts afresh.
            base.update(afresh())
            phase = "new"
            # Read on from the fresh state: the finished task's values must not carry into the
            # new request (they did, and a follow-up froze the card again with the old number).
            state = {**state, **base}
        if text is None or phase == "done":
            return base
        intents = detect_intents(typos.repair(text))
        answer = yes_no(text) if phase in ("confirming", "correcting") else None
        fields = dict(state.get("fields") or {})
        if "start_over" in intents:
            return {**base, "intents": sorted(intents), "turns": state.get("turns", 0) + 1}
        requested = state.get("requested")
        local_now = _now(state).astimezone(zone)
        context = ExtractionContext(
            requested=[requested] if requested else [], now=local_now, filled=list(fields)
        )
        turn_no = state.get("turns", 0) + 1
        took, errors, changed = [], {}, []
        aextract = getattr(extractor, "aextract", None)
        # Values are looked for in the first MAX_UNDERSTOOD_CHARS characters (the whole message
        # is stored): the finders are not all linear, and a 10,000-character SMS of "$5 $5 ..."
        # held the event loop for seconds. A long message is read in a thread, so the other
        # conversations of this process go on meanwhile.
        read = text[:MAX_UNDERSTOOD_CHARS]
        wanted = fields_of(state) if fields_of is not None else spec.fields
        if aextract:
            items = await aextract(read, wanted, context)
        elif len(read) > INLINE_CHARS:
            items = await asyncio.to_thread(extractor.extract, read, wanted, context)
        else:
            items = extractor.extract(read, wanted, context)
        for item in items:
            field_spec = spec.field(item.field)
            problem = validate(field_spec, item.value, local_now)
            if problem:
                errors[item.field] = problem
                continue
            if item.field in fields and fields[item.field]["value"] != item.value:
                changed.append(item.field)
            fields[item.field] = {
                "value": item.value, "text": item.text, "start": item.start, "end": item.end,
                "turn": turn_no, "confidence": item.confidence,
            }
            took.append(item.field)
        if (turn_no == 1 and requested and not took and not errors and answer is None and not spec.tasks
                and not is_question(text)):
            # A caller's first words after a greeting that ends in a question are usually why
            # they called ("I'd like to book a table"), not a failed answer: no "sorry", no re-ask.
            intents.add("opening")
        reasks = dict(state.get("reasks") or {})
        quiet = intents & {"greeting", "help", "goodbye", "human", "stop", "opening"}
        if requested and requested not in took and not quiet and answer is None:
            if not took or requested in errors:
                reasks[requested] = reasks.get(requested, 0) + 1
        if phase == "new":
            phase = "collecting"
        return {
            **base, "intents": sorted(intents), "answer": answer, "fields": fields, "took": took,
            "errors": errors, "changed": changed, "reasks": reasks, "turns": turn_no, "phase": phase,
        }

    return understand


def typo_repair(spec: WorkerSpec) -> TypoRepair:
    """Slips in the words that say what the person wants, repaired against this worker's own
    words (extraction/typos.py): what its tasks and knowledge are called and how they are asked."""
    texts = [t for task in spec.tasks for t in (task.name.replace("_", " "), task.label or "", task.description,
                                                *task.examples)]
    texts += [t for entry in spec.knowledge for t in (entry.question, *entry.examples)]
    return TypoRepair(texts)


def afresh() -> dict[str, Any]:
    """What a finished (not handed-over) conversation starts from when the person writes again."""
    return {"phase": "new", "fields": {}, "reasks": {}, "requested": None, "outcome": None, "escalation": None}


def make_escalate(spec: WorkerSpec):
    zone = ZoneInfo(spec.timezone)

    async def escalate(state: ConversationState) -> ConversationState:
        if state.get("escalation") or state.get("phase") in ("done", "new", None) or not state.get("incoming", {}).get("text"):
            return {}
        now = _now(state)
        facts = Facts(
            intents=set(state.get("intents", [])),
            fields=state.get("fields", {}),
            turns=state.get("turns", 0),
            reasks=state.get("reasks", {}),
            elapsed_seconds=(now - datetime.fromisoformat(state["started_at"])).total_seconds(),
            channel=state.get("channel", "console"),
            local_time=now.astimezone(zone),
        )
        notified = list(state.get("notified") or [])
        # A notify rule tells the team once per conversation; it does not stop the worker.
        fired = [r for r in fired_rules(spec.escalation.rules, facts) if not (r.action is ActionKind.notify and r.id in notified)]
        if fired:
            rule = fired[0]
            record = {"rule": rule.id, "reason": rule.reason, "action": rule.action.value, "to": rule.to, "say": rule.say}
            if rule.action is ActionKind.notify:
                return {"fired": [r.id for r in fired], "notice": record, "notified": [*notified, rule.id]}
            return {"fired": [r.id for r in fired], "escalation": record, "escalated_now": True}
        limit = spec.escalation.max_reasks
        over = [f for f, n in state.get("reasks", {}).items() if n > limit]
        if over and spec.escalation.on_reask_limit == "escalate":
            reason = f"I couldn't get your {over[0].replace('_', ' ')}."
            return {
                "fired": ["reask_limit"],
                "escalation": {"rule": "reask_limit", "reason": reason, "action": "transfer", "to": None, "say": None},
                "escalated_now": True,
            }
        return {}

    return escalate


def _next_missing(spec: WorkerSpec, fields: dict[str, Any]) -> str | None:
    for f in spec.fields:
        if f.required and f.name not in fields:
            return f.name
    return None


def make_decide(spec: WorkerSpec):
    async def decide(state: ConversationState) -> ConversationState:
        incoming = state.get("incoming") or {}
        text = incoming.get("text")
        fields = state.get("fields", {})
        phase = state.get("phase", "new")
        intents = set(state.get("intents", []))
        lines: list[dict[str, Any]] = []

        def ask(name: str | None) -> ConversationState:
            if name is None:
                lines.append({"key": "confirmation"})
                return {"lines": lines, "phase": "confirming", "requested": None}
            lines.append({"key": "prompt", "field": name})
            return {"lines": lines, "phase": "collecting", "requested": name}

        if state.get("escalated_now"):
            esc = state["escalation"]
            if esc["action"] == "end":
                lines.append({"key": "goodbye", "say": esc.get("say")})
                return {"lines": lines, "phase": "done", "outcome": "abandoned", "requested": None}
            lines.append({"key": "handoff", "extra": {"reason": esc["reason"]}, "say": esc.get("say")})
            return {"lines": lines, "phase": "done", "outcome": "escalated", "requested": None}
        if phase == "done":
            return {"lines": []}
        if text is None:
            lines.append({"key": "greeting"})
            return ask(_next_missing(spec, fields))
        if "start_over" in intents:
            lines.append({"key": "start_over"})
            result = ask(_next_missing(spec, {}))
            return {**result, "fields": {}, "reasks": {}}
        answer = state.get("answer")
        if "goodbye" in intents and not (answer is not None and phase in ("confirming", "correcting")) and not state.get("took"):
            lines.append({"key": "goodbye"})
            return {"lines": lines, "phase": "done", "outcome": "abandoned", "requested": None}
        limit = spec.escalation.max_reasks
        over = [f for f, n in state.get("reasks", {}).items() if n > limit]
        if over:  # on_reask_limit == "end"; "escalate" was handled by the escalate step
            lines.append({"key": "reask_limit"})
            lines.append({"key": "goodbye"})
            return {"lines": lines, "phase": "done", "outcome": "abandoned", "requested": None}
        errors = state.get("errors", {})
        took = state.get("took", [])
        if "help" in intents and spec.script.help:
            lines.append({"key": "help"})
        def acknowledge() -> None:
            changed = state.get("changed", [])
            if changed:
                for name in changed:
                    lines.append({"key": "changed", "field": name})
            else:
                lines.append({"key": "acknowledge"})

        if phase in ("confirming", "correcting"):
            if took:
                acknowledge()
                return ask(_next_missing(spec, fields))
            if errors:
                name = next(iter(errors))
                lines.append({"key": "invalid", "field": name, "extra": {"error": errors[name]}})
                return {"lines": lines, "phase": phase}
            if answer is True:
                lines.append({"key": "closing"})
                return {"lines": lines, "phase": "done", "outcome": "completed", "requested": None}
            if answer is False:
                lines.append({"key": "correction_prompt"})
                return {"lines": lines, "phase": "correcting", "requested": None}
            if "help" not in intents:
                lines.append({"key": "fallback", "prompt_key": "confirmation"})
            return {"lines": lines, "phase": phase}
        requested = state.get("requested")
        if errors:
            name = requested if requested in errors else next(iter(errors))
            lines.append({"key": "invalid", "field": name, "extra": {"error": errors[name]}})
            return {"lines": lines, "phase": "collecting", "requested": name}
        missing = _next_missing(spec, fields)
        if took:
            acknowledge()
            return ask(missing)
        if intents & {"greeting", "help", "opening"} or (requested is None):
            return ask(missing)
        key = "reask" if state.get("reasks", {}).get(requested, 0) > 1 else "fallback"
        lines.append({"key": key, "field": requested})
        return {"lines": lines, "phase": "collecting", "requested": requested}

    return greeting_first(decide)


def greeting_first(decide: Callable[[ConversationState], Awaitable[ConversationState]]):
    """`decide`, with the greeting said first in a conversation's first reply (the console
    greets before anyone speaks; on SMS and email the person writes first)."""

    async def decide_and_greet(state: ConversationState) -> ConversationState:
        result = await decide(state)
        if state.get("greeted") or not result.get("lines"):
            return result
        lines = result["lines"]
        if not any(line["key"] == "greeting" for line in lines):
            lines = [{"key": "greeting"}, *lines]
        return {**result, "lines": lines, "greeted": True}

    return decide_and_greet


def spoken_results(results: dict[str, Any]) -> dict[str, Any]:
    """Action results as a line quotes them: a list reads "19:30, 20:00 or 21:15"."""
    out: dict[str, Any] = {}
    for name, value in results.items():
        if isinstance(value, list):
            items = [str(v) for v in value]
            value = ", ".join(items[:-1]) + f" or {items[-1]}" if len(items) > 1 else "".join(items)
        elif isinstance(value, bool):
            value = "yes" if value else "no"
        out[name] = value
    return out


_ALLOWED_FOR = {"say": ActionKind.reply, "transfer": ActionKind.transfer, "notify": ActionKind.notify, "end": ActionKind.end}


def make_render(spec: WorkerSpec):
    script = spec.script

    def prompt_of(name: str) -> str:
        return render(spec.field(name).prompt, spec.fields, {})

    async def render_node(state: ConversationState) -> ConversationState:
        fields = state.get("fields", {})
        results = spoken_results(state.get("results") or {})
        channel = spec.channel(state.get("channel", "console"))
        texts: list[str] = []
        for line in state.get("lines", []):
            key, name, extra = line["key"], line.get("field"), dict(line.get("extra") or {})
            field_spec = spec.field(name) if name else None
            if key == "say":  # a task's own line (flows): may quote results as well as fields
                template = line["text"]
                extra.update(results)
            elif key == "knowledge":
                template = spec.knowledge[line["entry"]].answer
            elif key == "prompt":
                template = field_spec.prompt
            elif key == "greeting":
                template = channel.greeting or script.greeting
            elif key == "fallback":
                extra["prompt"] = (
                    render(line["prompt_text"], spec.fields, fields, **results) if line.get("prompt_text")
                    else render(script.confirmation, spec.fields, fields) if line.get("prompt_key") == "confirmation"
                    else prompt_of(name) if name else ""
                )
                template = script.fallback
            elif key == "reask":
                extra["prompt"] = prompt_of(name)
                template = (field_spec.reask if field_spec and field_spec.reask else script.reask)
            elif key == "invalid":
                extra["prompt"] = prompt_of(name) if name else ""
                template = (field_spec.invalid if field_spec and field_spec.invalid else script.invalid)
            elif key == "changed":
                extra["field"] = field_spec.spoken_label
                extra["value"] = display(field_spec, fields[name]["value"])
                template = script.changed
            elif key in ("handoff", "goodbye") and line.get("say"):
                template = line["say"]
            elif key == "handoff" and state.get("channel") in ("sms", "email"):
                template = script.follow_up  # a person replies later, in the same thread
            elif key == "handoff" and state.get("channel") == "voice" and not (state.get("escalation") or {}).get("to"):
                template = script.voice_call_back  # no one to put the call through to: a person rings back
            else:
                template = getattr(script, key)
            # A line said before a task resumed (its values came back) keeps the values it was said with.
            texts.append(render(template, spec.fields, line.get("fields") or fields, worker=spec.persona, **extra))
        actions: list[dict[str, Any]] = []
        said = " ".join(t for t in texts if t)
        if said:
            actions.append({"kind": "say", "text": said})
        notice = state.get("notice")
        if notice:
            actions.append({"kind": "notify", "rule": notice["rule"], "reason": notice["reason"]})
        if state.get("escalated_now"):
            esc = state["escalation"]
            if esc["action"] == "transfer":
                actions.append({"kind": "transfer", "to": esc.get("to"), "rule": esc["rule"], "reason": esc["reason"]})
        if state.get("phase") == "done" and state.get("lines"):
            actions.append({"kind": "end", "outcome": state.get("outcome") or "abandoned"})
        allowed = [a for a in actions if _ALLOWED_FOR[a["kind"]] in spec.allowed_actions]
        refused = [a for a in actions if a not in allowed]
        if any(a["kind"] == "transfer" for a in refused) and not any(a["kind"] == "end" for a in allowed):
            # A handover the spec does not allow still ends the conversation, if ending is allowed.
            if ActionKind.end in spec.allowed_actions:
                allowed.append({"kind": "end", "outcome": state.get("outcome") or "abandoned"})
        return {"actions": allowed, "refused": refused, "incoming": None}

    return render_node
