"""The console channel through its real CLI, as a person or a script runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

NOW = "2026-11-23T09:00:00+00:00"  # a Monday


def chat(tmp_path: Path, worker: str, lines: list[str], *extra: str, env: dict[str, str] | None = None,
         stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "script.txt"
    script.write_text("\n".join(lines) + "\n")
    args = [sys.executable, "-m", "worker.cli", "chat", "--worker", f"tests/data/specs/{worker}.yaml", "--now", NOW, *extra]
    if stdin is None:
        args += ["--script", str(script)]
    full_env = {**os.environ, "CHANNEL_WORKER_VAR": str(tmp_path / "var"), **(env or {})}
    full_env.pop("DATABASE_URL", None) if not env or "DATABASE_URL" not in env else None
    return subprocess.run(args, capture_output=True, text=True, cwd=ROOT, env=full_env, input=stdin, timeout=120)


def test_scripted_booking_prints_one_json_report(tmp_path: Path) -> None:
    result = chat(tmp_path, "restaurant_booking",
                  ["hi", "table for 4 tomorrow at 7pm", "no, make it 5", "Maria", "Lopez", "yes"], "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["outcome"] == "completed"
    assert report["escalation"] is None
    assert {k: v["value"] for k, v in report["fields"].items()} == {
        "date": "2026-11-24", "time": "19:00", "people": 5, "first_name": "Maria", "last_name": "Lopez",
    }
    people = report["fields"]["people"]
    assert people == {"value": 5, "text": "5", "turn": 3, "confidence": people["confidence"]}
    assert 0 < people["confidence"] <= 1
    assert report["fields"]["date"]["text"] == "tomorrow"
    roles = [t["role"] for t in report["turns"]]
    assert roles[0] == "worker" and roles.count("user") == 6
    assert report["conversation_id"].startswith("console-")


def test_account_support_escalates_end_to_end(tmp_path: Path) -> None:
    result = chat(tmp_path, "account_support", ["hello", "I need to talk to a human"], "--json")
    report = json.loads(result.stdout)
    assert report["outcome"] == "escalated"
    assert report["escalation"] == {"rule": "asks_for_human", "reason": "You asked to speak with a person."}


def test_readable_transcript_without_json(tmp_path: Path) -> None:
    result = chat(tmp_path, "restaurant_booking", ["table for 2 tomorrow at 8pm", "Ana Silva", "yes"])
    assert result.returncode == 0, result.stderr
    assert "Sam: Hi, this is Sam" in result.stdout
    assert "you: Ana Silva" in result.stdout
    assert "completed" in result.stdout


def test_piped_stdin_is_read_as_the_script(tmp_path: Path) -> None:
    result = chat(tmp_path, "restaurant_booking", [], stdin="table for 2 tomorrow at 8pm\nAna Silva\nyes\n")
    assert result.returncode == 0, result.stderr
    assert "You're booked, Ana" in result.stdout


def test_a_conversation_continues_in_a_new_process(tmp_path: Path) -> None:
    first = chat(tmp_path, "restaurant_booking", ["table for 2 tomorrow at 8pm"], "--json", "--conversation-id", "c-42")
    assert json.loads(first.stdout)["outcome"] is None
    second = chat(tmp_path, "restaurant_booking", ["Ana Silva", "yes"], "--json", "--conversation-id", "c-42")
    report = json.loads(second.stdout)
    assert report["outcome"] == "completed"
    assert report["fields"]["people"]["value"] == 2 and report["fields"]["people"]["turn"] == 1


def test_runs_on_postgres_when_database_url_is_set(tmp_path: Path, postgres_url: str) -> None:
    result = chat(tmp_path, "restaurant_booking", ["table for 2 tomorrow at 8pm", "Ana Silva", "yes"], "--json",
                  env={"DATABASE_URL": postgres_url})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["outcome"] == "completed"
    assert not (tmp_path / "var").exists()


def test_an_unreachable_database_is_a_clear_error(tmp_path: Path) -> None:
    result = chat(tmp_path, "restaurant_booking", ["hi"], env={"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"})
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "database" in result.stderr.lower()
