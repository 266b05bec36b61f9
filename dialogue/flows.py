"""Tasks and their steps: the conversation design of a worker that does several jobs.

A task is one job (book, change, cancel): the phrases that start it, its own fields, and
its steps, run in order by `dialogue/flow_runner.py`:

    steps:
      - ask: [date, time, people]            # one or more fields; asked until each has a value
      - ask: allergy_details
        when: {field: allergies, equals: true}   # asked only when the condition holds
      - call: availability                   # an action (actions/): results availability.*
      - if: {field: availability.available, equals: false}
        then:
          - say: "We're full then; we have {availability.times}."
          - ask: time
        else: []
      - confirm                              # read back, yes/no, corrections
      - call: create_booking
      - outcome: completed                   # the outcome, without ending
      - say: "You're booked!"
      - goto: feedback                       # start another task
      - handoff: "Wants a private room"     # to a person, with the reason
      - end                                  # the closing line, the conversation ends

Conditions are the escalation rules' condition language; a `field:` in a condition may name
a field or an action's result (`availability.available`). A spec without `tasks` is a worker
with one task: ask every required field, confirm, done (what `dialogue/nodes.py` does).
"""

from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, Tag, field_validator

from escalation.rules import Condition
from extraction.fields import IDENTIFIER, FieldSpec


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class AskStep(_Strict):
    ask: list[str] = Field(description="The fields to collect, in order.")
    when: Condition | None = Field(None, description="Ask only while this holds.")

    @field_validator("ask", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class SayStep(_Strict):
    say: str = Field(description="A line; may quote fields and results.")


class IfStep(_Strict):
    if_: Condition = Field(alias="if")
    then: list[Step] = Field(default_factory=list)
    else_: list[Step] = Field(default_factory=list, alias="else")


class CallStep(_Strict):
    call: str = Field(description="The name of an action in `actions:`.")


class ConfirmStep(_Strict):
    confirm: str | bool = Field(True, description="true: the task's (or the script's) confirmation line; or a line.")


class OutcomeStep(_Strict):
    outcome: str = Field(description="The conversation's outcome from here on (the conversation goes on).")


class GotoStep(_Strict):
    goto: str = Field(description="A task to start; the fields it shares with this one are kept.")


class HandoffStep(_Strict):
    handoff: str = Field(description="Why the conversation goes to a person (for the team and the packet).")


class EndStep(_Strict):
    end: str | bool = Field(True, description="true: the task's (or the script's) closing line; or a line.")


def _step_kind(value: Any) -> str | None:
    if isinstance(value, str):
        return value if value in ("confirm", "end") else None
    if isinstance(value, BaseModel):
        return type(value).__name__.removesuffix("Step").lower()
    if isinstance(value, dict):
        for key in STEP_KINDS:
            if key in value:
                return key
    return None


STEP_KINDS = ("ask", "say", "if", "call", "confirm", "outcome", "goto", "handoff", "end")


def _bare(value: Any) -> Any:
    # `- confirm` and `- end` written alone are the step with its default.
    if value in ("confirm", "end"):
        return {value: True}
    return value


Step = Annotated[Annotated[
    Union[
        Annotated[AskStep, Tag("ask")],
        Annotated[SayStep, Tag("say")],
        Annotated[IfStep, Tag("if")],
        Annotated[CallStep, Tag("call")],
        Annotated[ConfirmStep, Tag("confirm")],
        Annotated[OutcomeStep, Tag("outcome")],
        Annotated[GotoStep, Tag("goto")],
        Annotated[HandoffStep, Tag("handoff")],
        Annotated[EndStep, Tag("end")],
    ],
    Discriminator(_step_kind, custom_error_type="step_kind",
                  custom_error_message="a step is one of: " + ", ".join(STEP_KINDS)),
], BeforeValidator(_bare)]
IfStep.model_rebuild()


class Task(_Strict):
    name: str = Field(pattern=IDENTIFIER)
    description: str = Field("", description="What the job is; also used to recognise it.")
    label: str | None = Field(None, description="The job as a noun, for lines such as 'back to your {task}' "
                                                "(default: the name, e.g. 'booking').")
    examples: list[str] = Field(default_factory=list, description="Phrases that start it (5 to 15 is typical).")
    fields: list[FieldSpec] = Field(default_factory=list, description="Fields only this task collects.")
    steps: list[Step] = Field(min_length=1)
    confirmation: str | None = Field(None, description="This task's read-back line (default: the script's).")
    closing: str | None = Field(None, description="This task's closing line (default: the script's).")
    outcome: str = Field("completed", description="The outcome when the task ends without an `outcome` step.")

    def all_steps(self) -> list[Any]:
        return walk(self.steps)

    def asked_fields(self) -> list[str]:
        """The fields this task collects (its own and shared ones), in the order it asks them."""
        return list(dict.fromkeys(name for step in walk(self.steps) if isinstance(step, AskStep) for name in step.ask))


class KnowledgeEntry(_Strict):
    question: str = Field(description="The question as people ask it.")
    answer: str = Field(description="The spec's own answer; the only text ever said for it.")
    examples: list[str] = Field(default_factory=list, description="Other ways people ask it.")


class Routing(_Strict):
    threshold: float | None = Field(None, ge=0, le=1, description="Below this similarity a turn matches no task.")
    start_task: str | None = Field(None, description="The task begun at the greeting, before the person says what they want.")


def walk(steps: list[Any]) -> list[Any]:
    """Every step, depth first, including those inside `if` branches."""
    out: list[Any] = []
    for step in steps:
        out.append(step)
        if isinstance(step, IfStep):
            out += walk(step.then) + walk(step.else_)
    return out


def at(steps: list[Any], pointer: list[int]) -> Any | None:
    """The step a pointer names: [2] is the third step, [2, 0, 1] the second step of the third
    step's `then` branch (1 = else). None past the end of its list."""
    current: list[Any] = steps
    for depth in range(0, len(pointer) - 1, 2):
        step = current[pointer[depth]]
        current = step.then if pointer[depth + 1] == 0 else step.else_
    index = pointer[-1]
    return current[index] if index < len(current) else None


def step_id(task: str, pointer: list[int]) -> str:
    return f"{task}." + ".".join(str(p) for p in pointer)


def advance(steps: list[Any], pointer: list[int]) -> list[int]:
    """The pointer to the step after this one: the next in its list, or, at the end of a
    branch, the step after the `if` that holds the branch."""
    pointer = [*pointer[:-1], pointer[-1] + 1]
    while len(pointer) > 1 and at(steps, pointer) is None:
        pointer = [*pointer[:-3], pointer[-3] + 1]
    return pointer
