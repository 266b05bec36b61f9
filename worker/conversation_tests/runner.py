"""Run conversation test cases: in parallel (at most `jobs` at once), each with a fresh SQLite
store in its own temporary directory, its own clock starting at the case's `now` (a second per
turn, as `chat --now` does), its own stub server for the actions, and its channel."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from actions.client import stored_results
from channels.console.chat import Clock
from dialogue.engine import DialogueEngine
from worker.config import Settings
from worker.conversation_tests.channel import CaseChannel, Clock as ClockFn, NotSupported
from worker.conversation_tests.console import ConsoleChannel
from worker.conversation_tests.email import EmailCaseChannel
from worker.conversation_tests.expectations import Mismatch, Observed, check
from worker.conversation_tests.loader import LoadedFile
from worker.conversation_tests.model import Case
from worker.conversation_tests.sms import SmsChannel
from worker.conversation_tests.stubs import StubServer
from worker.runtime import open_engine
from worker.settings import WorkerSettings

if TYPE_CHECKING:  # the voice channel (speech models, pipecat) is imported only when a case needs it
    from worker.conversation_tests.voice import Speech

DEFAULT_JOBS = 4


class Line(BaseModel):
    role: str  # "person" | "worker"
    text: str
    heard: str | None = None  # person lines: what the worker took as the words, when not the line as written


class StepResult(BaseModel):
    number: int  # 1-based
    user: str
    reply: str | None
    heard: str | None = None  # see Line.heard
    mismatches: list[Mismatch] = Field(default_factory=list)


class Seen(BaseModel):
    """What one case exercised, for --coverage: the worker's state after every line."""

    tasks: set[str] = Field(default_factory=set)
    fields: set[str] = Field(default_factory=set)
    rules: set[str] = Field(default_factory=set)
    waits: set[str] = Field(default_factory=set)  # "task.0.1.2": steps the worker waited at
    call_steps: set[str] = Field(default_factory=set)  # "task.1": call steps that ran
    outcomes: set[str] = Field(default_factory=set)
    replies: list[str] = Field(default_factory=list)


class CaseResult(BaseModel):
    file: str
    name: str
    channel: str
    seconds: float
    steps: list[StepResult] = Field(default_factory=list)
    transcript: list[Line] = Field(default_factory=list)
    error: str | None = None
    seen: Seen = Field(default_factory=Seen)

    @property
    def passed(self) -> bool:
        return self.error is None and not any(s.mismatches for s in self.steps)


def open_channel(name: str, engine: DialogueEngine, clock: ClockFn, speech: Speech | None = None) -> CaseChannel:
    """The channel a case names (voice needs the run's `Speech`)."""
    if name == "console":
        return ConsoleChannel(engine, clock)
    if name == "sms":
        return SmsChannel(engine, clock)
    if name == "email":
        return EmailCaseChannel(engine, clock)
    if name == "voice":
        if speech is None:
            raise NotSupported("a voice case needs the speech models (run it through run_files or pass speech=)")
        if speech.problem:
            raise NotSupported(f"the speech models could not be loaded: {speech.problem}")
        from worker.conversation_tests.voice import VoiceCaseChannel

        return VoiceCaseChannel(engine, clock, speech)
    raise NotSupported(f"channel {name!r} is not supported by this runner")


@contextlib.asynccontextmanager
async def speech_for(cases: list[Case]) -> Any:
    """The speech models, loaded once, when some case is a voice case (else None)."""
    if not any(c.channel == "voice" for c in cases):
        yield None
        return
    from worker.conversation_tests.voice import Speech

    async with Speech() as speech:
        yield speech


async def run_files(files: list[LoadedFile], jobs: int = DEFAULT_JOBS) -> list[CaseResult]:
    """Every case of every file, in file order in the result, run `jobs` at a time."""
    [results] = await run_batches([[(f, c) for f in files for c in f.tests.cases]], jobs)
    return results


async def run_batches(batches: list[list[tuple[LoadedFile, Case]]], jobs: int = DEFAULT_JOBS) -> list[list[CaseResult]]:
    """Each batch of (file, case) in turn, its cases `jobs` at a time; the speech models, if a voice
    case needs them, are loaded once for all of them."""
    limit = asyncio.Semaphore(max(1, jobs))
    env = WorkerSettings.from_env()

    async with speech_for([c for batch in batches for _, c in batch]) as speech:

        async def bounded(loaded: LoadedFile, case: Case) -> CaseResult:
            async with limit:
                return await run_case(loaded, case, env, speech)

        return [list(await asyncio.gather(*(bounded(f, c) for f, c in batch))) for batch in batches]


async def run_case(loaded: LoadedFile, case: Case, env: WorkerSettings | None = None,
                   speech: Speech | None = None) -> CaseResult:
    started = time.perf_counter()
    result = CaseResult(file=str(loaded.path), name=case.name, channel=case.channel, seconds=0.0)
    stubs = StubServer(loaded.spec.actions, {**loaded.tests.stubs, **case.stubs})
    try:
        with tempfile.TemporaryDirectory(prefix="cw-test-") as tmp:
            if loaded.spec.actions:
                await stubs.start()
            try:
                async with open_engine(loaded.spec, Settings(var_dir=Path(tmp)), env=env or WorkerSettings.from_env(),
                                       action_env=stubs.env) as engine:
                    await _converse(engine, case, stubs, result, speech)
            finally:
                await stubs.close()
    except NotSupported as exc:
        result.error = str(exc)
    except Exception as exc:  # noqa: BLE001 - a case that crashes fails with the reason; the others run on
        result.error = f"the case could not run: {type(exc).__name__}: {exc}\n{traceback.format_exc(limit=6)}"
    problems = stubs.unroutable + stubs.problems
    if problems and result.error is None:
        result.error = "\n".join(problems)
    result.seconds = time.perf_counter() - started
    return result


async def _converse(engine: DialogueEngine, case: Case, stubs: StubServer, result: CaseResult,
                    speech: Speech | None = None) -> None:
    channel = open_channel(case.channel, engine, Clock(case.now), speech)
    try:
        greeting = await channel.start()
        if greeting.text:
            result.transcript.append(Line(role="worker", text=greeting.text))
            result.seen.replies.append(greeting.text)
        for number, step in enumerate(case.steps, start=1):
            before = len(stubs.calls)
            person = Line(role="person", text=step.user)
            result.transcript.append(person)
            reply = await channel.send(step.user)
            heard = reply.heard if reply.heard is not None and reply.heard.strip() != step.user.strip() else None
            person.heard = heard
            if reply.text:
                result.transcript.append(Line(role="worker", text=reply.text))
            observed = await observe(engine, channel.conversation_id, reply.text, merge_retries(stubs.calls[before:]),
                                     result.seen)
            result.steps.append(StepResult(number=number, user=step.user, reply=reply.text, heard=heard,
                                           mismatches=check(step.expect, observed) if step.expect else []))
        for row in await stored_results(engine.store.db, channel.conversation_id):
            result.seen.call_steps.add(row["step_id"].split("#", 1)[0])
    finally:
        await channel.close()


def merge_retries(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per call the worker made: its retries (the same Idempotency-Key) are one call."""
    out: list[dict[str, Any]] = []
    for call in calls:
        if call["name"] is None:
            continue
        if out and call.get("key") and out[-1].get("key") == call["key"]:
            out[-1] = {**call, "attempts": out[-1].get("attempts", 1) + 1}
            continue
        out.append({**call, "attempts": 1})
    return out


async def observe(engine: DialogueEngine, conversation_id: str, reply: str | None, calls: list[dict[str, Any]],
                  seen: Seen) -> Observed:
    """The conversation's state after a line, as expectations read it (and coverage records it)."""
    snapshot = await engine.graph.aget_state({"configurable": {"thread_id": conversation_id}})
    state: dict[str, Any] = dict(snapshot.values) if snapshot and snapshot.values else {}
    escalation = state.get("escalation") or None
    fields = dict(state.get("fields") or {})
    seen.fields |= set(fields)
    if state.get("task"):
        seen.tasks.add(state["task"])
        if state.get("phase") != "done" and state.get("pointer") is not None:
            seen.waits.add(f"{state['task']}." + ".".join(str(p) for p in state["pointer"]))
    seen.tasks |= {f["task"] for f in state.get("finished") or [] if f.get("task")}
    seen.rules |= set(state.get("fired") or []) | set(state.get("notified") or [])
    if escalation:
        seen.rules.add(escalation["rule"])
    if state.get("outcome"):
        seen.outcomes.add(state["outcome"])
    if reply:
        seen.replies.append(reply)
    return Observed(reply=reply, fields=fields, task=state.get("task"), outcome=state.get("outcome"),
                    escalation=escalation["rule"] if escalation else None,
                    notified=list(state.get("notified") or []), turns=int(state.get("turns") or 0), calls=calls)
