"""Roles: telling two fields of one type apart (check-in and check-out dates, pick-up and
drop-off times, origin and destination cities).

A field's role is its spec's `role`, or else read from its name, label and description
("check-out date" is an end). The words just before a value ("from", "until", "checking
out on", "going to") say which role it plays; the field just asked for wins when no word
does; with neither, the first value is the start and a later one the end. Cue words come
from the field's own words (name, label, description, `cues`) and the small table below,
never from any data.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass

from extraction.fields import ROLES, FieldSpec, FieldType
from extraction.finders import Candidate

# Groups of words that name one side of a span of time or a journey. A field whose own words
# hit a group hears the whole group as its cues; the role-wide groups are heard by any field of
# that role. "leaving" and "departure" are a start for a trip but an end for a hotel stay, so
# they are no role's by default: only a field that says them hears them.
_GROUPS: dict[str, str] = {
    "check_in": r"check(?:ing|ed)?[\s-]*in(?:\s+date)?",
    "check_out": r"check(?:ing|ed)?[\s-]*out(?:\s+date)?",
    "arrive": r"arriv(?:e|es|ing|al)|get(?:ting)?\s+(?:there|in)|com(?:e|ing)\s+in",
    "depart": r"depart(?:s|ing|ure)?|leav(?:e|es|ing)|head(?:ing)?\s+(?:out|back|home)|go(?:ing)?\s+home",
    # "pick it up", "pick one up", "pick the rental car up": the thing picked up may stand between.
    "pick_up": r"pick(?:ing|ed)?[\s-]*(?:(?:it|one|them|her|him|(?:the|my|our|a)\s+(?:\w+\s+)?\w+)\s+)?up|pickup|collect(?:ing)?",
    "drop_off": r"drop(?:ping|ped)?[\s-]*(?:(?:it|one|them|(?:the|my|our)\s+(?:\w+\s+)?\w+)\s+)?off|dropoff|return(?:ing|ed)?|bring(?:ing)?\s+(?:it\s+)?back|back\s+on",
    "start": r"start(?:ing|s)?|begin(?:ning|s)?|from|since|as\s+of|between|after|later\s+than|not\s+before",
    "end": r"end(?:ing|s)?|until|till|til|through|thru|to|and|up\s+to|no\s+later\s+than|before|by|not\s+after",
    "origin": r"from|leav(?:e|es|ing)(?:\s+from)?|depart(?:s|ing)?(?:\s+from)?|out\s+of|starting\s+(?:in|from|at)",
    "destination": r"to|into|towards?|going\s+to|go\s+to|heading\s+to|head\s+to|headed\s+to|travel(?:l?ing)?\s+to|visit(?:ing)?|"
                   r"arriv(?:e|ing)\s+(?:in|at)|bound\s+for|destination(?:\s+is)?|get\s+to|reach",
}
# The groups a role hears whatever its field says.
_ROLE_GROUPS = {"start": ("start",), "end": ("end",), "origin": ("origin",), "destination": ("destination",)}
# Words in a field's name/label/description that tell its role, when the spec gives none.
_ROLE_WORDS = {
    "start": r"start|begin|from|first|check[\s_-]*in|checkin|arriv|pick[\s_-]*up|pickup|outbound|since|earliest|onward",
    "end": r"end|until|to|last|check[\s_-]*out|checkout|return|drop[\s_-]*off|dropoff|back|latest|till",
    "origin": r"from|origin|source|start|pick[\s_-]*up|pickup|leav|depart",
    "destination": r"to|destination|dest|arriv|going|drop[\s_-]*off|dropoff|end",
}
# Words that are a cue only right before the value ("to the 5th"), not a few words away ("to book on the 5th").
_ADJACENT_ONLY = {"start", "end", "origin", "destination"}
_FILLER = r"(?:\s+(?:on|at|in|for|the|by|around|about|it|is|will\s+be|would\s+be|be|date|time|day|of|me|us|a|an)\b)*\s*"


def _words(spec: FieldSpec) -> str:
    return " ".join([spec.name.replace("_", " "), spec.label or "", spec.description]).lower()


def field_role(spec: FieldSpec, partners: Sequence[FieldSpec]) -> str | None:
    """The spec's `role`, or the one its words tell when another field shares its type."""
    if spec.role is not None:
        return spec.role
    roles = ROLES.get(spec.type)
    if not roles or not partners:
        return None
    mine = _role_scores(spec, roles)
    if mine[0] != mine[1]:
        return roles[0] if mine[0] > mine[1] else roles[1]
    # Nothing in its own words: the complement of a partner whose words are clear.
    for other in partners:
        if other.role is not None:
            return roles[1] if other.role == roles[0] else roles[0]
        theirs = _role_scores(other, roles)
        if theirs[0] != theirs[1]:
            return roles[1] if theirs[0] > theirs[1] else roles[0]
    return None


def _role_scores(spec: FieldSpec, roles: tuple[str, ...]) -> tuple[int, int]:
    text = _words(spec)
    return tuple(len(re.findall(rf"\b(?:{_ROLE_WORDS[r]})", text)) for r in roles)  # type: ignore[return-value]


@dataclass(frozen=True)
class Cues:
    before: re.Pattern[str]  # a cue just before the value ("checking out on the", "until")
    named: re.Pattern[str] | None  # this field's own words anywhere in the clause ("the check in")


@functools.lru_cache(maxsize=256)
def _cues(groups: tuple[str, ...], extra: tuple[str, ...]) -> Cues:
    near = [_GROUPS[g] for g in groups if g not in _ADJACENT_ONLY] + [re.escape(w.lower()) for w in extra]
    adjacent = [_GROUPS[g] for g in groups if g in _ADJACENT_ONLY]
    parts = []
    if near:
        # A verb cue may stand a few words off: "checking out on the", "pick the car up at".
        parts.append(rf"\b(?:{'|'.join(near)})\b(?:\s+\w+){{0,3}}?{_FILLER}$")
    if adjacent:
        parts.append(rf"\b(?:{'|'.join(adjacent)})\s+(?:the\s+|on\s+|at\s+|in\s+)?$")
    before = re.compile("|".join(f"(?:{p})" for p in parts), re.I)
    named = re.compile(rf"\b(?:{'|'.join(near)})\b", re.I) if near else None
    return Cues(before, named)


def field_cues(spec: FieldSpec, role: str | None) -> Cues | None:
    """What this field hears before its value: the groups its own words name, its role's, its `cues`."""
    words = _words(spec)
    groups = [g for g, pattern in _GROUPS.items()
              if g not in _ADJACENT_ONLY and re.search(rf"\b(?:{pattern})\b", words)]
    groups += list(_ROLE_GROUPS.get(role or "", ()))
    if not groups and not spec.cues:
        return None
    return _cues(tuple(dict.fromkeys(groups)), tuple(spec.cues))


_CHANGE = re.compile(r"\b(?:change|changing|move|moving|update|switch|push|bring|make)\b(?:\s+\S+){0,4}?\s+(?P<to>to)\s+(?:the\s+)?$", re.I)


def _cue_end(text: str, start: int, cues: Cues | None) -> int:
    """Where this field's cue stands before `start` (the nearer, the larger), or -1 when none does."""
    if cues is None:
        return -1
    lo = max(0, start - 48)
    window = text[lo:start]
    # A cue belongs to this value only within its clause.
    cut = max(window.rfind(","), window.rfind("."), window.rfind(";"), window.rfind("?"), window.rfind("!"))
    if cut >= 0:
        lo, window = lo + cut + 1, window[cut + 1 :]
    change = _CHANGE.search(window)
    if change:
        # "change the check in to the 10th": the "to" of a change is no end; the words before it name the field.
        hits = list(cues.named.finditer(window[: change.start("to")])) if cues.named else []
        return lo + hits[-1].start() if hits else -1
    m = cues.before.search(window)
    return lo + m.start() if m else -1


def steer(
    text: str, fields: Sequence[FieldSpec], proposals: list[tuple[bool, FieldSpec, Candidate]], requested: Sequence[str]
) -> list[tuple[bool, FieldSpec, Candidate]]:
    """Move each value of a shared type to the field of its role: a cue for this field lifts it,
    a cue for a partner drops it; with no cue, the field asked for (or the first value for the
    start) wins."""
    by_type: dict[FieldType, list[FieldSpec]] = {}
    for f in fields:
        if f.type in ROLES:
            by_type.setdefault(f.type, []).append(f)
    groups = {t: fs for t, fs in by_type.items() if len(fs) >= 2}
    if not groups:
        return proposals
    info: dict[str, tuple[str | None, Cues | None]] = {}
    for fs in groups.values():
        for f in fs:
            role = field_role(f, [o for o in fs if o is not f])
            info[f.name] = (role, field_cues(f, role))
    # Where each distinct value of a shared type stands, in reading order (first = start).
    order: dict[FieldType, list[int]] = {}
    for _, spec, cand in proposals:
        if spec.type in groups and cand.start not in order.setdefault(spec.type, []):
            order[spec.type].append(cand.start)
    for starts in order.values():
        starts.sort()
    out = []
    for asked, spec, cand in proposals:
        if spec.type not in groups:
            out.append((asked, spec, cand))
            continue
        partners = [o for o in groups[spec.type] if o is not spec]
        role, cues = info[spec.name]
        mine = _cue_end(text, cand.start, cues)
        theirs = max((_cue_end(text, cand.start, info[o.name][1]) for o in partners), default=-1)
        conf = cand.confidence
        if mine > theirs:
            conf = min(0.99, conf + 0.05)
        elif theirs > mine:
            continue  # the words say it is the partner's value
        elif any(o.name in requested for o in partners) and spec.name not in requested:
            conf -= 0.15  # no cue: the field just asked for takes it
        elif not any(o.name in requested for o in groups[spec.type]) and role is not None:
            roles = ROLES[spec.type]
            first = order[spec.type].index(cand.start) == 0
            # No cue, nothing asked: the first value starts, a later one ends.
            if (role == roles[0]) != first:
                conf -= 0.1
        value = cand.value
        if role == "end" and spec.type is FieldType.date and _MONTH_ONLY.fullmatch(text[cand.start : cand.end]):
            value = _last_day(value)  # "until May" runs to the end of May
        out.append((asked, spec, Candidate(value, cand.start, cand.end, round(conf, 4), cand.shared)))
    return out


_MONTH_ONLY = re.compile(r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?|(?:last|this|next|previous|past)\s+month", re.I)


def _last_day(iso: str) -> str:
    import calendar

    year, month, _ = (int(x) for x in iso.split("-"))
    return f"{year:04d}-{month:02d}-{calendar.monthrange(year, month)[1]:02d}"
