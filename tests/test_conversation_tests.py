"""`channel-worker test`: conversation tests a spec author writes in YAML, run against the worker on
its channels with stubbed actions; failures show expected against got with the transcript."""

from __future__ import annotations

import io
import json
import textwrap
import time
from pathlib import Path
from xml.etree import ElementTree

import pytest

from tests.conftest import ROOT
from worker.conversation_tests import command

RESTAURANT = ROOT / "examples" / "restaurant_booking.yaml"
# A small worker whose one action times out quickly (the examples' take 3 s and retry twice).
QUICK_SPEC = """
name: quick_tables
persona: Sam, the host
goal: Book a table.
script:
  greeting: Hi, this is Sam.
  confirmation: "{people} on {date:%A}. Is that right?"
  closing: Booked!
fields:
  - {name: date, type: date, prompt: "Which day?"}
  - {name: people, type: count, prompt: "How many?"}
tasks:
  - name: book
    examples: [book a table, a table for two, reserve a table, table for four tomorrow, can we come for dinner]
    steps:
      - ask: [date, people]
      - call: check
      - confirm
      - outcome: completed
      - end
  - name: private_room
    examples: [hire the private room, private party, a room for a party, can we rent the room, a function room]
    steps: [{handoff: Wants the private room}]
actions:
  - name: check
    method: POST
    url: "${API_URL}/check"
    body: {date: "{date}", people: "{people}"}
    timeout: 0.3
    retries: 0
    result: {type: object, required: [ok], properties: {ok: {type: boolean}}}
    on_error: {say: "Sorry, the book is not answering.", then: handoff, reason: No answer.}
routing: {start_task: book}
"""


def run(tmp_path: Path, body: str, *extra: str, spec: str | None = None) -> tuple[int, str, str]:
    """Write a test file (and its worker) and run `channel-worker test` in this process."""
    if spec is not None:
        (tmp_path / "worker.yaml").write_text(spec)
    path = tmp_path / "cases.test.yaml"
    path.write_text(textwrap.dedent(body))
    out, err = io.StringIO(), io.StringIO()
    junit = Path(extra[extra.index("--junit") + 1]) if "--junit" in extra else None
    code = command.run([path], junit=junit, show_coverage="--coverage" in extra, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


BOOKING = f"""
worker: {RESTAURANT}
stubs:
  availability: {{body: {{available: true, times: []}}}}
  create_booking: {{status: 201, body: {{booking_id: B1}}}}
cases:
  - name: booking with a correction
    now: 2026-11-23T09:00:00Z
    channel: console
    steps:
      - user: table for 4 tomorrow at 7pm
      - user: no, make it 5
        expect: {{fields: {{people: 5}}}}
      - user: Maria
      - user: Lopez
      - user: "yes"
        expect: {{outcome: completed, reply_contains: booked}}
"""


def test_a_passing_case_prints_pass_and_exits_0(tmp_path: Path) -> None:
    code, out, _ = run(tmp_path, BOOKING)
    assert code == 0, out
    assert "PASS" in out and "booking with a correction [console]" in out
    assert "1 passed, 0 failed" in out


@pytest.mark.parametrize("expect, what, expected, got", [
    ('{reply_contains: "see you on Friday"}', "reply contains", '"see you on Friday"', "You're booked, Maria"),
    ("{reply_matches: 'at 2[01]:\\d\\d'}", "reply matches", "/at 2[01]:\\d\\d/", "at 19:00"),
    ("{fields: {people: 6}}", "fields.people", "6", "5"),
    ("{fields: {time: {value: '19:00', span: seven}}}", "fields.time.span", '"seven"', '"7pm"'),
    ("{task: cancel}", "task", '"cancel"', '"book"'),
    ("{outcome: abandoned}", "outcome", '"abandoned"', '"completed"'),
    ("{escalation: asks_for_human}", "escalation", '"asks_for_human"', "nothing"),
    ("{actions: [{name: create_booking, with: {people: 6}}]}", "actions", 'create_booking {"people": 6}',
     '"people": 5'),
    ("{turns: 4}", "turns", "4", "5"),
])
def test_each_failing_expectation_shows_expected_against_got_and_the_transcript(
        tmp_path: Path, expect: str, what: str, expected: str, got: str) -> None:
    body = BOOKING.replace("{{outcome: completed, reply_contains: booked}}".replace("{{", "{").replace("}}", "}"),
                           expect)
    code, out, _ = run(tmp_path, body)
    assert code == 1, out
    assert "FAIL" in out and "step 5 (person: 'yes')" in out
    assert f"    {what}:\n      - expected: {expected}" in out, out
    assert got in out.split("+ got:", 1)[1].splitlines()[0], out
    # The whole transcript: the greeting, every person line numbered, the failing one marked.
    assert "worker: Hi, this is Sam at Trattoria Luigi." in out
    assert "      1 person: table for 4 tomorrow at 7pm" in out
    assert "   !  5 person: yes" in out


def test_an_invalid_file_exits_2_with_the_file_line_and_reason(tmp_path: Path) -> None:
    body = f"""\
    worker: {RESTAURANT}
    cases:
      - name: typo
        now: 2026-11-23T09:00:00Z
        steps:
          - user: table for 4
            expect: {{reply_contain: booked}}
          - user: hi
            expect: {{fields: {{peple: 4}}, reply_matches: "(a)\\\\1"}}
    """
    code, out, err = run(tmp_path, body)
    assert code == 2 and out == ""
    file = str(tmp_path / "cases.test.yaml")
    assert f"{file}:7: cases.0.steps.0.expect.reply_contain: unknown key 'reply_contain'" in err
    assert f"{file}:9: cases.0.steps.1.expect.reply_matches: " in err and "backreference" in err
    # Names the worker does not have are found before anything runs, at their line too.
    code, _, err = run(tmp_path, body.replace("reply_contain: booked", "reply_contains: booked")
                       .replace(', reply_matches: "(a)\\\\1"', ""))
    assert code == 2 and f"{file}:9: cases.0.steps.1.expect.fields.peple: the worker has no field 'peple'" in err
    code, _, err = run(tmp_path, BOOKING.replace('user: "yes"', "user: yes"))
    assert code == 2 and 'put the line in quotes: user: \\"yes\\"' in err.replace('"yes"', '\\"yes\\"')


def test_junit_xml_has_a_testcase_per_case_and_the_failure(tmp_path: Path) -> None:
    report = tmp_path / "out.xml"
    body = BOOKING + BOOKING.split("cases:\n", 1)[1].replace("booking with a correction", "wrong outcome") \
        .replace("outcome: completed", "outcome: abandoned")
    code, _, _ = run(tmp_path, body, "--junit", str(report))
    assert code == 1
    suites = ElementTree.parse(report).getroot()
    assert suites.tag == "testsuites" and suites.get("tests") == "2" and suites.get("failures") == "1"
    cases = {c.get("name"): c for c in suites.iter("testcase")}
    assert set(cases) == {"booking with a correction [console]", "wrong outcome [console]"}
    assert cases["booking with a correction [console]"].find("failure") is None
    failure = cases["wrong outcome [console]"].find("failure")
    assert failure is not None
    assert failure.get("message") == 'step 5: outcome: expected "abandoned", got "completed"'
    assert "5 person: yes" in (failure.text or "")


def test_schema_is_printed_as_json_schema() -> None:
    out = io.StringIO()
    assert command.print_schema(out) == 0
    schema = json.loads(out.getvalue())
    assert schema["title"] == "channel-worker conversation tests"
    expect = schema["$defs"]["Expect"]["properties"]
    assert {"reply_contains", "reply_matches", "fields", "task", "outcome", "escalation", "actions", "turns"} <= set(expect)
    assert schema["$defs"]["Case"]["properties"]["channel"]["enum"] == ["console", "sms", "email", "voice"]


def test_stubs_answer_with_their_status_body_and_delay_and_record_what_was_sent(tmp_path: Path) -> None:
    body = """
    worker: worker.yaml
    cases:
      - name: the stub's body becomes the results
        now: 2026-11-23T09:00:00Z
        stubs: {check: {status: 201, body: {ok: true}}}
        steps:
          - user: a table for 2 tomorrow
            expect: {actions: [{name: check, with: {date: "2026-11-24", people: 2}}], reply_contains: "2 on Tuesday"}
      - name: a 500 is an error
        now: 2026-11-23T09:00:00Z
        stubs: {check: {status: 500, body: {}}}
        steps:
          - user: a table for 2 tomorrow
            expect: {escalation: "action:check", reply_contains: the book is not answering}
      - name: slower than the action's timeout is a timeout
        now: 2026-11-23T09:00:00Z
        stubs: {check: {delay: 0.5, body: {ok: true}}}
        steps:
          - user: a table for 2 tomorrow
            expect: {escalation: "action:check"}
      - name: a call without a stub fails the case
        now: 2026-11-23T09:00:00Z
        steps:
          - user: a table for 2 tomorrow
    """
    code, out, _ = run(tmp_path, body, spec=QUICK_SPEC)
    assert code == 1
    lines = [line for line in out.splitlines() if line.startswith(("PASS", "FAIL"))]
    assert [line.split()[0] for line in lines] == ["PASS", "PASS", "PASS", "FAIL"], out
    assert "action check was called but the case declares no stub for it" in out


def test_cases_run_in_parallel(tmp_path: Path) -> None:
    case = """
      - name: slow {n}
        now: 2026-11-23T09:00:00Z
        stubs: {{check: {{delay: 0.25, body: {{ok: true}}}}}}
        steps: [{{user: a table for 2 tomorrow}}]
    """
    body = "worker: worker.yaml\ncases:\n" + "".join(textwrap.dedent(case).format(n=n) for n in range(4))
    run(tmp_path, body, spec=QUICK_SPEC)  # warm up: the first engine loads the routing model
    started = time.perf_counter()
    code, out, _ = run(tmp_path, body, spec=QUICK_SPEC)
    assert code == 0, out
    assert time.perf_counter() - started < 4 * 0.25, "four 0.25 s stubs, four at once"


def test_coverage_lists_what_no_case_exercised(tmp_path: Path) -> None:
    body = """
    worker: worker.yaml
    cases:
      - name: booking
        now: 2026-11-23T09:00:00Z
        stubs: {check: {body: {ok: true}}}
        steps: [{user: a table for 2 tomorrow}, {user: "yes", expect: {outcome: completed}}]
    """
    code, out, _ = run(tmp_path, body, "--coverage", spec=QUICK_SPEC)
    assert code == 0, out
    listed = out.split("coverage of", 1)[1]
    assert "tasks not exercised (1):\n    tasks.private_room" in listed
    assert "private_room.0 (handoff)" in listed
    assert "book.1 (call)" not in listed and "tasks.book" not in listed
