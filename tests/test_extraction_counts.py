"""Counts as a hotel's worker reads them: each kind of guest in its own field, in the singular
or the plural the spec did not write, "none" as an answer, and no count from a mention."""

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


HOTEL = [
    field("people", "count", label="number of guests"),
    field("adults", "count", units=["adults", "grown ups"]),
    field("kids", "count", units=["children", "teenagers"]),
    field("rooms", "count", units=["rooms"]),
    field("number", "integer"),
]


def read(text: str, requested: list[str] | None = None) -> dict[str, Any]:
    return {e.field: e.value for e in rules.extract(text, HOTEL, ExtractionContext(requested=requested or [], now=NOW))}


def test_a_unit_is_heard_in_the_singular_the_spec_wrote_in_the_plural() -> None:
    assert read("a room for 2 grown ups and a teenager") == {"rooms": 1, "adults": 2, "kids": 1}


def test_none_answers_how_many_with_zero() -> None:
    assert read("none", ["number"]) == {"number": 0}
    assert read("none", ["kids"]) == {"kids": 0}


def test_travelling_alone_is_a_party_of_one() -> None:
    assert read("I'm travelling alone") == {"people": 1}


def test_a_couple_of_things_is_no_couple_of_adults() -> None:
    assert read("I've got a couple of small dogs, is it ok if I bring them") == {}


def test_a_room_and_then_another_is_two_rooms() -> None:
    assert read("I will need a room and then another for my friend")["rooms"] == 2
    assert read("a room and another thing")["rooms"] == 1


def test_two_couples_are_four_people() -> None:
    assert read("we are two couples") == {"people": 4}


def test_counts_typed_as_a_form() -> None:
    assert read("adults: 2, children: 1") == {"adults": 2, "kids": 1}


def test_the_speaker_bringing_someone_is_one_of_the_party() -> None:
    assert read("I'm bringing my wife") == {"adults": 2}
    assert read("I'll come with my husband") == {"adults": 2}
    assert read("me + my wife") == {"adults": 2}


def test_a_group_described_by_kind_gives_each_kind_its_part_wherever_it_stands() -> None:
    assert read("my husband, my son and I") == {"adults": 2, "kids": 1}
    assert read("my wife, our baby and me") == {"adults": 2, "kids": 1}


def test_a_list_of_counted_people_may_be_written_without_and() -> None:
    party = [field("people", "count")]
    found = {e.field: e.value for e in rules.extract("3 adults one senior and 2 kids", party, ExtractionContext(requested=[], now=NOW))}
    assert found == {"people": 6}
    # "my three kids" is one term, not "my" and "three kids".
    found = {e.field: e.value for e in rules.extract("me and my three kids", party, ExtractionContext(requested=[], now=NOW))}
    assert found == {"people": 4}


def test_a_person_told_by_age_is_a_child_under_18_and_the_age_is_no_head_count() -> None:
    assert read("me, my husband and our 2 year old") == {"adults": 2, "kids": 1}
    assert read("my wife and I and our 5 year old son") == {"adults": 2, "kids": 1}
    assert read("me and my 70 year old mother") == {"adults": 2}


def test_another_adult_a_married_couple_and_a_form_s_times_sign() -> None:
    assert read("myself and another adult") == {"adults": 2}
    assert read("a married couple") == {"adults": 2}
    assert read("2 x adults") == {"adults": 2}
