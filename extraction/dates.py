"""Calendar dates as people say and write them, resolved against when the message was sent.

"tomorrow", "next Friday", "the 3rd", "Thursday the 3rd", "23rd of July", "Saturday, Aug 25th",
"Friday, 17 August 2018", "2018/04/27", "8/14/2018", "in 5 days", "20 days from now",
"3 weeks ago". A date without a year is the next one on or after the reference day; a
weekday alone is the next such day after today. Numeric dates are month/day/year unless the
first number cannot be a month (the spec may choose day/month with `date_order: DMY`).
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from dateutil.relativedelta import relativedelta

from extraction.numbers import ORDINALS, UNITS

WEEKDAYS = {
    "monday": 0, "mon": 0, "tuesday": 1, "tue": 1, "tues": 1, "wednesday": 2, "wed": 2, "thursday": 3,
    "thu": 3, "thur": 3, "thurs": 3, "friday": 4, "fri": 4, "saturday": 5, "sat": 5, "sunday": 6, "sun": 6,
}
MONTHS = {
    name: i + 1
    for i, names in enumerate([
        ("january", "jan"), ("february", "feb"), ("march", "mar"), ("april", "apr"), ("may",), ("june", "jun"),
        ("july", "jul"), ("august", "aug"), ("september", "sept", "sep"), ("october", "oct"),
        ("november", "nov"), ("december", "dec"),
    ])
    for name in names
}
_ORD_WORDS = {**ORDINALS, "twenty-first": 21, "twenty first": 21, "twenty-second": 22, "twenty second": 22,
              "twenty-third": 23, "twenty third": 23, "twenty-fourth": 24, "twenty fourth": 24,
              "twenty-fifth": 25, "twenty fifth": 25, "twenty-sixth": 26, "twenty sixth": 26,
              "twenty-seventh": 27, "twenty seventh": 27, "twenty-eighth": 28, "twenty eighth": 28,
              "twenty-ninth": 29, "twenty ninth": 29, "thirty-first": 31, "thirty first": 31}

_WD = r"(?:" + "|".join(sorted(WEEKDAYS, key=len, reverse=True)) + r")(?:day)?\.?"
_WD_FULL = r"(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday|mon|tues?|wed|thu(?:rs?)?|fri|sat|sun)\.?"
_MON = r"(?:" + "|".join(sorted(MONTHS, key=len, reverse=True)) + r")\.?"
_DAY = r"(?:[0-3]?\d(?:st|nd|rd|th)?|" + "|".join(sorted((re.escape(w) for w in _ORD_WORDS), key=len, reverse=True)) + r")"
_YEAR = r"(?:\d{4}|'\d\d)"
_COUNT = r"(?:\d+|" + "|".join(sorted((w for w in UNITS if w not in ("oh", "zero")), key=len, reverse=True)) + r"|a|an|a couple of|couple of|a few|few)"
_UNIT = r"(?P<unit>days?|weeks?|months?|years?|fortnights?)"


@dataclass(frozen=True)
class DateReading:
    value: str  # YYYY-MM-DD
    start: int
    end: int
    confidence: float
    shared: bool = False


def _day_number(token: str) -> int | None:
    token = token.lower().strip()
    if token in _ORD_WORDS:
        return _ORD_WORDS[token]
    digits = re.match(r"\d+", token)
    return int(digits.group(0)) if digits else None


def _count(token: str) -> int | None:
    token = token.lower()
    if token.isdigit():
        return int(token)
    if token in ("a", "an"):
        return 1
    if "couple" in token:
        return 2
    if "few" in token:
        return 3
    return UNITS.get(token)


def _shift(today: date, n: int, unit: str) -> date:
    unit = unit.lower().rstrip("s")
    if unit == "day":
        return today + timedelta(days=n)
    if unit == "week":
        return today + timedelta(weeks=n)
    if unit == "fortnight":
        return today + timedelta(weeks=2 * n)
    if unit == "month":
        return today + relativedelta(months=n)
    return today + relativedelta(years=n)


def _next_date(today: date, day: int, month: int | None, year: int | None, future: bool = True) -> date | None:
    """The date meant by a day (and month) said on `today`: with a month and no year, this
    year's, or the next one on or after today when only the future makes sense (`future`);
    with a day alone, the next such day of a month."""
    if month is None:
        y, m = today.year, today.month
        for _ in range(13):
            if day <= calendar.monthrange(y, m)[1] and date(y, m, day) >= today:
                return date(y, m, day)
            y, m = (y + 1, 1) if m == 12 else (y, m + 1)
        return None
    if year is not None:
        try:
            return date(year, month, day)
        except ValueError:
            return None
    if not future and month == today.month:
        return _safe_date(today.year, month, day)  # "the 6th of March", said on the 15th: this one, just gone
    for y in (today.year, today.year + 1):
        try:
            d = date(y, month, day)
        except ValueError:
            continue
        if d >= today:
            return d
    return None


def _last_date(today: date, day: int, month: int | None) -> date | None:
    """The date meant by a day (and month) without a year where only the past makes sense (a
    field whose latest allowed day is today: when a card was charged): the latest such day on
    or before today. "The 22nd" said on 30 November is 22 November, not 22 December."""
    y, m = today.year, month or today.month
    for _ in range(13 if month is None else 2):
        if day <= calendar.monthrange(y, m)[1] and date(y, m, day) <= today:
            return date(y, m, day)
        if month is None:
            y, m = (y - 1, 12) if m == 1 else (y, m - 1)
        else:
            y -= 1
    return None


def _with_weekday(today: date, day: int, month: int, weekday: int) -> date | None:
    """"Friday 7th of January": the first year from this one in which that date is that weekday."""
    for y in range(today.year, today.year + 12):
        d = _safe_date(y, month, day)
        if d is not None and d.weekday() == weekday:
            return d
    return None


def _year(token: str | None) -> int | None:
    if not token:
        return None
    token = token.strip("'")
    return int(token) + (2000 if len(token) == 2 else 0)


def _next_weekday(today: date, weekday: int) -> date:
    """The coming such day, never today ("Tuesday" said on a Tuesday means next week).
    "next Friday" is read the same way: the coming Friday, the most common reading."""
    delta = (weekday - today.weekday()) % 7
    return today + timedelta(days=delta or 7)


_PATTERNS: list[tuple[str, re.Pattern[str], float]] = [
    ("numeric_ymd", re.compile(r"\b(?P<y>\d{4})[/\-.](?P<a>\d{1,2})[/\-.](?P<b>\d{1,2})\b"), 0.95),
    ("numeric", re.compile(rf"\b(?:(?P<wd>{_WD_FULL}),?\s+)?(?P<a>\d{{1,2}})[/\-.](?P<b>\d{{1,2}})(?:[/\-.](?P<y>\d{{4}}|\d\d))?\b(?![/\-.:]?\d)", re.I), 0.85),
    # (Tuesday,) (the) 11th (of) September(, 2018)
    ("day_month", re.compile(rf"\b(?:(?P<wd>{_WD_FULL}),?\s+(?:the\s+)?)?(?P<d>{_DAY})\s+(?:of\s+|day\s+of\s+)?(?P<mon>{_MON})(?:,?\s+(?P<y>{_YEAR}))?(?![a-z])", re.I), 0.95),
    # (Saturday,) Aug(ust) (the) 25th(, 2018)
    ("month_day", re.compile(rf"\b(?:(?P<wd>{_WD_FULL}),?\s+)?(?P<mon>{_MON})\s+(?:the\s+)?(?P<d>{_DAY})(?![\d:])(?:,?\s+(?P<y>{_YEAR}))?(?!\s*(?:people|persons?|guests?|adults?|kids?|of\s+us|pm|am|p\.m|a\.m|o['’\"]?clock))", re.I), 0.93),
    # Thursday the 3rd
    ("weekday_day", re.compile(rf"\b(?P<wd>{_WD_FULL}),?\s+(?:the\s+)?(?P<d>[0-3]?\d(?:st|nd|rd|th)|{'|'.join(sorted((re.escape(w) for w in _ORD_WORDS), key=len, reverse=True))})\b", re.I), 0.93),
    ("weekday_week", re.compile(rf"\b(?P<wd>{_WD_FULL})\s+(?P<rel>next\s+week|in\s+a\s+week|last\s+week|after\s+next|week)\b", re.I), 0.9),
    ("week_weekday", re.compile(rf"\b(?P<rel>next|last|this)\s+week(?:'s)?\s+(?P<wd>{_WD_FULL})", re.I), 0.9),
    ("fortnight", re.compile(r"\b(?:a\s+)?(?P<rel>fortnight|week)\s+(?:today|from\s+today|from\s+now)\b", re.I), 0.9),
    ("last_night", re.compile(r"\blast\s+night\b", re.I), 0.9),
    ("relative_in", re.compile(rf"\b(?:in|within)\s+(?P<n>{_COUNT})\s+{_UNIT}(?:'?\s*time)?\b", re.I), 0.9),
    ("relative_from", re.compile(rf"\b(?P<n>{_COUNT})\s+{_UNIT}\s+(?:from\s+(?:now|today)|later|after\s+today|hence)\b", re.I), 0.9),
    ("relative_ago", re.compile(rf"\b(?P<n>{_COUNT})\s+{_UNIT}\s+ago\b", re.I), 0.9),
    ("next_unit", re.compile(r"\b(?P<mod>next|this|last)\s+(?P<unit>week|month|year|weekend)\b", re.I), 0.75),
    # "the" stays out of the span, as with "the 5th" (NLU++ marks "day after tomorrow")
    ("day_after", re.compile(r"\bday\s+after\s+(?:tomorrow|tomorow|tommorow|tommorrow)\b", re.I), 0.95),
    ("day_before", re.compile(r"\bday\s+before\s+yesterday\b", re.I), 0.95),
    ("named", re.compile(r"\b(?P<named>today|tonight|tomorrow|tomorow|tommorow|tommorrow|tmrw|tmr|yesterday|this\s+evening|this\s+afternoon|this\s+morning|later\s+today)\b", re.I), 0.95),
    ("weekday", re.compile(rf"\b(?:(?P<mod>next|this|coming|that|this\s+coming|last|following)\s+)?(?P<wd>{_WD})(?![a-z])", re.I), 0.9),
    ("ordinal", re.compile(rf"\b(?P<the>the\s+)?(?P<d>[0-3]?\d(?:st|nd|rd|th)|{'|'.join(sorted((re.escape(w) for w in _ORD_WORDS), key=len, reverse=True))})\b(?!\s+(?:time|floor|person|people|one|ones|guest|of\s+us|row|thoughts?|choice|option|place|course|hand))", re.I), 0.8),
    ("month_only", re.compile(r"\b(?:from|in|until|till|since|by|during|of|for)\s+(?P<mon>january|february|april|june|july|august|september|october|november|december)\b(?!\s+\d)", re.I), 0.6),
    # "until May", "since March": the two month names that are also words, only when capitalised.
    ("month_only", re.compile(r"\b(?i:from|in|until|till|since|by|during|of|for)\s+(?P<mon>May|March)\b(?!\s+\d)"), 0.55),
    # "the end of the month": its last day ("the" stays out, as before "5th")
    ("month_end", re.compile(r"\bend\s+of\s+(?:the\s+|this\s+|(?P<next>next)\s+)month\b", re.I), 0.85),
    ("month_rel", re.compile(r"\b(?P<mod>last|next|previous|past)\s+month\b(?!\s+(?:or|and)\b)", re.I), 0.7),
]


HOLIDAYS = {
    "christmas eve": (12, 24), "christmas day": (12, 25), "christmas": (12, 25), "boxing day": (12, 26),
    "new year's eve": (12, 31), "new years eve": (12, 31), "new year's day": (1, 1), "new years day": (1, 1),
    "valentine's day": (2, 14), "valentines day": (2, 14), "halloween": (10, 31), "independence day": (7, 4),
    "st patrick's day": (3, 17), "st. patrick's day": (3, 17),
}
_HOLIDAY = re.compile(r"\b(?P<hol>" + "|".join(sorted((re.escape(h) for h in HOLIDAYS), key=len, reverse=True)) + r")(?:\s+(?P<y>\d{4}))?\b", re.I)


_IN_HOURS = re.compile(
    r"\b(?:in|within)\s+(?:about\s+)?(?P<n>half\s+an|an?|a\s+couple\s+of|a\s+few|\d+|"
    + "|".join(sorted((w for w in UNITS if w not in ("oh", "zero")), key=len, reverse=True))
    + r")\s+(?P<unit>hours?|minutes?|mins?)\b",
    re.I,
)


_RECURRING_AFTER = re.compile(r"^\s+(?:[a-z]+day\s+)?(?:of\s+)?(?:each|every)\s+(?:month|week|year)\b", re.I)
_RECURRING_BEFORE = re.compile(r"\b(?:each|every)\s+(?:other\s+)?$", re.I)


def find_dates(
    text: str, today: date, requested: bool, date_order: str = "MDY", future: bool = False, now: datetime | None = None,
    past: bool = False,
) -> list[DateReading]:
    """`past`: the field allows no day after today, so a day said without its year (or month,
    or a weekday alone) is the latest such day on or before today, not the next one."""
    out: list[DateReading] = []

    def day_of(day: int, month: int | None, year: int | None = None) -> date | None:
        if past and year is None:
            return _last_date(today, day, month)
        return _next_date(today, day, month, year, future)

    def add(value: date | None, start: int, end: int, conf: float, shared: bool = False) -> None:
        if value is None:
            return
        if any(r.start < end and start < r.end for r in out):
            return
        if _RECURRING_AFTER.match(text[end:]) or _RECURRING_BEFORE.search(text[:start]):
            return  # "the 4th of each month", "every Monday": a recurrence, not one date
        shared = shared or text[start:end].lower() in ("tonight", "this evening", "this afternoon", "this morning")
        out.append(DateReading(value.isoformat(), start, end, conf, shared))

    for kind, pattern, conf in _PATTERNS:
        for m in pattern.finditer(text):
            g = m.groupdict()
            start, end = m.start(), m.end()
            if text[end - 1 : end] == "." and kind in ("day_month", "month_day", "weekday", "named") and not re.search(r"(?i)\b(?:mon|tue|tues|wed|thu|thur|thurs|fri|sat|sun|jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec)\.$", text[start:end]):
                end -= 1
            if kind == "numeric_ymd":
                add(_safe_date(int(g["y"]), int(g["a"]), int(g["b"])), start, end, conf)
            elif kind == "numeric":
                a, b = int(g["a"]), int(g["b"])
                year = _year(g.get("y"))
                if g.get("y") is None and not g.get("wd") and not requested and not re.search(
                        r"(?i)\b(?:on|from|until|till|til|to|through|thru|starting|returning)\s+$", text[:start]):
                    continue  # "3/4" alone is too often a fraction or a score; "from 3/5 to 3/9" are dates
                month, day = (b, a) if date_order == "DMY" or a > 12 else (a, b)
                if year is None:
                    d = day_of(day, month) if 1 <= month <= 12 else None
                else:
                    d = _safe_date(year, month, day)
                add(d, start, end, conf)
            elif kind in ("day_month", "month_day"):
                day = _day_number(g["d"])
                month = MONTHS[g["mon"].lower().rstrip(".")]
                if day is None or not 1 <= day <= 31:
                    continue
                if kind == "month_day" and g["mon"].lower() in ("may", "march", "sat", "sun", "mar", "jan", "dec") and not re.search(r"\d|st|nd|rd|th", g["d"]) and not g.get("y"):
                    if not requested:
                        continue  # "may 2 of us come", "march 4 people"
                year = _year(g.get("y"))
                d = None
                if g.get("wd") and year is None:
                    d = _with_weekday(today, day, month, WEEKDAYS[g["wd"].lower().rstrip(".")[:3] if g["wd"].lower().rstrip(".") not in WEEKDAYS else g["wd"].lower().rstrip(".")])
                add(d or day_of(day, month, year), start, end, conf)
            elif kind == "weekday_day":
                day = _day_number(g["d"])
                if day is None or not 1 <= day <= 31:
                    continue
                wd = WEEKDAYS[_wd_key(g["wd"])]
                if past:
                    # The latest month, on or before today, in which that day was that weekday.
                    probe = _last_date(today, day, None)
                    for _ in range(12):
                        if probe is None or probe.weekday() == wd:
                            break
                        probe = _last_date(probe.replace(day=1) - timedelta(days=1), day, None)
                    add(probe, start, end, conf)
                    continue
                d = _next_date(today, day, None, None)
                # Prefer the month in which that day falls on the named weekday.
                probe = d
                for _ in range(12):
                    if probe is None or probe.weekday() == wd:
                        break
                    probe = _next_date(probe + timedelta(days=1), day, None, None)
                add(probe if probe is not None and probe.weekday() == wd else d, start, end, conf)
            elif kind in ("weekday_week", "week_weekday"):
                rel = g["rel"].lower()
                monday = today - timedelta(days=today.weekday())
                shift = -7 if rel.startswith("last") else 0 if rel == "this" else 7
                add(monday + timedelta(days=shift + WEEKDAYS[_wd_key(g["wd"])]), start, end, conf)
            elif kind == "fortnight":
                add(today + timedelta(days=14 if g["rel"].lower() == "fortnight" else 7), start, end, conf)
            elif kind == "last_night":
                add(today - timedelta(days=1), start, end, conf)
            elif kind in ("relative_in", "relative_from", "relative_ago"):
                n = _count(g["n"])
                if n is None:
                    continue
                sign = -1 if kind == "relative_ago" else 1
                add(_shift(today, sign * n, g["unit"]), start, end, conf)
            elif kind == "next_unit":
                mod, unit = g["mod"].lower(), g["unit"].lower()
                if unit == "weekend":
                    saturday = today + timedelta(days=(5 - today.weekday()) % 7)
                    add(saturday + timedelta(days=7) if mod == "next" and (saturday - today).days < 2 else saturday, start, end, conf)
                elif unit == "week":
                    add(today + timedelta(days=7 * {"next": 1, "this": 0, "last": -1}[mod]), start, end, conf)
            elif kind == "day_after":
                add(today + timedelta(days=2), start, end, conf)
            elif kind == "day_before":
                add(today - timedelta(days=2), start, end, conf)
            elif kind == "named":
                word = g["named"].lower()
                if word == "today" and not requested and _PASSING_TODAY.search(text[max(0, start - 40) : end + 12]):
                    continue  # "how are you today", "that's all for today": a pleasantry, not a date
                offset = -1 if word == "yesterday" else 1 if word.startswith("to") and word not in ("today", "tonight") or word.startswith("tm") else 0
                add(today + timedelta(days=offset), start, end, conf)
            elif kind == "weekday":
                word = g["wd"].lower().rstrip(".")
                key = word if word in WEEKDAYS else word[:3]
                if key not in WEEKDAYS:
                    continue
                if len(word) <= 3 and not re.match(r"[A-Z]", g["wd"]) and word in ("sat", "sun", "wed", "mon"):
                    continue  # lower-case "sat", "sun", "wed" are words
                mod = (g.get("mod") or "").lower()
                if mod == "next":
                    # "next Saturday" is the Saturday of next week (weeks start on Monday).
                    monday = today - timedelta(days=today.weekday()) + timedelta(days=7)
                    add(monday + timedelta(days=WEEKDAYS[key]), start, end, conf)
                elif mod == "last":
                    delta = (today.weekday() - WEEKDAYS[key]) % 7 or 7
                    add(today - timedelta(days=delta), start, end, conf)
                elif past:
                    add(today - timedelta(days=(today.weekday() - WEEKDAYS[key]) % 7), start, end, conf)
                else:
                    add(_next_weekday(today, WEEKDAYS[key]), start, end, conf)
            elif kind == "ordinal":
                day = _day_number(g["d"])
                if day is None or not 1 <= day <= 31:
                    continue
                before = text[max(0, start - 12) : start].lower()
                # "16th to 27th": an ordinal that starts a range of ordinals is a day too.
                starts_range = re.match(r"^\s*(?:to|until|till|through|thru|-|and)\s+(?:the\s+)?\d{1,2}(?:st|nd|rd|th)\b", text[end:], re.I)
                alone = g["d"][:1].isdigit() and text.strip(" .!?,").lower() == m.group(0).lower()  # "16th" as the whole reply
                if not (g.get("the") or requested or starts_range or alone or re.search(r"\b(?:on|for|from|until|till|to|by)\s*$", before)):
                    continue
                # Annotators mark "25th", not "the 25th".
                add(day_of(day, None), m.start("d"), end, conf if g.get("the") else conf - 0.1)
            elif kind == "month_end":
                first = today.replace(day=1) + relativedelta(months=2 if g.get("next") else 1)
                add(first - timedelta(days=1), start, end, conf)
            elif kind == "month_rel":
                # "last month": a period, named by its first day (an end role turns it into its last).
                shift = {"last": -1, "previous": -1, "past": -1, "this": 0, "next": 1}[g["mod"].lower()]
                add((today.replace(day=1) + relativedelta(months=shift)), m.start(), end, conf)
            elif kind == "month_only":
                month = MONTHS[g["mon"].lower()]
                if past:
                    year = today.year if month <= today.month else today.year - 1
                else:
                    year = today.year if month >= today.month else today.year + 1
                add(date(year, month, 1), m.start("mon"), end, conf)
    if now is not None:
        # "in an hour", "in 2 hours": a moment that gives the day as well as the time.
        for m in _IN_HOURS.finditer(text):
            word = m.group("n").lower()
            count = 0.5 if word.startswith("half") else 1 if word in ("a", "an") else 2 if "couple" in word else 3 if "few" in word else _count(word)
            if count is None:
                continue
            delta = timedelta(hours=count) if m.group("unit").lower().startswith("h") else timedelta(minutes=count)
            add((now + delta).date(), m.start(), m.end(), 0.8, True)
        for m in re.finditer(r"\bright\s+now\b", text, re.I):
            if requested:  # said in passing, "right now" is urgency, not a date
                add(now.date(), m.start(), m.end(), 0.7, True)
    for m in _HOLIDAY.finditer(text):
        month, day = HOLIDAYS[m.group("hol").lower()]
        year = _year(m.group("y"))
        add(_safe_date(year, month, day) if year else _next_date(today, day, month, None, True), m.start(), m.end(), 0.9)
    return sorted((_anchored(text, r, today) for r in out), key=lambda r: r.start)


_PASSING_TODAY = re.compile(
    r"\b(?:how\s+(?:are\s+you|is\s+(?:it|everyone)|'?s\s+it\s+going)|that'?s\s+(?:all|it|everything)|(?:thanks?|thank\s+you)"
    r"(?:\s+\w+){0,3}|you\s+(?:too|as\s+well))\b[^.?!]{0,12}\btoday\b|\btoday\b\s*[,.!]?\s*(?:thanks|thank\s+you|bye)\b",
    re.I,
)
_ANCHOR = re.compile(r"^\s+(?:(?P<of>of\s+)(?:the|this|(?P<next>next))\s+month|(?:(?P<this>this)|(?P<nextw>next))\s+week)\b", re.I)


def _anchored(text: str, r: DateReading, today: date) -> DateReading:
    """"the 5th of next month", "Friday next week": the words after the day belong to it and
    settle which one is meant."""
    m = _ANCHOR.match(text[r.end :])
    if not m:
        return r
    said = text[r.start : r.end].lower().strip(" ,.")
    value: date | None = None
    if m.group("of") and re.fullmatch(r"(?:the\s+)?\S+", said):
        day = _day_number(said.replace("the ", ""))
        if day:
            year, month = (today.year, today.month) if not m.group("next") else (
                (today.year + 1, 1) if today.month == 12 else (today.year, today.month + 1))
            value = _safe_date(year, month, day)
    elif not m.group("of") and _wd_key(said) in WEEKDAYS:
        monday = today - timedelta(days=today.weekday()) + timedelta(days=7 if m.group("nextw") else 0)
        value = monday + timedelta(days=WEEKDAYS[_wd_key(said)])
    if value is None:
        return r
    return DateReading(value.isoformat(), r.start, r.end + m.end(), r.confidence, r.shared)


def _wd_key(word: str) -> str:
    word = word.lower().rstrip(".")
    return word if word in WEEKDAYS else word[:3]


def _safe_date(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None
