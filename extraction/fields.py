"""Field definitions: what a worker collects, of which type, under which constraints.

These models are part of the worker spec (`dialogue.spec`) but live here because the
extractors and the validator are their main readers; the dialogue layer imports them,
never the other way round.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from extraction.patterns import compile_pattern

IDENTIFIER = r"^[a-z][a-z0-9_]*$"


class FieldType(str, Enum):
    text = "text"
    name = "name"
    first_name = "first_name"
    last_name = "last_name"
    full_name = "full_name"
    date = "date"
    time = "time"
    datetime = "datetime"
    integer = "integer"
    count = "count"
    money = "money"
    phone = "phone"
    email = "email"
    digits = "digits"
    choice = "choice"
    yes_no = "yes_no"
    free_text = "free_text"
    place = "place"
    duration = "duration"


NUMERIC_TYPES = {FieldType.integer, FieldType.count}
NAME_TYPES = {FieldType.name, FieldType.first_name, FieldType.last_name, FieldType.full_name}
# Which roles a field of each type may play: two dates in one spec are a start and an end
# (check in / check out), two places an origin and a destination.
ROLES: dict[FieldType, tuple[str, ...]] = {
    FieldType.date: ("start", "end"),
    FieldType.time: ("start", "end"),
    FieldType.datetime: ("start", "end"),
    FieldType.place: ("origin", "destination"),
}
Role = Literal["start", "end", "origin", "destination"]


class Choice(BaseModel):
    """One allowed value of a choice field, with the other words people use for it."""

    model_config = ConfigDict(extra="forbid")

    value: str
    synonyms: list[str] = Field(default_factory=list)
    description: str = ""


class Constraints(BaseModel):
    """Limits a collected value must respect; which ones apply depends on the field type."""

    model_config = ConfigDict(extra="forbid")

    min: float | None = Field(None, description="Smallest allowed number, or earliest date as days from today.")
    max: float | None = Field(None, description="Largest allowed number, or latest date as days from today.")
    min_length: int | None = Field(None, ge=0, description="Fewest characters (digits for digit fields).")
    max_length: int | None = Field(None, ge=1, description="Most characters (digits for digit fields).")
    pattern: str | None = Field(
        None, description="Regular expression (RE2 syntax: no lookaround or backreferences) the whole normalised value must match."
    )
    choices: list[Choice] | None = Field(None, description="Allowed values of a choice field.")
    checksum: str | None = Field(None, description="'luhn' to require a valid Luhn check digit.")
    not_in_past: bool = Field(False, description="Dates: refuse a day before the message was sent.")
    earliest: str | None = Field(None, pattern=r"^\d\d:\d\d$", description="Times: earliest allowed, HH:MM; also settles 7 vs 19.")
    latest: str | None = Field(None, pattern=r"^\d\d:\d\d$", description="Times: latest allowed, HH:MM.")
    date_order: Literal["MDY", "DMY"] = Field("MDY", description="Dates: how to read 5/12/2018.")
    country: str | None = Field(
        None, pattern=r"^[A-Z]{2}$", description="Places: ISO 3166 country code the gazetteer's towns must be in."
    )

    @field_validator("choices", mode="before")
    @classmethod
    def _choices_from_strings(cls, value: Any) -> Any:
        # A plain list of words is the common case; accept it as choices without synonyms.
        if isinstance(value, list):
            return [{"value": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("pattern")
    @classmethod
    def _pattern_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            compile_pattern(value)  # RE2: refuses what could backtrack, says why (a ValueError)
        return value

    @field_validator("checksum")
    @classmethod
    def _known_checksum(cls, value: str | None) -> str | None:
        if value is not None and value.lower() != "luhn":
            raise ValueError("checksum must be 'luhn'")
        return value.lower() if value else value

    @model_validator(mode="after")
    def _ranges_ordered(self) -> Constraints:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        if self.min_length is not None and self.max_length is not None and self.min_length > self.max_length:
            raise ValueError("min_length is greater than max_length")
        return self


class FieldSpec(BaseModel):
    """One value the worker collects."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=IDENTIFIER, description="Identifier used in templates and exports.")
    type: FieldType
    description: str = ""
    label: str | None = Field(None, description="How the worker names this field aloud; defaults to the name.")
    required: bool = True
    prompt: str = Field(description="What the worker says to ask for this field.")
    reask: str | None = Field(None, description="Said when the answer was not understood; defaults to the script's.")
    invalid: str | None = Field(None, description="Said when the value breaks a constraint; `{error}` is the reason.")
    constraints: Constraints = Field(default_factory=Constraints)
    units: list[str] = Field(
        default_factory=list,
        description="Counts: the nouns that count this field ('rooms', 'adults'); people words by default.",
    )
    confirm_as: str | None = Field(
        None, description="How the value reads back in the confirmation, e.g. '{date:%A %d %B}'."
    )
    role: Role | None = Field(
        None,
        description="Dates and times: start or end; places: origin or destination. Tells two fields of one type apart.",
    )
    cues: list[str] = Field(
        default_factory=list,
        description="Words people say before a value of this field ('check in', 'pick up'); added to those of its name and role.",
    )

    @property
    def spoken_label(self) -> str:
        return self.label or self.name.replace("_", " ")

    @model_validator(mode="after")
    def _choices_only_for_choice(self) -> FieldSpec:
        if self.type is FieldType.choice and not self.constraints.choices:
            raise ValueError("a choice field needs constraints.choices")
        # A place field may list the spec's own areas or venues, with their synonyms.
        if self.type not in (FieldType.choice, FieldType.place) and self.constraints.choices:
            raise ValueError("constraints.choices only applies to fields of type choice or place")
        if self.role is not None and self.role not in ROLES.get(self.type, ()):
            allowed = ROLES.get(self.type)
            raise ValueError(
                f"a {self.type.value} field has no role {self.role!r}"
                + (f" (roles: {', '.join(allowed)})" if allowed else f"; roles apply to {', '.join(t.value for t in ROLES)} fields")
            )
        return self


def role_conflicts(fields: list[FieldSpec]) -> list[str]:
    """Two fields of one type with one role cannot be told apart; `spec check` refuses them."""
    seen: dict[tuple[FieldType, str], str] = {}
    problems = []
    for f in fields:
        if f.role is None:
            continue
        key = (f.type, f.role)
        if key in seen:
            problems.append(f"fields {seen[key]!r} and {f.name!r} are both {f.type.value} fields with role {f.role!r}")
        else:
            seen[key] = f.name
    return problems
