"""The conversation test file format (`channel-worker test --schema` prints it as JSON Schema).

    worker: ../restaurant_booking.yaml        # relative to this file
    stubs:                                    # answers of the business's systems, for every case
      availability: {body: {available: true}}
    cases:
      - name: booking with a correction
        now: 2026-11-23T09:00:00Z
        channel: console                      # console | sms | email | voice
        stubs: {...}                          # this case's own, over the file's
        steps:
          - user: table for 4 tomorrow at 7pm
          - user: no, make it 5
            expect: {fields: {people: 5}}

Every model forbids unknown keys, so a misspelt expectation is an error at its line, never an
expectation silently not checked.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from extraction.patterns import PatternError, compile_pattern

TestChannel = Literal["console", "sms", "email", "voice"]
Scalar = str | int | float | bool | None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StubResponse(_Strict):
    """One answer of a stubbed action."""

    status: int = Field(200, ge=100, le=599, description="HTTP status the stub answers with.")
    body: Any = Field(default_factory=dict, description="JSON body of the answer.")
    delay: float = Field(0.0, ge=0, le=60, description="Seconds to wait before answering (past the action's "
                                                          "`timeout` the worker sees a timeout).")


class Stub(StubResponse):
    """What the business's system answers to one action: one answer for every call, or
    `responses` used in turn (the last one repeats)."""

    responses: list[StubResponse] | None = Field(
        None, min_length=1, description="Answers in call order (the last repeats); instead of status/body/delay.")

    @model_validator(mode="after")
    def _one_way(self) -> Stub:
        if self.responses is not None and self.model_fields_set & {"status", "body", "delay"}:
            raise ValueError("give either status/body/delay or responses, not both")
        return self

    def answer(self, call_number: int) -> StubResponse:
        """The answer to the `call_number`-th call of the action (0 first)."""
        if self.responses is None:
            return self
        return self.responses[min(call_number, len(self.responses) - 1)]


class FieldExpectation(_Strict):
    value: Any = Field(description="The value as the worker stores it: 5, \"2026-11-24\", \"19:30\", true.")
    span: str | None = Field(None, description="The person's own words the value was taken from.")


class ActionExpectation(_Strict):
    name: str = Field(description="The action (its `name:` in the spec).")
    with_: dict[str, Any] = Field(default_factory=dict, alias="with",
                                  description="Values the request carried: JSON body keys, and query parameters "
                                              "(as text). Only the keys named are compared.")


class Expect(_Strict):
    """What must hold after the step's line is answered. Each key is optional; only those given
    are checked."""

    reply_contains: str | list[str] | None = Field(
        None, description="Text the reply contains (case-insensitive); a list: each of them.")
    reply_matches: str | None = Field(None, description="An RE2 regular expression the reply matches (search).")
    fields: dict[str, FieldExpectation | Scalar] | None = Field(
        None, description="Collected values by field name: `people: 5`, or `{value: 5, span: \"five\"}`; "
                          "null: the field has no value.")
    task: str | None = Field(None, description="The active task (null: none).")
    outcome: str | None = Field(None, description="The conversation's outcome so far (null: none yet).")
    escalation: str | None = Field(None, description="The rule that handed the conversation over: a rule id, "
                                                     "`TASK.handoff`, `action:NAME` (null: not escalated).")
    actions: list[ActionExpectation] | None = Field(
        None, description="The actions called while answering this line, in order ([]: none).")
    turns: int | None = Field(None, ge=0, description="How many lines the person has sent so far.")

    @field_validator("fields", mode="before")
    @classmethod
    def _detailed(cls, value: Any) -> Any:
        # {value: .., span: ..} is a detailed expectation; anything else is the value itself.
        if isinstance(value, dict):
            return {k: FieldExpectation.model_validate(v) if isinstance(v, dict) and "value" in v else v
                    for k, v in value.items()}
        return value

    @field_validator("reply_matches")
    @classmethod
    def _re2(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                compile_pattern(value)
            except PatternError as exc:
                raise ValueError(str(exc)) from None
        return value

    def given(self) -> set[str]:
        return set(self.model_fields_set)


class Step(_Strict):
    user: str = Field(description="What the person says or writes (quote yes/no: YAML reads them as true/false).")
    expect: Expect | None = None

    @field_validator("user", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError('YAML read an unquoted yes/no/on/off as true/false; put the line in quotes: user: "yes"')
        if isinstance(value, int):
            return str(value)
        return value


class Case(_Strict):
    name: str = Field(min_length=1)
    now: datetime = Field(description="When the conversation happens (ISO-8601); relative dates use it.")
    channel: TestChannel = "console"
    stubs: dict[str, Stub] = Field(default_factory=dict, description="Per action name, what it answers "
                                                                      "(over the file's `stubs`).")
    steps: list[Step] = Field(min_length=1)

    @field_validator("now")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


class TestFile(_Strict):
    """A file of conversation tests for one worker."""

    __test__ = False  # not a pytest class

    worker: str | None = Field(None, description="The worker spec, relative to this file (or `--worker`).")
    stubs: dict[str, Stub] = Field(default_factory=dict, description="Per action name, what it answers, "
                                                                      "for every case.")
    cases: list[Case] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _extensions(cls, data: Any) -> Any:
        # `x-...` keys at the top are the author's own (YAML anchors for steps several cases share).
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if not (isinstance(k, str) and k.startswith("x-"))}
        return data

    @model_validator(mode="after")
    def _unique_names(self) -> TestFile:
        seen: set[str] = set()
        for i, case in enumerate(self.cases):
            if case.name in seen:
                raise ValueError(f"cases.{i}.name: another case is already called {case.name!r}")
            seen.add(case.name)
        return self

    @model_validator(mode="after")
    def _fits_the_worker(self, info: ValidationInfo) -> TestFile:
        """With the worker in the context: every name the file uses exists in it."""
        spec = (info.context or {}).get("spec")
        if spec is None:
            return self
        found = [f"stubs.{name}: the worker has no action {name!r}" for name in self.stubs
                 if name not in {a.name for a in spec.actions}]
        for i, case in enumerate(self.cases):
            found += case_problems(spec, case, f"cases.{i}")
        if found:
            raise ValueError("\n".join(found))
        return self


def case_problems(spec: Any, case: Case, where: str) -> list[str]:
    """The names `case` uses that the worker `spec` (a WorkerSpec) does not have."""
    actions = {a.name for a in spec.actions}
    fields = {f.name for f in spec.fields}
    tasks = {t.name for t in spec.tasks}
    outcomes = {o.name for o in spec.outcomes}
    found = [f"{where}.stubs.{name}: the worker has no action {name!r}" for name in case.stubs if name not in actions]
    for j, step in enumerate(case.steps):
        expect, at = step.expect, f"{where}.steps.{j}.expect"
        if expect is None:
            continue
        found += [f"{at}.fields.{name}: the worker has no field {name!r}" for name in expect.fields or {}
                  if name not in fields]
        if expect.task is not None and expect.task not in tasks:
            found.append(f"{at}.task: the worker has no task {expect.task!r}")
        if expect.outcome is not None and expect.outcome not in outcomes:
            found.append(f"{at}.outcome: {expect.outcome!r} is not one of the worker's outcomes "
                         f"({', '.join(sorted(outcomes))})")
        found += [f"{at}.actions.{k}.name: the worker has no action {a.name!r}"
                  for k, a in enumerate(expect.actions or []) if a.name not in actions]
    return found


def test_file_json_schema() -> dict[str, Any]:
    schema = TestFile.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "channel-worker conversation tests"
    return schema


test_file_json_schema.__test__ = False  # type: ignore[attr-defined]
