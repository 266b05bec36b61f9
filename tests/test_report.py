"""`channel-worker report`: the KPI page's figures offline, as JSON and as one self-contained HTML
file, from the hand-worked seed of tests/test_review_kpis.py, run as the command is run."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT
from tests.test_review_kpis import PII, TOTAL, seed_kpis


def _report(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": "/usr/bin:/bin"}
    env.pop("DATABASE_URL", None)
    if database_url.startswith("postgres"):
        env["DATABASE_URL"] = database_url
    else:
        env["CHANNEL_WORKER_VAR"] = str(Path(database_url).parent)
    return subprocess.run([sys.executable, "-m", "worker.cli", "report", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=180)


def test_json_holds_the_hand_worked_figures(database_url: str, tmp_path: Path) -> None:
    url = asyncio.run(seed_kpis(database_url))
    done = _report(url, "--since", "2026-11-01", "--until", "2026-12-01", "--format", "json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["total"] == TOTAL
    assert data["period"] == {"since": "2026-11-01T00:00:00+00:00", "until": "2026-12-01T00:00:00+00:00", "worker": None}
    assert data["outcomes"] == {"completed": 4, "escalated": 2, "open": 1, "abandoned": 1}
    assert data["escalations_by_rule"] == {"action:freeze_card": 1, "asks_for_human": 1}
    assert data["reasks_by_field"] == {"account_number": 2, "amount": 2, "people": 1}
    assert data["labelled_accuracy"]["accuracy"] == 0.7143 and data["labelled_accuracy"]["by_field"]["account_number"] == {
        "right": 2, "labelled": 4}
    assert data["lowest_confidence"]["0.9-1.0"] == 2 and sum(data["lowest_confidence"].values()) == 6
    tasks = {g["key"]: g["conversations"] for g in data["by"]["task"]}
    assert tasks == {"lost_card": 4, "dispute": 1, "change_address": 1, "book": 1, "": 1}
    sms = next(g for g in data["by"]["channel"] if g["key"] == "sms")
    assert (sms["completion_rate"], sms["success_rate"], sms["handle_seconds"]) == (0.6667, 0.3333, 140.0)
    assert [g["key"] for g in data["by"]["day"]] == ["2026-11-02", "2026-11-03"]
    assert "drift" not in data  # one worker only
    # A period that holds the first day only, one worker, to a file.
    out = tmp_path / "day.json"
    done = _report(url, "--since", "2026-11-02", "--until", "2026-11-03", "--worker", "account_support",
                   "--format", "json", "--output", str(out))
    assert done.returncode == 0 and "wrote the json report of 3 conversations" in done.stderr
    day = json.loads(out.read_text())
    # sms1, sms2, email3: 2 completed, 1 escalated; labels sms1 right, sms2 wrong, amount right -> 2 of 3.
    assert (day["total"]["conversations"], day["total"]["completed"], day["total"]["escalated"]) == (3, 2, 1)
    assert (day["labelled_accuracy"]["labelled"], day["labelled_accuracy"]["right"]) == (3, 2)
    # The drift window is the worker's last labels, whatever the period: 3 of 5 right.
    assert day["drift"] == {"labels": 5, "labelled_accuracy": 0.6, "alarms": []}


def test_html_is_one_self_contained_file_with_the_same_numbers(tmp_path: Path) -> None:
    url = asyncio.run(seed_kpis(str(tmp_path / "worker.sqlite")))
    out = tmp_path / "report.html"
    done = _report(url, "--since", "2026-11-01", "--format", "html", "-o", str(out))
    assert done.returncode == 0, done.stderr
    html = out.read_text()
    # Nothing to fetch: no link, script, stylesheet or image reference; the CSS is inline.
    # (The SVG namespace is a name, not an address: nothing fetches it.)
    fetched = html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert not re.search(r"(?i)<(script|link|img|iframe|a)\b|\bsrc=|\bhref=|url\(|@import|https?://", fetched)
    assert "<style>" in html and "svg.bars" in html and html.count("<svg") == 7
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))
    for figure in (" Conversations 8 ", " Completion 57.1% ", " Success (confirmed) 42.9% ", " Abandonment 14.3% ",
                   " Mean handle time 2.4 min ", " Labelled accuracy 71.4% ", " Voice latency p95 1,500 ms ",
                   "sms 3 3 66.7% 33.3% 33.3% 0.0% 2.3 min 0.33 0.33 – –",
                   "Conversations started from 2026-11-01 to now"):
        assert figure in text, figure
    assert "Re-asks per field: account_number 2 (40.0%)" in html and "2 · 40.0%" in html
    for pii in PII:
        assert pii not in html, pii


def test_help_explains_the_options_and_a_worker_spec_gives_the_alarm_threshold(tmp_path: Path) -> None:
    done = _report(str(tmp_path / "worker.sqlite"), "--help")
    assert done.returncode == 0
    text = " ".join(done.stdout.replace("│", " ").split())  # rich draws the options in a box
    for words in ("--since", "--until", "--worker", "--format", "html|json", "--output", "self-contained",
                  "shares of the ended conversations", "spec YAML file"):
        assert words in text, words
    url = asyncio.run(seed_kpis(str(tmp_path / "worker.sqlite")))
    spec = tmp_path / "bank.yaml"
    bank = (ROOT / "examples/account_support.yaml").read_text()
    spec.write_text(bank.replace("min_mean_confidence: 0.8}", "min_mean_confidence: 0.8, min_labelled_accuracy: 0.9, "
                                                              "label_window: 5}"))
    done = _report(url, "--since", "2026-11-01", "--worker", str(spec), "--format", "json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["drift"]["alarms"] == ["labelled accuracy 0.60 is below 0.90 (last 5 labelled values)"]
    bad = _report(url, "--since", "last tuesday")
    assert bad.returncode == 2 and "not an ISO-8601 time" in bad.stderr
