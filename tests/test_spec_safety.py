"""`spec check` is a gate: a spec that could leak, crash a turn or hang the server is refused
with its line, and a spec that got past it anyway still cannot leak, crash or hang at run time."""

from __future__ import annotations

import logging
import random
import re
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from dialogue.spec import WorkerSpec
from dialogue.spec_loader import SpecError, parse_spec
from tests.conftest import ROOT
from tests.support.talk import Talk, engine_for

SPEC = textwrap.dedent(
    """\
    name: codes
    persona: Tess
    goal: Get a code and an amount.
    script:
      greeting: Hello.
      confirmation: Your code is {code} and you pay {amount}?
      closing: Bye.
    fields:
      - name: code
        type: text
        prompt: Your code?
      - name: amount
        type: money
        prompt: How much?
      - name: people
        type: count
        prompt: How many people?
    """
)
CONFIRMATION_LINE = 6


def problems(text: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_spec(text, "w.yaml")
    return [str(p) for p in info.value.problems]


def with_confirmation(template: str) -> str:
    return SPEC.replace("Your code is {code} and you pay {amount}?", template)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "worker.cli", *args], capture_output=True, text=True, cwd=ROOT)


# --- templates: a placeholder names a field or an extra, with an optional format, and nothing else


@pytest.mark.parametrize(
    ("placeholder", "complaint"),
    [
        ("{amount.__init__.__globals__}", "attribute and index access (. and [ ]) are not allowed"),
        ("{code[0]}", "attribute and index access (. and [ ]) are not allowed"),
        ("{amount.currency}", "attribute and index access (. and [ ]) are not allowed"),
        ("{code!r}", "conversions such as !r are not allowed"),
        ("{code:{people}}", "template is malformed"),
        ("{code:>999999999}", "format numbers above 100 are not allowed"),
        ("{people:%A}", "the format '%A' does not apply to count"),
    ],
)
def test_a_template_may_only_name_a_value_with_a_format(placeholder: str, complaint: str) -> None:
    found = problems(with_confirmation(f"Your code is {placeholder}?"))
    assert found and all(p.startswith(f"w.yaml:{CONFIRMATION_LINE}: script.confirmation: ") for p in found)
    assert any(complaint in p for p in found), found


def test_the_path_is_said_once_before_the_problem() -> None:
    [found] = problems(with_confirmation("Your code is {code.upper}?"))
    assert found.startswith("w.yaml:6: script.confirmation: {code.upper}: attribute and index access")


def test_every_bad_template_line_is_reported_at_its_own_line() -> None:
    text = with_confirmation("Your code is {code.upper}?").replace("closing: Bye.", "closing: Bye {amount[0]}.")
    found = problems(text)
    assert [p.split(": ")[0] for p in found] == ["w.yaml:6", "w.yaml:7"]


def test_escalation_say_lines_are_checked() -> None:
    rules = textwrap.dedent(
        """\
        escalation:
          rules:
            - id: human
              when: {intent: human}
              reason: You asked for a person.
              say: "Hold on, {code.__class__}."
            - id: legal
              when: {intent: legal}
              reason: Legal matter.
              say: "One moment, {nobody}."
        """
    )
    found = problems(SPEC + rules)
    assert found == [
        "w.yaml:23: escalation.rules.0.say: {code.__class__}: attribute and index access (. and [ ]) are not "
        "allowed; a placeholder names a field with an optional format, such as {people} or {date:%A %d %B}",
        "w.yaml:27: escalation.rules.1.say: template uses {nobody}, which is not a field of this worker",
    ]


def test_channel_greetings_are_checked() -> None:
    found = problems(SPEC + "channels:\n  sms:\n    greeting: 'Hi, {worker.__dict__} here'\n  email:\n    greeting: 'Hi {nobody}'\n")
    assert found[0].startswith("w.yaml:20: channels.sms.greeting: {worker.__dict__}: attribute and index access")
    assert found[1] == "w.yaml:22: channels.email.greeting: template uses {nobody}, which is not a field of this worker"


def test_field_invalid_lines_and_reasks_are_checked() -> None:
    text = SPEC.replace("    prompt: Your code?\n", "    prompt: Your code?\n    invalid: '{error.args}'\n    reask: '{prompt!s}'\n")
    found = problems(text)
    assert [p.split(": ")[:2] for p in found] == [["w.yaml:13", "fields.0.reask"], ["w.yaml:12", "fields.0.invalid"]]


# --- patterns run on a linear-time engine; what needs backtracking is refused


def with_pattern(pattern: str) -> str:
    return SPEC.replace("    prompt: Your code?\n", f"    prompt: Your code?\n    constraints: {{pattern: '{pattern}'}}\n")


@pytest.mark.parametrize("pattern", [r"^(a)\1$", "^(?=a)a+$", "^a(?!b)", "(?<=a)b"])
def test_a_pattern_that_needs_backtracking_is_refused(pattern: str) -> None:
    [found] = problems(with_pattern(pattern))
    assert found.startswith("w.yaml:12: fields.0.constraints.pattern: pattern uses lookaround or a backreference")
    assert "linear-time engine" in found


# Run in a child process with a deadline: a backtracking engine would hold it for hours
# (2^40 steps), and a stuck regex cannot be interrupted inside this test session.
CATASTROPHIC = """
import asyncio, sys, tempfile
from dialogue.spec_loader import parse_spec
from tests.support.talk import Talk, engine_for

async def main():
    spec = parse_spec(sys.stdin.read())
    with tempfile.TemporaryDirectory() as d:
        async with engine_for(spec, d + "/db") as engine:
            talk = Talk(engine)
            await talk.start()
            print(await talk.say("a" * 40 + "!"))
            print(await talk.say("aaaa"))
            print(talk.values())

asyncio.run(main())
"""


def test_a_catastrophic_pattern_answers_a_long_message_at_once() -> None:
    try:
        result = subprocess.run([sys.executable, "-c", CATASTROPHIC], input=with_pattern("^(a+)+$"),
                                capture_output=True, text=True, cwd=ROOT, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("matching ^(a+)+$ against 41 characters did not finish: the pattern backtracks")
    assert result.returncode == 0, result.stderr
    refused, taken, values = result.stdout.splitlines()
    assert refused == "That isn't in the expected format. Your code?"
    assert taken == "Got it. How much?" and "'code': 'aaaa'" in values


# --- the YAML itself is bounded: nesting and alias expansion


def test_deep_nesting_is_a_spec_error_with_its_line() -> None:
    [found] = problems(SPEC + "extra: " + "[" * 5000 + "]" * 5000 + "\n")
    assert found.startswith("w.yaml:18: extra.0.0.0...0.0.0: nested more than 32 levels deep")


def test_spec_check_reports_deep_nesting_without_a_traceback(tmp_path: Path) -> None:
    deep = tmp_path / "deep.yaml"
    deep.write_text(SPEC + "escalation:\n  rules:\n    - id: x\n      when: " + "{not: " * 3000 + "{intent: human}" + "}" * 3000 + "\n")
    result = run_cli("spec", "check", str(deep))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"{deep}:21: escalation.rules.0.when...not.not.not: nested more than 32 levels deep" in result.stderr


def test_an_alias_bomb_is_a_spec_error_with_its_line() -> None:
    # "Billion laughs" in escalation conditions: six lines of anchors, a million conditions.
    bomb = ["      - &c0 {intent: human}"]
    for level in range(1, 7):
        bomb.append(f"      - &c{level} {{any: [{', '.join([f'*c{level - 1}'] * 10)}]}}")
    text = SPEC + "escalation:\n  rules:\n    - id: bomb\n      reason: r\n      when:\n        any:\n" + "\n".join(
        "  " + line for line in bomb
    ) + "\n"
    [found] = problems(text)
    assert found.startswith("w.yaml:29: escalation.rules.0.when.any.5.any.0: the spec expands to more than 50000 values")


def test_aliases_that_nest_each_other_past_the_depth_limit_are_a_spec_error() -> None:
    # No single node is deep: forty anchors of 25 levels, each holding the next alias, are 1,000
    # levels once built (pydantic then failed with a 64 KB path of "not.not.not...").
    rules, inner = [], "{intent: human}"
    for i in range(40):
        rules.append(f"    - id: r{i}\n      reason: r\n      when: &a{i} " + "{not: " * 25 + inner + "}" * 25)
        inner = f"*a{i}"
    [found] = problems(SPEC + "escalation:\n  rules:\n" + "\n".join(rules) + "\n")
    assert found == ("w.yaml:25: escalation.rules.1.when...not.not.not: alias *a0 nests its value more than "
                     "32 levels deep; a worker spec needs far fewer")


def test_an_alias_as_deep_as_the_limit_allows_passes_the_depth_check() -> None:
    text = SPEC + "extra:\n  - &deep " + "[" * 20 + "1" + "]" * 20 + "\n  - [[[[[*deep]]]]]\n"
    assert problems(text) == ["w.yaml:18: extra: unknown key 'extra'"]  # built, then refused as any unknown key


def test_an_alias_inside_its_own_anchor_is_refused() -> None:
    [found] = problems(SPEC + "extra: &loop [1, *loop]\n")
    assert found == "w.yaml:18: extra.1: alias *loop refers to a value that contains it; a spec cannot be recursive"


# --- at run time: a spec that got past the gate (stored before it existed, built in code)


def stored(spec: WorkerSpec, **script: str) -> WorkerSpec:
    """The spec with script lines swapped in unchecked, as an old stored spec would hold them."""
    return spec.model_copy(update={"script": spec.script.model_copy(update=script)})


async def collect(spec: WorkerSpec, tmp_path: Path) -> Talk:
    async with engine_for(spec, str(tmp_path / "db")) as engine:
        talk = Talk(engine, conversation_id=str(uuid.uuid4()))
        await talk.start()
        await talk.say("ABC123")
        await talk.say("£40")
        await talk.say("3")
    return talk


async def test_a_stored_template_cannot_reach_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    secret = uuid.uuid4().hex
    monkeypatch.setenv("CHANNEL_WORKER_TEST_SECRET", secret)
    leak = "{amount.__init__.__globals__[string]._re.enum.sys.modules[os].environ[CHANNEL_WORKER_TEST_SECRET]}"
    spec = stored(parse_spec(SPEC), confirmation=f"Code {{code}}, {leak} to pay {{amount}}?")
    with caplog.at_level(logging.WARNING, logger="dialogue.template"):
        talk = await collect(spec, tmp_path)
    assert secret not in talk.last.reply
    assert talk.last.reply.endswith("Code ABC123, to pay £40?")
    assert "attribute and index access" in caplog.text


async def test_a_stored_template_naming_a_missing_attribute_does_not_crash_the_turn(tmp_path: Path) -> None:
    spec = stored(parse_spec(SPEC), confirmation="You pay {amount} in {amount.weekday_name}, code {code[9]}. Right?")
    talk = await collect(spec, tmp_path)
    assert talk.last.reply.endswith("You pay £40 in , code . Right?")


async def test_a_stored_template_with_a_huge_width_stays_short(tmp_path: Path) -> None:
    spec = stored(parse_spec(SPEC), confirmation="Code {code:x>10000000}?")
    talk = await collect(spec, tmp_path)
    assert talk.last.reply.endswith(" Code ABC123?") and len(talk.last.reply) < 100


def test_a_stored_pattern_the_engine_refuses_refuses_the_value_instead_of_failing() -> None:
    from datetime import datetime

    from extraction.validate import validate

    spec = parse_spec(with_pattern("^a+$"))
    code = spec.fields[0]
    evil = code.model_copy(update={"constraints": code.constraints.model_copy(update={"pattern": r"^(a)\1$"})})
    assert validate(evil, "aa", datetime.now()) == "That isn't in the expected format."


# --- every template line is rendered as one, including the SMS answer to HELP


def test_the_sms_help_line_is_rendered_as_a_template(tmp_path: Path) -> None:
    from tests.support.fake_twilio import FakeTwilio
    from tests.support.server import WorkerServer
    from tests.test_sms import ACCOUNT, TOKEN, Phone

    spec = tmp_path / "codes.yaml"
    spec.write_text(SPEC.replace("  closing: Bye.\n", "  closing: Bye.\n  help: I'm {worker}; I take codes.\n"))
    with FakeTwilio() as twilio:
        server = WorkerServer(str(spec), {"TWILIO_ACCOUNT_SID": ACCOUNT, "TWILIO_AUTH_TOKEN": TOKEN,
                                          "TWILIO_API_BASE": twilio.base_url}, tmp_path / "var")
        try:
            server.wait_ready()
            assert Phone(server).text("HELP") == "I'm Tess; I take codes. Reply STOP to unsubscribe."
        finally:
            server.stop()


# --- any YAML at all is a spec error with its line, never a traceback (red-team files)

RESTAURANT = (ROOT / "tests" / "data" / "specs" / "restaurant_booking.yaml").read_text()
TONE_LINE = 5  # `tone: warm, brief, never pushy` in the restaurant example
END_LINE = RESTAURANT.count("\n") + 1  # a line appended to the example


def check_file(tmp_path: Path, text: str) -> tuple[str, subprocess.CompletedProcess[str]]:
    spec = tmp_path / f"{uuid.uuid4().hex}.yaml"
    spec.write_text(text)
    return str(spec), run_cli("spec", "check", str(spec))


@pytest.mark.parametrize(
    ("text", "line", "complaint"),
    [
        (RESTAURANT.replace("tone: warm, brief, never pushy", "tone: " + "9" * 5000), TONE_LINE,
         "tone: a number of 5000 characters is too long; a spec's numbers have at most 100"),
        (RESTAURANT + "? [a, b]\n: x\n", END_LINE, "(top level): a key must be a plain name, not a list"),
        (RESTAURANT + "? {a: 1}\n: x\n", END_LINE, "(top level): a key must be a plain name, not a mapping"),
        (RESTAURANT.replace("tone: warm, brief, never pushy", "tone: !!timestamp 2020-13-45"), TONE_LINE,
         "tone: cannot read '2020-13-45' as !!timestamp: month must be in 1..12"),
        (RESTAURANT.replace("tone: warm, brief, never pushy", "tone: !!bool maybe"), TONE_LINE,
         "tone: cannot read 'maybe' as !!bool"),
    ],
    ids=["huge-int", "list-key", "mapping-key", "bad-timestamp", "bad-bool"],
)
def test_spec_check_reports_a_value_yaml_cannot_build_at_its_line(tmp_path: Path, text: str, line: int,
                                                                   complaint: str) -> None:
    path, result = check_file(tmp_path, text)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert f"{path}:{line}: {complaint}" in result.stderr


def test_a_date_like_value_stays_the_text_the_author_wrote(tmp_path: Path) -> None:
    text = RESTAURANT.replace("tone: warm, brief, never pushy", "tone: 2020-13-45")
    path, result = check_file(tmp_path, text)
    assert result.returncode == 0, result.stderr
    assert parse_spec(text).tone == "2020-13-45"
    assert parse_spec(text.replace("2020-13-45", "2026-11-24")).tone == "2026-11-24"


def test_a_spec_file_over_one_mib_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    padding = "# padding\n" * (1024 * 1024 // 10 + 1)
    path, result = check_file(tmp_path, RESTAURANT + padding)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert f"{path}: (top level): the file is {len(RESTAURANT) + len(padding):,} bytes; a worker spec may be at most " \
           "1,048,576 bytes (1 MiB)" in result.stderr


# Pieces of YAML that have broken the loader before, spliced into the example at random places.
SPLICES = [
    "? [a, b]\n: x\n", "? {a: 1}\n: x\n", "[", "]", "{", "}", ": ", "- ", "? ", "&a ", "*a", "*b", "<<: *a\n",
    "!!int ", "!!float ", "!!bool ", "!!timestamp ", "!!binary ", "!!set ", "!!omap ", "!!map ", "!!str ",
    "!!python/object:os.system ", "2020-13-45", "9" * 5000, "1:2:3:4", "0x" + "f" * 200, ".inf", "\x00", "\t",
    "\ufeff", "'", '"', "|", ">", "%YAML 1.1\n", "---\n", "...\n", "#", "\n  ", "\\", "{{", "}}", "\x85",
]
LINE = re.compile(r"^\S.*?(:\d+)?: \S.*")


def mutate(rng: random.Random, text: str) -> str:
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(len(text) + 1)
        kind = rng.random()
        if kind < 0.5:
            text = text[:at] + rng.choice(SPLICES) + text[at:]
        elif kind < 0.7:
            text = text[:at] + text[at + rng.randint(1, 40):]
        elif kind < 0.85:  # a random character, from anywhere in Unicode's first plane
            text = text[:at] + chr(rng.choice([rng.randrange(32), rng.randrange(0xD800)])) + text[at:]
        else:  # a line moved elsewhere, which upsets indentation
            lines = text.split("\n")
            lines.insert(rng.randrange(len(lines)), lines.pop(rng.randrange(len(lines))))
            text = "\n".join(lines)
    return text


def test_a_mangled_spec_is_always_a_spec_error_never_an_exception(tmp_path: Path) -> None:
    from dialogue.spec_loader import load_spec

    rng = random.Random(14)  # fixed: the same 400 variants on every run
    escaped: list[str] = []
    for i in range(400):
        variant = mutate(rng, RESTAURANT)
        spec = tmp_path / f"variant{i}.yaml"
        spec.write_bytes(variant.encode("utf-8", "surrogatepass"))
        try:
            load_spec(spec)
        except SpecError as exc:
            assert exc.problems and all(LINE.match(str(p)) for p in exc.problems), exc.problems
        except Exception as exc:  # noqa: BLE001 - the point is to catch anything that escapes
            escaped.append(f"variant {i}: {type(exc).__name__}: {exc!s:.200} in {variant!r:.300}")
    assert not escaped, "\n".join(escaped)
