"""Times of day as people say and write them, with the span they came from.

"7pm", "19:30", "half past six", "quarter to eight", "25 to 7 p.m.", "8 40 in the morning",
"noon", "at 8", "7ish", and a bare "13" when the worker just asked what time.

Spans follow the common annotation style: the clock words and an am/pm marker ("1:00 PM.",
dot included when it closes the marker), not the "at" before or a bare "o'clock" after. A
daypart that sets the hour is in the span, before or after it ("evening 6", "2:30 in the
afternoon", "7 o'clock in the evening"); a morning that repeats the clock ("10:45 in the
morning") is not, as Restaurants-8k marks it. An hour
with no marker is read as said, unless the words around it ("tonight", "dinner") or the field's
opening hours (`constraints.earliest`/`latest`) say otherwise.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from extraction.numbers import UNITS, find_numbers

_NUM_WORDS = sorted([*UNITS, "twenty", "thirty", "forty", "fifty"], key=len, reverse=True)
_NUM_WORD = "|".join(w for w in _NUM_WORDS if w != "oh")
_MIN_WORD = rf"(?:(?:twenty|thirty|forty|fifty)(?:[\s-](?:one|two|three|four|five|six|seven|eight|nine))?|{_NUM_WORD}|oh[\s-](?:one|two|three|four|five|six|seven|eight|nine))"
_H = rf"(?:[01]?\d|2[0-4]|{_NUM_WORD})"
_AMPM = r"(?:[ap]\.\s?m\.|[ap]\.?m\b\.?|[ap]\s+m\b)"
_PERIOD = r"(?:(?:in\s+the\s+)?(?:morning|afternoon|evening)|(?:at\s+|in\s+the\s+)?night|tonight)"
_MARK = rf"(?:\s*{_AMPM}|\s+{_PERIOD})"

_NOT_A_TIME_WORDS = (r"people|persons?|guests?|adults?|kids?|children|of\s+us|days?|weeks?|months?|years?|nights?|minutes?|hours?|"
                     r"rooms?|tickets?|cars?|%|dollars?|pounds?|euros?|st\b|nd\b|rd\b|th\b")

_PATTERNS: list[tuple[re.Pattern[str], float]] = [
    # morning 10:30, evening 6: a daypart said before the hour sets it and belongs to the span
    (_LEAD_PERIOD := re.compile(
        rf"\b(?<!this\s)(?P<lead>morning|afternoon|evening|night)\s+(?P<h>{_H})(?:[:.](?P<m>[0-5]\d)|\s(?P<mw>[0-5]\d))?\b(?![\d:/])"
        rf"(?!\s*(?:{_NOT_A_TIME_WORDS}|o['’\"]?\s?clock|{_AMPM}|in\s+the|at\s+night))", re.I), 0.9),
    # 19:30, 7.30pm, 11:45 AM, 22:35 night
    (re.compile(rf"\b(?P<h>[01]?\d|2[0-4])[:.](?P<m>[0-5]\d)(?:(?P<mark>{_MARK})|(?P<ish>-?ish)\b)?(?![\d:])", re.I), 0.95),
    # 2215, 0730pm, 615 (clock digits run together)
    (_RUN_TOGETHER := re.compile(rf"\b(?P<h>[01]?\d|2[0-3])(?P<m>[0-5]\d)(?P<mark>\s?{_AMPM})?(?![\d:/.,])(?!\s*(?:people|persons?|guests?|adults?|days?|dollars?|pounds?|euros?))", re.I), 0.7),
    # 17hr, 1400 hours
    (re.compile(r"\b(?P<h>1[3-9]|2[0-3]|0\d)(?P<m>[0-5]\d)?\s?(?P<hr>hrs?|h)\b", re.I), 0.85),
    # half past six, quarter to 8 pm, 25 to 7 p.m., 10 minutes after 9
    (re.compile(
        rf"(?<![/.\-])\b(?P<rel>half(?=[\s-]past)|quarter|(?:\d{{1,2}}|{_MIN_WORD})(?:\s+minutes?)?)[\s-]+(?P<dir>past|after|to|before|till|til|of)[\s-]+"
        rf"(?P<h>{_H})(?![\d:/])(?P<mark>{_MARK})?", re.I), 0.93),  # "3/5 to 3/9" are dates
    # half nine (British: 9:30)
    (re.compile(rf"\bhalf\s+(?P<halfh>{_H})\b(?!\s*(?:an?\s+hour|hours?|people|of))", re.I), 0.8),
    # 7 25 p.m., 8 40 in the morning, seven thirty pm, twelve twenty
    (re.compile(rf"\b(?P<h>{_H})[\s-](?P<mw>[0-5]\d|{_MIN_WORD})(?P<mark>{_MARK})(?![\d:])", re.I), 0.93),
    # 6 15, twelve twenty (no marker): only clock-like minutes
    (re.compile(rf"\b(?P<h>{_H})[\s](?P<mw>[0-5]\d|(?:twenty|thirty|forty|fifty)(?:[\s-](?:one|two|three|four|five|six|seven|eight|nine))?|ten|fifteen|oh[\s-]\w+)\b(?![\d:/])"
                r"(?!\s*(?:people|persons?|guests?|adults?|kids?|children|of\s+us|days?|weeks?|months?|years?|nights?|minutes?|hours?|%|dollars?|pounds?|euros?|st\b|nd\b|rd\b|th\b))", re.I), 0.7),
    # 7pm, 9 at night, six in the evening, 12 p.m.
    (re.compile(rf"\b(?P<h>{_H})(?P<mark>{_MARK})", re.I), 0.95),
    (re.compile(r"\b(?P<word>noon|midday|midnight)\b", re.I), 0.93),
    # 7ish, 7-ish (the 'ish' kept when written together)
    (re.compile(rf"\b(?P<h>{_H})(?P<ish>-?ish)\b", re.I), 0.8),
    # 7 ish (written apart, the annotators leave 'ish' out)
    (re.compile(rf"\b(?P<h>{_H})(?=\s+ish\b)", re.I), 0.75),
    # 11 o'clock in the morning: the daypart sets the hour, so the span runs to its end
    (re.compile(rf"\b(?P<h>{_H})\s*o['’\"]?\s?clock(?P<mark>\s+{_PERIOD})", re.I), 0.93),
    # 8 o'clock: the span stops before o'clock
    (re.compile(rf"\b(?P<h>{_H})(?=\s*o['’\"]?\s?clock\b)", re.I), 0.9),
    # at 8, around 7, after 11, before 4, until 9 (span: the number only)
    (re.compile(
        rf"\b(?:at|around|about|after|before|until|till|by|from|(?:later|earlier|sooner)\s+than|between|and\s+(?=\S+\s*(?:$|[?.!,])))\s+(?:about\s+|around\s+)?(?P<h>{_H})(?:[\s:](?P<mw>[0-5]\d|{_MIN_WORD}))?\b"
        r"(?!\s*(?:people|persons?|guests?|adults?|kids?|children|of\s+us|days?|weeks?|months?|years?|nights?|minutes?|hours?|%|dollars?|pounds?|euros?|/|-\d|st\b|nd\b|rd\b|th\b))",
        re.I), 0.75),
]
_CONTEXT_PM = re.compile(r"\b(?:tonight|(?<!good\s)evening|afternoon|dinner|supper)\b", re.I)
_CONTEXT_AM = re.compile(r"\b(?:morning|breakfast|brunch|a\.?m)\b", re.I)


@dataclass(frozen=True)
class TimeReading:
    value: str  # HH:MM
    start: int
    end: int
    confidence: float
    shared: bool = False


def _number(word: str) -> int | None:
    if word.isdigit():
        return int(word)
    word = word.lower().replace("-", " ")
    if word.startswith("oh "):
        word = word[3:]
    nums = find_numbers(word)
    if len(nums) == 1 and nums[0].start == 0 and nums[0].end == len(word):
        return int(nums[0].value)
    return None


def _minutes(hhmm: str) -> int:
    h, m = hhmm.split(":")
    return int(h) * 60 + int(m)


def resolve_hour(hour: int, mark: str | None, text: str, earliest: str | None, latest: str | None, minute: int = 0) -> int | None:
    """The 24-hour clock hour meant by `hour` said with `mark` (am/pm/in the evening/none)."""
    if hour > 24:
        return None
    mark = (mark or "").lower().replace(".", "").replace(" ", "")
    if mark:
        if "night" in mark and (hour <= 5 or hour == 12):
            return hour % 12  # "3 at night" is the small hours; "12 night" is midnight
        if mark.startswith("p") or any(w in mark for w in ("afternoon", "evening", "night", "tonight")):
            return hour + 12 if hour < 12 else hour
        if mark.startswith("a") or "morning" in mark:
            return 0 if hour == 12 else hour
    if hour == 0 or hour >= 12:
        return hour % 24
    if earliest or latest:
        lo = _minutes(earliest) if earliest else 0
        hi = _minutes(latest) if latest else 24 * 60
        fits = [h for h in (hour, hour + 12) if lo <= h * 60 + minute <= hi]
        if len(fits) == 1:
            return fits[0]
    if _CONTEXT_PM.search(text) and not _CONTEXT_AM.search(text):
        return hour + 12
    return hour


_RANGE = re.compile(
    rf"\b(?:from|between)\s+(?P<h1>1[0-2]|0?\d|{_NUM_WORD})(?::(?P<m1>[0-5]\d))?\s*(?:to|until|till|and|-)\s*"
    rf"(?P<h2>1[0-2]|0?\d|{_NUM_WORD})(?::(?P<m2>[0-5]\d))?(?P<mark>{_MARK})\b(?![\d:])",
    re.I,
)
_IN_HOURS = re.compile(
    rf"\b(?:in|within)\s+(?:about\s+)?(?P<n>half\s+an|an?|a\s+couple\s+of|a\s+few|\d+|{_NUM_WORD})\s+(?P<unit>hours?|minutes?|mins?)(?P<half>\s+and\s+a\s+half)?\b", re.I
)
_AGO = re.compile(rf"\b(?P<n>an?|\d+|{_NUM_WORD})\s+(?P<unit>hours?|minutes?|mins?)\s+ago\b", re.I)
_NOT_A_TIME_AFTER = re.compile(
    r"^\s*(?:people|persons?|guests?|adults?|kids?|children|of\s+us|days?|weeks?|months?|years?|nights?|minutes?|hours?|"
    r"%|dollars?|pounds?|euros?|st\b|nd\b|rd\b|th\b|/|-\d)", re.I
)


def find_times(
    text: str, requested: bool, earliest: str | None = None, latest: str | None = None, now: datetime | None = None
) -> list[TimeReading]:
    out: list[TimeReading] = []

    def add(value: str, start: int, end: int, conf: float, shared: bool = False) -> None:
        if not any(r.start <= start < r.end or start <= r.start < end for r in out):
            shared = shared or bool(re.search(r"(?i)tonight$", text[start:end]))
            out.append(TimeReading(value, start, end, conf, shared))

    for m in _RANGE.finditer(text):
        # "from 8 to 9 pm": two times, the first taking the second's am/pm when it fits before it.
        h1, h2 = _number(m.group("h1")), _number(m.group("h2"))
        if h1 is None or h2 is None or h1 > 12 or h2 > 12:
            continue
        m1, m2 = int(m.group("m1") or 0), int(m.group("m2") or 0)
        mark = m.group("mark")
        end_hour = resolve_hour(h2, mark, text, earliest, latest, m2)
        start_hour = resolve_hour(h1, mark if (h1 % 12) * 60 + m1 < (h2 % 12) * 60 + m2 else None, text, earliest, latest, m1)
        if start_hour is None or end_hour is None:
            continue
        add(f"{start_hour:02d}:{m1:02d}", m.start("h1"), m.end("m1") if m.group("m1") else m.end("h1"), 0.9)
        add(f"{end_hour:02d}:{m2:02d}", m.start("h2"), m.end("mark") if mark else m.end("m2") if m.group("m2") else m.end("h2"), 0.9)
    for pattern, conf in _PATTERNS:
        for m in pattern.finditer(text):
            g = m.groupdict()
            if g.get("word"):
                w = g["word"].lower()
                add("00:00" if w == "midnight" else "12:00", m.start(), m.end(), conf)
                continue
            if g.get("halfh"):
                h = _number(g["halfh"])
                if h is None or h > 12:
                    continue
                hour = resolve_hour(h, None, text, earliest, latest, 30)
                add(f"{hour:02d}:30", m.start(), m.end(), conf)
                continue
            h = _number(g["h"])
            if h is None:
                continue
            if g.get("lead"):
                g["mark"] = g["lead"]
            mark_word = (g.get("mark") or "").strip().lower()
            if mark_word and text[m.end() : m.end() + 1].isalpha():
                continue  # "13 nights" is a stay, not 13:00 at night
            if mark_word == "night" and not g["h"][:1].isdigit() and not re.search(
                r"(?i)\b(?:at|around|about|by|before|after|until|till|from|to|past)\s+$", text[: m.start()]
            ):
                continue  # "one night for Friday" is a stay; "at one night" would be a time
            if pattern is _RUN_TOGETHER and not (g.get("mark") or requested or re.search(r"(?i)\b(?:around|at|for)\s+$", text[: m.start()])):
                continue  # "2018", "101": a run of digits is a clock time only when asked for or marked
            minute = 0
            if g.get("m"):
                minute = int(g["m"])
            elif g.get("mw"):
                mw = _number(g["mw"])
                if mw is None or mw >= 60:
                    continue
                minute = mw
            if g.get("rel"):
                rel = re.sub(r"\s+minutes?$", "", g["rel"].lower())
                offset = 30 if rel == "half" else 15 if rel == "quarter" else _number(rel)
                if offset is None or offset >= 60 or (rel == "half" and g["dir"].lower() not in ("past", "after")):
                    continue
                if g["dir"].lower() in ("to", "before", "till", "til", "of"):
                    h, minute = (h - 1) % 24, 60 - offset
                    if h == 0 and g.get("mark") and "p" in g["mark"].lower():
                        h = 12
                else:
                    minute = offset
            hour = resolve_hour(h, g.get("mark"), text, earliest, latest, minute)
            if hour is None or minute >= 60:
                continue
            start, end = m.start("h") if not (g.get("rel") or g.get("lead")) else m.start(), m.end()
            mark = g.get("mark") or ""
            clock = g.get("m") is not None and not g.get("hr")
            if g.get("lead"):
                pass  # "morning 10:30": the daypart is already the start of the span
            elif mark:
                # Annotation style: "11:45 AM" is marked without its AM, "11:45 PM" and "7pm" with;
                # a daypart after a clock time changes or anchors it and stays in the span
                # ("10:45 in the morning", "22:35 night", as NLU++ marks them), except "at night",
                # which Restaurants-8k's annotators leave out after a clock time.
                bare_mark = mark.strip().lower().replace(".", "")
                if clock and (mark[:1].isspace() and (bare_mark == "am" or (h == 12 and bare_mark in ("am", "pm")))
                              or bare_mark.startswith("at") and bare_mark.endswith("night")
                              or "morning" in bare_mark and hour == h):
                    end = m.start("mark")
                elif re.search(r"(?i)[ap]m$", text[start:end]) and text[end : end + 1] == "." and not text[end + 1 : end + 2].isalnum():
                    end += 1  # "1:00 PM." : the closing dot belongs to the mark
            elif pattern is _PATTERNS[-1]:
                end = m.end("mw") if g.get("mw") else m.end("h")
            lead = re.search(r"(?i)(?<!this )\b(?P<part>evening|night|morning|afternoon)\s+(?:at|around|about)\s+$", text[:start])
            if lead and not g.get("rel"):
                start = lead.start()
                if not g.get("mark"):  # "afternoon at 2" is 14:00: the daypart in the span sets the hour
                    led = resolve_hour(h, lead.group("part"), text, earliest, latest, minute)
                    hour = hour if led is None else led
            add(f"{hour:02d}:{minute:02d}", start, end, conf)
    if now is not None:
        for m in _AGO.finditer(text):
            count = _number(m.group("n")) if m.group("n").lower() not in ("a", "an") else 1
            if count is not None:
                unit = m.group("unit").lower()
                delta = timedelta(hours=count) if unit.startswith("h") else timedelta(minutes=count)
                add((now - delta).strftime("%H:%M"), m.start(), m.end(), 0.85, True)
        for m in re.finditer(r"\b(?:right\s+)?now\b", text, re.I):
            if requested:  # "now" said in passing ("I need help right now") is no time for a booking
                add(now.strftime("%H:%M"), m.start(), m.end(), 0.7, True)
        for m in _IN_HOURS.finditer(text):
            word = m.group("n").lower()
            if word.startswith("half"):
                add((now + timedelta(minutes=30)).strftime("%H:%M"), m.start(), m.end(), 0.85, True)
                continue
            count = 1 if word in ("a", "an") else 2 if "couple" in word else 3 if "few" in word else _number(word)
            if count is None:
                continue
            delta = timedelta(hours=count) if m.group("unit").lower().startswith("h") else timedelta(minutes=count)
            if m.group("half"):
                delta += timedelta(minutes=30)
            add((now + delta).strftime("%H:%M"), m.start(), m.end(), 0.85, True)
    if requested and not out:
        for n in find_numbers(text):
            if _NOT_A_TIME_AFTER.match(text[n.end :]):
                continue
            if isinstance(n.value, int) and 0 <= n.value <= 24 and not n.ordinal:
                hour = resolve_hour(n.value, None, text, earliest, latest)
                if hour is not None:
                    add(f"{hour:02d}:00", n.start, n.end, 0.7)
                    break
    return sorted(out, key=lambda r: r.start)
