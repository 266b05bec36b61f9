"""`channel-worker test --from-transcripts`: stored conversations become a test file that loads
and passes when run again on the same spec. The conversations are made the way a person would:
`channel-worker chat --script` into a temporary database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import EXAMPLES, ROOT, SPECS
from tests.test_examples import BookingApi
from transcripts.store import ExportFilter
from worker.conversation_tests.loader import load_test_file

RESTAURANT = SPECS / "restaurant_booking.yaml"
NOW = "2026-11-23T09:00:00+00:00"  # a Monday

BOOKING = ["table for 4 tomorrow at 7pm", "no, make it 5", "Maria", "Lopez", "yes"]
PERSON = ["can I speak to a person"]
UNFINISHED = ["table for 2 on friday", "at 8pm"]


def cli(tmp_path: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env = {**env, "CHANNEL_WORKER_VAR": str(tmp_path / "var"), **extra}
    return subprocess.run([sys.executable, "-m", "worker.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=180)


def chat(tmp_path: Path, worker: Path, lines: list[str], **extra: str) -> None:
    script = tmp_path / "script.txt"
    script.write_text("\n".join(lines) + "\n")
    done = cli(tmp_path, "chat", "--worker", str(worker), "--script", str(script), "--now", NOW, "--json", **extra)
    assert done.returncode == 0, done.stderr


def test_stored_conversations_become_a_test_file_that_passes_on_the_same_spec(tmp_path: Path) -> None:
    for lines in (BOOKING, PERSON, UNFINISHED):
        chat(tmp_path, RESTAURANT, lines)
    out = tmp_path / "tests" / "from_real.test.yaml"
    out.parent.mkdir()
    made = cli(tmp_path, "test", "--from-transcripts", "--worker", str(RESTAURANT), "--output", str(out))
    assert made.returncode == 0, made.stderr
    assert "wrote 3 case(s)" in made.stderr

    loaded = load_test_file(out)  # `worker:` is relative to the file, as a hand-written one's
    assert loaded.spec_path.resolve() == RESTAURANT.resolve()
    cases = {tuple(s.user for s in c.steps): c for c in loaded.tests.cases}
    assert set(cases) == {tuple(BOOKING), tuple(PERSON), tuple(UNFINISHED)}
    booking = cases[tuple(BOOKING)]
    assert booking.channel == "console" and booking.now.isoformat() == NOW
    assert all(s.expect is None for s in booking.steps[:-1])  # expectations on the last line only
    last = booking.steps[-1].expect
    assert last is not None
    assert last.fields == {"people": 5, "date": "2026-11-24", "time": "19:00", "first_name": "Maria",
                           "last_name": "Lopez"}
    assert (last.outcome, last.escalation) == ("completed", None)
    handed = cases[tuple(PERSON)].steps[-1].expect
    assert handed is not None and (handed.outcome, handed.escalation) == ("escalated", "asks_for_human")
    unfinished = cases[tuple(UNFINISHED)].steps[-1].expect
    assert unfinished is not None and unfinished.outcome is None and unfinished.fields == {
        "people": 2, "date": "2026-11-27", "time": "20:00"}

    ran = cli(tmp_path, "test", str(out))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "3 passed, 0 failed" in ran.stdout


def test_a_case_pins_behaviour_so_a_changed_spec_fails_it(tmp_path: Path) -> None:
    chat(tmp_path, RESTAURANT, BOOKING)
    made = cli(tmp_path, "test", "--from-transcripts", "--worker", str(RESTAURANT))
    assert made.returncode == 0, made.stderr
    out = tmp_path / "made.test.yaml"
    out.write_text(made.stdout)
    stricter = tmp_path / "stricter.yaml"
    stricter.write_text(RESTAURANT.read_text().replace("constraints: {min: 1, max: 12}", "constraints: {min: 1, max: 4}"))
    ran = cli(tmp_path, "test", str(out), "--worker", str(stricter))
    assert ran.returncode == 1
    assert "fields.people" in ran.stdout


def test_filters_choose_the_conversations_and_none_matching_is_an_error(tmp_path: Path) -> None:
    for lines in (BOOKING, PERSON, UNFINISHED):
        chat(tmp_path, RESTAURANT, lines)

    def made(*filters: str) -> list[list[str]]:
        done = cli(tmp_path, "test", "--from-transcripts", "--worker", str(RESTAURANT), *filters)
        assert done.returncode == 0, done.stderr
        return [[s["user"] for s in c["steps"]] for c in yaml.safe_load(done.stdout)["cases"]]

    assert made("--outcome", "escalated") == [PERSON]
    assert len(made("--limit", "2")) == 2
    assert len(made("--channel", "console", "--since", "2026-11-23T00:00:00Z")) == 3
    nothing = cli(tmp_path, "test", "--from-transcripts", "--worker", str(RESTAURANT), "--spec-version", "v9")
    assert nothing.returncode == 2 and "no stored conversation" in nothing.stderr
    no_worker = cli(tmp_path, "test", "--from-transcripts")
    assert no_worker.returncode == 2 and "--worker" in no_worker.stderr


def test_the_answers_of_the_business_systems_become_the_cases_stubs(tmp_path: Path) -> None:
    worker = EXAMPLES / "restaurant_booking.yaml"
    api = BookingApi()
    try:
        systems = {"BOOKING_API_URL": api.url, "OUTCOME_WEBHOOK_SECRET": "s"}
        chat(tmp_path, worker, ["table for 4 tomorrow at 8pm", "half seven then", "Maria Lopez", "yes"], **systems)
    finally:
        api.stop()  # the generated case runs without it
    out = tmp_path / "booked.test.yaml"
    made = cli(tmp_path, "test", "--from-transcripts", "--worker", str(worker), "--output", str(out))
    assert made.returncode == 0, made.stderr
    [case] = yaml.safe_load(out.read_text())["cases"]
    assert [a["status"] for a in case["stubs"]["availability"]["responses"]] == [200, 200]
    assert case["stubs"]["availability"]["responses"][0]["body"]["available"] is False
    assert case["stubs"]["create_booking"]["status"] == 201
    assert case["steps"][-1]["expect"]["task"] == "book"
    ran = cli(tmp_path, "test", str(out))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    # Against a spec without those actions (or tasks), the conversation cannot be a case: left out, with why.
    flat = cli(tmp_path, "test", "--from-transcripts", "--worker", str(RESTAURANT))
    assert flat.returncode == 2
    assert "left out console-" in flat.stderr and "the worker has no action 'availability'" in flat.stderr


def test_values_of_fields_the_spec_no_longer_has_are_not_expected(tmp_path: Path) -> None:
    chat(tmp_path, RESTAURANT, BOOKING)
    chat(tmp_path, RESTAURANT, PERSON)
    text = RESTAURANT.read_text()
    for old in (" {last_name}", "  - name: last_name\n    type: last_name\n    prompt: And your last name?\n"):
        assert old in text
        text = text.replace(old, "", 1)
    no_last_name = tmp_path / "no_last_name.yaml"
    no_last_name.write_text(text)
    made = cli(tmp_path, "test", "--from-transcripts", "--worker", str(no_last_name))
    assert made.returncode == 0, made.stderr
    cases = {tuple(s["user"] for s in c["steps"]): c for c in yaml.safe_load(made.stdout)["cases"]}
    assert set(cases) == {tuple(BOOKING), tuple(PERSON)}
    assert "last_name" not in cases[tuple(BOOKING)]["steps"][-1]["expect"]["fields"]
    assert "not expected, not fields of this spec: last_name" in made.stderr


async def test_reviewer_labels_are_the_expected_values_so_a_corrected_case_fails_until_the_spec_is_fixed(
        tmp_path: Path) -> None:
    from transcripts.labels import FieldLabel, LabelStore
    from transcripts.store import TranscriptStore

    chat(tmp_path, RESTAURANT, BOOKING)
    store = await TranscriptStore.open(str(tmp_path / "var" / "transcripts.sqlite"))
    try:
        [conversation] = [c async for c, _ in store.iter_conversations(ExportFilter())]
        labels = LabelStore(store)
        said = {"labelled_by": "ana", "conversation_id": conversation.id}
        await labels.add(FieldLabel(field="date", stored_value="2026-11-24", verdict="right", **said))
        await labels.add(FieldLabel(field="people", stored_value=5, verdict="wrong", correct_value="6", **said))
        await labels.add(FieldLabel(field="last_name", stored_value="Lopez", verdict="wrong", **said))
        # A label about a value the conversation did not end with (a later line changed it) is not used.
        await labels.add(FieldLabel(field="time", stored_value="18:00", verdict="wrong", correct_value="20:00", **said))
    finally:
        await store.close()
    out = tmp_path / "labelled.test.yaml"
    made = cli(tmp_path, "test", "--from-transcripts", "--worker", str(RESTAURANT), "--output", str(out))
    assert made.returncode == 0, made.stderr
    assert "the label on time is about '18:00'" in made.stderr
    [case] = yaml.safe_load(out.read_text())["cases"]
    assert case["name"].endswith("2 value(s) corrected by a reviewer")
    assert case["steps"][-1]["expect"]["fields"] == {
        "people": 6, "date": "2026-11-24", "time": "19:00", "first_name": "Maria", "last_name": None}
    ran = cli(tmp_path, "test", str(out))
    assert ran.returncode == 1
    assert "fields.people" in ran.stdout and "fields.last_name" in ran.stdout
    assert "fields.date" not in ran.stdout and "fields.time" not in ran.stdout
