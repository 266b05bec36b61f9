"""What the extractor understands, and what it refuses to invent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from typing import Any

import pytest
import yaml

from dialogue.spec import WorkerSpec
from extraction.base import ExtractionContext, Extracted, grounded
from extraction.evaluation import (
    NLUPP_SLOTS,
    evaluate_spans,
    evaluate_values,
    load_nlupp,
    load_restaurant8k,
)
from extraction.fields import FieldSpec
from extraction.rules import RuleExtractor
from tests.conftest import ROOT, shipped_data

SPOKEN = yaml.safe_load((ROOT / "tests" / "data" / "spoken_forms.yaml").read_text())
SPOKEN_FIELDS = {k: FieldSpec(name=k, prompt="?", **v) for k, v in SPOKEN["fields"].items()}
NOW = datetime.fromisoformat(SPOKEN["now"])
rules = RuleExtractor()


def extract(spec: WorkerSpec, text: str, requested: list[str] | None = None, now: datetime = NOW) -> dict[str, Any]:
    found = rules.extract(text, spec.fields, ExtractionContext(requested=requested or [], now=now))
    return {e.field: e.value for e in found}


@pytest.mark.parametrize("name,text,requested,expected", SPOKEN["cases"], ids=lambda v: str(v)[:40])
def test_spoken_and_written_forms(name: str, text: str, requested: bool, expected: Any) -> None:
    found = rules.extract(text, [SPOKEN_FIELDS[name]], ExtractionContext(requested=[name] if requested else [], now=NOW))
    assert [e.value for e in found] == [expected]


def test_a_value_refused_with_not_is_not_stored_when_another_was_said() -> None:
    fields = [FieldSpec(name="time", type="time", prompt="?"), FieldSpec(name="people", type="count", prompt="?")]
    read = lambda text, asked=(): {e.field: e.value for e in rules.extract(text, fields, ExtractionContext(requested=list(asked), now=NOW))}  # noqa: E731
    assert read("I said 5pm not 6pm") == {"time": "17:00"}
    assert read("not 10 p.m., I meant 10 a.m.") == {"time": "10:00"}
    assert read("it's 5 not 4 people", ["people"]) == {"people": 5}


def test_a_change_from_one_value_to_another_keeps_the_new_one() -> None:
    fields = [FieldSpec(name="people", type="count", prompt="?"), FieldSpec(name="date", type="date", prompt="?")]
    read = lambda text: {e.field: e.value for e in rules.extract(text, fields, ExtractionContext(requested=[], now=NOW))}  # noqa: E731
    assert read("I'd like to change my reservation from 8 people to just 7") == {"people": 7}
    assert read("please move it from Friday to Saturday") == {"date": "2026-11-28"}


def test_the_requested_field_steers_a_bare_number(restaurant: WorkerSpec) -> None:
    assert extract(restaurant, "13", ["people"]) == {"people": 13}
    assert extract(restaurant, "13", ["time"]) == {"time": "13:00"}
    # Opening hours settle am/pm: a restaurant open 11:00-23:00 hears "7" as 19:00.
    assert extract(restaurant, "7", ["time"]) == {"time": "19:00"}


def test_a_surname_after_last_name_was_asked(restaurant: WorkerSpec) -> None:
    assert extract(restaurant, "Lopez", ["last_name"]) == {"last_name": "Lopez"}
    assert extract(restaurant, "lopez", ["last_name"]) == {"last_name": "Lopez"}


def test_several_fields_in_one_sentence(restaurant: WorkerSpec) -> None:
    found = extract(restaurant, "Hi, this is Ana Silva, a table for six on Friday at half past seven please")
    assert found == {"first_name": "Ana", "last_name": "Silva", "people": 6, "date": "2026-11-27", "time": "19:30"}


def test_relative_dates_use_the_time_the_message_was_sent(restaurant: WorkerSpec) -> None:
    sent = datetime(2026, 2, 27, 12, 0, tzinfo=timezone.utc)
    assert extract(restaurant, "tomorrow", now=sent) == {"date": "2026-02-28"}
    assert extract(restaurant, "in three days", now=sent) == {"date": "2026-03-02"}


def test_the_workers_time_zone_decides_what_today_is(account_support: WorkerSpec) -> None:
    from zoneinfo import ZoneInfo

    spec = FieldSpec(name="day", type="date", prompt="?")
    late_utc = datetime(2026, 11, 24, 2, 0, tzinfo=timezone.utc)  # still the 23rd in New York
    local = late_utc.astimezone(ZoneInfo(account_support.timezone))
    found = rules.extract("tomorrow", [spec], ExtractionContext(now=local))
    assert found[0].value == "2026-11-24"


def test_every_value_is_a_span_of_what_was_said(restaurant: WorkerSpec) -> None:
    text = "ok so it's Maria Lopez, we're 4, tomorrow at 7:30pm"
    found = rules.extract(text, restaurant.fields, ExtractionContext(now=NOW))
    assert found
    for e in found:
        assert text[e.start : e.end] == e.text and 0 < e.confidence <= 1


def test_a_value_without_a_matching_span_is_never_kept() -> None:
    text = "table for four"
    invented = Extracted(field="people", value=5, start=10, end=14, text="five", confidence=0.9)
    right = Extracted(field="people", value=4, start=10, end=14, text="four", confidence=0.9)
    assert grounded(text, [invented, right]) == [right]


def test_constraint_readings_are_checked_by_the_dialogue_not_invented(restaurant: WorkerSpec) -> None:
    # The extractor reports what was said; the spec's constraints are applied when it is stored.
    assert extract(restaurant, "we are 40 people") == {"people": 40}


def test_nothing_is_found_in_small_talk(restaurant: WorkerSpec) -> None:
    assert extract(restaurant, "hello there, how are you?") == {}


def _cli(*args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "worker.cli", "extract", "--worker", "tests/data/specs/restaurant_booking.yaml", *args],
                          capture_output=True, text=True, cwd=ROOT, input=stdin, env=full_env, timeout=120)


def test_cli_text_mode_prints_one_json_object() -> None:
    result = _cli("--text", "table for 4 tomorrow at 7pm", "--now", "2026-11-23T09:00:00+00:00")
    assert result.returncode == 0, result.stderr
    fields = json.loads(result.stdout)["fields"]
    assert fields["people"] == {"value": 4, "start": 10, "end": 11, "text": "4", "confidence": fields["people"]["confidence"]}
    assert fields["date"]["value"] == "2026-11-24" and fields["time"]["value"] == "19:00"


def test_cli_requested_field_and_unknown_field() -> None:
    assert json.loads(_cli("--text", "13", "--requested", "people").stdout)["fields"]["people"]["value"] == 13
    bad = _cli("--text", "13", "--requested", "nope")
    assert bad.returncode == 2 and "not a field" in bad.stderr


def test_cli_jsonl_mode_answers_line_by_line() -> None:
    lines = [
        {"text": "13", "requested": ["people"], "now": "2026-11-23T09:00:00+00:00"},
        {"text": "next friday at 8", "requested": [], "now": "2026-11-23T09:00:00+00:00"},
    ]
    stdin = "\n".join(json.dumps(x) for x in lines) + "\nnot json\n"
    result = _cli("--jsonl", stdin=stdin)
    out = [json.loads(x) for x in result.stdout.splitlines()]
    assert out[0]["fields"]["people"]["value"] == 13
    assert out[1]["fields"]["date"]["value"] == "2026-12-04" and out[1]["fields"]["time"]["value"] == "20:00"
    assert "error" in out[2] and result.returncode == 1


def test_cli_jsonl_handles_thousands_of_lines_quickly() -> None:
    stdin = "\n".join(json.dumps({"text": f"table for {i % 12 + 1} tomorrow at {i % 5 + 6}pm"}) for i in range(3000))
    result = _cli("--jsonl", stdin=stdin)
    assert result.returncode == 0
    assert len(result.stdout.splitlines()) == 3000


def test_accuracy_floor_on_a_fixed_slice_of_restaurants8k(restaurant: WorkerSpec) -> None:
    examples = load_restaurant8k(shipped_data("restaurant8k", "train_2_first600.json"))
    assert len(examples) == 600  # the whole slice, or the floor means less
    report = evaluate_spans(rules, restaurant.fields, examples, datetime(2018, 6, 1, 12))
    assert report.micro(report.exact)[2] >= 0.90
    assert report.micro(report.overlap)[2] >= 0.93


def test_accuracy_floor_on_a_fixed_slice_of_nlupp() -> None:
    examples = [e for e in load_nlupp(shipped_data("nlupp")) if e["domain"] == "hotels"]
    assert len(examples) == 250
    scores, _ = evaluate_values(lambda t, f, now, r: rules.readings(t, f, now, r), examples)
    for kind in ("dates", "times", "counts"):
        right, n = scores[kind]
        assert right / n >= 0.88, kind
    assert set(NLUPP_SLOTS) >= {e["slot"] for e in examples}
