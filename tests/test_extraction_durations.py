"""Lengths of time are durations, not moments; ranges and the words that anchor a value stay
with it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from extraction.base import ExtractionContext
from extraction.fields import FieldSpec
from extraction.rules import RuleExtractor

NOW = datetime(2026, 3, 12, 9, 0)  # a Thursday
rules = RuleExtractor()


def field(name: str, type_: str, **extra: Any) -> FieldSpec:
    return FieldSpec(name=name, type=type_, prompt=f"{name}?", **extra)


STAY = [field("stay", "duration"), field("day", "date"), field("at", "time")]


def read(fields: list[FieldSpec], text: str) -> dict[str, tuple[Any, str]]:
    return {e.field: (e.value, e.text) for e in rules.extract(text, fields, ExtractionContext(now=NOW))}


@pytest.mark.parametrize("text,iso,said", [
    ("we stay 3 nights", "P3D", "3 nights"),
    ("for two weeks", "P2W", "two weeks"),
    ("an hour and a half", "PT1H30M", "an hour and a half"),
    ("90 minutes", "PT1H30M", "90 minutes"),
    ("just for the weekend", "P2D", "the weekend"),
    ("a couple of days", "P2D", "a couple of days"),
])
def test_lengths_of_time_are_iso_durations(text: str, iso: str, said: str) -> None:
    assert read(STAY, text) == {"stay": (iso, said)}


@pytest.mark.parametrize("text", ["13 nights", "two weeks", "2 hours and 15 minutes"])
def test_a_length_is_never_a_date_or_a_clock_time(text: str) -> None:
    assert read([field("day", "date"), field("at", "time")], text) == {}


def test_in_three_days_is_still_a_date() -> None:
    assert read(STAY, "in 3 days") == {"day": ("2026-03-15", "in 3 days")}


def test_a_range_of_hours_shares_its_am_or_pm() -> None:
    pair = [field("opens", "time", role="start"), field("closes", "time", role="end")]
    assert read(pair, "from 8 to 9 pm") == {"opens": ("20:00", "8"), "closes": ("21:00", "9 pm")}


def test_a_daypart_after_a_spoken_time_changes_and_stays_with_it() -> None:
    assert read([field("at", "time")], "9 20 in the night") == {"at": ("21:20", "9 20 in the night")}


@pytest.mark.parametrize("text,value,said", [
    ("the 5th of this month", "2026-03-05", "5th of this month"),
    ("the 5th of next month", "2026-04-05", "5th of next month"),
    ("Friday next week", "2026-03-20", "Friday next week"),
])
def test_words_that_anchor_a_date_belong_to_its_span(text: str, value: str, said: str) -> None:
    assert read([field("day", "date")], text) == {"day": (value, said)}


def test_an_amount_with_its_currency_sign_after_it_is_money_not_a_time() -> None:
    assert read([field("amount", "money"), field("at", "time")], "I paid 20$") == {
        "amount": ({"amount": 20.0, "currency": "USD"}, "20$")
    }


def test_at_a_number_and_night_is_a_time_not_a_stay() -> None:
    assert read(STAY, "at 3 night") == {"at": ("03:00", "3 night")}


@pytest.mark.parametrize("iso,spoken", [("P3D", "3 days"), ("P1W", "1 week"), ("PT1H30M", "1 hour 30 minutes"),
                                        ("P1Y2M", "1 year 2 months"), ("soon", "soon")])
def test_a_duration_reads_back_in_words(iso: str, spoken: str) -> None:
    from extraction.durations import describe

    assert describe(iso) == spoken


@pytest.mark.parametrize("text", ["how are you today", "Thank you, that's all for today", "thanks for your help today"])
def test_today_in_a_pleasantry_is_no_date(text: str) -> None:
    assert read([field("day", "date")], text) == {}


def test_today_in_a_request_is_a_date() -> None:
    assert read([field("day", "date")], "thank you, is there a table today?") == {"day": ("2026-03-12", "today")}
