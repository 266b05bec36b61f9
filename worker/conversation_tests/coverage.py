"""`--coverage`: what of a worker spec no case exercised, read from what the cases observed (the
worker's state after each line, the calls stored, the replies).

How each kind is detected, and how far it can be trusted:
- tasks: active after some line, or finished (exact);
- fields: held a value after some line (exact);
- escalation rules: handed over by the rule or notified the team (exact);
- knowledge entries: the entry's answer appears in a reply (it is said word for word);
- script lines: a reply matches the line, its placeholders matching anything (a line cut short
  by SMS segment limits is missed);
- steps: an `ask` or `confirm` the worker waited at, or whose fields all got values while its
  task ran; a `call` that ran (stored results); a `say`/`end`/`confirm` line said while its task
  ran; an `outcome` reached; a `handoff` that handed over; a `goto` whose target task ran; an `if`
  when a step in or after it was exercised;
- branches: a non-empty `then` or `else` with one of its steps exercised (an empty `else` is not
  listed).
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, Field

from dialogue.flows import AskStep, CallStep, ConfirmStep, EndStep, GotoStep, HandoffStep, IfStep, OutcomeStep, SayStep
from dialogue.spec import WorkerSpec
from worker.conversation_tests.runner import Seen

# Lines only a channel's own events make the worker say (mail too large, silence on a call): no
# conversation test can bring them about, so they are not listed.
_OTHER_CHANNELS = ("email_", "voice_")
_TEMPLATE_PIECE = re.compile(r"\{\{|\}\}|\{[^{}]*\}")


class Coverage(BaseModel):
    """Per kind, what no case exercised (`spec path: what`)."""

    tasks: list[str] = Field(default_factory=list)
    steps: list[str] = Field(default_factory=list)
    branches: list[str] = Field(default_factory=list)
    fields: list[str] = Field(default_factory=list)
    escalation_rules: list[str] = Field(default_factory=list)
    knowledge: list[str] = Field(default_factory=list)
    script_lines: list[str] = Field(default_factory=list)

    def empty(self) -> bool:
        return not any(getattr(self, k) for k in type(self).model_fields)


def line_pattern(template: str) -> re.Pattern[str]:
    """A template as a pattern: its literal text (spaces loose), any text for a placeholder."""
    parts: list[str] = []
    pos = 0
    for m in _TEMPLATE_PIECE.finditer(template):
        parts.append(_literal(template[pos:m.start()]))
        parts.append(re.escape(m.group(0)[0]) if m.group(0) in ("{{", "}}") else ".*?")
        pos = m.end()
    parts.append(_literal(template[pos:]))
    return re.compile("".join(parts), re.DOTALL)


def _literal(text: str) -> str:
    return r"\s+".join(re.escape(word) for word in text.split(" ")) if text else ""


def said(template: str, replies: list[str]) -> bool:
    pattern = line_pattern(template.strip())
    return any(pattern.search(reply) for reply in replies)


def coverage(spec: WorkerSpec, seen: list[Seen]) -> Coverage:
    out = Coverage()
    tasks = set().union(*(s.tasks for s in seen)) if seen else set()
    fields = set().union(*(s.fields for s in seen)) if seen else set()
    rules = set().union(*(s.rules for s in seen)) if seen else set()
    replies = [r for s in seen for r in s.replies]
    out.tasks = [f"tasks.{t.name}" for t in spec.tasks if t.name not in tasks]
    out.fields = [f"fields.{f.name}" for f in spec.fields if f.name not in fields]
    out.escalation_rules = [f"escalation.rules.{r.id}" for r in spec.escalation.rules if r.id not in rules]
    out.knowledge = [f"knowledge.{i}: {k.question}" for i, k in enumerate(spec.knowledge)
                     if not any(k.answer.strip().casefold() in r.casefold() for r in replies)]
    out.script_lines = [f"script.{key}" for key, text in spec.script.model_dump().items()
                        if isinstance(text, str) and text.strip() and not key.startswith(_OTHER_CHANNELS)
                        and not said(text, replies)]
    for task in spec.tasks:
        done: set[str] = set()
        for case in seen:
            if task.name in case.tasks:
                done |= _exercised(spec, task, task.steps, [], case)
        for path, step in _walk(task.steps, []):
            name = _name(task.name, path)
            if name not in done:
                out.steps.append(f"{name} ({_kind(step)})")
            if isinstance(step, IfStep):
                for label, branch, index in (("then", step.then, 0), ("else", step.else_, 1)):
                    inner = {_name(task.name, [*path, index, i]) for i in range(len(branch))}
                    if branch and not inner & done:
                        out.branches.append(f"{name}.{label}")
    return out


def _walk(steps: list[Any], prefix: list[int]) -> list[tuple[list[int], Any]]:
    out: list[tuple[list[int], Any]] = []
    for i, step in enumerate(steps):
        path = [*prefix, i]
        out.append((path, step))
        if isinstance(step, IfStep):
            out += _walk(step.then, [*path, 0]) + _walk(step.else_, [*path, 1])
    return out


def _name(task: str, path: list[int]) -> str:
    return f"{task}." + ".".join(str(p) for p in path)


def _kind(step: Any) -> str:
    return type(step).__name__.removesuffix("Step").lower()


def _exercised(spec: WorkerSpec, task: Any, steps: list[Any], prefix: list[int], case: Seen) -> set[str]:
    """The steps of `steps` (and their branches) one case exercised, by their pointer names."""
    done: set[str] = set()
    later = False  # a step after this one in the same list was exercised
    for i in reversed(range(len(steps))):
        step, path = steps[i], [*prefix, i]
        name = _name(task.name, path)
        hit = name in case.waits
        if isinstance(step, AskStep):
            hit = hit or all(f in case.fields for f in step.ask)
        elif isinstance(step, CallStep):
            hit = name in case.call_steps
        elif isinstance(step, (SayStep, ConfirmStep, EndStep)):
            text = step.say if isinstance(step, SayStep) else (step.confirm if isinstance(step, ConfirmStep) else step.end)
            if not isinstance(text, str):
                default = task.confirmation or spec.script.confirmation if isinstance(step, ConfirmStep) \
                    else task.closing or spec.script.closing
                text = default
            hit = hit or said(text, case.replies)
        elif isinstance(step, OutcomeStep):
            hit = step.outcome in case.outcomes
        elif isinstance(step, HandoffStep):
            hit = f"{task.name}.handoff" in case.rules
        elif isinstance(step, GotoStep):
            hit = step.goto in case.tasks
        elif isinstance(step, IfStep):
            inner = _exercised(spec, task, step.then, [*path, 0], case) | _exercised(spec, task, step.else_, [*path, 1], case)
            done |= inner
            hit = bool(inner) or later
        if hit:
            done.add(name)
            later = True
    return done
