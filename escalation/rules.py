"""Escalation rules as data: a structured condition form, validated by pydantic.

A condition is one small mapping, combined with `all`, `any` and `not`. We chose a
structured form over an expression language: it cannot run code, every part has a
line and a field path when it is wrong, and editors complete it from the JSON Schema.

    when: {intent: human}
    when: {field: reason, in: [fraud, legal]}
    when: {field: amount, gt: 500}
    when: {field: account_number, confidence_below: 0.82}
    when: {count: reasks, field: account_number, gte: 2}
    when: {channel: [sms, email]}
    when: {all: [{intent: complaint}, {count: turns, gt: 6}]}
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator


class Intent(str, Enum):
    human = "human"
    complaint = "complaint"
    legal = "legal"
    cancel = "cancel"
    abuse = "abuse"
    stop = "stop"
    out_of_scope = "out_of_scope"  # workers with tasks: the turn matched no task, question or pending answer


class ActionKind(str, Enum):
    reply = "reply"
    ask = "ask"
    confirm = "confirm"
    transfer = "transfer"
    notify = "notify"
    end = "end"


Scalar = str | int | float | bool


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IntentCondition(_Strict):
    intent: Intent | list[Intent] = Field(description="Fires when the turn shows one of these intents.")


class FieldCondition(_Strict):
    field: str = Field(description="Name of a field of this worker.")
    equals: Scalar | None = None
    in_: list[Scalar] | None = Field(None, alias="in")
    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None
    present: bool | None = Field(None, description="true: the field has a value; false: it has none.")
    confidence_below: float | None = Field(None, ge=0, le=1)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _one_test(self) -> FieldCondition:
        tests = [self.equals, self.in_, self.gt, self.gte, self.lt, self.lte, self.present, self.confidence_below]
        if all(t is None for t in tests):
            raise ValueError(
                "a field condition needs a test: equals, in, gt, gte, lt, lte, present or confidence_below"
            )
        return self


class CountCondition(_Strict):
    count: Literal["turns", "reasks", "elapsed_seconds"]
    field: str | None = Field(None, description="For reasks: only re-asks of this field.")
    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None

    @model_validator(mode="after")
    def _one_test(self) -> CountCondition:
        if all(t is None for t in (self.gt, self.gte, self.lt, self.lte)):
            raise ValueError("a count condition needs a test: gt, gte, lt or lte")
        return self


class ChannelCondition(_Strict):
    channel: str | list[str]


class BusinessHours(_Strict):
    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = ["mon", "tue", "wed", "thu", "fri"]
    start: str = Field("09:00", pattern=r"^\d\d:\d\d$")
    end: str = Field("17:00", pattern=r"^\d\d:\d\d$")


class HoursCondition(_Strict):
    outside_hours: BusinessHours | None = None
    inside_hours: BusinessHours | None = None


class AllCondition(_Strict):
    all: list[Condition] = Field(min_length=1)


class AnyCondition(_Strict):
    any: list[Condition] = Field(min_length=1)


class NotCondition(_Strict):
    not_: Condition = Field(alias="not")
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


_KINDS = ("count", "intent", "field", "channel", "outside_hours", "inside_hours", "all", "any", "not")


def _condition_kind(value: Any) -> str | None:
    """Pick the condition model by its leading key, so an error names one form, not nine."""
    if isinstance(value, BaseModel):
        return type(value).__name__.removesuffix("Condition").lower()
    if isinstance(value, dict):
        for key in _KINDS:  # `count` first: a count condition may also name a field
            if key in value:
                return {"outside_hours": "hours", "inside_hours": "hours"}.get(key, key)
    return None


Condition = Annotated[
    Union[
        Annotated[IntentCondition, Tag("intent")],
        Annotated[FieldCondition, Tag("field")],
        Annotated[CountCondition, Tag("count")],
        Annotated[ChannelCondition, Tag("channel")],
        Annotated[HoursCondition, Tag("hours")],
        Annotated[AllCondition, Tag("all")],
        Annotated[AnyCondition, Tag("any")],
        Annotated[NotCondition, Tag("not")],
    ],
    Discriminator(
        _condition_kind,
        custom_error_type="condition_kind",
        custom_error_message="a condition needs one of the keys: " + ", ".join(_KINDS),
    ),
]

AllCondition.model_rebuild()
AnyCondition.model_rebuild()
NotCondition.model_rebuild()


class EscalationRule(_Strict):
    id: str = Field(pattern=r"^[a-z][a-z0-9_\-]*$")
    when: Condition
    action: ActionKind = ActionKind.transfer
    to: str | None = Field(None, description="Phone number, SIP address or queue for a transfer.")
    reason: str = Field(description="Why the conversation goes to a person; shown to the person and the team.")
    say: str | None = Field(None, description="What the worker tells the person before handing over.")
    notify: NotifySettings | None = Field(None, description="Overrides escalation.notify for this rule.")


class NotifySettings(_Strict):
    """Where the team hears of a handoff. Deliveries are retried until they succeed."""

    email: list[str] = Field(default_factory=list, description="Team addresses that get the handoff packet.")
    webhook: str | None = Field(None, pattern=r"^https?://", description="URL that gets the packet as JSON (POST).")


class DriftBand(_Strict):
    """Alarm when the rolling escalation rate, mean field confidence or labelled accuracy leaves this band."""

    window: int = Field(50, ge=5, description="Ended conversations the rolling figures cover.")
    max_escalation_rate: float | None = Field(None, ge=0, le=1)
    min_escalation_rate: float | None = Field(None, ge=0, le=1)
    min_mean_confidence: float | None = Field(None, ge=0, le=1)
    min_labelled_accuracy: float | None = Field(
        None, ge=0, le=1, description="Alarm when, of the last `label_window` values reviewers labelled, fewer than "
                                      "this share were right.")
    label_window: int = Field(50, ge=5, description="Labelled values the labelled accuracy covers (the latest label "
                                                    "of each value, newest first).")


class EscalationSettings(_Strict):
    rules: list[EscalationRule] = Field(default_factory=list)
    notify: NotifySettings = Field(default_factory=NotifySettings)
    drift: DriftBand | None = None
    max_reasks: int = Field(2, ge=0, description="Re-asks of one field before the reask-limit outcome.")
    on_reask_limit: Literal["escalate", "end"] = "escalate"


def condition_fields(condition: Any) -> list[str]:
    """Names of the worker fields a condition refers to (for spec validation)."""
    if isinstance(condition, FieldCondition):
        return [condition.field]
    if isinstance(condition, CountCondition):
        return [condition.field] if condition.field else []
    if isinstance(condition, (AllCondition, AnyCondition)):
        items = condition.all if isinstance(condition, AllCondition) else condition.any
        return [name for c in items for name in condition_fields(c)]
    if isinstance(condition, NotCondition):
        return condition_fields(condition.not_)
    return []
