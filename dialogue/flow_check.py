"""What `spec check` refuses in tasks, steps, knowledge and actions, each problem starting with
its path in the spec (the loader turns the path into the file's line):

- a field or result a step, condition or line names that the worker does not have;
- a `call` of an action, a `goto` of a task, an `outcome` that does not exist;
- a step that can never be reached (after `end`, `goto` or `handoff` in the same list, or after
  an `if` both of whose branches end so);
- tasks that go to each other in a loop with no `ask` or `confirm` in any of them (a turn would
  never end);
- a result used in a way its declared schema does not allow: `gt` on an array in a condition, a
  format such as `{availability.times:%H:%M}` on anything but a number in a line, an object said
  whole.
Secrets written inline in an action are refused by the action's own model (actions/spec.py).
"""

from __future__ import annotations

from typing import Any

from dialogue import template
from dialogue.flows import AskStep, CallStep, ConfirmStep, EndStep, GotoStep, HandoffStep, IfStep, OutcomeStep, SayStep
from escalation.rules import AllCondition, AnyCondition, CountCondition, FieldCondition, NotCondition

# The worker spec is typed `Any` here: dialogue/spec.py calls these checks from its validator,
# and importing it back, even for types, would close an import cycle.
WorkerSpec = Any

_TESTS = ("equals", "in_", "gt", "gte", "lt", "lte", "present")


def _field_conditions(condition: Any) -> list[FieldCondition]:
    if isinstance(condition, FieldCondition):
        return [condition]
    if isinstance(condition, (AllCondition, AnyCondition)):
        items = condition.all if isinstance(condition, AllCondition) else condition.any
        return [c for item in items for c in _field_conditions(item)]
    if isinstance(condition, NotCondition):
        return _field_conditions(condition.not_)
    return []


def condition_problems(condition: Any, where: str, fields: set[str], results: dict[str, Any]) -> list[str]:
    found = []
    for c in _field_conditions(condition):
        if "." in c.field:
            schema = results.get(c.field)
            if schema is None:
                found.append(f"{where}: {c.field!r} is not a result of an action this worker calls")
                continue
            for test in _TESTS:
                operand = getattr(c, test)
                if operand is not None:
                    problem = schema.usage_problem(c.field, test.rstrip("_"), operand)
                    if problem:
                        found.append(f"{where}: {problem}")
        elif c.field not in fields:
            found.append(f"{where}: {c.field!r} is not a field of this worker")
    if isinstance(condition, CountCondition) and condition.field and condition.field not in fields:
        found.append(f"{where}: {condition.field!r} is not a field of this worker")
    return found


def _steps_problems(spec: WorkerSpec, steps: list[Any], where: str, fields: set[str], results: dict[str, Any]) -> list[str]:
    found: list[str] = []
    tasks = {t.name for t in spec.tasks}
    actions = {a.name for a in spec.actions}
    outcomes = {o.name for o in spec.outcomes}
    for i, step in enumerate(steps):
        path = f"{where}.{i}"
        if i > 0 and _leaves(steps[i - 1]) and not _leaves_list(steps[: i - 1]):
            before = steps[i - 1]
            kind = ("an `if` whose branches both leave the task" if isinstance(before, IfStep)
                    else f"`{type(before).__name__.removesuffix('Step').lower()}`")
            found.append(f"{path}: this step can never be reached (the step before it is {kind})")
        if isinstance(step, AskStep):
            found += [f"{path}.ask: {name!r} is not a field of this worker" for name in step.ask if name not in fields]
            if step.when is not None:
                found += condition_problems(step.when, f"{path}.when", fields, results)
        elif isinstance(step, IfStep):
            found += condition_problems(step.if_, f"{path}.if", fields, results)
            found += _steps_problems(spec, step.then, f"{path}.then", fields, results)
            found += _steps_problems(spec, step.else_, f"{path}.else", fields, results)
        elif isinstance(step, CallStep) and step.call not in actions:
            found.append(f"{path}.call: {step.call!r} is not an action of this worker (actions: "
                         f"{', '.join(sorted(actions)) or 'none'})")
        elif isinstance(step, GotoStep) and step.goto not in tasks:
            found.append(f"{path}.goto: {step.goto!r} is not a task of this worker")
        elif isinstance(step, OutcomeStep) and step.outcome not in outcomes:
            found.append(f"{path}.outcome: {step.outcome!r} is not an outcome of this worker")
        elif isinstance(step, (SayStep, ConfirmStep, EndStep)):
            pass  # lines are checked with every other template (WorkerSpec.template_lines)
    return found


def _leaves(step: Any) -> bool:
    """Does the task never go on past this step (it ends, hands over or goes to another task)?"""
    if isinstance(step, (EndStep, GotoStep, HandoffStep)):
        return True
    return isinstance(step, IfStep) and _leaves_list(step.then) and _leaves_list(step.else_)


def _leaves_list(steps: list[Any]) -> bool:
    return any(_leaves(step) for step in steps)


def _goto_loops(spec: WorkerSpec) -> list[str]:
    """Tasks that reach each other by `goto` (a cycle, itself included) with no `ask` or `confirm`
    in any of them: the runner would go round without ever waiting for the person. Reported once
    per cycle, at its first task."""
    order = [t.name for t in spec.tasks]
    waits = {t.name: any(isinstance(s, (AskStep, ConfirmStep)) for s in t.all_steps()) for t in spec.tasks}
    edges = {t.name: {s.goto for s in t.all_steps() if isinstance(s, GotoStep) and s.goto in waits} for t in spec.tasks}
    reach: dict[str, set[str]] = {}
    for start in order:
        seen: set[str] = set()
        stack = list(edges[start])
        while stack:
            name = stack.pop()
            if name not in seen:
                seen.add(name)
                stack += edges[name]
        reach[start] = seen
    found, reported = [], set()
    for name in order:
        if name not in reach[name] or name in reported:
            continue
        cycle = {other for other in reach[name] if name in reach[other]}
        reported |= cycle
        if not any(waits[n] for n in cycle):
            others = ", ".join(repr(n) for n in order if n in cycle and n != name)
            found.append(f"tasks.{order.index(name)}: task {name!r} goes round by goto"
                         + (f" (through {others})" if others else "")
                         + " with no `ask` or `confirm` on the way, so a turn would never end")
    return found


def _result_line_problems(spec: WorkerSpec, results: dict[str, Any], called: set[str]) -> list[str]:
    """A line may say a result as it is (a list reads "18:00 or 21:30", a boolean "yes" or "no");
    a format applies to numbers only, an object has no words of its own, and a result of an
    action no step calls is never there to say."""
    found = []
    declared = {a.name for a in spec.actions}
    for where, text in spec.template_lines():
        for ph in template.placeholders(text):
            action = ph.name.split(".")[0]
            if "." in ph.name and action in declared and action not in called:
                found.append(f"{where}: {ph.text}: no step calls the action {action!r}, so it has no results")
                continue
            schema = results.get(ph.name)
            if schema is None:
                continue  # not a result, or an unknown one (WorkerSpec reports that)
            if schema.type == "object":
                found.append(f"{where}: {ph.text}: {ph.name} is an object; say one of its properties "
                             f"({', '.join(f'{ph.name}.{p}' for p in schema.properties or {})})")
            elif ph.spec and schema.type not in ("integer", "number"):
                found.append(f"{where}: {ph.text}: {ph.name} is {'an' if schema.type[0] in 'aeiou' else 'a'} "
                             f"{schema.type}; the format {ph.spec!r} does not apply to it (say it without one)")
            elif ph.spec:
                try:
                    format(2.5, ph.spec)
                except (ValueError, TypeError) as exc:
                    found.append(f"{where}: {ph.text}: the format {ph.spec!r} does not apply to a number ({exc})")
    return found


def flow_problems(spec: WorkerSpec) -> list[str]:
    fields = {f.name for f in spec.fields}
    # Only an action some step calls ever has results: one no step calls is never there to test.
    called = {s.call for t in spec.tasks for s in t.all_steps() if isinstance(s, CallStep)}
    results: dict[str, Any] = {}
    for action in spec.actions:
        if action.name in called:
            results.update(action.result_names())
    found: list[str] = []
    names = [t.name for t in spec.tasks]
    for name in sorted({n for n in names if names.count(n) > 1}):
        found.append(f"tasks: task names must be unique; repeated: {name}")
    action_names = [a.name for a in spec.actions]
    for name in sorted({n for n in action_names if action_names.count(n) > 1}):
        found.append(f"actions: action names must be unique; repeated: {name}")
    for i, task in enumerate(spec.tasks):
        found += _steps_problems(spec, task.steps, f"tasks.{i}.steps", fields, results)
        if task.outcome not in {o.name for o in spec.outcomes}:
            found.append(f"tasks.{i}.outcome: {task.outcome!r} is not an outcome of this worker")
    for i, action in enumerate(spec.actions):
        found += action.problems(fields, results, where=f"actions.{i}")
    if spec.routing.start_task is not None and spec.routing.start_task not in names:
        found.append(f"routing.start_task: {spec.routing.start_task!r} is not a task of this worker")
    return found + _goto_loops(spec) + _result_line_problems(spec, results, called)
