"""`channel-worker test --from-transcripts`: stored conversations become a conversation test file.

Each stored conversation of the worker (chosen with export's filters) becomes one case: its
channel, `now` one second before it started (the runner, as `chat --now`, sends the first line a
second later), the person's lines in order as steps, and on the last step what the conversation
held after it, read from its stored state as the runner reads a case's: the fields' values, the
active task, the outcome and the escalation rule. The actions it called become the case's stubs,
each with the answers it really got, in order, so the case runs without the business's systems.

Where a reviewer labelled a value (the review console, `transcripts/labels.py`), the label is
the expected value: the latest label of each field, when it is about the value the conversation
ended with. "right" keeps the stored value; "wrong" with the right value expects that value (as
written, compared as text, a yes/no as true/false); "wrong" with none expects no value. A case
with a corrected value fails on the spec that made the mistake, until the spec is fixed; without
labels the expected values are what the worker stored, so a generated file pins today's
behaviour and passes on the same spec.
"""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import yaml
from pydantic import ValidationError

from actions.client import stored_results
from dialogue.engine import DialogueEngine
from dialogue.spec import WorkerSpec
from dialogue.spec_loader import SpecError, load_spec
from extraction.fields import NUMERIC_TYPES, FieldType
from transcripts.labels import LabelStore
from transcripts.store import ConversationRecord, Event, ExportFilter
from worker.config import Settings
from worker.conversation_tests.expectations import same
from worker.conversation_tests.model import Case, TestFile, case_problems
from worker.runtime import open_engine

WRITTEN, INVALID = 0, 2


def case_name(conv: ConversationRecord) -> str:
    return f"{conv.id} ({conv.outcome or 'no outcome'})"


def _started(conv: ConversationRecord) -> datetime:
    moment = conv.started_at if isinstance(conv.started_at, datetime) else datetime.fromisoformat(str(conv.started_at))
    return moment.replace(microsecond=0) - timedelta(seconds=1)


def _stubs(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per action, the answers its calls got, in call order (one answer: given once for all)."""
    answers: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        status = row["http_status"] or (200 if row["status"] == "ok" else 503)
        body = row["response"] if row["response"] is not None else {}
        answers.setdefault(row["action"], []).append({"status": status, "body": body})
    return {name: got[0] if len(got) == 1 else {"responses": got} for name, got in answers.items()}


async def case_for(engine: DialogueEngine, conv: ConversationRecord, events: list[Event],
                   err: TextIO = sys.stderr) -> dict[str, Any] | None:
    """One test case from a stored conversation (None: the person never said anything). Values of
    fields the spec does not have (the conversation ran on another version) are not expected;
    `err` says which."""
    lines = [e.text for e in events if e.direction == "in" and e.text is not None]
    if not lines:
        return None
    snapshot = await engine.graph.aget_state({"configurable": {"thread_id": conv.id}})
    state: dict[str, Any] = dict(snapshot.values) if snapshot and snapshot.values else {}
    names = {f.name for f in engine.spec.fields}
    held = {name: v.get("value") for name, v in (state.get("fields") or {}).items() if isinstance(v, dict)}
    unknown = sorted(set(held) - names)
    if unknown:
        err.write(f"{conv.id}: not expected, not fields of this spec: {', '.join(unknown)}\n")
    expect: dict[str, Any] = {
        "fields": {name: value for name, value in held.items() if name in names},
        "outcome": state.get("outcome"),
        "escalation": (state.get("escalation") or {}).get("rule"),
    }
    if engine.spec.tasks:
        expect["task"] = state.get("task")
    corrected = await _apply_labels(engine, conv.id, expect["fields"], err)
    if not expect["fields"]:
        del expect["fields"]
    steps: list[dict[str, Any]] = [{"user": text} for text in lines]
    steps[-1]["expect"] = expect
    name = case_name(conv) + (f", {corrected} value(s) corrected by a reviewer" if corrected else "")
    case: dict[str, Any] = {"name": name, "now": _started(conv).isoformat(), "channel": conv.channel}
    stubs = _stubs(await stored_results(engine.store.db, conv.id))
    if stubs:
        case["stubs"] = stubs
    case["steps"] = steps
    return case


def problems_of(spec: WorkerSpec, case: dict[str, Any]) -> list[str]:
    """What keeps `case` from loading against `spec`: a conversation stored under another version
    of the spec may name a task, outcome, field or action this one does not have."""
    try:
        parsed = Case.model_validate(case)
    except ValidationError as exc:
        return [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
    return case_problems(spec, parsed, "case")


_YES, _NO = {"yes", "true", "y"}, {"no", "false", "n"}


def _as_stored(spec: WorkerSpec, field: str, text: str) -> Any:
    """A reviewer's value (text) as the expectation compares it: a yes/no as a boolean, a whole
    number as a number, anything else as written (expectations compare values as text)."""
    found = next((f for f in spec.fields if f.name == field), None)
    if found is not None and found.type is FieldType.yes_no and text.strip().lower() in _YES | _NO:
        return text.strip().lower() in _YES
    if found is not None and found.type in NUMERIC_TYPES and text.strip().lstrip("-").isdigit():
        return int(text.strip())
    return text


async def _apply_labels(engine: DialogueEngine, conversation_id: str, fields: dict[str, Any], err: TextIO) -> int:
    """Put the reviewers' labels in `fields` (the expected values); returns how many changed one."""
    labels = await LabelStore(engine.store).latest(conversation_id)
    changed = 0
    for field, label in labels.items():
        if label.verdict != "wrong" or field not in {f.name for f in engine.spec.fields}:
            continue
        held = fields.get(field)
        if held is not None and not same(label.stored_value, held):
            err.write(f"{conversation_id}: the label on {field} is about {label.stored_value!r}, not the value it "
                      f"ended with ({held!r}); not used\n")
            continue
        fields[field] = _as_stored(engine.spec, field, label.correct_value) if label.correct_value else None
        changed += 1
    return changed


async def collect(spec: WorkerSpec, settings: Settings, flt: ExportFilter, limit: int | None,
                  err: TextIO = sys.stderr) -> list[dict[str, Any]]:
    """The cases of the worker's stored conversations matching `flt` (the latest `limit`, oldest
    first); one that would not load against `spec` is left out, with the reason on `err`."""
    flt = flt.model_copy(update={"worker": spec.name})
    async with open_engine(spec, settings) as engine:
        total = await engine.store.count_conversations(flt)
        skip = max(0, total - limit) if limit is not None else 0
        cases: list[dict[str, Any]] = []
        n = 0
        async for conv, events in engine.store.iter_conversations(flt):
            n += 1
            if n <= skip:
                continue
            case = await case_for(engine, conv, events, err)
            if case is None:
                continue
            problems = problems_of(spec, case)
            if problems:
                err.write(f"left out {conv.id} (spec version {conv.spec_version or conv.spec_hash or 'unknown'}): "
                          f"{'; '.join(problems)}\n")
                continue
            cases.append(case)
        return cases


def render(cases: list[dict[str, Any]], worker: str, spec: WorkerSpec, flt: ExportFilter) -> str:
    used = {k: str(v) for k, v in flt.model_dump(exclude_none=True).items() if k != "worker"}
    header = [
        f"# Made by `channel-worker test --from-transcripts` from {len(cases)} stored conversation(s) of {spec.name}",
        f"# (filters: {', '.join(f'{k}={v}' for k, v in used.items()) or 'none'}). Expected values are what the "
        "worker stored,",
        "# or a reviewer's correction where one labelled the value wrong: such a case fails until the spec is fixed.",
    ]
    body = yaml.safe_dump({"worker": worker, "cases": cases}, sort_keys=False, allow_unicode=True, width=100)
    return "\n".join(header) + "\n" + body


def run(worker: Path | None, output: Path | None, flt: ExportFilter, limit: int | None,
        settings: Settings | None = None, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Write the test file (to `output`, else `out`); returns the exit code (0 written, 2 invalid)."""
    if worker is None:
        err.write("error: --from-transcripts needs --worker SPEC (the spec the conversations are replayed against)\n")
        return INVALID
    try:
        spec = load_spec(worker)
    except SpecError as exc:
        err.write("".join(f"error {p}\n" for p in exc.problems))
        return INVALID
    cases = asyncio.run(collect(spec, settings or Settings.from_env(), flt, limit, err))
    if not cases:
        err.write(f"error: no stored conversation of {spec.name} matches (a test file needs at least one case)\n")
        return INVALID
    # Relative to the file written (as `worker:` is read), or as given when printed.
    where = os.path.relpath(worker.resolve(), output.resolve().parent) if output is not None else str(worker)
    # What is written loads: the same model and names check `channel-worker test` applies.
    TestFile.model_validate({"worker": where, "cases": cases}, context={"spec": spec})
    text = render(cases, where, spec, flt)
    if output is None:
        out.write(text)
    else:
        output.write_text(text, encoding="utf-8")
        err.write(f"wrote {len(cases)} case(s) to {output}\n")
    return WRITTEN
