"""Spoken digits as a recogniser writes them, read back as digits.

Whisper writes a spoken account number in many ways: "4 5 7", "457", "four five seven",
"four, five, seven", and with homophones ("to" for two, "for" for four, "oh" for zero, "won",
"ate"). For a field that holds digits, words that sound like digits count as digits when they
stand next to other digits, and "double five" is 55. Other words are left alone, so "I want to
pay 40" keeps its "to".
"""

from __future__ import annotations

import re

DIGIT_WORDS = {
    "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
    "seven": "7", "eight": "8", "nine": "9",
}
# Sound-alikes: digits only beside other digits.
SOUND_ALIKES = {"oh": "0", "o": "0", "nought": "0", "won": "1", "to": "2", "too": "2", "tree": "3",
                "for": "4", "fore": "4", "ate": "8", "nein": "9"}
REPEATS = {"double": 2, "triple": 3}

_TOKEN = re.compile(r"\d+|[A-Za-z]+")


def _plain(token: str) -> str | None:
    if token.isdigit():
        return token
    return DIGIT_WORDS.get(token.lower())


def spoken_digits(text: str) -> str:
    """`text` with each run of spoken digits written as one digit string."""
    tokens = [(m.group(0), m.start(), m.end()) for m in _TOKEN.finditer(text)]
    values: list[str | None] = [_plain(t) for t, _, _ in tokens]
    for i, (token, _, _) in enumerate(tokens):
        if values[i] is None and token.lower() in SOUND_ALIKES:
            beside = [values[j] for j in (i - 1, i + 1) if 0 <= j < len(tokens)]
            if any(v is not None for v in beside):
                values[i] = SOUND_ALIKES[token.lower()]
    for i, (token, _, _) in enumerate(tokens):
        if token.lower() in REPEATS and i + 1 < len(tokens) and values[i + 1] is not None and len(values[i + 1]) == 1:
            values[i] = values[i + 1] * (REPEATS[token.lower()] - 1)
    out, cursor, run_end = [], 0, None
    for (token, start, end), value in zip(tokens, values):
        if value is None:
            continue
        between = text[run_end:start] if run_end is not None else None
        if between is not None and re.fullmatch(r"[\s,.\-]*", between):
            out.append(value)  # still the same run of digits: drop the separators
        else:
            out.append(text[cursor:start] + value)
        cursor = run_end = end
    out.append(text[cursor:])
    return "".join(out)
