"""Where a value's span starts and ends: the words that change or anchor the value are in it,
the words that only lead up to it are not."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from extraction.base import ExtractionContext
from extraction.fields import FieldSpec
from extraction.rules import RuleExtractor

NOW = datetime(2026, 3, 2, 9, 0)  # a Monday
rules = RuleExtractor()


def field(name: str, type_: str, **extra: Any) -> FieldSpec:
    return FieldSpec(name=name, type=type_, prompt=f"{name}?", **extra)


TIME = [field("time", "time")]


def read(text: str, fields: list[FieldSpec], requested: list[str] | None = None) -> dict[str, tuple[Any, str]]:
    found = rules.extract(text, fields, ExtractionContext(requested=requested or [], now=NOW))
    return {e.field: (e.value, e.text) for e in found}


@pytest.mark.parametrize(("text", "value", "span"), [
    ("pick it up at 2:30 in the afternoon please", "14:30", "2:30 in the afternoon"),
    ("I land at 22:35 night", "22:35", "22:35 night"),
    ("at 7 o'clock in the evening", "19:00", "7 o'clock in the evening"),
    ("11 o'clock in the morning works", "11:00", "11 o'clock in the morning"),
])
def test_a_daypart_that_sets_the_hour_stays_in_the_span(text: str, value: str, span: str) -> None:
    assert read(text, TIME)["time"] == (value, span)


@pytest.mark.parametrize(("text", "value", "span"), [
    ("evening 6 would be good", "18:00", "evening 6"),
    ("morning 10:30", "10:30", "morning 10:30"),
    ("tomorrow night 8:15 for two", "20:15", "night 8:15"),
])
def test_a_daypart_said_before_the_hour_sets_it_and_starts_the_span(text: str, value: str, span: str) -> None:
    assert read(text, TIME, ["time"])["time"] == (value, span)


CITY = [field("pickup_city", "place", label="pick-up city")]


@pytest.mark.parametrize(("text", "value", "span"), [
    ("I need to pick it up in Vancouver BC", "Vancouver", "Vancouver BC"),
    ("a car in Austin, Texas please", "Austin", "Austin, Texas"),
    ("I need a car in Portland Oregon next Friday", "Portland", "Portland Oregon"),
])
def test_a_state_or_province_after_a_town_is_part_of_the_place(text: str, value: str, span: str) -> None:
    assert read(text, CITY)["pickup_city"] == (value, span)


def test_an_everyday_word_in_an_airports_name_is_no_airport() -> None:
    # "Downtown" names an airport (Wausau Downtown); said before a city it is part of the street talk.
    assert read("Can you find me something at Downtown Seattle?", CITY)["pickup_city"][0] == "Seattle"
    assert read("Pick it up at Heathrow", CITY)["pickup_city"] == ("London Heathrow Airport", "Heathrow")


RENTAL = [field("pickup_date", "date", label="pick-up date"), field("dropoff_date", "date", label="drop-off date"),
          field("pickup_time", "time", label="pick-up time")]


def test_the_before_the_day_after_tomorrow_stays_out_as_before_the_5th() -> None:
    assert read("I need a car from the day after tomorrow", RENTAL)["pickup_date"] == ("2026-03-04", "day after tomorrow")


def test_dates_written_with_slashes_after_from_and_to_are_dates_not_a_time() -> None:
    assert read("from 3/5 to 3/9", RENTAL) == {"pickup_date": ("2026-03-05", "3/5"), "dropoff_date": ("2026-03-09", "3/9")}


def test_the_space_after_an_amount_is_no_part_of_it() -> None:
    assert read("a standing order for $340 on Monday", [field("amount", "money")])["amount"] == (
        {"amount": 340.0, "currency": "USD"}, "$340")


def test_the_following_monday_is_a_date_that_ends_the_rental_after_till() -> None:
    assert read("from tomorrow till the following Monday", RENTAL) == {
        "pickup_date": ("2026-03-03", "tomorrow"), "dropoff_date": ("2026-03-09", "following Monday")}


PARTY = [field("people", "count")]


@pytest.mark.parametrize(("text", "value", "span"), [
    ("2 adults, one teen and a child", 4, "2 adults, one teen and a child"),
    ("a table for a grandmother and her grandson", 2, "a grandmother and her grandson"),
    ("my booking is for eight total people", 8, "eight"),
])
def test_a_party_described_in_words_or_with_a_word_before_its_noun(text: str, value: int, span: str) -> None:
    assert read(text, PARTY)["people"] == (value, span)


def test_an_ordinal_that_is_the_whole_reply_is_a_date() -> None:
    assert read("16th", [field("date", "date")])["date"] == ("2026-03-16", "16th")


@pytest.mark.parametrize(("text", "span"), [("I need a car in Paris, France on Monday", "Paris, France"),
                                            ("pick it up in London UK", "London UK")])
def test_a_country_after_a_town_is_part_of_the_place(text: str, span: str) -> None:
    assert read(text, CITY)["pickup_city"][1] == span


def test_a_daypart_before_at_sets_the_hour_it_spans() -> None:
    assert read("I need a car tomorrow afternoon at 2", TIME)["time"] == ("14:00", "afternoon at 2")


def test_the_end_of_the_month_is_its_last_day() -> None:
    assert read("from today until the end of the month", RENTAL) == {
        "pickup_date": ("2026-03-02", "today"), "dropoff_date": ("2026-03-31", "end of the month")}


def test_an_evening_or_afternoon_said_anywhere_sets_a_bare_hour() -> None:
    assert read("I'd like to go on the evening of the 10th at 7", TIME)["time"][0] == "19:00"
    assert read("on Friday afternoon, say around 3", TIME)["time"][0] == "15:00"


@pytest.mark.parametrize("text", ["around 2 o\"clock in the afternoon", "around 2 o’clock in the afternoon",
                                  "around 2 o'clock in the afternoon"])
def test_o_clock_typed_with_any_apostrophe_is_the_same_time(text: str) -> None:
    assert read(text, TIME) == {"time": ("14:00", "2 o" + text.split(" o")[1])}
