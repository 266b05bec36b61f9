"""Typing slips in the words that say what a person wants are read as the word meant, against
the worker's own vocabulary; real words and values are left as they are."""

from __future__ import annotations

from datetime import date

import pytest

from extraction.dates import find_dates
from extraction.names import find_names
from extraction.typos import TypoRepair

repair = TypoRepair(["cancel a booking", "dispute a charge", "I lost my card", "change my reservation"]).repair


@pytest.mark.parametrize("slip,meant", [
    ("I need to canel my booking", "I need to cancel my booking"),   # a letter left out
    ("I want to dispte a charge", "I want to dispute a charge"),
    ("talk to an agrnt", "talk to an agent"),                        # a letter changed (a request word)
    ("I want to cancle", "I want to cancel"),                        # two letters swapped
    ("chnage my reservaton", "change my reservation"),
])
def test_a_slip_one_letter_away_from_the_workers_own_words_is_read_as_that_word(slip: str, meant: str) -> None:
    assert repair(slip) == meant


@pytest.mark.parametrize("text", [
    "no chance of that",        # one letter from "change", but a common English word
    "a table for Kowalczyk",    # a rare word with no word of the worker one slip away
    "it's a card",              # short words are never touched
    "Lopez",
])
def test_real_words_names_and_short_words_are_left_alone(text: str) -> None:
    assert repair(text) == text


def test_a_slip_near_two_of_the_workers_words_is_left_as_written() -> None:
    both = TypoRepair(["bake", "bike"]).repair
    assert both("I want a bmke") == "I want a bmke"  # bake or bike: not guessed


TODAY = date(2026, 11, 30)


@pytest.mark.parametrize("said,past,future", [
    ("the 22nd", "2026-11-22", "2026-12-22"),
    ("on Monday the 16th", "2026-11-16", "2027-08-16"),
    ("in March", "2026-03-01", "2027-03-01"),
    ("on Friday", "2026-11-27", "2026-12-04"),
    ("December 3", "2025-12-03", "2026-12-03"),
])
def test_a_day_without_its_year_is_the_latest_one_gone_when_the_field_allows_no_later_day(
        said: str, past: str, future: str) -> None:
    assert [r.value for r in find_dates(said, TODAY, True, past=True)] == [past]
    assert [r.value for r in find_dates(said, TODAY, True, future=True)] == [future]


def test_a_full_name_typed_with_a_lowercase_known_surname_is_both_names() -> None:
    [reading] = find_names("Maria lopez", requested=True)
    assert [t[0] for t in reading.tokens] == ["Maria", "lopez"]
    [reading] = find_names("Maria please", requested=True)  # a common word still ends the name
    assert [t[0] for t in reading.tokens] == ["Maria"]
