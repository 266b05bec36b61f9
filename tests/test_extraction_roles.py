"""Two fields of one type: the words around a value, the field's own words and the question
just asked decide which field a value belongs in; durations, passing words and pronouns are
not values nobody asked for."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from pydantic import ValidationError

from extraction.base import ExtractionContext
from extraction.fields import FieldSpec, role_conflicts
from extraction.rules import RuleExtractor

NOW = datetime(2026, 3, 2, 9, 0)  # a Monday
rules = RuleExtractor()


def field(name: str, type_: str, **extra: Any) -> FieldSpec:
    return FieldSpec(name=name, type=type_, prompt=f"{name}?", **extra)


HOTEL = [
    field("check_in", "date", role="start", label="check-in date", description="the day the guests arrive"),
    field("check_out", "date", role="end", label="check-out date", description="the day the guests leave"),
    field("people", "count"),
    field("adults", "count", units=["adults", "adult"]),
    field("kids", "count", units=["kids", "kid", "children", "child"]),
    field("rooms", "count", units=["rooms", "room"]),
]
# No `role` anywhere: the names and labels alone tell the pair apart.
RENTAL = [
    field("pickup_date", "date", label="pick-up date"),
    field("dropoff_date", "date", label="drop-off date"),
    field("pickup_time", "time", label="pick-up time"),
]


def values(fields: list[FieldSpec], text: str, requested: list[str] | None = None) -> dict[str, Any]:
    found = rules.extract(text, fields, ExtractionContext(requested=requested or [], now=NOW))
    return {e.field: e.value for e in found}


@pytest.mark.parametrize("text", [
    "arriving on the 5th and leaving on the 8th",
    "from the 5th until the 8th",
    "check in the 5th, check out the 8th",
    "we check out on the 8th, and we check in on the 5th",
])
def test_the_words_before_a_date_pick_its_field(text: str) -> None:
    got = values(HOTEL, text)
    assert (got.get("check_in"), got.get("check_out")) == ("2026-03-05", "2026-03-08")


def test_without_a_cue_the_field_just_asked_for_takes_the_value() -> None:
    assert values(HOTEL, "the 8th", requested=["check_out"]) == {"check_out": "2026-03-08"}
    assert values(HOTEL, "the 8th", requested=["check_in"]) == {"check_in": "2026-03-08"}


def test_a_cue_outweighs_the_question() -> None:
    assert values(HOTEL, "we'd leave on the 8th", requested=["check_in"]) == {"check_out": "2026-03-08"}


def test_without_role_the_label_words_tell_pick_up_from_drop_off() -> None:
    got = values(RENTAL, "I'll pick it up on the 9th at 10 am and drop it off on the 12th")
    assert got == {"pickup_date": "2026-03-09", "dropoff_date": "2026-03-12", "pickup_time": "10:00"}


def test_whatever_is_picked_up_or_dropped_off_may_stand_inside_the_verb() -> None:
    assert values(RENTAL, "I'd like to pick one up on the 9th", requested=["dropoff_date"]) == {"pickup_date": "2026-03-09"}
    assert values(RENTAL, "I'll drop the rental car off on the 12th", requested=["pickup_date"]) == {"dropoff_date": "2026-03-12"}


def test_a_correction_to_a_date_keeps_the_field_it_names() -> None:
    assert values(HOTEL, "please change the check in to the 10th") == {"check_in": "2026-03-10"}


def test_a_role_on_a_type_without_roles_is_refused() -> None:
    with pytest.raises(ValidationError, match="no role"):
        field("people", "count", role="start")
    with pytest.raises(ValidationError, match="no role"):
        field("when", "date", role="origin")


def test_two_fields_of_one_type_and_role_are_a_conflict() -> None:
    twice = [field("a", "date", role="start"), field("b", "date", role="start"), field("c", "date", role="end")]
    assert role_conflicts(twice) == ["fields 'a' and 'b' are both date fields with role 'start'"]
    assert role_conflicts(HOTEL) == []


def test_adults_and_children_go_to_their_own_fields_not_a_total() -> None:
    assert values(HOTEL, "We are 2 adults and 3 children") == {"adults": 2, "kids": 3}
    assert values(HOTEL, "our two kids and I") == {"adults": 1, "kids": 2}


def test_a_total_is_taken_when_the_spec_has_no_fields_for_its_parts() -> None:
    assert values([field("people", "count")], "We are 2 adults and 3 children") == {"people": 5}


@pytest.mark.parametrize("text", [
    "Can I also access wifi at the pool?",
    "i need someone to clean my room",
    "my daughter left a teddy bear downstairs",
])
def test_a_pronoun_or_a_mention_is_not_a_count_nobody_asked_for(text: str) -> None:
    assert values(HOTEL, text) == {}


def test_a_pronoun_answers_how_many() -> None:
    assert values(HOTEL, "just me", requested=["adults"]) == {"adults": 1}


@pytest.mark.parametrize("text", ["We'll stay 13 nights", "One night for Friday the 6th"])
def test_a_number_of_nights_is_not_a_time(text: str) -> None:
    times = [field("arrival_time", "time"), field("check_in", "date")]
    assert "arrival_time" not in values(times, text)


def test_now_said_in_passing_is_no_date_or_time() -> None:
    fields = [field("day", "date"), field("at", "time")]
    assert values(fields, "I want a refund right now!") == {}
    assert values(fields, "right now", requested=["at"]) == {"at": "09:00"}


def test_a_range_of_bare_ordinals_is_a_start_and_an_end() -> None:
    assert values(HOTEL, "16th to 27th") == {"check_in": "2026-03-16", "check_out": "2026-03-27"}


def test_until_a_month_runs_to_its_last_day() -> None:
    span = [field("start_date", "date", role="start"), field("end_date", "date", role="end")]
    assert values(span, "how much did I spend until June") == {"end_date": "2026-06-30"}


def test_a_couple_or_my_husband_and_i_are_adults_when_the_spec_counts_by_kind() -> None:
    assert values(HOTEL, "my husband and I, with our three sons") == {"adults": 2, "kids": 3}


def test_a_kind_of_room_said_without_an_article_is_one_room() -> None:
    assert values(HOTEL, "Double room please") == {"rooms": 1}


def test_myself_only_is_one_adult_and_for_one_week_is_no_count() -> None:
    assert values(HOTEL, "myself only") == {"adults": 1}
    assert "people" not in values(HOTEL, "a booking for one week")


def test_a_capitalised_may_after_until_is_the_month() -> None:
    span = [field("start_date", "date", role="start"), field("end_date", "date", role="end")]
    assert values(span, "what did I spend until May") == {"end_date": "2026-05-31"}
    assert values(span, "since last month") == {"start_date": "2026-02-01"}


def test_the_speaker_coming_with_others_is_one_of_the_adults() -> None:
    assert values(HOTEL, "I'm coming with my dad") == {"adults": 2}
    assert values(HOTEL, "I am travelling with my wife and our two kids") == {"adults": 2, "kids": 2}


def test_a_fields_own_cue_words_from_the_spec() -> None:
    trip = [field("visit_day", "date", role="start", cues=["visiting"]),
            field("home_day", "date", role="end", cues=["flying back"])]
    assert values(trip, "flying back on the 9th, visiting on the 3rd") == {"visit_day": "2026-03-03", "home_day": "2026-03-09"}


def test_two_times_told_apart_by_pick_up_and_drop_off() -> None:
    times = [field("pickup_time", "time", label="pick-up time"), field("dropoff_time", "time", label="drop-off time")]
    assert values(times, "drop off at 5 pm and pick up at 9 am") == {"pickup_time": "09:00", "dropoff_time": "17:00"}


@pytest.mark.parametrize("text", ["set up a standing order on the 2nd of each month",
                                  "pay it on the first Wednesday of every month", "every Monday at 7"])
def test_a_recurrence_is_no_date(text: str) -> None:
    assert "day" not in values([field("day", "date"), field("at", "time")], text)
