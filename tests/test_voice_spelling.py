"""A name spelled out on the phone is read back as the name, however the recogniser wrote
the letters; anything that is not a spelling is left alone."""

from __future__ import annotations

import pytest

from channels.voice.spelling import read_spelling


@pytest.mark.parametrize("heard", [
    "L O P E Z", "L-O-P-E-Z.", "L. O. P. E. Z.", "l, o, p, e, z", "LOPEZ", "El, oh, pee, ee, zed.",
    "It's L O P E Z.", "That's spelled L O P E Z", "Lima Oscar Papa Echo Zulu",
    "L as in Lima, O, P as in Peter, E, Z.", "L for London, O for Oscar, P, E, Z as in zebra",
])
def test_letters_however_written_make_the_name(heard: str) -> None:
    assert read_spelling(heard) == "Lopez"


def test_the_word_after_as_in_names_the_letter_even_when_the_letter_was_misheard() -> None:
    # M and N sound alike on a phone line; "Mike" and "November" do not.
    assert read_spelling("N as in Mike, A, R, Y") == "Mary"
    assert read_spelling("M like November, O V A K") == "Novak"


def test_double_and_triple_repeat_the_next_letter() -> None:
    assert read_spelling("P H I double L I P S") == "Phillips"
    assert read_spelling("M O R R I S S double E Y") == "Morrisseey"
    assert read_spelling("double L O Y D") == "Lloyd"
    assert read_spelling("B R A Y triple E") == "Brayeee"


def test_apostrophes_hyphens_and_spaces_said_as_words() -> None:
    assert read_spelling("O apostrophe B R I E N") == "O'Brien"
    assert read_spelling("S M I T H hyphen J O N E S") == "Smith-Jones"
    assert read_spelling("V A N space D Y K E") == "Van Dyke"


@pytest.mark.parametrize("heard", ["Lopez", "I want to book a table", "Yes, that's right", "", "L", "um, sorry?"])
def test_what_is_not_a_spelling_is_not_read_as_one(heard: str) -> None:
    assert read_spelling(heard) is None
