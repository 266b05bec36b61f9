"""`channel-worker`: check specs, chat in the terminal, export transcripts."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dialogue.spec import WorkerSpec
from dialogue.spec_loader import SpecError, load_spec, spec_json_schema

app = typer.Typer(
    help="channel-worker: an AI worker that answers people by phone, SMS and email, following a worker spec.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
spec_app = typer.Typer(help="Check worker specs, compare two versions and print their JSON Schema.", no_args_is_help=True)
app.add_typer(spec_app, name="spec")
queue_app = typer.Typer(help="The human queue: conversations handed over by a rule, waiting for a person.", no_args_is_help=True)
app.add_typer(queue_app, name="queue")
users_app = typer.Typer(help="Operators: who may use the queue, metrics and status over HTTP (HTTP Basic).", no_args_is_help=True)
app.add_typer(users_app, name="users")
tokens_app = typer.Typer(help="API tokens for programs using the operator routes (Authorization: Bearer).", no_args_is_help=True)
app.add_typer(tokens_app, name="tokens")

err = Console(stderr=True)
out = Console()


def _load(path: Path) -> WorkerSpec:
    try:
        return load_spec(path)
    except SpecError as exc:
        for problem in exc.problems:
            err.print(f"[red]error[/red] {escape(str(problem))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def _parse_time(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        err.print(f"[red]error[/red] {option} {value!r} is not an ISO-8601 time such as 2026-11-22T18:30:00+00:00")
        raise typer.Exit(2) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _run_sync(work):  # noqa: ANN001, ANN202
    """`work()` with the database errors reported as `_run` reports them."""
    from storage.db import DatabaseUnavailable

    try:
        return work()
    except DatabaseUnavailable as exc:
        err.print(f"[red]error[/red] database unavailable: {escape(str(exc))}")
        raise typer.Exit(1) from None


def _run(coro):  # noqa: ANN001, ANN202
    from storage.db import DatabaseUnavailable

    try:
        return asyncio.run(coro)
    except DatabaseUnavailable as exc:
        err.print(f"[red]error[/red] database unavailable: {escape(str(exc))}")
        raise typer.Exit(1) from None
    except OSError as exc:
        err.print(f"[red]error[/red] cannot reach the database: {exc}")
        raise typer.Exit(1) from None


@spec_app.command("check")
def spec_check(file: Annotated[Path, typer.Argument(help="Worker spec YAML file.")]) -> None:
    """Validate a worker spec; every problem is shown as FILE:LINE: field.path: what is wrong."""
    spec = _load(file)
    out.print(
        f"[green]ok[/green] {file}: worker [bold]{spec.name}[/bold], {len(spec.fields)} fields, "
        f"{len(spec.escalation.rules)} escalation rules"
    )


@spec_app.command("diff")
def spec_diff(
    a: Annotated[Path, typer.Argument(metavar="A", help="The worker spec as it is (YAML).")],
    b: Annotated[Path, typer.Argument(metavar="B", help="The worker spec as it would be (YAML).")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object: both versions and hashes, and the changes.")] = False,
) -> None:
    """List the behaviour changes from A to B: settings, fields, tasks and steps, escalation rules,
    script lines, actions, knowledge entries, outcomes and deliveries. The validated specs are
    compared, so formatting and comments do not count. Exit code 0: same behaviour; 1: changes;
    2: a file is invalid (every problem as FILE:LINE: field.path: what is wrong)."""
    from dialogue.spec_diff import diff_specs, json_report, text_report

    specs, problems = [], []
    for path in (a, b):
        try:
            specs.append(load_spec(path))
        except SpecError as exc:
            problems += exc.problems
    for problem in problems:
        err.print(f"[red]error[/red] {escape(str(problem))}", highlight=False, soft_wrap=True)
    if problems:
        raise typer.Exit(2)
    found = diff_specs(*specs)
    if as_json:
        sys.stdout.write(json.dumps(json_report(found, str(a), str(b)), indent=2, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(text_report(found, str(a), str(b)))
    raise typer.Exit(0 if found.identical else 1)


@spec_app.command("schema")
def spec_schema() -> None:
    """Print the JSON Schema of worker specs (point your editor's YAML support at it)."""
    sys.stdout.write(spec_json_schema() + "\n")


@app.command("test")
def test_command(
    files: Annotated[Optional[list[Path]], typer.Argument(help="Conversation test files (YAML); see docs/testing.md.", show_default=False)] = None,
    worker: Annotated[Optional[Path], typer.Option("--worker", "-w", help="Run against this worker spec instead of each file's `worker:`.")] = None,
    from_transcripts: Annotated[bool, typer.Option("--from-transcripts", help="Write a test file from stored conversations of --worker (filters below) instead of running tests.")] = False,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="With --from-transcripts: write to FILE instead of standard output.")] = None,
    since: Annotated[Optional[str], typer.Option(help="With --from-transcripts: conversations started at or after this ISO-8601 time.")] = None,
    until: Annotated[Optional[str], typer.Option(help="With --from-transcripts: conversations started before this ISO-8601 time.")] = None,
    outcome: Annotated[Optional[str], typer.Option(help="With --from-transcripts: conversations with this outcome.")] = None,
    channel: Annotated[Optional[str], typer.Option(help="With --from-transcripts: conversations on this channel.")] = None,
    spec_version: Annotated[Optional[str], typer.Option("--spec-version", help="With --from-transcripts: conversations started on this spec version (label or content hash).")] = None,
    limit: Annotated[Optional[int], typer.Option(min=1, help="With --from-transcripts: at most the latest N conversations.")] = None,
    junit: Annotated[Optional[Path], typer.Option("--junit", help="Also write the results as JUnit XML to FILE (for CI).")] = None,
    show_coverage: Annotated[bool, typer.Option("--coverage", help="List the tasks, steps, branches, fields, rules, knowledge entries and script lines no case exercised.")] = False,
    schema: Annotated[bool, typer.Option("--schema", help="Print the test file format's JSON Schema and exit.")] = False,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="Cases run at once.")] = 4,
    vary: Annotated[int, typer.Option("--vary", min=0, help="Also run N variants of each line (values said other ways, typing slips, speech as recognised) and report those that fail.")] = 0,
) -> None:
    """Run conversation tests: each case talks to the worker on its channel (console, sms, email, voice) with a
    fresh store, its own clock and stubbed actions, and checks what you expect after each line.

    Exit code 0: every case passed; 1: a case failed (expected against got and the transcript are
    printed); 2: a file is invalid (file, line and reason)."""
    from worker.conversation_tests import command

    if schema:
        raise typer.Exit(command.print_schema())
    if from_transcripts:
        from transcripts.store import ExportFilter
        from worker.conversation_tests import from_transcripts as generate

        flt = ExportFilter(since=_parse_time(since, "--since"), until=_parse_time(until, "--until"), outcome=outcome,
                           channel=channel, spec_version=spec_version)
        raise typer.Exit(_run_sync(lambda: generate.run(worker, output, flt, limit)))
    raise typer.Exit(command.run(list(files or []), worker, junit, show_coverage, jobs, vary=vary))


@app.command()
def chat(
    worker: Annotated[Path, typer.Option("--worker", "-w", help="Worker spec YAML file.")],
    script: Annotated[Optional[Path], typer.Option(help="Read the person's lines from FILE, one per line, instead of the terminal.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object at the end: outcome, fields, escalation, turns.")] = False,
    conversation_id: Annotated[Optional[str], typer.Option(help="Continue (or start) this conversation id.")] = None,
    now: Annotated[Optional[str], typer.Option(help="Pretend the conversation starts at this ISO-8601 time (relative dates use it).")] = None,
) -> None:
    """Talk to a worker in the terminal (type 'quit' or Ctrl-D to leave)."""
    from worker.config import Settings

    spec = _load(worker)
    start = _parse_time(now, "--now")
    lines = None
    if script is not None:
        try:
            lines = script.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            err.print(f"[red]error[/red] cannot read script {script}: {exc.strerror}")
            raise typer.Exit(2) from None
    interactive = script is None
    if interactive and not sys.stdin.isatty() and not json_out:
        lines = sys.stdin.read().splitlines()
        interactive = False
    speaker = spec.persona.split(",")[0]

    def worker_says(text: str) -> None:
        if not json_out:
            out.print(f"[bold cyan]{speaker}:[/bold cyan] {text}", highlight=False)

    def user_says(text: str) -> None:
        if not json_out:
            out.print(f"[bold]you:[/bold] {text}", highlight=False)

    def read_line() -> str:
        line = input("you: ")
        if line.strip().lower() in ("quit", "exit", ":q"):
            raise EOFError
        return line

    async def main():  # noqa: ANN202
        async with open_engine(spec, Settings.from_env()) as engine:
            report = await run_chat(
                engine, lines, conversation_id, start, on_worker=worker_says,
                on_user=None if interactive else user_says, read_line=read_line,
            )
            # One delivery pass for team notifications; what fails is retried by `serve`.
            notifier = engine.handoffs.notifier
            await notifier.deliver_due()
            waiting = await _deliver_outcomes_once(engine, report.conversation_id)
            return report, await notifier.pending_count(), await _task_and_calls(engine, report.conversation_id), waiting

    if interactive and not json_out:
        out.print(f"[dim]Talking to {spec.name} ({Settings.from_env().describe()}). Type 'quit' to leave.[/dim]")
    # Imported here, after the banner: LangGraph takes a couple of seconds to import.
    from channels.console.chat import run_chat
    from worker.runtime import open_engine

    report, pending, flow, waiting = _run(main())
    if pending:
        err.print(f"[yellow]{pending} team notification(s) not delivered yet; `channel-worker serve` retries them[/yellow]")
    for delivery in waiting:
        err.print(f"[yellow]outcome delivery {escape(delivery.target)} not delivered yet ({escape(delivery.last_error or '')}); "
                  f"`channel-worker serve` retries it[/yellow]", highlight=False, soft_wrap=True)
    if json_out:
        sys.stdout.write(json.dumps({**report.model_dump(mode="json"), **flow}, indent=2, ensure_ascii=False) + "\n")
        return
    table = Table(title=f"conversation {report.conversation_id}: {report.outcome or 'in progress'}")
    for col in ("field", "value", "from the words", "turn", "confidence"):
        table.add_column(col)
    for name, f in report.fields.items():
        table.add_row(name, str(f["value"]), f["text"], str(f["turn"]), f"{f['confidence']:.2f}")
    out.print(table)
    if report.escalation:
        out.print(f"[yellow]escalated[/yellow] by rule {report.escalation['rule']}: {report.escalation['reason']}")


async def _deliver_outcomes_once(engine, conversation_id: str) -> list[Any]:  # noqa: ANN001
    """One pass of the outcome outbox (on_outcome:), so a console conversation's record reaches
    the business at once; returns this conversation's deliveries still waiting."""
    from actions.deliveries import OutcomeDeliverer, deliveries

    deliverer = OutcomeDeliverer(engine.store.db)
    try:
        await deliverer.deliver_due()
    finally:
        await deliverer.aclose()
    return [d for d in await deliveries(engine.store.db, conversation_id) if d.status == "pending"]


async def _task_and_calls(engine, conversation_id: str) -> dict[str, Any]:  # noqa: ANN001
    """For `chat --json`: the last active task (null for a worker without tasks) and every action
    the conversation called, oldest first (a failed call shows its error)."""
    from actions.client import stored_results

    snapshot = await engine.snapshot(conversation_id)
    rows = await stored_results(engine.store.db, conversation_id)
    calls = [{"name": r["action"], "step": r["step_id"], "status": r["status"], "http_status": r["http_status"],
              "result": r["response"], "error": r["error"]} for r in rows]
    return {"task": snapshot.task if snapshot is not None else None, "calls": calls}


@app.command()
def extract(
    worker: Annotated[Path, typer.Option("--worker", "-w", help="Worker spec YAML file: its fields are what is extracted.")],
    text: Annotated[Optional[str], typer.Option(help="Extract from this text and print one JSON object.")] = None,
    requested: Annotated[Optional[list[str]], typer.Option("--requested", "-r", help="The field just asked for (repeatable).")] = None,
    now: Annotated[Optional[str], typer.Option(help="When the text was sent (ISO-8601); relative dates resolve against it. Default: now.")] = None,
    jsonl: Annotated[bool, typer.Option("--jsonl", help='Read JSON lines {"text", "requested": [...], "now"} from stdin, write one result line each.')] = False,
) -> None:
    """Extract field values from text, each with the span it came from and a confidence; for a
    worker with tasks, also the task the text starts (`"task": {"name", "confidence"}` or null)."""
    from dialogue.flow_runner import FlowServices
    from worker.extract_io import ExtractRequest, run_jsonl, run_one
    from worker.extraction_setup import build_extractor

    spec = _load(worker)
    if (text is None) == (not jsonl):
        err.print("[red]error[/red] give either --text TEXT or --jsonl (with JSON lines on stdin)")
        raise typer.Exit(2)
    names = {f.name for f in spec.fields}
    unknown = [r for r in requested or [] if r not in names]
    if unknown:
        err.print(f"[red]error[/red] --requested {unknown[0]!r} is not a field of {spec.name}; fields: {', '.join(sorted(names))}")
        raise typer.Exit(2)
    extractor = build_extractor(spec)
    # A spec with tasks: each line also says which task its text starts (the engine's own router).
    router = FlowServices.for_spec(spec, None).tasks if spec.tasks else None
    if jsonl:
        failures = run_jsonl(extractor, spec, sys.stdin, sys.stdout, err, router)
        raise typer.Exit(1 if failures else 0)
    request = ExtractRequest(text=text or "", requested=requested or [], now=_parse_time(now, "--now"))
    sys.stdout.write(json.dumps(run_one(extractor, spec, request, router), ensure_ascii=False) + "\n")


@app.command()
def transcribe(
    file: Annotated[Path, typer.Argument(help="A WAV file (16-bit PCM, any rate, mono or stereo).")],
    telephone: Annotated[bool, typer.Option("--telephone", help="Hear it as a caller would be heard: through 8 kHz G.711 mu-law, as on a call.")] = False,
    worker: Annotated[Optional[Path], typer.Option("--worker", "-w", help="Worker spec YAML; with --field, read that field from what was heard.")] = None,
    field: Annotated[Optional[str], typer.Option(help="The field to read (the one the worker just asked for).")] = None,
) -> None:
    """Print what the speech recogniser heard in FILE, through the same audio path as a call with --telephone. With --worker and --field, print one JSON object {"text", "field", "value", "confidence"} instead: tune models and prompts with it."""
    from channels.voice.audio import AudioError, for_recogniser, read_wav
    from channels.voice.audio import telephone as through_telephone

    if (worker is None) != (field is None):
        err.print("[red]error[/red] give --worker and --field together", highlight=False, soft_wrap=True)
        raise typer.Exit(2)
    spec = _load(worker) if worker else None
    if spec is not None and field not in {f.name for f in spec.fields}:
        err.print(f"[red]error[/red] --field {field!r} is not a field of {spec.name}; fields: {', '.join(f.name for f in spec.fields)}", highlight=False, soft_wrap=True)
        raise typer.Exit(2)
    try:
        samples, rate = read_wav(file)
    except FileNotFoundError:
        err.print(f"[red]error[/red] {file}: no such file", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except AudioError as exc:
        err.print(f"[red]error[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    if telephone:
        samples, rate = through_telephone(samples, rate), 8000
    from channels.voice.recogniser import Recogniser

    from extraction.fields import FieldType

    target = next((f for f in spec.fields if f.name == field), None) if spec is not None else None
    with err.status("loading the speech model and listening..."):
        audio = for_recogniser(samples, rate)
        if target is not None and target.type is FieldType.digits:
            # As on a call when the worker has asked for this field: read digit by digit.
            heard = Recogniser().hear_digits_now(audio, (target.constraints.min_length or 1, target.constraints.max_length or 20))
        else:
            # As on a call: heard as the answer to the field's question (channels/voice/vocabulary.py).
            from channels.voice.vocabulary import expectation

            heard = Recogniser().hear_now(audio, expectation(target, target.prompt) if target is not None else None)
    if spec is None or target is None:
        sys.stdout.write(heard.text + "\n")
        return
    from channels.voice.digits import spoken_digits
    from worker.extract_io import ExtractRequest, run_one
    from worker.extraction_setup import build_extractor

    text = spoken_digits(heard.text) if target.type in (FieldType.digits, FieldType.phone) else heard.text
    found = run_one(build_extractor(spec), spec, ExtractRequest(text=text, requested=[field]))["fields"].get(field)
    result = {
        "text": heard.text, "field": field, "value": found["value"] if found else None,
        # How sure both steps are: the recogniser of its words, the extractor of its reading.
        "confidence": round(heard.confidence * found["confidence"], 3) if found else 0.0,
    }
    sys.stdout.write(json.dumps(result, ensure_ascii=False, default=str) + "\n")


def _warn_unknown_variables() -> None:
    """A misspelt variable (TWILIO_AUTH_TOKN) would otherwise be ignored without a word."""
    from worker.settings import unknown_variable_warnings

    for line in unknown_variable_warnings():
        err.print(f"[yellow]warning[/yellow] {escape(line)}", highlight=False, soft_wrap=True)


@app.command("config")
def config_command(
    worker: Annotated[Optional[Path], typer.Option("--worker", "-w", help="Worker spec YAML file: checked and named in the output (settings come from the environment alone).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array of {concern, name, value, source, secret, meaning} on stdout.")] = False,
) -> None:
    """Print every setting `serve` would use: environment variable, value (secrets as ***), source (env or default) and meaning.

    Unknown variables that look like ours (TWILIO_*, SMS_*, VOICE_*, WHISPER_*, IMAP_*, SMTP_*, EMAIL_*,
    LLM_*, RETENTION_*, OPERATOR_*, CHANNEL_WORKER_*) are warned about on stderr, with the closest known name.
    Every variable is described in docs/configuration.md.
    """
    from pydantic import ValidationError

    from worker.settings import WorkerSettings

    spec = _load(worker) if worker is not None else None
    _warn_unknown_variables()
    try:
        rows = WorkerSettings.from_env().describe()
    except ValidationError as exc:
        err.print(f"[red]error[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    if as_json:
        sys.stdout.write(json.dumps([row.model_dump() for row in rows], ensure_ascii=False) + "\n")
        return
    title = f"Settings of {spec.name}" if spec is not None else "Settings"
    table = Table(title=title)
    table.add_column("concern", no_wrap=True)
    table.add_column("variable", no_wrap=True)
    table.add_column("value", overflow="fold")
    table.add_column("source", no_wrap=True)
    table.add_column("meaning", overflow="fold")
    for row in rows:
        value = "[dim]unset[/dim]" if row.value is None else escape(row.value)
        source = row.source if row.source == "default" else f"[bold]{row.source}[/bold]"
        table.add_row(row.concern, row.name, value, source, escape(row.meaning))
    out.print(table)


@app.command()
def serve(
    worker: Annotated[Path, typer.Option("--worker", "-w", help="Worker spec YAML file.")],
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    workers: Annotated[int, typer.Option(min=1, help="Server processes sharing the port and the database (SQLite or PostgreSQL); about one per CPU core.")] = 1,
    candidate: Annotated[Optional[Path], typer.Option(help="A new version of the worker's spec (same name and channels), run for --share percent of new conversations; each conversation keeps the spec it started with.")] = None,
    share: Annotated[float, typer.Option(min=0, max=100, help="With --candidate: the percentage of new conversations the candidate takes.")] = 10.0,
) -> None:
    """Run the HTTP server (/healthz, /queue, /metrics) and every channel configured by environment variables (SMS: TWILIO_*; email: IMAP_*/SMTP_*); also delivers team notifications."""
    import logging

    import uvicorn

    from pydantic import ValidationError

    from worker.app import create_app
    from worker.settings import WorkerSettings, unknown_variable_warnings

    spec = _load(worker)
    trial = _load(candidate) if candidate is not None else None
    if trial is not None:
        from worker.rollout import CandidateRefused, check_candidate

        try:
            check_candidate(spec, trial)
        except CandidateRefused as exc:
            err.print(f"[red]error[/red] {escape(str(candidate))}: {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for line in unknown_variable_warnings():
        logging.getLogger("worker.settings").warning("%s", line)
    # uvloop and httptools: the fast event loop and HTTP parser (about a third more requests per second here).
    options: dict[str, Any] = dict(host=host, port=port, log_level=log_level, lifespan="on", loop="uvloop",
                                   http="httptools", access_log=False)
    # The client address (failure limits, logs) is the socket's peer. X-Forwarded-For and
    # X-Forwarded-Proto are believed only from the proxies FORWARDED_ALLOW_IPS names (uvicorn
    # would otherwise trust them from 127.0.0.1, letting any local caller pick its address).
    try:
        env = WorkerSettings.from_env()  # read once, handed to the app
    except ValidationError as exc:
        err.print(f"[red]error[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    trusted_proxies = env.http.forwarded_allow_ips.strip()
    options.update(proxy_headers=bool(trusted_proxies), forwarded_allow_ips=trusted_proxies or None)
    if workers == 1:
        uvicorn.run(create_app(spec, env.config(), env=env, candidate=trial, share=share), **options)
        return
    # Several processes: each builds its own app. Turns of one conversation taken by two
    # processes at once are settled by the checkpoint's one-child rule (storage/checkpoints.py);
    # messages by their channel's claims (SMS MessageSid, email Message-ID).
    from worker.asgi import CANDIDATE_ENV, SHARE_ENV, SPEC_ENV

    os.environ[SPEC_ENV] = str(worker.resolve())
    if candidate is not None:
        os.environ[CANDIDATE_ENV], os.environ[SHARE_ENV] = str(candidate.resolve()), str(share)
    uvicorn.run("worker.asgi:app_from_env", factory=True, workers=workers, **options)


def _queue_run(worker: Path, op):  # noqa: ANN001, ANN202
    from escalation.queue import QueueError
    from worker.config import Settings
    from worker.runtime import open_engine

    spec = _load(worker)

    async def main():  # noqa: ANN202
        async with open_engine(spec, Settings.from_env()) as engine:
            return await op(engine)

    try:
        return _run(main())
    except QueueError as exc:
        err.print(f"[red]error[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None


_WORKER_OPT = typer.Option("--worker", "-w", help="Worker spec YAML file.")


def _local_operator() -> str:
    """Who moved a handoff from the command line, for the audit trail: the local account."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry for this uid (some containers)
        return f"cli:uid-{os.getuid()}"


@queue_app.command("list")
def queue_list(
    worker: Annotated[Path, _WORKER_OPT],
    status: Annotated[Optional[str], typer.Option(help="open, claimed, resolved or released (default: open and claimed).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Handoffs waiting for a person."""
    spec_name = _load(worker).name

    async def op(engine):  # noqa: ANN001, ANN202
        items = await engine.handoffs.queue.list(status=status, worker=spec_name)
        return items if status else [h for h in items if h.status in ("open", "claimed")]

    items = _queue_run(worker, op)
    if json_out:
        sys.stdout.write(json.dumps([h.model_dump() for h in items], indent=2, default=str) + "\n")
        return
    table = Table(title=f"human queue: {spec_name}")
    for col in ("id", "status", "conversation", "channel", "rule", "reason", "claimed by", "since"):
        table.add_column(col)
    for h in items:
        table.add_row(str(h.id), h.status, h.conversation_id, h.channel, h.rule, h.reason, h.claimed_by or "", h.created_at[:19])
    out.print(table)


@queue_app.command("show")
def queue_show(
    worker: Annotated[Path, _WORKER_OPT],
    handoff_id: Annotated[int, typer.Argument(help="Handoff id from `queue list`.")],
) -> None:
    """The whole handoff packet: reason, fields with confidence, summary, transcript."""
    item = _queue_run(worker, lambda engine: engine.handoffs.queue.get(handoff_id))
    sys.stdout.write(json.dumps(item.model_dump(), indent=2, default=str) + "\n")


@queue_app.command("claim")
def queue_claim(
    worker: Annotated[Path, _WORKER_OPT],
    handoff_id: Annotated[int, typer.Argument(help="Handoff id.")],
    by: Annotated[Optional[str], typer.Option(help="Who takes it (default: your login name). The audit row "
                                                   "records the local account that ran the command either way.")] = None,
) -> None:
    """Take a handoff: it is yours until you resolve or release it."""
    actor = _local_operator()
    item = _queue_run(worker, lambda engine: engine.handoffs.claim(handoff_id, by or actor.removeprefix("cli:"), actor=actor))
    out.print(f"handoff {item.id} claimed by {item.claimed_by}")


@queue_app.command("resolve")
def queue_resolve(
    worker: Annotated[Path, _WORKER_OPT],
    handoff_id: Annotated[int, typer.Argument(help="Handoff id.")],
    note: Annotated[Optional[str], typer.Option(help="What was done.")] = None,
) -> None:
    """Mark a handoff done; the worker stays out of the conversation."""
    item = _queue_run(worker, lambda engine: engine.handoffs.resolve(handoff_id, note, by=_local_operator()))
    out.print(f"handoff {item.id} resolved")


@queue_app.command("release")
def queue_release(
    worker: Annotated[Path, _WORKER_OPT],
    handoff_id: Annotated[int, typer.Argument(help="Handoff id.")],
    note: Annotated[Optional[str], typer.Option(help="Why it goes back.")] = None,
) -> None:
    """Give the conversation back to the worker: it answers the person's next message again."""
    item = _queue_run(worker, lambda engine: engine.handoffs.release(handoff_id, engine, note, by=_local_operator()))
    out.print(f"handoff {item.id} released; conversation {item.conversation_id} is back with the worker")


@app.command()
def status(worker: Annotated[Path, _WORKER_OPT]) -> None:
    """Rolling escalation rate, mean field confidence and labelled accuracy, with any drift alarm, the email and
    SMS messages per state with the latest that failed or were given up and why, the outcome
    deliveries waiting and delivered with the latest failures, and per spec version the
    conversations, completion and escalation rates and mean confidence (JSON)."""
    from actions.deliveries import delivery_report
    from channels.email.report import email_report
    from escalation.drift import by_spec_version, drift_status

    spec = _load(worker)

    async def op(engine):  # noqa: ANN001, ANN202
        from channels.sms.store import SmsStore

        sms = await SmsStore(engine.store.db).failures()
        return (await drift_status(engine.store, spec.name, spec.escalation.drift), await email_report(engine.store.db),
                sms, await delivery_report(engine.store.db), by_spec_version(await engine.store.by_spec(spec.name)))

    result, email, (sms_states, sms_failures), deliveries, versions = _queue_run(worker, op)
    sms = {"by_state": sms_states, "gave_up": sms_states.get("gave_up", 0),
           "latest_failures": [{**r, "updated_at": str(r["updated_at"])} for r in sms_failures]}
    sys.stdout.write(json.dumps({**result.model_dump(mode="json"), "email": email.model_dump(mode="json"), "sms": sms,
                                 "deliveries": deliveries.model_dump(mode="json"),
                                 "by_spec_version": [v.model_dump(mode="json") for v in versions]}, indent=2) + "\n")
    if deliveries.latest_failures:
        failing = deliveries.latest_failures[0]
        err.print(f"[yellow]deliveries[/yellow] {deliveries.pending} outcome delivery(ies) waiting; latest failure "
                  f"({escape(failing.target)}): {escape(failing.last_error or '')}", highlight=False, soft_wrap=True)
    if sms["gave_up"]:
        err.print(f"[yellow]sms[/yellow] {sms['gave_up']} message(s) given up after repeated failures; latest: "
                  f"{escape(sms_failures[0]['failure'] or '')}", highlight=False, soft_wrap=True)
    if email.failed:
        err.print(f"[yellow]email[/yellow] {email.failed} message(s) could not be processed; latest: "
                  f"{escape(email.latest_failures[0].reason or '')}", highlight=False, soft_wrap=True)
    if result.alarms:
        for alarm in result.alarms:
            err.print(f"[yellow]drift alarm[/yellow] {alarm}")
        raise typer.Exit(3)


class Format(str, Enum):
    jsonl = "jsonl"
    csv = "csv"


@app.command("export")
def export_cmd(
    format: Annotated[Format, typer.Option("--format", "-f", help="jsonl: one conversation per line with its turns; csv: one row per event.")] = Format.jsonl,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write to FILE instead of standard output.")] = None,
    since: Annotated[Optional[str], typer.Option(help="Only conversations started at or after this ISO-8601 time.")] = None,
    until: Annotated[Optional[str], typer.Option(help="Only conversations started before this ISO-8601 time.")] = None,
    outcome: Annotated[Optional[str], typer.Option(help="Only conversations with this outcome (completed, escalated, abandoned...).")] = None,
    channel: Annotated[Optional[str], typer.Option(help="Only conversations on this channel (console, sms, email, voice).")] = None,
    worker: Annotated[Optional[str], typer.Option(help="Only conversations of this worker name.")] = None,
    spec_version: Annotated[Optional[str], typer.Option("--spec-version", help="Only conversations started on this spec version: its `version:` label, or its content hash (a prefix of 6+ characters will do).")] = None,
    redact: Annotated[bool, typer.Option("--redact", help="Mask phone numbers, emails, card and account numbers and names (in texts, fields, metadata, audit) as \\[phone], \\[email], \\[card], \\[number], \\[name]; ids that carry them become pseudonyms.")] = False,
    labels: Annotated[bool, typer.Option("--labels", help="Instead of conversations: the review console's labels (the latest per value), one labelled user turn per line in the benchmarks' span format (userInput.text, labels[].slot, value, valueSpan).")] = False,
) -> None:
    """Export stored conversations, with a progress bar on large exports. CSV cells that a spreadsheet would run as a formula (= + - @ tab CR) are written with a leading single quote."""
    if labels:
        _export_labels(output)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from transcripts.export import export
    from extraction.redact import Redactor
    from transcripts.store import ExportFilter, TranscriptStore
    from worker.config import Settings

    flt = ExportFilter(
        since=_parse_time(since, "--since"), until=_parse_time(until, "--until"),
        outcome=outcome, channel=channel, worker=worker, spec_version=spec_version,
    )
    settings = Settings.from_env()

    async def main() -> int:
        store = await TranscriptStore.open(settings.transcripts_url)
        try:
            total = await store.count_conversations(flt)
            sink = open(output, "w", encoding="utf-8", newline="") if output else sys.stdout
            try:
                with Progress(
                    TextColumn("exporting"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=err, transient=True, disable=total < 200 or not err.is_terminal,
                ) as bar:
                    task = bar.add_task("export", total=total)
                    return await export(store, sink, format.value, flt, progress=lambda n: bar.advance(task, n),
                                        redactor=Redactor() if redact else None)
            finally:
                if output:
                    sink.close()
        finally:
            await store.close()

    n = _run(main())
    if output:
        err.print(f"[green]wrote[/green] {n} conversations to {output}")


def _export_labels(output: Optional[Path]) -> None:
    """`export --labels`: transcripts/labels.py's dataset as JSON lines."""
    import json

    from transcripts.labels import LabelStore
    from transcripts.store import TranscriptStore
    from worker.config import Settings

    async def main() -> list[dict[str, Any]]:
        store = await TranscriptStore.open(Settings.from_env().transcripts_url)
        try:
            return await LabelStore(store).dataset()
        finally:
            await store.close()

    records = _run(main())
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    if output:
        output.write_text(text, encoding="utf-8")
        err.print(f"[green]wrote[/green] {len(records)} labelled turns to {output}")
    else:
        sys.stdout.write(text)


class ReportFormat(str, Enum):
    html = "html"
    json = "json"


@app.command("report")
def report_cmd(
    since: Annotated[str, typer.Option(help="From this ISO-8601 date or time (conversations started at or after it; UTC when no offset is given).")],
    until: Annotated[Optional[str], typer.Option(help="Up to this ISO-8601 date or time (started before it). Default: now.")] = None,
    worker: Annotated[Optional[str], typer.Option(help="Only this worker: its name, or its spec YAML file (then the drift alarm's labelled-accuracy threshold is the spec's).")] = None,
    format: Annotated[ReportFormat, typer.Option("--format", "-f", help="html: one self-contained page (inline CSS and SVG charts, no link, no script); json: the same numbers.")] = ReportFormat.html,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write to FILE instead of standard output.")] = None,
) -> None:
    """The review console's KPIs offline, for a period: completion, success (confirmed), escalation overall and by
    rule, abandonment, mean handle time, re-asks per field, fallbacks, the confidence distribution, labelled
    accuracy (with the drift window when one worker is asked for), voice latency percentiles, and all of them
    by channel, worker, task, spec version and day. Rates are shares of the ended conversations. Reads the
    database `serve` writes (DATABASE_URL, or the SQLite files under CHANNEL_WORKER_VAR), as `export` does.

    Example: channel-worker report --since 2026-11-01 --until 2026-12-01 --format html -o november.html"""
    from worker.config import Settings
    from worker.report import build, render_html, render_json, worker_and_band, write

    name, band = worker_and_band(worker)
    k, drift = _run(build(Settings.from_env().transcripts_url, _parse_time(since, "--since"),
                          _parse_time(until, "--until"), name, band))
    write(render_html(k, drift, band) if format is ReportFormat.html else render_json(k, drift), output)
    if output:
        err.print(f"[green]wrote[/green] the {format.value} report of {k.total.conversations} conversations to {output}")


@app.command()
def review(
    worker: Annotated[Path, typer.Option("--worker", "-w", help="Worker spec YAML file (its name marks the audit rows).")],
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8090,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Run the review console alone (pages under /review, log in with `users add` operators) against the worker's database; no channel runs."""
    import uvicorn

    from worker.review import create_review_app
    from worker.settings import WorkerSettings

    spec = _load(worker)
    env = WorkerSettings.from_env()
    trusted = env.http.forwarded_allow_ips.strip()
    app_ = create_review_app(env.config().transcripts_url, spec.name,
                             secure_cookies=env.twilio.public_base_url.lower().startswith("https://"),
                             session_hours=env.http.review_session_hours, max_request_bytes=env.http.max_request_bytes,
                             drift=spec.escalation.drift,
                             # Replies by email go to the email outbox; `serve`'s sender loop sends them.
                             email_from=email.smtp.sender if (email := env.email_settings()) and spec.channels.email.enabled
                             else None)
    out.print(f"review console: http://{host}:{port}/review/", highlight=False)
    uvicorn.run(app_, host=host, port=port, log_level=log_level, access_log=False, proxy_headers=bool(trusted),
                forwarded_allow_ips=trusted or None)


@app.command()
def purge(
    older_than_days: Annotated[int, typer.Option("--older-than-days", min=1, help="Purge conversations with no activity (no event, no handoff change) for this many days.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count what would be purged; delete nothing.")] = False,
    worker: Annotated[Optional[str], typer.Option(help="Only conversations of this worker name (channel rows of no conversation are then kept).")] = None,
) -> None:
    """Delete old conversations for good: their events, state, SMS and email messages and outbox rows, handoffs,
    notifications and audit entries. Counts per day, worker, channel and outcome are kept (table retention_purged)
    so totals still add up. Prints a JSON report. `serve` does the same every hour when RETENTION_DAYS is set."""
    from transcripts.retention import purge as run_purge
    from transcripts.store import TranscriptStore
    from worker.config import Settings

    settings = Settings.from_env()

    async def main():  # noqa: ANN202
        store = await TranscriptStore.open(settings.transcripts_url)
        try:
            return await run_purge(store.db, older_than_days, worker=worker, dry_run=dry_run)
        finally:
            await store.close()

    report = _run(main())
    sys.stdout.write(report.model_dump_json(indent=2) + "\n")
    rows = ", ".join(f"{n} {table}" for table, n in report.rows.items() if n and table != "conversations") or "no rows"
    verb = "would purge" if dry_run else "purged"
    err.print(f"{verb} {report.conversations} conversation(s) with no activity since "
              f"{report.cutoff.isoformat(timespec='seconds')} ({rows})", highlight=False)


class RoleName(str, Enum):
    viewer = "viewer"
    reviewer = "reviewer"
    admin = "admin"


def _operators_run(op):  # noqa: ANN001, ANN202
    """Run `op(OperatorStore)` on the configured database (migrated first)."""
    from escalation.operators import OperatorError, OperatorStore
    from transcripts.store import TranscriptStore
    from worker.config import Settings

    async def main():  # noqa: ANN202
        store = await TranscriptStore.open(Settings.from_env().transcripts_url)
        try:
            return await op(OperatorStore(store.db))
        finally:
            await store.close()

    try:
        return _run(main())
    except OperatorError as exc:
        err.print(f"[red]error[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


def _read_new_password() -> str:
    """Typed twice without echo at a terminal; one line when piped (so scripts never put it in argv)."""
    import getpass

    from worker.operator_auth import check_new_password

    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            err.print("[red]error[/red] the two passwords differ")
            raise typer.Exit(2)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    try:
        return check_new_password(password)
    except ValueError as exc:
        err.print(f"[red]error[/red] {exc}")
        raise typer.Exit(2) from None


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="User name (letters, digits, . _ @ -), as sent in HTTP Basic.")],
    role: Annotated[RoleName, typer.Option(help="viewer: queue list, metrics, status; reviewer: also packets, conversations, claim/resolve/release; admin: everything.")],
    replace: Annotated[bool, typer.Option("--replace", help="Set a new password and role for an existing user.")] = False,
) -> None:
    """Add an operator; the password is read from standard input (no echo at a terminal)."""
    from escalation.operators import check_name, OperatorError
    from worker.operator_auth import hash_password

    try:
        check_name(name, "user name")
    except OperatorError as exc:
        err.print(f"[red]error[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    hashed = hash_password(_read_new_password())
    async def add(store):  # noqa: ANN001, ANN202
        await store.add_user(name, role.value, hashed, replace=replace)
        if replace:  # a new password or role: the review console's open sessions of this user end
            from escalation.review_sessions import SessionStore

            await SessionStore(store.db).end_all(name)

    _operators_run(add)
    out.print(f"user {name} {'updated' if replace else 'added'} ({role.value})", highlight=False)


@users_app.command("list")
def users_list(json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False) -> None:
    """Operators and their roles (never their passwords)."""
    users = _operators_run(lambda store: store.users())
    if json_out:
        sys.stdout.write(json.dumps([u.model_dump() for u in users], indent=2) + "\n")
        return
    table = Table(title="operators")
    for col in ("name", "role", "since"):
        table.add_column(col)
    for u in users:
        table.add_row(u.name, u.role, u.created_at[:19])
    out.print(table)


@users_app.command("remove")
def users_remove(name: Annotated[str, typer.Argument(help="User name.")]) -> None:
    """Remove an operator: their password stops working at once."""
    _operators_run(lambda store: store.remove_user(name))
    out.print(f"user {name} removed", highlight=False)


@tokens_app.command("create")
def tokens_create(
    name: Annotated[str, typer.Argument(help="What the token is for (letters, digits, . _ @ -), e.g. grafana.")],
    role: Annotated[RoleName, typer.Option(help="viewer, reviewer or admin (as for users).")],
) -> None:
    """Create a token and print it once (only its hash is kept); send it as `Authorization: Bearer TOKEN`."""
    from worker.operator_auth import new_token

    token = new_token()
    _operators_run(lambda store: store.add_token(token.id, name, role.value, token.secret_hash))
    sys.stdout.write(token.token + "\n")
    err.print(f"token {name} ({role.value}) created; it is shown only now", highlight=False)


@tokens_app.command("list")
def tokens_list(json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False) -> None:
    """Tokens by name and role (the tokens themselves are not stored)."""
    tokens = _operators_run(lambda store: store.tokens())
    if json_out:
        sys.stdout.write(json.dumps([t.model_dump() for t in tokens], indent=2) + "\n")
        return
    table = Table(title="API tokens")
    for col in ("name", "role", "id", "since"):
        table.add_column(col)
    for t in tokens:
        table.add_row(t.name, t.role, t.id, t.created_at[:19])
    out.print(table)


@tokens_app.command("revoke")
def tokens_revoke(name: Annotated[str, typer.Argument(help="Token name.")]) -> None:
    """Revoke a token: it stops working at once."""
    _operators_run(lambda store: store.revoke_token(name))
    out.print(f"token {name} revoked", highlight=False)


if __name__ == "__main__":
    app()
