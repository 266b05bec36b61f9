"""People's names in what they say: after "my name is", "under", "I'm"; as a capitalised
pair ("Cliff Lovet"); or as the whole answer when the worker just asked for a name.

A word list of common English words (wordfreq's top words) keeps "Please Book" and "Thank You"
out; names that are also common words ("Grace", "Bill") are still taken after a name lead or
when a name was asked for.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from extraction.numbers import UNITS

_WORD = r"[A-Za-zÀ-ÖØ-öø-ÿ][A-Za-zÀ-ÖØ-öø-ÿ'’\-]*"
_LEADS = re.compile(
    r"\b(?:(?:my\s+|the\s+|our\s+)?(?:full\s+|first\s+|last\s+|sur|family\s+)?name(?:\s+is|'s|\s+will\s+be|\s+would\s+be|\s+should\s+be)|"
    r"(?:first|last|family|sur)\s*name(?:\s+is)?|the\s+name(?:\s+of)?|under(?:\s+the\s+name(?:\s+of)?|\s+name)?|"
    r"on\s+the\s+name(?:\s+of)?|for\s+the\s+name(?:\s+of)?|in\s+the\s+name\s+of|listed\s+under|booked\s+under|"
    r"i\s+am\s+called|i'?m\s+called|i'?m\s+known\s+as|i'?m|i\s+am|this\s+is|it'?s|call\s+me|known\s+as|named\s+me|i\s+go\s+by|"
    r"(?:booking|reservation|table)\s+(?:for|under)|(?:down|it|me|us|that)\s+as|for|to|from|with)\s+"
    r"(?:i\s+think\s+|probably\s+|maybe\s+|possibly\s+)?"
    r"(?:(?:mr|mrs|ms|miss|dr|mister|madam|princess|sir|prof)\.?\s+)?",
    re.I,
)
_STRONG_LEAD = re.compile(r"name|under|call|known|named|called|go\s+by", re.I)
_AFTER_NAME = re.compile(r"^\s*(?:here\b|is\s+(?:my|the)\s+name|is\s+what|speaking\b|'s\s+my\s+name)", re.I)
_PLACE_AFTER = re.compile(
    r"^[\s']*(?:s\s+)?(?:restaurant|kitchen|street|st\b|station|road|rd\b|cafe|café|bar|canteen|house|square|cross|park|"
    r"town|central|area|neighbou?rhood|cuisine|food|grill|bistro|pub|shack|hall|hill|green|common|gardens?|place|lane|"
    r"avenue|market|inn|hotel|district|borough|city|village|tavern|brasserie|diner|eatery|deli|bakery|quotidien)\b",
    re.I,
)
_PLACE_BEFORE = re.compile(
    r"(?:restaurant|place|called|named|the|in|at|near|about|around|try|visit|want|find|of|cuisine|from|to)\s+$", re.I
)
_PLACE_WORDS = {"restaurant", "cafe", "café", "bar", "street", "road", "station", "kitchen", "london", "west", "east",
                "north", "south", "central", "le", "la", "les", "el", "il", "st", "saint", "king's", "queen's"}
_PLACE_TALK = re.compile(r"\b(?:neighbou?rhood|area|areas|cuisine|restaurant\s+(?:called|named)|website|located|rating)\b", re.I)
_TITLES = {"mr", "mrs", "ms", "miss", "dr", "mister", "madam", "princess", "sir", "prof"}

_FUNCTION_WORDS = set(
    """a an the and or but if so yes no not yeah yep nope ok okay sure please thanks thank you hi hello hey dear
    it is its it's i i'm im am me my mine we us our you your he she they them their this that these those there
    here what when where who why how which can could would will shall should may might must do does did have has
    had be been being was were are for at on in of to from with by about as into onto up down out over under
    just only also again then than very really actually maybe perhaps sorry um uh er hmm well oh ah
    table tables booking book booked reservation reserve party people person guests time date day night today
    tonight tomorrow morning evening afternoon noon lunch dinner breakfast brunch pm am name names first last
    surname family number phone email account card call change cancel cancelled canceled want need like
    would get got make made let lets let's think know sounds good great fine correct right wrong thats that's
    monday tuesday wednesday thursday friday saturday sunday january february march april june july august
    september october november december o'clock oclock half quarter past outside inside indoor outdoor seat
    seats patio bar window restaurant hotel room rooms adults adult kids kids' child children""".split()
) | set(UNITS)
_CALENDAR = {"monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday", "january", "february",
             "march", "april", "may", "june", "july", "august", "september", "october", "november", "december"}


@functools.lru_cache(maxsize=1)
def _common_words() -> frozenset[str]:
    import wordfreq

    return frozenset(wordfreq.top_n_list("en", 3000)) | _FUNCTION_WORDS


common_words = _common_words  # also keeps "Reading" and "Nice" from being read as towns (extraction/places.py)


@dataclass(frozen=True)
class NameReading:
    tokens: tuple[tuple[str, int, int], ...]  # (word, start, end), 1 to 3 of them
    confidence: float
    part: str | None = None  # "first" or "last" when the words said so ("last name Jocoy")


_PART = re.compile(r"\b(?:(?P<first>first|given|christian)|(?P<last>last|family|sur))\s*name", re.I)
_OWN_NAME = re.compile(rf"\b(?:in|under)\s+({_WORD})(?:\s+({_WORD}))?['’]s\s+name\b")
_SINGLE_AFTER = re.compile(r"^\s*(?:here\b|speaking\b|calling\b)", re.I)
_SELF_LEAD = ("i'm", "im", "i am", "this is", "it's", "its")


def _known(word: str, part: str) -> bool:
    from extraction.name_lists import given_names, surnames

    return word.lower() in (given_names() if part == "first" else surnames())


def _tokens_after(text: str, start: int, requested: bool, strong: bool) -> list[tuple[str, int, int]]:
    tokens: list[tuple[str, int, int]] = []
    pos = start
    for m in re.finditer(_WORD, text[start:]):
        word, s, e = m.group(0), start + m.start(), start + m.end()
        if text[pos:s].strip(" ") not in ("",) and tokens:
            break  # punctuation between words ends the name
        if not tokens and s - start > 1:
            break
        lower = word.lower().strip("'’")
        if lower in _TITLES and not tokens:
            pos = e
            continue
        capital = word[0].isupper()
        if lower in _FUNCTION_WORDS and not (requested and capital and lower in _CALENDAR):
            # "as Will Turner", "surname is Day": a capitalised word that is a known name, in a name's place.
            named = capital and lower not in _CALENDAR and (
                (not tokens and re.match(rf"\s+[A-Z]{_WORD[1:]}", text[e:]) and _known(word, "first"))
                or (strong and _known(word, "last")))
            if not named:
                break
        if not (capital or requested or strong):
            break
        if tokens and not capital and tokens[0][0][0].isupper() and not (
                (requested or strong) and lower not in _common_words() and _known(word, "last")):
            break  # "Maria please" ends at Maria; "Maria lopez", typed as on a phone, is a full name
        tokens.append((word, s, e))
        pos = e
        if len(tokens) == 3:
            break
    return tokens


def find_names(text: str, requested: bool) -> list[NameReading]:
    """Name readings, surest first."""
    out: list[NameReading] = []
    common = _common_words()

    def add(tokens: list[tuple[str, int, int]], conf: float, part: str | None = None) -> None:
        if tokens and not any(t[1] < o.tokens[-1][2] and o.tokens[0][1] < t[2] for o in out for t in tokens):
            out.append(NameReading(tuple(tokens), conf, part))

    for m in _OWN_NAME.finditer(text):
        # "in Rose Baker's name": whatever stands before "'s name" is the name.
        tokens = [(m.group(i), m.start(i), m.end(i)) for i in (1, 2) if m.group(i)]
        if all(t[0][0].isupper() and t[0].lower() not in _FUNCTION_WORDS for t in tokens):
            add(tokens, 0.9)
    for m in _LEADS.finditer(text):
        lead = m.group(0)
        strong = bool(_STRONG_LEAD.search(lead))
        tokens = _tokens_after(text, m.end(), requested, strong)
        self_lead = lead.strip().lower() in _SELF_LEAD
        if not tokens and self_lead:
            # "this is daniel": lower case, but a given name (not a common word) right after a self-introduction.
            word = re.match(rf"({_WORD})(?=\s*(?:$|[,.!?;]|\s+(?:and|here|speaking|calling|from)\b))", text[m.end() :])
            if word and word.group(1).lower() not in _FUNCTION_WORDS and _known(word.group(1), "first"):
                tokens = [(word.group(1), m.end(), m.end() + word.end(1))]
        if not tokens:
            continue
        weak_lead = not strong
        if weak_lead:
            # "for Cliff Lovet", "I'm Christel Hackbarth": capitalised, and not just common words.
            if not all(t[0][0].isupper() for t in tokens):
                # "this is daniel": lower case, but a given name right after a self-introduction.
                lowercase_given = self_lead and len(tokens) == 1 and _known(tokens[0][0], "first")
                if not (requested and len(tokens) <= 2 and self_lead) and not lowercase_given:
                    continue
            if len(tokens) == 1 and tokens[0][0].lower() in common and not requested:
                # "I'm Grace", "this is daniel,": a common word that is also a given name, after "I'm" / "this is".
                if not (self_lead and _known(tokens[0][0], "first")):
                    continue
            if lead.strip().lower() in ("for", "to", "from", "with") and len(tokens) < 2:
                continue
        part = _PART.search(lead)
        add(tokens, 0.9 if strong else 0.8, ("first" if part.group("first") else "last") if part else None)
    # "Madelene Abson is my name", "Jana Picariello here", or any capitalised pair of uncommon words.
    for m in re.finditer(rf"(?=\b({_WORD})\s+({_WORD})\b)", text):
        a, b = m.group(1), m.group(2)
        if not (a[0].isupper() and b[0].isupper()):
            continue
        if a.lower() in _FUNCTION_WORDS or b.lower() in _FUNCTION_WORDS or a.lower() in _TITLES:
            continue
        tokens = [(a, m.start(1), m.end(1)), (b, m.start(2), m.end(2))]
        before, after = text[: m.start(1)], text[m.end(2) :]
        if _AFTER_NAME.match(after):
            add(tokens, 0.85)
            continue
        if _PLACE_AFTER.match(after) or _PLACE_BEFORE.search(before) or _PLACE_WORDS.intersection((a.lower(), b.lower())):
            continue
        # A longer run of capitalised words is a place or a venue ("Cafe Rouge Bermondsey"), not a person.
        if re.search(r"[A-Z][\w'’]*[\s\-]+$", before) and not re.search(r"[.!?,]\s*[A-Z][\w'’]*[\s\-]+$", before) or re.match(r"^[\s\-]+[A-Z]", after):
            continue
        if _PLACE_TALK.search(text):
            continue
        if not (a.lower() in common and b.lower() in common) and not (a.isupper() and b.isupper()):
            add(tokens, 0.75 if b.lower() not in common else 0.65)
        elif not (a.isupper() and b.isupper()) and _known(a, "first") and _known(b, "last"):
            add(tokens, 0.65)  # "Summer Wood", "Will Turner": common words, but a given name and a surname
    # "Grace here", "Patience speaking": one given name that introduces itself.
    for m in re.finditer(rf"(?:^|[.!?,]\s*)({_WORD})(?=\s+(?:here|speaking|calling)\b)", text):
        word = m.group(1)
        if word[0].isupper() and word.lower() not in _FUNCTION_WORDS and _known(word, "first"):
            add([(word, m.start(1), m.end(1))], 0.8)
    if requested and not out:
        # "Dulcie, Petsch": a first and a last name given as a list.
        pair = re.fullmatch(rf"\s*({_WORD})\s*,\s*({_WORD})\s*[.!]?\s*", text)
        if pair and pair.group(1).lower() not in _FUNCTION_WORDS and pair.group(2).lower() not in _FUNCTION_WORDS:
            add([(pair.group(1), pair.start(1), pair.end(1)), (pair.group(2), pair.start(2), pair.end(2))], 0.85)
    if requested and not out and not re.search(r"\d", text):
        words = re.findall(_WORD, text)
        if 1 <= len(words) <= 4:
            tokens = _tokens_after(text, len(text) - len(text.lstrip()), True, True)
            add(tokens, 0.85)
    return sorted(out, key=lambda r: -r.confidence)


def title(word: str) -> str:
    return word if any(c.isupper() for c in word[1:]) or not word.islower() else word[:1].upper() + word[1:]
