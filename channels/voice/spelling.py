"""A name spelled out on the phone, read back as the name.

When a name is uncertain the worker asks the caller to spell it. Callers spell in several
ways, and the recogniser writes each in several more:

- letters: "L O P E Z", "L-O-P-E-Z", "L. O. P. E. Z.", "LOPEZ", or letter names said as
  words ("el oh pee ee zed");
- letters with a word for each: "L as in Lima", "P for Peter", "M like Mike", and the
  radio alphabet on its own ("Lima Oscar Papa Echo Zulu"): the word's first letter wins
  over the letter heard (M and N sound alike; "Mike" and "November" do not);
- "double L", "triple E"; "apostrophe", "hyphen" or "dash", "space";
- with a few words around it: "it's L O P E Z", "that's spelled ...".

`read_spelling(text)` returns the name ("Lopez", "O'Brien", "Smith-Jones") or None when the
text is not a spelling (a word in it is neither a letter, nor a spelling word, nor filler).
"""

from __future__ import annotations

import re

LETTER_NAMES = {
    "a": "a", "ay": "a", "eh": "a", "b": "b", "be": "b", "bee": "b", "c": "c", "see": "c", "sea": "c", "cee": "c",
    "d": "d", "dee": "d", "e": "e", "ee": "e", "f": "f", "ef": "f", "eff": "f", "g": "g", "gee": "g", "jee": "g",
    "h": "h", "aitch": "h", "haitch": "h", "i": "i", "eye": "i", "aye": "i", "j": "j", "jay": "j", "k": "k",
    "kay": "k", "l": "l", "el": "l", "ell": "l", "m": "m", "em": "m", "n": "n", "en": "n", "o": "o", "oh": "o",
    "p": "p", "pee": "p", "pea": "p", "q": "q", "queue": "q", "cue": "q", "kew": "q", "r": "r", "ar": "r",
    "are": "r", "s": "s", "es": "s", "ess": "s", "t": "t", "tee": "t", "tea": "t", "u": "u", "you": "u",
    "yoo": "u", "v": "v", "vee": "v", "w": "w", "x": "x", "ex": "x", "y": "y", "why": "y", "wye": "y",
    "z": "z", "zed": "z", "zee": "z",
}
RADIO = {"alpha", "alfa", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet",
         "juliett", "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango",
         "uniform", "victor", "whiskey", "whisky", "x-ray", "xray", "yankee", "zulu"}
MARKS = {"apostrophe": "'", "hyphen": "-", "dash": "-", "space": " "}
REPEATS = {"double": 2, "triple": 3}
AS_IN = {"as", "for", "like"}  # "L as in Lima", "L for London", "M like Mike"
FILLER = {"it's", "its", "it", "is", "that's", "thats", "that", "spelled", "spelt", "spell", "spelling", "my",
          "name", "surname", "last", "first", "the", "um", "uh", "er", "erm", "so", "okay", "ok", "yes", "yeah",
          "sure", "capital", "small", "letter", "then", "and", "in", "with", "an", "a's"}
_TOKEN = re.compile(r"x-ray|[A-Za-z]+(?:'[A-Za-z]+)?|['\-]")


def _letters_of(word: str) -> str | None:
    """The letters a single written token stands for: "L" -> "l", "LOPEZ" -> "lopez" (a run
    of capitals is letters said one by one), "pee" -> "p"; None for any other word."""
    if len(word) > 1 and word.isupper() and word.isalpha():
        return word.lower()
    return LETTER_NAMES.get(word.lower())


def read_spelling(text: str) -> str | None:
    """The name spelled in `text`, capitalised as a name is ("Lopez", "O'Brien"), or None."""
    words = [w for w in _TOKEN.findall(text.replace("double-u", "w").replace("double u", "w").replace("double you", "w"))]
    out: list[str] = []
    repeat = 1
    i = 0
    while i < len(words):
        word, lower = words[i], words[i].lower()
        if lower in REPEATS:
            repeat = REPEATS[lower]
            i += 1
            continue
        if lower in AS_IN and out:
            # "L as in Lima": the word after names the letter; it replaces the letter heard.
            j = i + 1
            while j < len(words) and words[j].lower() in {"in", "a", "the"}:
                j += 1
            if j < len(words) and words[j].isalpha():
                out[-1] = words[j][0].lower()
                i = j + 1
                continue
            return None
        if lower in MARKS:
            out.append(MARKS[lower])
            i += 1
            continue
        if lower in RADIO:
            out.append(("x" if lower.startswith("x") else lower[0]) * repeat)
            repeat = 1
            i += 1
            continue
        if word in {"'", "-"}:
            # Written between letters ("L-O-P-E-Z") a hyphen only separates them; an
            # apostrophe said as a mark comes as the word, but keep one written in.
            if word == "'":
                out.append(word)
            i += 1
            continue
        letters = _letters_of(word)
        if letters is not None and (len(word) <= 1 or word.isupper() or lower in LETTER_NAMES):
            out.append(letters[0] * repeat + letters[1:])
            repeat = 1
            i += 1
            continue
        if lower in FILLER:
            i += 1
            continue
        return None
    name = "".join(out).strip(" -'")
    if sum(c.isalpha() for c in name) < 2:
        return None
    return _capitalised(name)


def _capitalised(name: str) -> str:
    """Each part of the name with a capital: "o'brien" -> "O'Brien", "smith-jones" -> "Smith-Jones"."""
    return re.sub(r"(^|[\s'\-])([a-z])", lambda m: m.group(1) + m.group(2).upper(), name)
