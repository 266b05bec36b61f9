"""Places: towns and cities from the GeoNames gazetteer, the spec's own areas, origin and
destination told apart."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from extraction.base import ExtractionContext
from extraction.fields import FieldSpec
from extraction.rules import RuleExtractor

NOW = datetime(2026, 3, 2, 9, 0)
rules = RuleExtractor()


def field(name: str, **extra: Any) -> FieldSpec:
    return FieldSpec(name=name, type="place", prompt=f"{name}?", **extra)


# No `role`: the names and labels tell origin from destination.
TRIP = [field("from_city", label="departure city"), field("to_city", label="destination city")]


def read(fields: list[FieldSpec], text: str, requested: list[str] | None = None) -> dict[str, tuple[Any, str]]:
    found = rules.extract(text, fields, ExtractionContext(requested=requested or [], now=NOW))
    return {e.field: (e.value, e.text) for e in found}


@pytest.mark.parametrize("text,origin,destination", [
    ("I need a bus from Sacramento to Fresno", ("Sacramento", "Sacramento"), ("Fresno", "Fresno")),
    ("going to Los Angeles, leaving from San Diego", ("San Diego", "San Diego"), ("Los Angeles", "Los Angeles")),
    ("from SF to Vegas", ("San Francisco", "SF"), ("Las Vegas", "Vegas")),
])
def test_from_x_to_y_fills_origin_and_destination(text: str, origin: tuple, destination: tuple) -> None:
    assert read(TRIP, text) == {"from_city": origin, "to_city": destination}


def test_a_place_without_a_cue_answers_the_field_just_asked() -> None:
    assert read(TRIP, "Philly please", requested=["to_city"]) == {"to_city": ("Philadelphia", "Philly")}


def test_spelling_and_spoken_variants_have_one_canonical_name() -> None:
    one = [field("city")]
    assert read(one, "leaving saint louis tomorrow")["city"] == ("St. Louis", "saint louis")
    assert read(one, "I'll fly into NYC")["city"] == ("New York City", "NYC")


def test_a_common_word_is_a_town_only_when_it_reads_as_one() -> None:
    one = [field("city")]
    assert read(one, "reading the menu is nice") == {}
    assert read(one, "I'm travelling to Reading")["city"] == ("Reading", "Reading")


def test_the_specs_own_areas_and_their_synonyms() -> None:
    areas = [field("area", constraints={"choices": [{"value": "Old Town", "synonyms": ["the old quarter"]}]})]
    assert read(areas, "somewhere in the old quarter") == {"area": ("Old Town", "the old quarter")}


def test_country_constraint_keeps_the_towns_of_that_country() -> None:
    london_on = [field("city", constraints={"country": "CA"})]
    assert read([field("city")], "to London")["city"] == ("London", "London")
    assert read(london_on, "to London")["city"] == ("London", "London")
    assert read(london_on, "to Paris") == {}  # the Paris of Canada is too small for the gazetteer


def test_when_asked_an_unknown_place_is_the_answer_as_said() -> None:
    assert read([field("city")], "Tinyville", requested=["city"]) == {"city": ("Tinyville", "Tinyville")}
    assert read([field("city")], "Tinyville") == {}


def test_a_role_of_a_place_is_origin_or_destination() -> None:
    with pytest.raises(ValueError, match="no role 'start'"):
        field("city", role="start")
    assert field("city", role="origin").role == "origin"


@pytest.mark.parametrize("text,name,said", [
    ("flying into JFK tomorrow", "John F Kennedy International Airport", "JFK"),
    ("leaving from Heathrow", "London Heathrow Airport", "Heathrow"),
    ("pick me up at O'Hare airport", "Chicago O'Hare International Airport", "O'Hare airport"),
    ("land at San Francisco International", "San Francisco International Airport", "San Francisco International"),
])
def test_airports_by_code_or_name(text: str, name: str, said: str) -> None:
    assert read([field("where")], text) == {"where": (name, said)}


def test_an_airport_code_in_small_letters_is_a_word() -> None:
    assert read([field("where")], "we are at sea") == {}


def test_a_town_named_beside_others_is_in_their_country() -> None:
    # The most populous Santa Cruz is in Bolivia; beside Berkeley it is California's.
    assert read(TRIP, "bus from Berkeley to Santa Cruz next Monday") == {
        "from_city": ("Berkeley", "Berkeley"), "to_city": ("Santa Cruz", "Santa Cruz")}


def test_a_state_said_after_the_name_picks_the_town() -> None:
    assert read(TRIP, "going to Santa Cruz, California")["to_city"] == ("Santa Cruz", "Santa Cruz, California")


def test_the_dot_that_closes_an_abbreviation_is_part_of_the_place() -> None:
    assert read(TRIP, "from NYC to Washington D.C.")["to_city"][1] == "Washington D.C."


def test_the_first_word_of_a_longer_name_is_no_town_of_its_own() -> None:
    # "San" is a town in Mali; "San Fran" is not in the gazetteer, so nothing is read.
    assert read(TRIP, "going to San Fran") == {}
    assert read(TRIP, "going to LA Monday")["to_city"] == ("Los Angeles", "LA")


def test_a_country_after_a_town_keeps_out_the_full_stop_that_ends_the_sentence() -> None:
    one = [field("city")]
    assert read(one, "I want to pick it up in London, England. Around noon")["city"] == ("London", "London, England")
    assert read(one, "pick it up in London, UK.")["city"] == ("London", "London, UK")


def test_a_state_code_typed_in_title_case_after_a_comma_is_the_state() -> None:
    one = [field("city")]
    assert read(one, "from Sacramento, Ca on the 4th")["city"] == ("Sacramento", "Sacramento, Ca")
    assert read(one, "going to Austin, Tx.")["city"] == ("Austin", "Austin, Tx")
    # A code that is also a word reads on as English.
    assert read(one, "flying to Boston, Me and my wife")["city"] == ("Boston", "Boston")
