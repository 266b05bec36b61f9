"""Confidence ranks the readings likely right above the likely wrong: an answer to the worker's
question above a value in the person's own question, in talk of the past, beside a rival value
for the same field, or one the person says "not" to."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from extraction.base import ExtractionContext
from extraction.fields import FieldSpec
from extraction.rules import RuleExtractor

NOW = datetime(2026, 3, 2, 9, 0)
rules = RuleExtractor()


def field(name: str, type_: str, **extra: Any) -> FieldSpec:
    return FieldSpec(name=name, type=type_, prompt=f"{name}?", **extra)


BOOKING = [field("date", "date"), field("time", "time"), field("people", "count")]


def confidence(text: str, name: str, requested: list[str] | None = None) -> float:
    found = {e.field: e for e in rules.extract(text, BOOKING, ExtractionContext(requested=requested or [], now=NOW))}
    return found[name].confidence


def test_an_answer_to_the_question_asked_is_surer_than_a_value_in_a_question_of_ones_own() -> None:
    assert confidence("tomorrow works for us", "date", ["date"]) > confidence("when are you open tomorrow, a table free?", "date")


def test_a_value_in_talk_of_the_past_is_less_sure() -> None:
    assert confidence("I want a table for tomorrow please", "date") > confidence("I made a booking for tomorrow please", "date")


def test_a_rival_value_for_the_same_field_makes_the_reading_less_sure() -> None:
    assert confidence("a table for 8 people please", "people") > confidence("a table for 8 people or maybe 7 people please", "people")


def test_a_value_said_with_not_before_it_is_less_sure() -> None:
    assert confidence("we can come at 6pm tomorrow", "time") > confidence("we can come but not 6pm tomorrow", "time")
