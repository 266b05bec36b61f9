"""How long: "3 nights", "two weeks", "an hour and a half", "for the weekend", "90 minutes".

Values are ISO-8601 durations ("P3D", "P2W", "PT1H30M"); a night of a stay is a day
("P3D" for 3 nights). Whatever this reads is a length of time, so the rule extractor keeps the
clock-time and date readers off its span ("3 nights" is not 03:00, "2 weeks" is no date).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from extraction.numbers import UNITS

_NUM_WORD = "|".join(sorted((w for w in UNITS if w not in ("oh", "zero")), key=len, reverse=True))
_N = rf"(?P<n>\d+(?:\.\d+)?|{_NUM_WORD}|twenty|thirty|forty|fifty|sixty|ninety|an?|a\s+couple\s+of|a\s+few|couple\s+of|several)"
_UNIT = r"(?P<unit>nights?|days?|weeks?|fortnights?|months?|years?|hours?|hrs?|minutes?|mins?)"
_DURATION = re.compile(
    rf"\b(?:(?P<half_pre>half\s+an?\s+(?:hour|day))|{_N}[\s-]+{_UNIT}(?P<half>\s+and\s+a\s+half)?"
    rf"(?:\s+and\s+(?P<n2>\d+|{_NUM_WORD}|an?|a\s+half)\s+(?P<unit2>hours?|minutes?|mins?|days?|nights?))?)\b",
    re.I,
)
_WEEKEND = re.compile(r"\b(?:for\s+)?(?:the|a|this|next)\s+(?:long\s+)?weekend\b", re.I)
# "in 3 days" and "3 days ago" are dates, "20 minutes from now" a time: not lengths.
# "at 3 night" is a moment too.
_NOT_BEFORE = re.compile(r"\b(?:in|within|after|at|around|about|before|until|till|by)\s+(?:about\s+|around\s+)?$", re.I)
_NOT_AFTER = re.compile(r"^\s+(?:ago|from\s+(?:now|today)|later|before|earlier|hence|after)\b", re.I)
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "ninety": 90}


@dataclass(frozen=True)
class DurationReading:
    value: str  # ISO 8601
    start: int
    end: int
    confidence: float


def _amount(word: str) -> float | None:
    w = re.sub(r"\s+", " ", word.lower())
    if re.fullmatch(r"\d+(?:\.\d+)?", w):
        return float(w)
    if w in ("a", "an"):
        return 1
    if "couple" in w:
        return 2
    if "few" in w or w == "several":
        return 3
    if w == "a half":
        return 0.5
    return _TENS.get(w, UNITS.get(w))


def iso(days: float = 0, minutes: float = 0, weeks: float = 0, months: float = 0, years: float = 0) -> str:
    """ISO 8601: whole weeks alone as PnW; otherwise years, months, days, then hours and minutes."""
    if weeks and not (days or minutes or months or years) and weeks == int(weeks):
        return f"P{int(weeks)}W"
    days += weeks * 7
    minutes_total = round(minutes + (days - int(days)) * 24 * 60)
    days = int(days)
    out = "P" + (f"{int(years)}Y" if years else "") + (f"{int(months)}M" if months else "") + (f"{days}D" if days else "")
    hours, mins = divmod(minutes_total, 60)
    if hours or mins:
        out += "T" + (f"{hours}H" if hours else "") + (f"{mins}M" if mins else "")
    return out if out != "P" else "PT0M"


def _add(parts: dict[str, float], n: float, unit: str) -> None:
    u = unit.lower()
    if u.startswith(("night", "day")):
        parts["days"] += n
    elif u.startswith("fortnight"):
        parts["weeks"] += 2 * n
    elif u.startswith("week"):
        parts["weeks"] += n
    elif u.startswith("month"):
        parts["months"] += n
    elif u.startswith("year"):
        parts["years"] += n
    elif u.startswith(("hour", "hr")):
        parts["minutes"] += 60 * n
    else:
        parts["minutes"] += n


def find_durations(text: str, requested: bool = False) -> list[DurationReading]:
    out: list[DurationReading] = []
    for m in _DURATION.finditer(text):
        if _NOT_BEFORE.search(text[: m.start()]) or _NOT_AFTER.match(text[m.end() :]):
            continue
        parts = {"days": 0.0, "minutes": 0.0, "weeks": 0.0, "months": 0.0, "years": 0.0}
        if m.group("half_pre"):
            _add(parts, 0.5, "hour" if "hour" in m.group("half_pre").lower() else "day")
        else:
            n = _amount(m.group("n"))
            if n is None:
                continue
            if m.group("half"):
                n += 0.5
            _add(parts, n, m.group("unit"))
            if m.group("n2"):
                n2 = _amount(m.group("n2"))
                if n2 is None:
                    continue
                _add(parts, n2, m.group("unit2"))
        if parts["months"] % 1 or parts["years"] % 1:
            continue  # "a month and a half": no exact ISO form without a calendar
        out.append(DurationReading(iso(**parts), m.start(), m.end(), 0.9))
    for m in _WEEKEND.finditer(text):
        if not any(r.start < m.end() and m.start() < r.end for r in out):
            start = m.start() + (len(m.group(0)) - len(re.sub(r"(?i)^for\s+", "", m.group(0))))
            out.append(DurationReading("P2D", start, m.end(), 0.75))
    return sorted(out, key=lambda r: r.start)


_ISO = re.compile(r"^P(?:(?P<Y>\d+)Y)?(?:(?P<Mo>\d+)M)?(?:(?P<W>\d+)W)?(?:(?P<D>\d+)D)?(?:T(?:(?P<H>\d+)H)?(?:(?P<Mi>\d+)M)?)?$")
_WORDS = (("Y", "year"), ("Mo", "month"), ("W", "week"), ("D", "day"), ("H", "hour"), ("Mi", "minute"))


def describe(iso: str) -> str:
    """How a duration reads back aloud: "P3D" -> "3 days", "PT1H30M" -> "1 hour 30 minutes"."""
    m = _ISO.match(iso or "")
    if not m or not any(m.groupdict().values()):
        return iso
    parts = []
    for key, word in _WORDS:
        n = m.group(key)
        if n:
            parts.append(f"{int(n)} {word}{'' if int(n) == 1 else 's'}")
    return " ".join(parts)
