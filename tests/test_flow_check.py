"""`spec check` on a worker with tasks: every mistake in a conversation design is refused at the
file and line where it is written, before a person ever meets it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dialogue.spec_loader import SpecError, SpecProblem, parse_spec

BASE = """\
name: check_me
persona: Sam
goal: Book tables.
script:
  greeting: Hi.
  confirmation: "{people} people on {date}. Right?"
  closing: Booked.
fields:
  - {name: date, type: date, prompt: "What day?"}
  - {name: people, type: count, prompt: "How many?"}
tasks:
  - name: book
    examples: [book a table, a table for two]
    steps:
STEPS
  - name: cancel
    examples: [cancel my booking]
    steps:
CANCEL
actions:
  - name: availability
    method: GET
    url: "${API}/availability?date={date}"
    result:
      type: object
      properties:
        available: {type: boolean}
        times: {type: array, items: {type: string}}
        table: {type: object, properties: {number: {type: integer}}}
        price: {type: number}
HEADERS"""

GOOD_STEPS = """\
      - ask: [date, people]
      - call: availability
      - if: {field: availability.available, equals: false}
        then:
          - end: "Full; we have {availability.times}."
      - say: "It is {availability.price:.2f} a head."
      - confirm
      - end"""


def spec_text(steps: str = GOOD_STEPS, cancel: str = "      - ask: date\n      - end", headers: str = "") -> str:
    return BASE.replace("STEPS", steps).replace("CANCEL", cancel).replace("HEADERS", headers)


def problems_of(text: str) -> list[SpecProblem]:
    with pytest.raises(SpecError) as caught:
        parse_spec(text, "w.yaml")
    return caught.value.problems


def line_of(text: str, marker: str, nth: int = 0) -> int:
    lines = [i + 1 for i, line in enumerate(text.splitlines()) if marker in line]
    return lines[nth]


def only(problems: list[SpecProblem]) -> SpecProblem:
    assert len(problems) == 1, "\n".join(map(str, problems))
    return problems[0]


def test_a_well_designed_flow_passes() -> None:
    spec = parse_spec(spec_text(), "w.yaml")
    assert [t.name for t in spec.tasks] == ["book", "cancel"]


def test_an_unknown_field_in_a_condition_is_refused_at_its_line() -> None:
    text = spec_text(GOOD_STEPS.replace("{field: availability.available, equals: false}",
                                        "{field: party_size, gt: 6}"))
    problem = only(problems_of(text))
    assert problem.line == line_of(text, "party_size")
    assert problem.path == "tasks.0.steps.2.if" and "'party_size' is not a field of this worker" in problem.message


def test_an_unknown_result_in_a_condition_is_refused_at_its_line() -> None:
    text = spec_text(GOOD_STEPS.replace("availability.available, equals", "availability.full, equals"))
    problem = only(problems_of(text))
    assert problem.line == line_of(text, "availability.full")
    assert "'availability.full' is not a result of an action this worker calls" in problem.message


def test_an_unknown_field_or_result_in_a_line_is_refused_at_its_line() -> None:
    text = spec_text(GOOD_STEPS.replace('say: "It is', 'say: "For {first_name}: it is')
                     .replace("{availability.times}", "{availability.slots}"))
    found = problems_of(text)
    assert {(p.line, p.path) for p in found} == {
        (line_of(text, "availability.slots"), "tasks.0.steps.2.then.0.end"),
        (line_of(text, "first_name"), "tasks.0.steps.3.say"),
    }, "\n".join(map(str, found))


def test_a_step_after_end_goto_or_handoff_can_never_be_reached() -> None:
    for leaving in ("- end", "- goto: cancel", "- handoff: Wants a person"):
        text = spec_text(f"      - ask: date\n      {leaving}\n      - say: Never said.")
        problem = only(problems_of(text))
        assert problem.line == line_of(text, "Never said")
        assert problem.path == "tasks.0.steps.2" and "can never be reached" in problem.message


def test_a_step_after_an_if_whose_branches_both_leave_can_never_be_reached() -> None:
    steps = """\
      - ask: date
      - if: {field: people, gt: 6}
        then: [{handoff: Large group}]
        else: [end]
      - say: Never said."""
    text = spec_text(steps)
    problem = only(problems_of(text))
    assert problem.line == line_of(text, "Never said") and "an `if` whose branches both leave" in problem.message
    # One branch that goes on is enough to reach the step after.
    parse_spec(spec_text(steps.replace("else: [end]", "else: []")), "w.yaml")


def test_tasks_that_go_round_by_goto_without_asking_are_refused() -> None:
    text = spec_text("      - say: Once more.\n      - goto: cancel", cancel="      - say: And again.\n      - goto: book")
    problem = only(problems_of(text))
    assert problem.line == line_of(text, "- name: book")
    assert "goes round by goto (through 'cancel') with no `ask` or `confirm`" in problem.message


def test_a_loop_is_refused_even_when_another_task_it_can_reach_asks() -> None:
    # book -> cancel (which asks) and book -> book (which does not): the second loop never waits.
    steps = """\
      - if: {field: people, gt: 6}
        then: [{goto: cancel}]
        else: [{goto: book}]"""
    text = spec_text(steps)
    problem = only(problems_of(text))
    assert problem.line == line_of(text, "- name: book") and "task 'book' goes round by goto with no" in problem.message
    # A loop that waits for the person on the way is a conversation, not a hang.
    parse_spec(spec_text("      - ask: date\n      - goto: cancel", cancel="      - confirm\n      - goto: book"), "w.yaml")


def test_a_goto_to_a_missing_task_is_refused_at_its_line() -> None:
    text = spec_text("      - ask: date\n      - goto: refund")
    problem = only(problems_of(text))
    assert problem.line == line_of(text, "goto: refund")
    assert problem.path == "tasks.0.steps.1.goto" and "'refund' is not a task of this worker" in problem.message


def test_a_secret_written_inline_is_refused_at_its_line() -> None:
    text = spec_text(headers="    headers: {Authorization: Bearer sk-live-0123456789abcdef}")
    problem = only(problems_of(text))
    assert problem.line == line_of(text, "Authorization")
    assert "a secret written inline" in problem.message


def test_a_result_used_in_a_way_its_schema_does_not_allow_is_refused_at_its_line() -> None:
    cases = {
        "{field: availability.times, gt: 3}": "availability.times is an array; `gt` does not apply",
        "{field: availability.available, equals: maybe}": "availability.available is a boolean; 'maybe' is not one",
    }
    for condition, message in cases.items():
        text = spec_text(GOOD_STEPS.replace("{field: availability.available, equals: false}", condition))
        problem = only(problems_of(text))
        assert problem.line == line_of(text, condition.split(",")[0]) and message in problem.message, str(problem)
    text = spec_text(GOOD_STEPS.replace("{availability.times}", "{availability.times:%H:%M}"))
    problem = only(problems_of(text))
    assert problem.line == line_of(text, "availability.times:%H:%M")
    assert "availability.times is an array; the format '%H:%M' does not apply" in problem.message
    text = spec_text(GOOD_STEPS.replace("It is", "Table {availability.table}:"))
    problem = only(problems_of(text))
    assert problem.line == line_of(text, "{availability.table}")
    assert "availability.table is an object; say one of its properties (availability.table.number)" in problem.message


def test_an_error_line_of_an_action_is_checked_like_every_other_line() -> None:
    text = spec_text(headers="    on_error: {say: 'Sorry {first_name}, the book is closed.', then: handoff}")
    problem = only(problems_of(text))
    assert problem.line == line_of(text, "on_error")
    assert problem.path == "actions.0.on_error.say" and "{first_name}" in problem.message


def test_spec_check_on_the_command_line_prints_file_and_line(tmp_path: Path) -> None:
    text = spec_text("      - ask: date\n      - goto: refund")
    path = tmp_path / "worker.yaml"
    path.write_text(text)
    command = Path(sys.executable).parent / "channel-worker"
    done = subprocess.run([str(command), "spec", "check", str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert f"{path}:{line_of(text, 'goto: refund')}: tasks.0.steps.1.goto: 'refund' is not a task" in done.stderr


def test_a_result_of_an_action_no_step_calls_is_refused_where_it_is_used() -> None:
    steps = GOOD_STEPS.replace("      - call: availability\n", "")
    text = spec_text(steps)
    found = problems_of(text)
    assert {(p.line, p.path) for p in found} == {
        (line_of(text, "availability.available"), "tasks.0.steps.1.if"),
        (line_of(text, "{availability.times}"), "tasks.0.steps.1.then.0.end"),
        (line_of(text, "availability.price"), "tasks.0.steps.2.say"),
    }, "\n".join(map(str, found))
    assert any("no step calls the action 'availability'" in p.message for p in found)
