"""How many: party sizes and other counts, including groups described in words.

"4 people", "a party of twelve", "table for 5", "11 of us", "just me", "me and my wife",
"my 3 friends and I", "2 adults and 3 kids", "a couple". The span follows the common
annotation style: "5 people" keeps its noun, "for 5" and "11 of us" are the number alone,
a group described in words is the whole description.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from extraction.numbers import SPECIAL, UNITS, find_numbers

PEOPLE_UNITS = ["people", "persons", "person", "peoples", "guests", "guest", "adults", "adult", "diners", "pax",
                "ppl", "covers", "humans", "individuals"]
_RELATIONS = (
    r"wife|husband|partner|girlfriend|boyfriend|fianc[eé]e?|spouse|friends?|buddies|buddy|pals?|mates?|colleagues?|coworkers?|"
    r"co-workers?|clients?|kids?|children|child|sons?|daughters?|boys?|girls?|brothers?|sisters?|siblings?|parents?|mom|mum|dad|"
    r"mother|father|family|cousins?|aunt|uncle|grandparents?|grandmother|grandfather|grandma|grandpa|guests?|others?|"
    r"nephews?|nieces?|in-laws|teammates?|roommates?|adults?|babies|baby|toddlers?|infants?|people|persons?|dates?|companions?|"
    r"boss|manager|men|women|ladies|gentlemen|guys|man|woman|lady|gentleman|fellows?|twins|triplets|aunts?|uncles?|"
    r"grand(?:sons?|daughters?|children|kids?|mothers?|fathers?|mas?|pas?)|nephews?|nieces?|siblings?|mom|dad|mum|"
    r"fianc[eé]e?|husband|wife|girlfriend|boyfriend|teens?|teenagers?|seniors?|elders?|grand(?:son|daughter)s?"
)
_NUM = r"(?:\d{1,3}|" + "|".join(sorted((w for w in UNITS if w not in ("oh", "zero")), key=len, reverse=True)) + r"|twenty|thirty|forty|fifty)"
# "our 5 year old", "a 2-year-old son": a person told by their age.
_AGE = rf"(?:{_NUM})[\s-]*(?:years?|yrs?|months?)[\s-]*old"
_TERM = (
    rf"(?:(?:just\s+)?(?:me|myself|i)\b|"
    rf"(?:my|our|his|her|their|an?)\s+{_AGE}(?:\s+(?:{_RELATIONS}))?\b|"
    rf"(?:my|our|his|her|their)\s+(?:{_NUM}\s+)?(?:\w+\s+)?(?:{_RELATIONS})\b|"
    rf"(?:an?|another)\s+(?:adult|person|man|woman|lady|gentleman|friend|colleague|guest|date|partner|child|kid|baby|teen|teenager|senior|"
    rf"grand(?:mother|father|son|daughter|ma|pa)|mother|father|brother|sister|son|daughter|nephew|niece|cousin)\b|"
    rf"(?:{_NUM}|a\s+couple(?:\s+of)?|a\s+few)\s+(?:more\s+|other\s+|of\s+my\s+)?(?:\w+\s+)?(?:{_RELATIONS})\b|"
    rf"a\s+(?:friend|colleague|guest|date|partner|child|kid|baby)\b|"
    rf"(?:the\s+)?(?:wife|husband|kids|children)\b|"
    rf"a\s+couple\b(?!\s+of\b))"  # "a couple of small dogs" is no couple
)
# Terms of a list, also written one after another without "and" ("2 adults 1 child", "3 adults one senior and 2 kids").
_SEP = (r"(?:\s*,\s*(?:and\s+)?|\s+(?:and|plus|with|&)\s+|\s*\+\s*|"
        rf"(?<=[a-z])(?<!\bmy)(?<!\bour)(?<!\bhis)(?<!\bher)(?<!\btheir)(?<!\bthe)(?<!\band)(?<!\bwith)(?<!\bplus)\s+(?=(?:{_NUM})\s+(?:{_RELATIONS})\b))")
_GROUP = re.compile(rf"\b{_TERM}(?:{_SEP}(?:{_TERM}|(?:{_RELATIONS})\b))+", re.I)
_TOP = re.compile(rf"\b(?:an?\s+)?(?P<n>{_NUM})[\s-]top\b", re.I)
_NUMBER_OF_PEOPLE = re.compile(rf"\b(?P<n>{_NUM})\s+(?:is|are)\s+the\s+(?:number|amount)\s+of\s+(?:people|persons|guests)|\bpeople\s+of\s+(?P<m>{_NUM})\b", re.I)
_PLUS = re.compile(rf"\b{_NUM}(?:\s+(?:people|persons|adults|guests))?\s+plus\s+(?:an?|{_NUM})(?:\s+(?:more|others?|\w+))?\b", re.I)
_ME = re.compile(r"\b(?:be\s+(?:just\s+|only\s+)?|(?:just|only)\s+(?:for\s+)?)(?P<me>me|myself)\b(?!\s+(?:and|plus|with|,))", re.I)
_SINGLE_ME = re.compile(
    r"\b(?:just\s+(?:me|myself|one)|only\s+me|(?:myself|me)\s+only|myself\s+alone|me\s+alone|by\s+myself|solo|"
    r"for\s+one(?!\s+(?:night|day|week|month|year|hour|more|of)s?\b)|single\s+person|party\s+of\s+one)\b", re.I)
# "I'm travelling alone", "I'll be on my own": the speaker is the whole party.
_ALONE = re.compile(r"\b(?:i'?m|i\s+am|i'll\s+be|i\s+will\s+be)\s+(?:travell?ing|coming|staying|going|visiting|arriving|dining|eating)\s+"
                    r"(?P<alone>alone|on\s+my\s+own|by\s+myself)\b", re.I)
_KIND_OF_COUPLE = re.compile(r"\b(?:an?|the)\s+(?:married|young|elderly|older|retired|newlywed|newly[\s-]+married|honeymoon(?:ing)?|"
                             r"senior)\s+couple\b(?!\s+of\b)", re.I)
_COUPLE = re.compile(r"\b(?:a|the|for\s+a)\s+couple\b(?!\s+of\b)(?!\s+(?:people|persons|guests|adults|kids|more|days|weeks|hours|minutes)\b)", re.I)
_BEFORE = re.compile(r"(?:party\s+of|table\s+of|table\s+for|group\s+of|we\s+have|only|all|people\s+(?:i\s+want\s+)?is|number\s+of\s+people.{0,30}\s(?:is|to)|(?:update|change|switch|increase|reduce|decrease|move)\b.{0,40}\bto|booking\s+for|reservation\s+for|reserve\s+for|book\s+for|seat|seats\s+for|room\s+for|for|we\s+are|we're|we\s+will\s+be|we'll\s+be|there\s+are|there\s+will\s+be|there'll\s+be|family\s+of|us|total\s+of|increase\s+(?:it\s+)?to|change\s+(?:it\s+)?to|make\s+it|up\s+to|down\s+to|party\s+size\s+(?:is|of|to))(?:\s+(?:just|only))?\s*$", re.I)
_NOT_AFTER = re.compile(r"^\s*(?:am\b|pm\b|a\.m|p\.m|o['’\"]?clock|:\d|\.\d|/|-\d|th\b|st\b|nd\b|rd\b|minutes?|hours?|days?|weeks?|months?|years?|nights?|%|dollars?|pounds?|euros?|bucks|in\s+the\s+(?:morning|evening|afternoon)|at\s+night|tonight|ish\b|-ish)", re.I)


@dataclass(frozen=True)
class CountReading:
    value: int
    start: int
    end: int
    confidence: float
    shared: bool = False  # one described group counted by kind: each kind's field may read it


def _group_size(phrase: str) -> int:
    """People in a described group: each person word is one, each number counts its noun."""
    total = 0
    for term in re.split(_SEP, phrase, flags=re.I):
        term = re.sub(_AGE, " ", term.strip().lower(), flags=re.I)  # an age is no head count
        nums = [n for n in find_numbers(term) if not n.ordinal]
        if nums:
            total += int(nums[0].value)
        elif "couple" in term or re.search(r"\bparents\b|\bgrandparents\b|\bin-laws\b|\btwins\b", term):
            total += 2
        elif "triplets" in term or re.search(r"\bfew\b", term):
            total += 3
        elif re.search(r"(?:friends|kids|children|sons|daughters|brothers|sisters|others|guests|colleagues|cousins|boys|girls|people)\b", term):
            total += 2
        else:
            total += 1
    return total


_CHILD_WORDS = re.compile(r"\b(?:kids?|child(?:ren)?|sons?|daughters?|boys?|girls?|teen(?:ager)?s?|little\s+ones?|bab(?:y|ies)|toddlers?|infants?|minors?|nephews?|nieces?)\b", re.I)
def _is_child(term: str) -> bool:
    """A child by what they are called ("our son") or, told by age alone, under 18 ("our 2 year old")."""
    if _CHILD_WORDS.search(term):
        return True
    age = re.search(_AGE, term, re.I)
    if not age or re.search(rf"\b(?:{_RELATIONS})\b", term[age.end():], re.I):
        return False
    nums = find_numbers(age.group(0))
    return bool(nums) and isinstance(nums[0].value, int) and (nums[0].value < 18 or "month" in age.group(0).lower())


_GROUP_WIDE = re.compile(
    rf"\b(?:{_TERM}|the\s+little\s+ones?|(?:my|our)\s+(?:\w+\s+)?teen(?:ager)?s?)"
    rf"(?:{_SEP}(?:{_TERM}|the\s+little\s+ones?|i\b|(?:my|our)\s+(?:\w+\s+)?teen(?:ager)?s?|(?:{_RELATIONS})\b))*",
    re.I,
)


def _category_counts(text: str, kids: bool, requested: bool = True) -> list[CountReading]:
    """In "my wife, our two sons and I": 2 adults and 2 kids, each counted over the terms of its kind."""
    out = []
    for m in _GROUP_WIDE.finditer(text):
        # "I'm coming with my dad": the speaker is one of the group.
        me = _COMING_WITH.search(text[: m.start()])
        if not requested and not me and not re.search(_SEP, m.group(0), re.I) and not find_numbers(m.group(0)):
            continue  # "I", "my daughter" alone: a person mentioned, not a count nobody asked for
        spans = [(me.start(), me.start() + len(me.group("me")))] if me and not kids else []
        total = len(spans)
        pos = m.start()
        for term in re.split(_SEP, m.group(0), flags=re.I):
            start = text.index(term, pos)
            pos = start + len(term)
            if _is_child(term) != kids:
                continue
            total += _group_size(term)
            spans.append((start, pos))
        if spans:
            out.append(CountReading(total, spans[0][0], spans[-1][1], 0.75, True))
    return out


_COMING_WITH = re.compile(
    r"\b(?P<me>i'?m|i\s+am|i'll(?:\s+be)?|i\s+will(?:\s+be)?)\s+(?:\w+\s+)?(?:(?:coming|come|travell?ing|travel|staying|stay|"
    r"arriving|arrive|going|go|visiting|here)\s+with|bringing|bring)\s+$",
    re.I)


def _inflections(units: tuple[str, ...]) -> set[str]:
    """A unit in the singular and the plural, whichever the spec wrote ("teenagers" hears "a teenager")."""
    out = set(units)
    for u in units:
        if u.endswith("ies") and len(u) > 4:
            out.add(u[:-3] + "y")
        elif u.endswith("s") and not u.endswith("ss") and len(u) > 3:
            out.add(u[:-1])
        elif u.endswith("y") and u[-2:-1] not in "aeiou":
            out.add(u[:-1] + "ies")
        elif u[-1:].isalpha() and not u.endswith("s"):
            out.add(u + "s")
    return out


@functools.lru_cache(maxsize=64)
def _unit_patterns(units: tuple[str, ...]) -> tuple[re.Pattern[str], re.Pattern[str], str]:
    """The unit-word patterns of one field, built once (they cost more than the rest of a turn)."""
    alternatives = "|".join(sorted((re.escape(u) for u in _inflections(units)), key=len, reverse=True))
    loose = re.compile(r"^\s*(?:(?:more|other|extra|additional|total|in\s+total)\s+)?(?:\w+\s+)?(" + alternatives + r")\b", re.I)
    direct = re.compile(r"^(\s*(?:[x×]\s*)?(?:" + alternatives + r"))\b", re.I)  # "2 x adults", as written on a form
    return loose, direct, alternatives


def find_counts(text: str, requested: bool, units: list[str] | None = None) -> list[CountReading]:
    people_mode = not units  # the party-size reading: groups described in words count
    units = units or PEOPLE_UNITS
    personal = people_mode or any(u in ("adult", "adults", "people", "person", "persons") for u in units)
    unit_re, unit_direct, unit_alt = _unit_patterns(tuple(units))
    out: list[CountReading] = []

    def add(value: int, start: int, end: int, conf: float, shared: bool = False) -> None:
        if value >= 0 and not any(r.start < end and start < r.end for r in out):
            out.append(CountReading(value, start, end, conf, shared))

    if people_mode:
        # "2 adults and 3 kids", "me and my wife": the whole description is the span.
        for m in _GROUP.finditer(text):
            start = m.start() + (len(m.group(0)) - len(re.sub(r"(?i)^just\s+", "", m.group(0))))
            add(_group_size(m.group(0)), start, m.end(), 0.85)
        for m in _TOP.finditer(text):
            add(_group_size(m.group("n")), m.start(), m.end("n"), 0.85)
        for m in _NUMBER_OF_PEOPLE.finditer(text):
            key = "n" if m.group("n") else "m"
            add(_group_size(m.group(key)), m.start(key), m.end(key), 0.9)
        for m in _PLUS.finditer(text):
            add(_group_size(re.sub(r"(?i)\s+plus\s+", " and ", m.group(0))), m.start(), m.end(), 0.8)
        for m in re.finditer(rf"\b(?P<n>{_NUM})\s+couples\b", text, re.I):
            nums = find_numbers(m.group("n"))
            if nums and isinstance(nums[0].value, int):
                add(2 * nums[0].value, m.start(), m.end(), 0.85)  # "two couples" are four people
    # "adults: 2, children: 1", as typed into a form
    for m in re.finditer(rf"\b(?:{unit_alt})\s*[:=]\s*(?P<n>{_NUM})\b", text, re.I):
        nums = find_numbers(m.group("n"))
        if nums and isinstance(nums[0].value, int):
            add(nums[0].value, m.start(), m.end("n"), 0.9)
    if not people_mode:
        for m in re.finditer(rf"\b(?:no|zero|without(?:\s+any)?|not\s+any)\s+(?:[a-z\-]+\s+)?(?:{unit_alt})\b", text, re.I):
            add(0, m.start(), m.end(), 0.8)
    if not people_mode and personal or any(_CHILD_WORDS.fullmatch(u) for u in units):
        kids = any(_CHILD_WORDS.fullmatch(u) for u in units)
        for r in _category_counts(text, kids, requested):
            add(r.value, r.start, r.end, r.confidence, r.shared)
        if not kids:
            for m in _KIND_OF_COUPLE.finditer(text):
                add(2, m.start(), m.end(), 0.75)
            for m in _COUPLE.finditer(text):
                add(2, m.start() + m.group(0).lower().rfind("couple") - (2 if m.group(0).lower().startswith(("a ", "for a")) else 0), m.end(), 0.7)
    for n in find_numbers(text):
        if n.ordinal or not isinstance(n.value, int) or n.value < 0 or any(r.start <= n.start < r.end for r in out):
            continue
        after, before = text[n.end :], text[: n.start]
        if _NOT_AFTER.match(after) or re.search(r"[/\-:.]$", before) or re.match(r"^[/\-:.]\d", after):
            continue
        direct = unit_direct.match(after)
        loose = unit_re.match(after)
        start = n.start
        the = re.search(r"\bthe\s+$", before, re.I)
        if direct:
            add(n.value, start, n.end + direct.end(1), 0.95)
        elif loose and len(loose.group(0)) < 20:
            # "four total people": with a word between, the annotators mark the number alone
            add(n.value, start, n.end, 0.85)
        elif re.match(r"^\s+(?:more|extra|additional)\b", after, re.I) or re.search(r"\badd(?:ing)?\s+$", before, re.I):
            continue  # "add 1 more person" changes a party; it is not its size
        elif re.match(r"^\s+of\s+(?:my|them|the|those|these|our)\b", after, re.I) or (n.value == 1 and re.match(r"^\s+of\b", after, re.I)):
            continue  # "one of us is vegan", "3 of my kids": part of the party
        elif people_mode and re.match(r"^\s+of\s+us\b", after, re.I):
            add(n.value, the.start() if the else start, n.end, 0.95)
        elif people_mode and _BEFORE.search(before):
            add(n.value, start, n.end, 0.85)
        elif requested:
            add(n.value, start, n.end, 0.8)
    if not people_mode:
        # "a double room", "my room", "a child": one of the unit; "no kids", "without children": none.
        # "the room", "my room" name one already had: a count of 1 only as an answer.
        articles = "an?|my|our|the|one|single" if requested else "an?|one|single"
        # "Double room", "twin room": a kind of one room, said without an article.
        for m in re.finditer(rf"\b(?:double|twin|single|triple|king|queen|family|deluxe)(?:[\s-]+bed(?:ded)?)?\s+(?:{unit_alt})\b", text, re.I):
            if not re.search(r"(?i)\b(?:an?|one|the|my|our|\d+|two|three|four)\s+$", text[: m.start()]):
                add(1, m.start(), m.end(), 0.8)
        for m in re.finditer(rf"\b(?P<art>{articles})\s+(?:[a-z\-]+\s+){{0,2}}?(?P<unit>{unit_alt})\b", text, re.I):
            if not re.search(rf"(?i)\b(?:{unit_alt})\b", m.group(0)[: m.start("unit") - m.start()]):
                # "a room and then another": one more of the same
                more = re.match(rf"(?i)^\s+(?:and|plus)\s+(?:then\s+|also\s+)?another(?:\s+one|\s+(?:{unit_alt}))?\b"
                                r"(?=\s*(?:$|[,.!?;]|for\b|with\b|please\b|and\b|too\b|as\s+well\b))", text[m.end():])
                add(2 if more else 1, m.start(), m.end() + (more.end() if more else 0), 0.8)
    if personal:
        for m in _SINGLE_ME.finditer(text):
            span = re.search(r"(?:me|myself|one|person|solo)\b.*", m.group(0), re.I)
            s = m.start() + (span.start() if span and not m.group(0).lower().startswith(("single", "party", "solo")) else 0)
            add(1, s if requested else m.start(), m.end(), 0.8)
        for m in _ME.finditer(text):
            add(1, m.start("me"), m.end("me"), 0.75)
        for m in _ALONE.finditer(text):
            add(1, m.start("alone"), m.end("alone"), 0.75)
        if not people_mode and requested:  # a pronoun is a count only as the answer to "how many"
            for m in re.finditer(r"\b(?:me|myself)\b", text, re.I):
                add(1, m.start(), m.end(), 0.65)
    if people_mode:
        for m in _COUPLE.finditer(text):
            add(2, m.start() + m.group(0).lower().rfind("couple") - (2 if m.group(0).lower().startswith(("a ", "for a")) else 0), m.end(), 0.7)
    if requested and not out and len(text.split()) <= 4 and (m := re.search(r"\b(?:none|nobody|no\s+one)\b", text, re.I)):
        add(0, m.start(), m.end(), 0.7)  # "none" answers "how many?" with 0
    if requested and not out:
        for phrase, value in SPECIAL.items():
            m = re.search(rf"\b{phrase}\b", text, re.I)
            if m:
                add(value, m.start(), m.end(), 0.7)
                break
        m = re.search(r"\b(?:me|myself|i)\b", text, re.I)
        if m and not out and len(text.split()) <= 4:
            add(1, m.start(), m.end(), 0.7)
    return sorted(out, key=lambda r: r.start)


def names_parts(span: str, part_units: list[list[str]]) -> bool:
    """Does this span count people some other field counts by kind ("2 adults and 3 kids" when
    the spec has adults and kids fields)? Then a total is not the party-size field's to take."""
    for units in part_units:
        alt = "|".join(re.escape(u) for u in units)
        if alt and re.search(rf"\b(?:{alt})\b", span, re.I):
            return True
        if any(_CHILD_WORDS.fullmatch(u) for u in units) and _CHILD_WORDS.search(span):
            return True
    # "my husband and I", "a couple": people described by who they are are counted by kind.
    return bool(_DESCRIBED.search(span))


_DESCRIBED = re.compile(rf"\b(?:me|myself|i|couple|{_RELATIONS})\b(?<!people)(?<!persons)(?<!person)(?<!guests)(?<!guest)", re.I)
