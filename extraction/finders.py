"""Per-type finders: each returns candidate values with spans and a confidence.

`requested` tells a finder that the worker just asked for a value of its type, which
licenses weaker readings (a bare "13" is a count after "how many?", 1 pm after
"what time?"). Without it, a finder only reports values with clear markers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import phonenumbers

from extraction.fields import Choice, FieldSpec
from extraction.numbers import UNITS, find_digit_sequences, find_numbers


@dataclass(frozen=True)
class Candidate:
    value: Any
    start: int
    end: int
    confidence: float


WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
MONTHS = {
    m: i + 1
    for i, names in enumerate(
        [("january", "jan"), ("february", "feb"), ("march", "mar"), ("april", "apr"), ("may",), ("june", "jun"),
         ("july", "jul"), ("august", "aug"), ("september", "sep", "sept"), ("october", "oct"),
         ("november", "nov"), ("december", "dec")]
    )
    for m in names
}
_MONTH_RE = "|".join(sorted(MONTHS, key=len, reverse=True))
_NUM_WORD = "|".join(sorted([*UNITS, "twenty", "thirty", "forty", "fifty"], key=len, reverse=True))
_HOUR = rf"(?:\d{{1,2}}|{_NUM_WORD})"


def _num(word: str) -> int | None:
    if word.isdigit():
        return int(word)
    nums = find_numbers(word)
    return int(nums[0].value) if nums and nums[0].start == 0 and nums[0].end == len(word) else None


# ---- time -------------------------------------------------------------------------------

_TIME_PATTERNS: list[tuple[re.Pattern[str], float]] = [
    (re.compile(r"\b(?P<h>\d{1,2})[:.](?P<m>\d{2})\s*(?P<ap>a\.?m\.?|p\.?m\.?)?(?!\d)", re.I), 0.95),
    (re.compile(rf"\b(?P<h>{_HOUR})(?:[\s-]+(?P<mw>{_NUM_WORD}|o'?\s?clock))?\s*(?P<ap>a\.?m\b\.?|p\.?m\b\.?|o'?\s?clock|in the (?:morning|evening|afternoon)|at night|tonight)", re.I), 0.95),
    (re.compile(r"\b(?P<word>noon|midday|midnight)\b", re.I), 0.95),
    (re.compile(rf"\b(?P<rel>half|quarter|(?:\d{{1,2}}|{_NUM_WORD})(?:\s+minutes?)?)\s+(?P<dir>past|after|to|before|till)\s+(?P<h>{_HOUR})(?:\s*(?P<ap>a\.?m\b\.?|p\.?m\b\.?))?", re.I), 0.93),
    (re.compile(rf"\b(?:at|around|about|by)\s+(?P<h>{_HOUR})(?:[\s:](?P<mw>{_NUM_WORD}|\d\d))?\b(?!\s*(?:people|persons|guests|of us|adults|pax|\d|%|dollars?|pounds?|euros?))", re.I), 0.75),
]


def _resolve_hour(hour: int, marker: str | None, text: str) -> int | None:
    marker = (marker or "").lower().replace(".", "").replace(" ", "")
    if hour > 23:
        return None
    if marker.startswith("p") or marker in ("intheevening", "intheafternoon", "atnight", "tonight"):
        return hour + 12 if hour < 12 else hour
    if marker.startswith("a") or marker == "inthemorning":
        return 0 if hour == 12 else hour
    if hour >= 12 or hour == 0:
        return hour
    lowered = text.lower()
    if re.search(r"\b(?:morning|breakfast|brunch|am)\b", lowered):
        return hour
    if re.search(r"\b(?:evening|tonight|dinner|night|afternoon|pm)\b", lowered):
        return hour + 12
    # Without a marker, the afternoon/evening reading is the common one for 1-9.
    return hour + 12 if hour <= 9 else hour


def find_times(text: str, requested: bool) -> list[Candidate]:
    out: list[Candidate] = []
    for pattern, conf in _TIME_PATTERNS:
        for m in pattern.finditer(text):
            g = m.groupdict()
            if g.get("word"):
                w = g["word"].lower()
                out.append(Candidate("00:00" if w == "midnight" else "12:00", m.start(), m.end(), conf))
                continue
            h = _num(g["h"]) if g.get("h") else None
            if h is None:
                continue
            minute = 0
            if g.get("m"):
                minute = int(g["m"])
            elif g.get("mw") and "clock" not in g["mw"].lower():
                mw = _num(g["mw"])
                if mw is None or mw >= 60:
                    continue
                minute = mw
            if g.get("rel"):
                rel = g["rel"].lower()
                offset = 30 if rel == "half" else 15 if rel == "quarter" else _num(rel.split()[0])
                if offset is None or offset >= 60:
                    continue
                if g["dir"].lower() in ("to", "before", "till"):
                    h, minute = h - 1, 60 - offset
                    if h < 0:
                        h = 23
                else:
                    minute = offset
            hour = _resolve_hour(h, g.get("ap"), text)
            if hour is None or minute >= 60:
                continue
            out.append(Candidate(f"{hour % 24:02d}:{minute:02d}", m.start(), m.end(), conf))
    if requested and not out:
        for n in find_numbers(text):
            if isinstance(n.value, int) and 1 <= n.value <= 24 and not n.ordinal:
                hour = _resolve_hour(n.value % 24, None, text)
                if hour is not None:
                    out.append(Candidate(f"{hour:02d}:00", n.start, n.end, 0.7))
    return out


# ---- date -------------------------------------------------------------------------------

def _next_day_of_month(today: date, day: int, month: int | None = None, year: int | None = None) -> date | None:
    if month is not None:
        for y in ([year] if year else [today.year, today.year + 1]):
            try:
                d = date(y, month, day)
            except ValueError:
                return None
            if year or d >= today:
                return d
        return None
    y, mo = today.year, today.month
    for _ in range(13):
        try:
            d = date(y, mo, day)
            if d >= today:
                return d
        except ValueError:
            pass
        mo += 1
        if mo > 12:
            y, mo = y + 1, 1
    return None


def find_dates(text: str, now: datetime, requested: bool) -> list[Candidate]:
    today = now.date()
    out: list[Candidate] = []
    lowered = text.lower()
    simple = {
        r"\bday after tomorrow\b": 2,
        r"\b(?:tomorrow|tmrw|tmr)\b": 1,
        r"\b(?:today|tonight|this evening)\b": 0,
    }
    for pattern, days in simple.items():
        for m in re.finditer(pattern, lowered):
            if days == 1 and re.match(r"\bday after tomorrow", lowered[max(0, m.start() - 10):]):
                continue
            if any(c.start <= m.start() < c.end for c in out):
                continue
            out.append(Candidate((today + timedelta(days=days)).isoformat(), m.start(), m.end(), 0.95))
    for m in re.finditer(rf"\b(?:(?P<mod>this|next|on|coming)\s+)?(?P<wd>{'|'.join(WEEKDAYS)})s?\b", lowered):
        target = WEEKDAYS.index(m.group("wd"))
        delta = (target - today.weekday()) % 7
        if m.group("mod") == "next" and delta == 0:
            delta = 7
        out.append(Candidate((today + timedelta(days=delta)).isoformat(), m.start(), m.end(), 0.9))
    patterns = [
        rf"\b(?P<d>\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?(?P<mon>{_MONTH_RE})\b\.?(?:,?\s+(?P<y>\d{{4}}))?",
        rf"\b(?P<mon>{_MONTH_RE})\.?\s+(?:the\s+)?(?P<d>\d{{1,2}})(?:st|nd|rd|th)?\b(?:,?\s+(?P<y>\d{{4}}))?",
        r"\b(?P<y>\d{4})-(?P<mo>\d{2})-(?P<d>\d{2})\b",
    ]
    for pattern in patterns:
        for m in re.finditer(pattern, lowered):
            g = m.groupdict()
            month = MONTHS[g["mon"]] if g.get("mon") else int(g["mo"])
            year = int(g["y"]) if g.get("y") else None
            d = _next_day_of_month(today, int(g["d"]), month, year)
            if d:
                out.append(Candidate(d.isoformat(), m.start(), m.end(), 0.95))
    for n in find_numbers(text):
        if not n.ordinal or any(c.start <= n.start < c.end for c in out):
            continue
        before = lowered[max(0, n.start - 8) : n.start]
        if "the" in before or "on" in before or requested:
            d = _next_day_of_month(today, int(n.value))
            if d:
                start = lowered.rfind("the", 0, n.start)
                start = start if start >= 0 and n.start - start <= 4 else n.start
                out.append(Candidate(d.isoformat(), start, n.end, 0.85))
    return out


# ---- counts -----------------------------------------------------------------------------

_PEOPLE_AFTER = re.compile(r"^\s*(?:people|persons?|guests?|of us|adults?|pax|diners|ppl|covers|in total|in my party)\b", re.I)
_PEOPLE_BEFORE = re.compile(r"(?:party of|table for|group of|booking for|reservation for|for|we are|we're|there are|there'll be|there will be)\s*$", re.I)
_NOT_COUNT_AFTER = re.compile(r"^\s*(?:am|pm|a\.m|p\.m|o'?clock|:\d|\.\d\d|th|st|nd|rd|minutes|hours|days|weeks|%|dollars|pounds|euros)", re.I)


def find_counts(text: str, requested: bool) -> list[Candidate]:
    out: list[Candidate] = []
    for m in re.finditer(r"\b(?:just\s+)?(?:me|myself)\b(?:\s+alone)?|\bjust\s+one\b|\bsolo\b", text, re.I):
        if requested or m.group(0).lower().startswith("just"):
            out.append(Candidate(1, m.start(), m.end(), 0.8))
    for n in find_numbers(text):
        if n.ordinal or not isinstance(n.value, int) or n.value <= 0:
            continue
        after, before = text[n.end :], text[: n.start]
        if _NOT_COUNT_AFTER.match(after):
            continue
        if _PEOPLE_AFTER.match(after):
            out.append(Candidate(n.value, n.start, n.end, 0.95))
        elif re.search(r"(?:party of|table for|group of)\s*$", before, re.I):
            out.append(Candidate(n.value, n.start, n.end, 0.93))
        elif _PEOPLE_BEFORE.search(before):
            out.append(Candidate(n.value, n.start, n.end, 0.85))
        elif requested:
            out.append(Candidate(n.value, n.start, n.end, 0.8))
        elif re.search(r"\b(?:make it|change it to|actually)\s*$", before, re.I):
            out.append(Candidate(n.value, n.start, n.end, 0.7))
    return out


def find_integers(text: str, requested: bool) -> list[Candidate]:
    return [Candidate(n.value, n.start, n.end, 0.85) for n in find_numbers(text) if requested and not n.ordinal]


# ---- names ------------------------------------------------------------------------------

_NAME_LEAD = re.compile(
    r"\b(?:my\s+(?:first\s+|last\s+|sur|family\s+)?name\s+is|my\s+(?:first\s+|last\s+|sur|family\s+)?name'?s"
    r"|name'?s|this\s+is|it'?s|i'?m|i\s+am|call\s+me|under(?:\s+the\s+name)?(?:\s+of)?|name\s+of|surname\s+is)\s+",
    re.I,
)
CALENDAR_WORDS = set(
    """monday tuesday wednesday thursday friday saturday sunday january february march april may june
    july august september october november december""".split()
)
NOT_NAMES = set(
    """a an the and or but yes no yeah yep nope ok okay sure please thanks thank you hi hello hey
    it is its it's my name first last surname i i'm im am me we us our for at on in of to this that
    just only actually sorry make change table people person tomorrow today tonight morning evening
    afternoon night time date booking book reservation reserve party guests fine good great correct
    right wrong what when where who why how can could would will want wanna like need have has do
    not no-one nobody someone human agent there here be well um uh er hmm so then also again
    monday tuesday wednesday thursday friday saturday sunday january february march april june july
    august september october november december pm am oclock o'clock half quarter past dinner lunch
    breakfast number account phone email call back around about maybe""".split()
) | set(UNITS)


def _name_tokens(text: str, start: int, requested: bool = False) -> list[tuple[str, int, int]]:
    tokens = []
    for m in re.finditer(r"[A-Za-zÀ-ÖØ-öø-ÿ][A-Za-zÀ-ÖØ-öø-ÿ'\-]*", text[start:]):
        word = m.group(0)
        # "April", "June", "March" are names too, when a name was asked for and written as one.
        calendar_name = requested and word[0].isupper() and word.lower() in CALENDAR_WORDS
        if word.lower() in NOT_NAMES and not calendar_name:
            if tokens:
                break
            continue
        gap = text[start + (tokens[-1][2] - start if tokens else m.start()) : start + m.start()] if tokens else ""
        if tokens and gap.strip() not in ("",):
            break
        tokens.append((word, start + m.start(), start + m.end()))
        if len(tokens) == 3:
            break
    return tokens


def find_names(text: str, requested: bool) -> list[list[tuple[str, int, int]]]:
    """Name token groups found in `text`; each group is one person's name, 1-3 tokens."""
    groups: list[list[tuple[str, int, int]]] = []
    for m in _NAME_LEAD.finditer(text):
        tokens = _name_tokens(text, m.end(), requested)
        strong_lead = re.match(r"(?:my|name|call|under|surname)", m.group(0), re.I) is not None
        if tokens and tokens[0][1] - m.end() <= 1 and (requested or strong_lead or tokens[0][0][0].isupper()):
            groups.append(tokens)
    if not groups and requested and not re.search(r"\d", text):
        words = re.findall(r"[A-Za-z][A-Za-z'\-]*", text)
        if 1 <= len(words) <= 4:
            tokens = _name_tokens(text, 0, requested)
            if tokens:
                groups.append(tokens)
    return groups


def _title(word: str) -> str:
    return word if any(c.isupper() for c in word[1:]) else word[:1].upper() + word[1:].lower()


# ---- digits, phone, email, money, choice, yes/no, text --------------------------------------

def find_digits(text: str, spec: FieldSpec, requested: bool) -> list[Candidate]:
    c = spec.constraints
    out = []
    for digits, start, end in find_digit_sequences(text):
        fits = (c.min_length is None or len(digits) >= c.min_length) and (c.max_length is None or len(digits) <= c.max_length)
        if requested:
            out.append(Candidate(digits, start, end, 0.9 if fits else 0.6))
        elif fits and len(digits) >= 4:
            out.append(Candidate(digits, start, end, 0.75))
    return out


def find_phones(text: str, region: str, requested: bool) -> list[Candidate]:
    out = []
    for match in phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.POSSIBLE):
        e164 = phonenumbers.format_number(match.number, phonenumbers.PhoneNumberFormat.E164)
        conf = 0.95 if phonenumbers.is_valid_number(match.number) else 0.6
        out.append(Candidate(e164, match.start, match.end, conf))
    if not out:
        for digits, start, end in find_digit_sequences(text):
            if 7 <= len(digits) <= 15:
                prefix = "+" if text[max(0, start - 1) : start] == "+" else ""
                try:
                    number = phonenumbers.parse(prefix + digits, region)
                except phonenumbers.NumberParseException:
                    continue
                if phonenumbers.is_possible_number(number):
                    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
                    valid = phonenumbers.is_valid_number(number)
                    out.append(Candidate(e164, start - len(prefix), end, 0.85 if valid else 0.5))
    return out


_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}")
_SPOKEN_EMAIL = re.compile(
    r"(?P<user>[a-z0-9]+(?:\s+(?:dot|underscore|dash|hyphen)\s+[a-z0-9]+)*)\s+at\s+"
    r"(?P<domain>[a-z0-9]+(?:\s+dot\s+[a-z0-9]+)+)",
    re.I,
)


def find_emails(text: str) -> list[Candidate]:
    out = [Candidate(m.group(0).rstrip(".").lower(), m.start(), m.start() + len(m.group(0).rstrip(".")), 0.95) for m in _EMAIL.finditer(text)]
    if not out:
        for m in _SPOKEN_EMAIL.finditer(text):
            words = {"dot": ".", "underscore": "_", "dash": "-", "hyphen": "-"}
            user = "".join(words.get(w.lower(), w) for w in m.group("user").split())
            domain = "".join(words.get(w.lower(), w) for w in m.group("domain").split())
            out.append(Candidate(f"{user}@{domain}".lower(), m.start(), m.end(), 0.8))
    return out


_CURRENCY = {"$": "USD", "£": "GBP", "€": "EUR", "dollar": "USD", "buck": "USD", "pound": "GBP", "quid": "GBP", "euro": "EUR"}


def find_money(text: str, requested: bool) -> list[Candidate]:
    out = []
    for m in re.finditer(r"(?P<sym>[$£€])\s?(?P<n>\d[\d,]*(?:\.\d+)?)\s*(?P<k>k|thousand|m|million)?\b", text, re.I):
        amount = float(m.group("n").replace(",", ""))
        scale = {"k": 1e3, "thousand": 1e3, "m": 1e6, "million": 1e6}.get((m.group("k") or "").lower(), 1)
        out.append(Candidate({"amount": round(amount * scale, 2), "currency": _CURRENCY[m.group("sym")]}, m.start(), m.end(), 0.95))
    for n in find_numbers(text):
        if any(c.start <= n.start < c.end for c in out):
            continue
        unit = re.match(r"^\s*(dollars?|bucks?|pounds?|quid|euros?)\b", text[n.end :], re.I)
        if unit:
            cur = _CURRENCY[unit.group(1).lower().rstrip("s")]
            out.append(Candidate({"amount": float(n.value), "currency": cur}, n.start, n.end + unit.end(), 0.9))
        elif requested and not n.ordinal:
            out.append(Candidate({"amount": float(n.value), "currency": None}, n.start, n.end, 0.7))
    return out


def find_choice(text: str, choices: list[Choice], requested: bool) -> list[Candidate]:
    out = []
    for choice in choices:
        for word in [choice.value, choice.value.replace("_", " "), *choice.synonyms]:
            m = re.search(rf"\b{re.escape(word)}\b", text, re.I)
            if m:
                exact = word.lower() in (choice.value.lower(), choice.value.replace("_", " ").lower())
                out.append(Candidate(choice.value, m.start(), m.end(), 0.95 if exact else 0.85 if requested else 0.75))
                break
    return out


def find_free_text(text: str) -> list[Candidate]:
    stripped = text.strip()
    if not stripped:
        return []
    start = text.index(stripped)
    return [Candidate(stripped, start, start + len(stripped), 0.7)]
