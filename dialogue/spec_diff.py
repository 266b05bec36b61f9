"""`channel-worker spec diff A B`: the behaviour changes between two worker specs.

Compared are the validated models, never the text: formatting, comments, key order, anchors and
defaults written out make no difference. What is listed, by kind: the worker's settings (persona,
tone, zone, routing, channels, allowed actions, escalation settings), fields, tasks and their
steps (in order), escalation rules, script lines, actions, knowledge entries, outcomes and
outcome deliveries. The `version:` label is reported beside the changes but is not one: two
specs that differ only in it behave the same.

Items are matched by their identity (a field, task or action by `name`, a rule by `id`, a
knowledge entry by its `question`, a script line by its key); a renamed item is a removal and an
addition. A task's steps are matched in order (a longest-common-subsequence alignment of the
steps, `if` blocks flattened to their paths), so a step put in between is one added step, not
every later step changed.
"""

from __future__ import annotations

import difflib
import json
from typing import Any, Literal

from pydantic import BaseModel

from dialogue.spec import WorkerSpec

Kind = Literal["worker", "field", "task", "step", "rule", "script", "action", "knowledge", "outcome", "delivery"]
How = Literal["added", "removed", "changed"]

# Headings of the text report, in the order it prints them.
KINDS: dict[str, str] = {
    "worker": "worker settings", "field": "fields", "task": "tasks", "step": "steps", "rule": "escalation rules",
    "script": "script lines", "action": "actions", "knowledge": "knowledge entries", "outcome": "outcomes",
    "delivery": "outcome deliveries",
}
_SETTINGS = ("persona", "tone", "goal", "timezone", "phone_region", "allowed_actions", "routing", "channels")


class Change(BaseModel):
    kind: Kind
    name: str  # the item: a field's name, "book steps.2", a rule id, a script line's key...
    change: How
    details: list[str] = []  # for "changed": "path: before -> after", one per value that differs
    before: Any = None
    after: Any = None


class SpecDiff(BaseModel):
    name: tuple[str, str]
    version: tuple[str | None, str | None]
    hash: tuple[str, str]
    changes: list[Change]

    @property
    def identical(self) -> bool:
        return not self.changes


def diff_specs(a: WorkerSpec, b: WorkerSpec) -> SpecDiff:
    changes: list[Change] = []
    da, db = _dump(a), _dump(b)
    for key in ("name", *_SETTINGS):
        _compare(changes, "worker", key, da.get(key), db.get(key))
    esc_a = {k: v for k, v in da["escalation"].items() if k != "rules"}
    esc_b = {k: v for k, v in db["escalation"].items() if k != "rules"}
    _compare(changes, "worker", "escalation", esc_a, esc_b)
    _keyed(changes, "field", da["fields"], db["fields"], "name")
    for name, before, after in _pairs(da["tasks"], db["tasks"], "name"):
        if before is None or after is None:
            changes.append(Change(kind="task", name=name, change="added" if before is None else "removed",
                                  before=before, after=after))
            continue
        own_a = {k: v for k, v in before.items() if k not in ("steps", "fields")}
        own_b = {k: v for k, v in after.items() if k not in ("steps", "fields")}
        own_a["fields"] = [f["name"] for f in before.get("fields", [])]
        own_b["fields"] = [f["name"] for f in after.get("fields", [])]
        _compare(changes, "task", name, own_a, own_b)
        changes += _step_changes(name, before["steps"], after["steps"])
    _keyed(changes, "rule", da["escalation"]["rules"], db["escalation"]["rules"], "id")
    script_a, script_b = da["script"], db["script"]
    for key in _union(script_a, script_b):
        _compare(changes, "script", key, script_a.get(key), script_b.get(key))
    _keyed(changes, "action", da["actions"], db["actions"], "name")
    _keyed(changes, "knowledge", da["knowledge"], db["knowledge"], "question")
    _keyed(changes, "outcome", da["outcomes"], db["outcomes"], "name")
    _keyed(changes, "delivery", [{**d, "#": str(i)} for i, d in enumerate(da["on_outcome"])],
           [{**d, "#": str(i)} for i, d in enumerate(db["on_outcome"])], "#")
    return SpecDiff(name=(a.name, b.name), version=(a.version, b.version), hash=(a.content_hash(), b.content_hash()),
                    changes=changes)


def _dump(spec: WorkerSpec) -> dict[str, Any]:
    return spec.model_dump(mode="json", by_alias=True)


def _union(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    return [*a, *(k for k in b if k not in a)]


def _pairs(a: list[dict[str, Any]], b: list[dict[str, Any]], key: str) -> list[tuple[str, Any, Any]]:
    """Items of both lists matched by `key`, in A's order then B's new ones."""
    by_a, by_b = {str(x[key]): x for x in a}, {str(x[key]): x for x in b}
    return [(k, by_a.get(k), by_b.get(k)) for k in _union(by_a, by_b)]


def _keyed(changes: list[Change], kind: Kind, a: list[dict[str, Any]], b: list[dict[str, Any]], key: str) -> None:
    for name, before, after in _pairs(a, b, key):
        _compare(changes, kind, name, before, after)


def _compare(changes: list[Change], kind: Kind, name: str, before: Any, after: Any) -> None:
    if before == after:
        return
    if before is None or after is None:
        changes.append(Change(kind=kind, name=name, change="added" if before is None else "removed",
                              before=before, after=after))
        return
    changes.append(Change(kind=kind, name=name, change="changed", details=_differences(before, after),
                          before=before, after=after))


def _differences(before: Any, after: Any, path: str = "") -> list[str]:
    """One line per value that differs, by its path inside the item."""
    if isinstance(before, dict) and isinstance(after, dict):
        out: list[str] = []
        for key in _union(before, after):
            if before.get(key) != after.get(key):
                out += _differences(before.get(key), after.get(key), f"{path}.{key}" if path else str(key))
        return out
    return [(f"{path}: " if path else "") + f"{_short(before)} -> {_short(after)}"]


def _short(value: Any, width: int = 100) -> str:
    text = json.dumps(_without_nulls(value), ensure_ascii=False, sort_keys=True)
    return text if len(text) <= width else text[: width - 3] + "..."


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _flat_steps(steps: list[dict[str, Any]], prefix: str = "steps") -> list[tuple[str, dict[str, Any]]]:
    """Every step with its path, an `if` as its condition alone followed by its branches' steps."""
    out: list[tuple[str, dict[str, Any]]] = []
    for i, step in enumerate(steps):
        path = f"{prefix}.{i}"
        if "if" in step:
            out.append((path, {"if": step["if"]}))
            out += _flat_steps(step.get("then") or [], f"{path}.then")
            out += _flat_steps(step.get("else") or [], f"{path}.else")
        else:
            out.append((path, {k: v for k, v in step.items() if v is not None}))
    return out


def _step_changes(task: str, a: list[dict[str, Any]], b: list[dict[str, Any]]) -> list[Change]:
    flat_a, flat_b = _flat_steps(a), _flat_steps(b)
    keys_a = [json.dumps(s, sort_keys=True) for _, s in flat_a]
    keys_b = [json.dumps(s, sort_keys=True) for _, s in flat_b]
    out: list[Change] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=keys_a, b=keys_b, autojunk=False).get_opcodes():
        if op == "equal":
            continue
        old, new = flat_a[i1:i2], flat_b[j1:j2]
        # Within a replaced block, a step and a later one of the same kind are the same step changed
        # (matched in order); what is left over was removed or added.
        pairs: list[tuple[int, int]] = []
        next_j = 0
        for i, (_, s) in enumerate(old):
            j = next((j for j in range(next_j, len(new)) if _kind(new[j][1]) == _kind(s)), None)
            if j is not None:
                pairs.append((i, j))
                next_j = j + 1
        matched_old, matched_new = {i for i, _ in pairs}, {j for _, j in pairs}
        out += [Change(kind="step", name=f"{task} {p}", change="removed", before=s)
                for i, (p, s) in enumerate(old) if i not in matched_old]
        for i, j in pairs:
            (pa, s), (pb, t) = old[i], new[j]
            where = pa if pa == pb else f"{pa} (now {pb})"
            out.append(Change(kind="step", name=f"{task} {where}", change="changed", details=_differences(s, t),
                              before=s, after=t))
        out += [Change(kind="step", name=f"{task} {p}", change="added", after=t)
                for j, (p, t) in enumerate(new) if j not in matched_new]
    return out


def _kind(step: dict[str, Any]) -> str:
    return next(iter(k for k in step if k not in ("when",)), "")


def describe(item: Any) -> str:
    """A one-line summary of an added or removed item."""
    if isinstance(item, dict):
        if "type" in item and "name" in item:  # a field
            return f"{item['type']}" + (f", prompt {_short(item.get('prompt'), 60)}" if item.get("prompt") else "")
        if "when" in item and "action" in item:  # a rule
            return f"when {_short(item['when'], 60)} -> {item['action']}"
        if "url" in item and "method" in item:  # an action
            return f"{item['method']} {item['url']}"
        if "steps" in item and "name" in item:  # a task
            return f"{len(_flat_steps(item['steps']))} steps" + (f", {_short(item.get('description'), 60)}"
                                                                 if item.get("description") else "")
    return _short(item, 80)


def text_report(diff: SpecDiff, file_a: str, file_b: str) -> str:
    lines = [f"--- {file_a} ({diff.name[0]}, version {diff.version[0] or '-'}, {diff.hash[0][:12]})",
             f"+++ {file_b} ({diff.name[1]}, version {diff.version[1] or '-'}, {diff.hash[1][:12]})"]
    if diff.identical:
        same = "identical" if diff.hash[0] == diff.hash[1] else "the same behaviour (only the version label differs)"
        lines.append(f"no behaviour changes: {same}")
        return "\n".join(lines) + "\n"
    mark = {"added": "+", "removed": "-", "changed": "~"}
    for kind, heading in KINDS.items():
        group = [c for c in diff.changes if c.kind == kind]
        if not group:
            continue
        lines.append(f"{heading} ({len(group)}):")
        for c in group:
            if c.change == "changed":
                if len(c.details) == 1:
                    lines.append(f"  ~ {c.name}: {c.details[0]}")
                else:
                    lines.append(f"  ~ {c.name}:")
                    lines += [f"      {d}" for d in c.details]
            else:
                lines.append(f"  {mark[c.change]} {c.name}: {describe(c.after if c.change == 'added' else c.before)}")
    counts = {how: sum(c.change == how for c in diff.changes) for how in ("added", "removed", "changed")}
    lines.append(f"{len(diff.changes)} behaviour change(s): {counts['added']} added, {counts['removed']} removed, "
                 f"{counts['changed']} changed")
    return "\n".join(lines) + "\n"


def json_report(diff: SpecDiff, file_a: str, file_b: str) -> dict[str, Any]:
    return {
        "a": {"file": file_a, "name": diff.name[0], "version": diff.version[0], "hash": diff.hash[0]},
        "b": {"file": file_b, "name": diff.name[1], "version": diff.version[1], "hash": diff.hash[1]},
        "identical": diff.identical,
        "changes": [c.model_dump(mode="json") for c in diff.changes],
    }
