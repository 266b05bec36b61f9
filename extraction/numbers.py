"""Numbers as people write and speak them, found with their spans.

"4", "four", "twenty one", "a dozen", "twelve hundred". Spans index the original
text so every number can be grounded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

UNITS = {
    "zero": 0, "oh": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14,
    "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19,
}
TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90}
ORDINALS = {
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7, "eighth": 8,
    "ninth": 9, "tenth": 10, "eleventh": 11, "twelfth": 12, "thirteenth": 13, "fourteenth": 14,
    "fifteenth": 15, "sixteenth": 16, "seventeenth": 17, "eighteenth": 18, "nineteenth": 19,
    "twentieth": 20, "thirtieth": 30,
}
SPECIAL = {"a dozen": 12, "dozen": 12, "a couple": 2, "couple": 2, "a pair": 2, "pair": 2}

_WORD = re.compile(r"[A-Za-z]+|\d+(?:[.,]\d+)?(?:st|nd|rd|th)?|-")


@dataclass(frozen=True)
class NumberMatch:
    value: int | float
    start: int
    end: int
    ordinal: bool = False
    spoken: bool = False


def _word_value(word: str) -> tuple[str, int] | None:
    w = word.lower()
    if w in UNITS and w != "oh":
        return "unit", UNITS[w]
    if w in TENS:
        return "tens", TENS[w]
    if w in ORDINALS:
        return "ordinal", ORDINALS[w]
    if w in ("hundred", "thousand"):
        return "scale", 100 if w == "hundred" else 1000
    return None


def _can_follow(current: int, kind: str, value: int) -> bool:
    """Whether a number word continues the number read so far ("twenty" + "one")
    or starts a new one ("four" + "five" are two digits, not nine)."""
    last_two = current % 100
    if kind == "scale":
        return True
    if kind == "tens":
        return last_two == 0
    if value >= 10:
        return last_two == 0
    return last_two == 0 or (last_two >= 20 and last_two % 10 == 0)


MAX_NUMBER_DIGITS = 30


def find_numbers(text: str) -> list[NumberMatch]:
    """All cardinal and ordinal numbers in `text`, digits or words, longest reading first."""
    found: list[NumberMatch] = []
    for m in re.finditer(r"\b(\d+(?:\.\d+)?)(st|nd|rd|th)?\b", text):
        raw = m.group(1)
        if len(raw) > MAX_NUMBER_DIGITS:
            continue  # a run of digits this long is an id or noise, never an amount or a count
        value: int | float = float(raw) if "." in raw else int(raw)
        found.append(NumberMatch(value, m.start(), m.end(), ordinal=bool(m.group(2))))
    for phrase, value in SPECIAL.items():
        for m in re.finditer(rf"\b{phrase}\b", text, re.IGNORECASE):
            if not any(f.start <= m.start() < f.end for f in found):
                found.append(NumberMatch(value, m.start(), m.end(), spoken=True))
    tokens = [(m.group(0), m.start(), m.end()) for m in re.finditer(r"[A-Za-z]+", text)]
    i = 0
    while i < len(tokens):
        parsed = _word_value(tokens[i][0])
        if parsed is None:
            i += 1
            continue
        total, current, j, ordinal = 0, 0, i, False
        end = tokens[i][2]
        while j < len(tokens):
            gap = text[tokens[j - 1][2] : tokens[j][1]] if j > i else ""
            if j > i and gap.strip(" -") != "":
                break
            if tokens[j][0].lower() == "and" and current >= 100 and j + 1 < len(tokens):
                j += 1
                continue
            kv = _word_value(tokens[j][0])
            if kv is None or not _can_follow(current, *kv):
                break
            kind, v = kv
            if kind == "scale":
                current = max(current, 1) * v
                if v == 1000:
                    total, current = total + current, 0
            else:
                current += v
            end = tokens[j][2]
            j += 1
            if kind == "ordinal":
                ordinal = True
                break
        found.append(NumberMatch(total + current, tokens[i][1], end, ordinal=ordinal, spoken=True))
        i = max(j, i + 1)
    return sorted(found, key=lambda f: f.start)


DIGIT_WORDS = {**{k: v for k, v in UNITS.items() if v < 10}, "o": 0, "oh": 0, "nought": 0}


def find_digit_sequences(text: str) -> list[tuple[str, int, int]]:
    """Runs of digits as typed or spoken: "4572", "4 5 7 2", "four five seven two",
    "double seven", "oh". Returns (digits, start, end)."""
    pattern = re.compile(
        r"(?:\b(?:double|triple)\s+)?(?:\d|\b(?:zero|oh|o|nought|one|two|three|four|five|six|seven|eight|nine)\b)",
        re.IGNORECASE,
    )
    runs: list[tuple[str, int, int]] = []
    digits, start, end = "", -1, -1
    for m in pattern.finditer(text):
        gap = text[end:m.start()] if end >= 0 else ""
        if end >= 0 and not re.fullmatch(r"(?:[\s\-.,]|\b(?:uh|um|er|erm|hmm|and)\b)*", gap, re.IGNORECASE):
            if digits:
                runs.append((digits, start, end))
            digits, start = "", -1
        token = m.group(0).lower()
        repeat = 1
        if token.startswith("double"):
            repeat, token = 2, token.split()[-1]
        elif token.startswith("triple"):
            repeat, token = 3, token.split()[-1]
        d = token if token.isdigit() else str(DIGIT_WORDS[token])
        if start < 0:
            start = m.start()
        digits += d * repeat
        end = m.end()
    if digits:
        runs.append((digits, start, end))
    # A lone "o" or "one" is rarely a digit run; only keep runs with a real digit or length > 1.
    return [r for r in runs if len(r[0]) > 1 or any(c.isdigit() for c in text[r[1]:r[2]])]
