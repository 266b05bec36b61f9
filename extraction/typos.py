"""Typing slips in the words that say what a person wants: "I need to canel my booking", "I want
to dispte a charge", "can I talk to an agrnt". The embedding router reads "canel" as close to
"change", and the request-for-a-person pattern does not see "agrnt" at all.

A word is repaired only when all of these hold: it has four letters or more; it is rare in
English (wordfreq's Zipf frequency under RARE_ZIPF, so "panel", "chance" and "Lopez" are left
alone); and exactly one word of the worker's own vocabulary (its tasks' names, labels,
descriptions and examples, its knowledge questions, and the words the request patterns look
for) is one typing slip away from it: a letter left out, added, changed, or two letters
swapped (Damerau-Levenshtein distance 1).

The repaired text is only read for what the person wants (routing and requests); values are
always taken from what they wrote, and the transcript keeps their words."""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

from wordfreq import zipf_frequency

# 2.5: "adress" (2.39) and "perso" (2.02) are slips; "panel" (4.6), "lopez" (3.8) are words.
RARE_ZIPF = 2.5
MIN_LETTERS = 4
_WORD = re.compile(r"[A-Za-z]+")
_LETTERS = "abcdefghijklmnopqrstuvwxyz"

# What extraction/intents.py's patterns look for, so a slip in a request for a person, a
# cancellation or a complaint is seen too.
REQUEST_WORDS = ("human", "person", "agent", "someone", "somebody", "representative", "operator", "manager",
                 "supervisor", "staff", "customer", "service", "cancel", "cancelling", "cancellation", "complain",
                 "complaint", "lawyer", "attorney", "solicitor", "restart", "beginning", "goodbye", "speak", "talk")


@lru_cache(maxsize=65536)
def _rare(word: str) -> bool:
    return zipf_frequency(word, "en") < RARE_ZIPF


def _one_slip(word: str) -> set[str]:
    """Every string one typing slip away from `word` (Norvig's edits1, with transpositions)."""
    splits = [(word[:i], word[i:]) for i in range(len(word) + 1)]
    deletes = {a + b[1:] for a, b in splits if b}
    swaps = {a + b[1] + b[0] + b[2:] for a, b in splits if len(b) > 1}
    changes = {a + c + b[1:] for a, b in splits if b for c in _LETTERS}
    inserts = {a + c + b for a, b in splits for c in _LETTERS}
    return deletes | swaps | changes | inserts


class TypoRepair:
    def __init__(self, texts: Iterable[str]):
        self._vocabulary = frozenset(
            w.lower() for text in (*texts, *REQUEST_WORDS) for w in _WORD.findall(text) if len(w) >= MIN_LETTERS)
        self._cache: dict[str, str | None] = {}

    def repair(self, text: str) -> str:
        """`text` with each slip replaced by the word it was meant to be (same text when none)."""
        return _WORD.sub(self._word, text)

    def _word(self, match: re.Match[str]) -> str:
        word = match.group(0)
        lower = word.lower()
        if len(lower) < MIN_LETTERS or lower in self._vocabulary:
            return word
        if lower not in self._cache:
            if len(self._cache) > 65536:
                self._cache.clear()
            meant = None
            if _rare(lower):
                near = _one_slip(lower) & self._vocabulary
                meant = next(iter(near)) if len(near) == 1 else None
            self._cache[lower] = meant
        return self._cache[lower] or word
