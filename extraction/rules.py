"""The default extractor: offline rules and parsers, steered by the requested field."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime

from extraction import finders, roles
from extraction.calibration import calibrated, calibrated_type, situated
from extraction.base import ExtractionContext, Extracted, grounded
from extraction.counts import find_counts, names_parts
from extraction.dates import find_dates
from extraction.durations import find_durations
from extraction.fields import Constraints, FieldSpec, FieldType
from extraction.finders import Candidate
from extraction.intents import yes_no
from extraction.names import find_names, title
from extraction.places import find_places
from extraction.times import find_times

DEFAULT_PHONE_REGION = "US"
_NAME_TYPES = (FieldType.name, FieldType.full_name, FieldType.first_name, FieldType.last_name)


class RuleExtractor:
    """Finds values for every field in one pass; one span serves at most one field."""

    def __init__(self, phone_region: str = DEFAULT_PHONE_REGION, calibrate: bool = True):
        self.phone_region = phone_region
        self.calibrate = calibrate

    def extract(self, text: str, fields: Sequence[FieldSpec], context: ExtractionContext) -> list[Extracted]:
        offset = situation(text, context)
        proposals: list[tuple[bool, FieldSpec, Candidate]] = []
        for spec in fields:
            requested = spec.name in context.requested
            for cand in self._candidates(text, spec, context.now, requested):
                proposals.append((requested, spec, cand))
        proposals.extend(self._names(text, fields, context))
        proposals = [(r, f, _prefer_corrections(text, c)) for r, f, c in proposals]
        proposals = _lengths_are_not_moments(text, fields, proposals)
        proposals = roles.steer(text, fields, proposals, context.requested)
        proposals = _parts_before_totals(text, fields, proposals)
        proposals = _not_the_negated(text, proposals)
        proposals = _not_the_old_value(text, fields, proposals)
        # The surest readings first, with a head start for the field just asked for; a span is used once.
        proposals.sort(key=lambda p: (-(p[2].confidence + (0.1 if p[0] else 0.0)), p[2].start))
        taken: list[tuple[int, int, bool, FieldType]] = []
        picked: dict[str, tuple[FieldSpec, Candidate]] = {}
        for _, spec, cand in proposals:
            if spec.name in picked:
                continue
            # A shared phrase ("tonight") gives a date and a time, never the same value to two fields of one type;
            # a group described by kind ("my husband, our son and I") gives each kind's count field its part.
            if any(cand.start < e and s < cand.end and not (shared and cand.shared and (t is not spec.type or t is FieldType.count))
                   for s, e, shared, t in taken):
                continue
            taken.append((cand.start, cand.end, cand.shared, spec.type))
            picked[spec.name] = (spec, cand)
        chosen: dict[str, Extracted] = {}
        for spec, cand in picked.values():
            # Another value for the same field that no other field took ("from 8 people to just 7"):
            # the reading chosen is less sure.
            rival = any(f.name == spec.name and c.value != cand.value and not any(c.start < e and s < c.end for s, e, _, _ in taken)
                        for _, f, c in proposals)
            moved = offset - (_RIVAL if rival else 0.0) - (_RIVAL if _NEGATED.search(text[max(0, cand.start - 12) : cand.start]) else 0.0)
            if self.calibrate:
                confidence = calibrated(spec.type.value, cand.confidence, moved)
            else:  # the bench fits the table on these scores
                confidence = situated(cand.confidence, moved) if calibrated_type(spec.type.value) else cand.confidence
            chosen[spec.name] = Extracted(
                field=spec.name, value=cand.value, start=cand.start, end=cand.end,
                text=text[cand.start : cand.end], confidence=round(confidence, 3),
            )
        return grounded(text, sorted(chosen.values(), key=lambda e: e.start))

    def readings(self, text: str, spec: FieldSpec, now: datetime, requested: bool = False) -> list[Candidate]:
        """Every reading of one field in `text`, before spans are shared out between fields."""
        if spec.type in _NAME_TYPES:
            return [c for _, _, c in self._names(text, [spec], ExtractionContext(requested=[spec.name] if requested else [], now=now))]
        return self._candidates(text, spec, now, requested)

    def _candidates(self, text: str, spec: FieldSpec, now: datetime, requested: bool) -> list[Candidate]:
        t, c = spec.type, spec.constraints
        if t is FieldType.time:
            return [Candidate(r.value, r.start, r.end, r.confidence, r.shared) for r in find_times(text, requested, c.earliest, c.latest, now)]
        if t is FieldType.date:
            return [Candidate(r.value, r.start, r.end, r.confidence, r.shared) for r in find_dates(text, now.date(), requested, c.date_order, c.not_in_past, now,
                                                                                                 past=_past_only(c))]
        if t is FieldType.datetime:
            return _combine_datetime(
                find_dates(text, now.date(), requested, c.date_order, c.not_in_past, past=_past_only(c)), find_times(text, requested, c.earliest, c.latest)
            )
        if t is FieldType.count:
            return [Candidate(r.value, r.start, r.end, r.confidence, r.shared) for r in find_counts(text, requested, spec.units or None)]
        if t is FieldType.integer:
            return finders.find_integers(text, requested)
        if t is FieldType.digits:
            return finders.find_digits(text, spec, requested)
        if t is FieldType.phone:
            return finders.find_phones(text, self.phone_region, requested)
        if t is FieldType.email:
            return finders.find_emails(text)
        if t is FieldType.money:
            return finders.find_money(text, requested)
        if t is FieldType.choice:
            return finders.find_choice(text, c.choices or [], requested)
        if t is FieldType.duration:
            return [Candidate(r.value, r.start, r.end, r.confidence) for r in find_durations(text, requested)]
        if t is FieldType.place:
            return [Candidate(r.value, r.start, r.end, r.confidence) for r in find_places(text, requested, c.choices, c.country)]
        if t is FieldType.yes_no and requested:
            return finders.find_yes_no(text)
        if t in (FieldType.text, FieldType.free_text) and requested:
            return finders.find_free_text(text)
        return []

    def _names(
        self, text: str, fields: Sequence[FieldSpec], ctx: ExtractionContext
    ) -> list[tuple[bool, FieldSpec, Candidate]]:
        name_fields = [f for f in fields if f.type in _NAME_TYPES]
        if not name_fields:
            return []
        by_type = {f.type: f for f in name_fields}
        requested = [f for f in name_fields if f.name in ctx.requested]
        readings = find_names(text, bool(requested))
        if not readings:
            return []
        tokens = list(readings[0].tokens)
        conf = readings[0].confidence + (0.05 if requested else 0.0)
        first, last = by_type.get(FieldType.first_name), by_type.get(FieldType.last_name)
        whole = by_type.get(FieldType.full_name) or by_type.get(FieldType.name)
        out: list[tuple[bool, FieldSpec, Candidate]] = []

        def cand(spec: FieldSpec, toks: list[tuple[str, int, int]], c: float) -> tuple[bool, FieldSpec, Candidate]:
            value = " ".join(title(w) for w, _, _ in toks)
            return (spec.name in ctx.requested, spec, Candidate(value, toks[0][1], toks[-1][2], min(c, 0.99)))

        # "First name Carry, last name Jocoy": each part said with its own words goes to its own field.
        parts = {r.part: r for r in readings if r.part}
        if first is not None and last is not None and parts:
            for part, spec in (("first", first), ("last", last)):
                if part in parts:
                    out.append(cand(spec, list(parts[part].tokens), parts[part].confidence + (0.05 if requested else 0.0)))
            if len(parts) == 2 or whole is None:
                return out

        asked_first = first is not None and first.name in ctx.requested
        asked_last = last is not None and last.name in ctx.requested
        if asked_first and asked_last and len(tokens) == 1:
            # Both asked for and one word given: it answers whichever was asked first.
            asked_first = ctx.requested.index(first.name) < ctx.requested.index(last.name)
            asked_last = not asked_first
        if whole is not None:
            out.append(cand(whole, tokens, conf))
        if first is not None and last is not None and len(tokens) >= 2:
            if asked_last and not asked_first and first.name in ctx.filled:
                out.append(cand(last, tokens, conf))
            else:
                out.append(cand(first, tokens[:-1], conf))
                out.append(cand(last, tokens[-1:], conf - 0.03))
        elif len(tokens) == 1 or first is None or last is None:
            if asked_last and not asked_first and last is not None:
                out.append(cand(last, tokens, conf))
            elif first is not None:
                out.append(cand(first, tokens[:1], conf))
            elif last is not None:
                out.append(cand(last, tokens[-1:], conf))
        return out


# What the message around a value says about whether it is the one meant (see calibration.py):
# the person's own question ("when are you open on Friday?") and talk of the past ("I booked
# it yesterday", "what did I spend last month") hold values nobody is giving.
_QUESTION = re.compile(r"^\s*(?:when|what|how|why|where|is|are|do|does|did|any|which|whats|what's)\b", re.I)
_PAST = re.compile(r"\b(?:ago|yesterday|last(?!\s+name)|previous|earlier|was|were|did|spent|paid|transferred|lost|made)\b", re.I)
def is_question(text: str) -> bool:
    """The person asks rather than answers: a question mark, or a question's first word."""
    return text.rstrip().endswith("?") or bool(_QUESTION.search(text))


# A rival value for the same field, or "not" just before the value ("I said 5pm, not 6pm"): less sure.
_RIVAL = 0.1
_NEGATED = re.compile(r"(?:\bnot|n't)\s+(?:at\s+|for\s+|on\s+|the\s+)?$", re.I)


def situation(text: str, context: ExtractionContext) -> float:
    """How much the situation moves a reading's raw score: up for an answer to a question the
    worker asked (or a reply of a few words), down for a question or talk of the past."""
    offset = 0.05 if context.requested or len(text.split()) <= 3 else 0.0
    if _QUESTION.search(text):
        offset -= 0.1
    if _PAST.search(text):
        offset -= 0.1
    return offset


_MOMENTS = (FieldType.date, FieldType.time, FieldType.datetime)


def _lengths_are_not_moments(
    text: str, fields: Sequence[FieldSpec], proposals: list[tuple[bool, FieldSpec, Candidate]]
) -> list[tuple[bool, FieldSpec, Candidate]]:
    """"3 nights", "two weeks", "an hour and a half" are lengths: no date or clock time is read inside them."""
    if not any(f.type in _MOMENTS for f in fields):
        return proposals
    lengths = [(d.start, d.end) for d in find_durations(text) if d.value != "P2D" or "weekend" not in text[d.start : d.end].lower()]
    if not lengths:
        return proposals
    return [
        (r, f, c) for r, f, c in proposals
        if f.type not in _MOMENTS or not any(s <= c.start and c.end <= e for s, e in lengths)
    ]


def _parts_before_totals(
    text: str, fields: Sequence[FieldSpec], proposals: list[tuple[bool, FieldSpec, Candidate]]
) -> list[tuple[bool, FieldSpec, Candidate]]:
    """A count field without units takes a total only when the spec has no field for its parts."""
    parts = [f.units for f in fields if f.type is FieldType.count and f.units]
    if not parts:
        return proposals
    return [
        (r, f, c) for r, f, c in proposals
        if not (f.type is FieldType.count and not f.units and names_parts(text[c.start : c.end], parts))
    ]


def _not_the_negated(
    text: str, proposals: list[tuple[bool, FieldSpec, Candidate]]
) -> list[tuple[bool, FieldSpec, Candidate]]:
    """"5pm, not 6pm", "not 10 p.m., I meant 10 a.m.", "it's 5 not 4 people": a value right after
    "not" is the one refused, so no field takes it while another value of its type was said."""
    negated = {(c.start, c.end) for _, _, c in proposals if _NEGATED.search(text[max(0, c.start - 12) : c.start])}
    if not negated:
        return proposals
    kept = []
    for r, f, c in proposals:
        if (c.start, c.end) in negated and any(
                g.type is f.type and (o.start, o.end) not in negated and (o.end <= c.start or c.end <= o.start)
                for _, g, o in proposals):
            continue
        kept.append((r, f, c))
    return kept


_CHANGE_FROM = re.compile(
    r"\b(?:change|changing|move|moving|switch|update|reschedule|modify|amend|increase|reduce|decrease|bump)\b"
    r"(?:\s+[\w']+){0,4}?\s+from\s+(?P<old>.+?)\s+to\s+", re.I)


def _not_the_old_value(
    text: str, fields: Sequence[FieldSpec], proposals: list[tuple[bool, FieldSpec, Candidate]]
) -> list[tuple[bool, FieldSpec, Candidate]]:
    """"change my booking from 8 people to 7": the value between "from" and "to" is the one being
    replaced; a field takes it only when nothing of its type follows. A spec with two fields of
    the type (an old and a new time, a start and an end) keeps both, for them to tell apart."""
    m = _CHANGE_FROM.search(text)
    if not m:
        return proposals
    lo, hi = m.start("old"), m.end("old")
    single = {t for t in {f.type for f in fields} if sum(f.type is t for f in fields) == 1}
    return [(r, f, c) for r, f, c in proposals
            if not (f.type in single and lo <= c.start and c.end <= hi
                    and any(g.type is f.type and o.start >= m.end() for _, g, o in proposals))]


_CHANGE_TO = re.compile(r"(?:\bto|\binstead|\bmeant|\bmake\s+it|\bchange\s+(?:it\s+)?to|\bmove\s+(?:it\s+)?to|\bactually)\s+(?:just\s+|only\s+)?(?:at\s+|for\s+|the\s+)?$", re.I)


def _prefer_corrections(text: str, cand: Candidate) -> Candidate:
    """In "from 18:00 to 17:45" or "not 10 pm, I meant 10 am" the new value is the one meant."""
    if _CHANGE_TO.search(text[max(0, cand.start - 24) : cand.start]):
        return Candidate(cand.value, cand.start, cand.end, min(0.99, cand.confidence + 0.02), cand.shared)
    return cand


def _combine_datetime(dates: list, times: list) -> list[Candidate]:  # noqa: ANN001
    if not dates or not times:
        return []
    d, t = dates[0], times[0]
    return [Candidate(f"{d.value}T{t.value}", min(d.start, t.start), max(d.end, t.end), min(d.confidence, t.confidence))]


def _past_only(c: Constraints) -> bool:
    """A date field whose latest allowed day is today or earlier (`max: 0`): only the past makes sense."""
    return c.max is not None and c.max <= 0
