"""Names that are also common words, after lead-ins the rules did not know, and first and last
names each said with their own words."""

from __future__ import annotations

from datetime import datetime

import pytest

from extraction.base import ExtractionContext
from extraction.fields import FieldSpec
from extraction.name_lists import given_names, surnames
from extraction.rules import RuleExtractor

rules = RuleExtractor()
NAMES = [FieldSpec(name="first_name", type="first_name", prompt="first name?"),
         FieldSpec(name="last_name", type="last_name", prompt="last name?")]
NOW = datetime(2026, 3, 2, 9)


def names(text: str, requested: list[str] | None = None) -> dict[str, str]:
    found = rules.extract(text, NAMES, ExtractionContext(requested=requested or [], now=NOW))
    return {e.field: e.value for e in found}


@pytest.mark.parametrize("text,expected", [
    ("Grace here", {"first_name": "Grace"}),
    ("hi this is daniel, table for two", {"first_name": "Daniel"}),
    ("The reservation should be in Rose Baker's name", {"first_name": "Rose", "last_name": "Baker"}),
    ("Can you book it as Faith Long?", {"first_name": "Faith", "last_name": "Long"}),
    ("Please reserve for Summer Wood tomorrow", {"first_name": "Summer", "last_name": "Wood"}),
    ("first name is Sunny and surname is Day", {"first_name": "Sunny", "last_name": "Day"}),
    ("First name Carry, last name Jocoy", {"first_name": "Carry", "last_name": "Jocoy"}),
])
def test_names_the_rules_used_to_miss(text: str, expected: dict[str, str]) -> None:
    assert names(text) == expected


@pytest.mark.parametrize("text", ["i am hungry", "this is great, thanks", "I am fine", "this is june", "Im happy with that"])
def test_common_words_after_a_self_introduction_are_not_names(text: str) -> None:
    assert names(text) == {}


def test_the_name_lists_hold_names_of_many_origins_and_no_placeholder() -> None:
    assert {"maria", "jose", "grace", "ngozi", "siobhan", "aoife"} <= given_names()
    assert {"nguyen", "garcia", "okafor", "murphy", "okeke"} <= surnames()
    assert "doe" not in surnames()
