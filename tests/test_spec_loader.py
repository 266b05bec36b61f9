"""A worker spec loads when it is right and says exactly where it is wrong."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dialogue.spec_loader import SpecError, parse_spec
from tests.conftest import EXAMPLES, ROOT, SPECS

GOOD = textwrap.dedent(
    """\
    name: tiny
    persona: Tess
    goal: Get a name.
    script:
      greeting: Hello.
      confirmation: You are {name}?
      closing: Bye {name}.
    fields:
      - name: name
        type: full_name
        prompt: Your name?
    """
)


def problems(text: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_spec(text, "w.yaml")
    return [str(p) for p in info.value.problems]


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_bundled_examples_are_valid(example: Path) -> None:
    spec = parse_spec(example.read_text(), str(example))
    assert spec.fields


def test_restaurant_example_has_the_field_names_other_code_measures_against() -> None:
    spec = parse_spec((SPECS / "restaurant_booking.yaml").read_text())
    assert [f.name for f in spec.fields] == ["date", "time", "people", "first_name", "last_name"]


def test_a_minimal_spec_loads_with_defaults() -> None:
    spec = parse_spec(GOOD)
    assert spec.escalation.max_reasks == 2
    assert [o.name for o in spec.outcomes] == ["completed", "escalated", "abandoned"]


def test_an_unknown_field_type_points_at_its_line() -> None:
    found = problems(GOOD.replace("type: full_name", "type: colour"))
    assert len(found) == 1
    assert found[0].startswith("w.yaml:10: fields.0.type: Input should be")


def test_an_unknown_key_is_named() -> None:
    found = problems(GOOD.replace("    prompt: Your name?", "    prompt: Your name?\n    promt: typo"))
    assert found == ["w.yaml:12: fields.0.promt: unknown key 'promt'"]


def test_a_missing_required_key_points_at_its_parent() -> None:
    found = problems(GOOD.replace("  closing: Bye {name}.\n", ""))
    assert found == ["w.yaml:4: script.closing: missing required key 'closing'"]


def test_a_template_using_an_unknown_field_is_refused() -> None:
    found = problems(GOOD.replace("Bye {name}.", "Bye {nmae}."))
    assert len(found) == 1 and "script.closing: template uses {nmae}" in found[0]
    assert found[0].startswith("w.yaml:7:")


def test_invalid_yaml_gives_the_line() -> None:
    found = problems(GOOD.replace("goal: Get a name.", "goal: [unclosed"))
    assert len(found) == 1 and found[0].startswith("w.yaml:4: (top level): not valid YAML"), found
    # The same mistake two lines further down is reported two lines further down (where YAML noticed it).
    found = problems(GOOD.replace("  greeting: Hello.", "  greeting: [unclosed"))
    assert len(found) == 1 and found[0].startswith("w.yaml:6: (top level): not valid YAML"), found


def test_duplicate_keys_are_refused() -> None:
    found = problems(GOOD + "name: again\n")
    assert "duplicate key 'name'" in found[0] and found[0].startswith("w.yaml:12:")


def test_a_rule_on_an_unknown_field_is_refused_with_its_location() -> None:
    spec = GOOD + textwrap.dedent(
        """\
        escalation:
          rules:
            - id: big
              when: {field: amount, gt: 5}
              reason: Too big.
        """
    )
    found = problems(spec)
    assert len(found) == 1
    assert found[0].startswith("w.yaml:14: escalation.rules.0")
    assert "unknown field 'amount'" in found[0]


def test_a_rule_with_an_unauthorised_action_is_refused() -> None:
    spec = GOOD + "allowed_actions: [reply, ask, confirm, end]\n" + textwrap.dedent(
        """\
        escalation:
          rules:
            - id: human
              when: {intent: human}
              action: transfer
              reason: Asked.
        """
    )
    found = problems(spec)
    assert "which allowed_actions does not authorize" in found[0]


def test_a_condition_of_unknown_form_names_the_forms_it_can_take() -> None:
    spec = GOOD + "escalation:\n  rules:\n    - id: x\n      when: {intnt: human}\n      reason: r\n"
    found = problems(spec)
    assert found == [
        "w.yaml:15: escalation.rules.0.when: a condition needs one of the keys: "
        "count, intent, field, channel, outside_hours, inside_hours, all, any, not"
    ]


def test_an_invalid_worker_name_explains_the_rule() -> None:
    found = problems(GOOD.replace("name: tiny", "name: Tiny Worker"))
    assert found == ["w.yaml:1: name: must start with a lowercase letter and use only lowercase letters, digits and _"]


def test_a_choice_field_needs_choices_and_a_bad_pattern_is_caught() -> None:
    found = problems(GOOD.replace("type: full_name", "type: choice"))
    assert "needs constraints.choices" in found[0]
    found = problems(GOOD.replace("    prompt: Your name?", "    prompt: Your name?\n    constraints: {pattern: '[a-'}"))
    assert "fields.0.constraints.pattern" in found[0] and "not a valid regular expression" in found[0]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "worker.cli", *args], capture_output=True, text=True, cwd=ROOT)


def test_spec_check_cli_reports_without_a_traceback(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(GOOD.replace("type: full_name", "type: colour").replace("Bye {name}.", "Bye {nmae}."))
    result = run_cli("spec", "check", str(broken))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"{broken}:10: fields.0.type" in result.stderr


def test_spec_check_cli_accepts_the_examples() -> None:
    result = run_cli("spec", "check", "tests/data/specs/account_support.yaml")
    assert result.returncode == 0 and "ok" in result.stdout


def test_spec_check_cli_on_a_missing_file() -> None:
    result = run_cli("spec", "check", "nope.yaml")
    assert result.returncode == 2 and "nope.yaml: (top level): file not found" in result.stderr


def test_spec_schema_is_json_schema_for_editors() -> None:
    result = run_cli("spec", "schema")
    schema = json.loads(result.stdout)
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert {"name", "script", "fields", "escalation"} <= set(schema["properties"])
