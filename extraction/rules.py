"""The default extractor: offline rules and parsers, steered by the requested field."""

from __future__ import annotations

from collections.abc import Sequence

from extraction.base import ExtractionContext, Extracted, grounded
from extraction.fields import FieldSpec, FieldType
from extraction import finders
from extraction.finders import Candidate
from extraction.intents import yes_no

DEFAULT_PHONE_REGION = "US"


class RuleExtractor:
    """Finds values for every field in one pass; one span serves at most one field."""

    def __init__(self, phone_region: str = DEFAULT_PHONE_REGION):
        self.phone_region = phone_region

    def extract(self, text: str, fields: Sequence[FieldSpec], context: ExtractionContext) -> list[Extracted]:
        proposals: list[tuple[bool, FieldSpec, Candidate]] = []
        for spec in fields:
            requested = spec.name in context.requested
            for cand in self._candidates(text, spec, context, requested):
                proposals.append((requested, spec, cand))
        proposals.extend(self._names(text, fields, context))
        # Requested fields first, then the surest readings; a span is used once.
        proposals.sort(key=lambda p: (not p[0], -p[2].confidence, p[2].start))
        taken: list[tuple[int, int]] = []
        chosen: dict[str, Extracted] = {}
        for _, spec, cand in proposals:
            if spec.name in chosen:
                continue
            if any(cand.start < e and s < cand.end for s, e in taken):
                continue
            taken.append((cand.start, cand.end))
            chosen[spec.name] = Extracted(
                field=spec.name, value=cand.value, start=cand.start, end=cand.end,
                text=text[cand.start : cand.end], confidence=round(cand.confidence, 3),
            )
        return grounded(text, sorted(chosen.values(), key=lambda e: e.start))

    def _candidates(self, text: str, spec: FieldSpec, ctx: ExtractionContext, requested: bool) -> list[Candidate]:
        t = spec.type
        if t is FieldType.time:
            return finders.find_times(text, requested)
        if t is FieldType.date:
            return finders.find_dates(text, ctx.now, requested)
        if t is FieldType.datetime:
            return _combine_datetime(finders.find_dates(text, ctx.now, requested), finders.find_times(text, requested))
        if t is FieldType.count:
            return finders.find_counts(text, requested)
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
            return finders.find_choice(text, spec.constraints.choices or [], requested)
        if t is FieldType.yes_no and requested:
            answer = yes_no(text)
            if answer is None:
                return []
            word = text.strip().split()[0].strip(",.!")
            start = text.index(word)
            return [Candidate(answer, start, start + len(word), 0.9)]
        if t in (FieldType.text, FieldType.free_text) and requested:
            return finders.find_free_text(text)
        return []

    def _names(
        self, text: str, fields: Sequence[FieldSpec], ctx: ExtractionContext
    ) -> list[tuple[bool, FieldSpec, Candidate]]:
        by_type = {f.type: f for f in fields}
        name_fields = [f for f in fields if f.type in (FieldType.name, FieldType.full_name, FieldType.first_name, FieldType.last_name)]
        if not name_fields:
            return []
        requested = [f for f in name_fields if f.name in ctx.requested]
        groups = finders.find_names(text, bool(requested))
        if not groups:
            return []
        tokens = groups[0]
        conf = 0.9 if requested else 0.8
        first, last = by_type.get(FieldType.first_name), by_type.get(FieldType.last_name)
        whole = by_type.get(FieldType.full_name) or by_type.get(FieldType.name)
        out: list[tuple[bool, FieldSpec, Candidate]] = []

        def cand(spec: FieldSpec, toks: list[tuple[str, int, int]], c: float) -> tuple[bool, FieldSpec, Candidate]:
            value = " ".join(finders._title(w) for w, _, _ in toks)
            return (spec.name in ctx.requested, spec, Candidate(value, toks[0][1], toks[-1][2], c))

        asked_last = last is not None and last.name in ctx.requested
        if whole is not None:
            out.append(cand(whole, tokens, conf))
        if len(tokens) >= 2 and first is not None and last is not None:
            if asked_last and first.name in ctx.filled:
                out.append(cand(last, tokens, conf))
            else:
                out.append(cand(first, tokens[:1], conf))
                out.append(cand(last, tokens[1:], conf - 0.05))
        elif len(tokens) == 1:
            if asked_last:
                out.append(cand(last, tokens, conf))
            elif first is not None:
                out.append(cand(first, tokens, conf))
            elif last is not None:
                out.append(cand(last, tokens, conf))
        elif first is not None:
            out.append(cand(first, tokens[:1], conf))
        elif last is not None:
            out.append(cand(last, tokens[-1:], conf))
        return out


def _combine_datetime(dates: list[Candidate], times: list[Candidate]) -> list[Candidate]:
    if not dates or not times:
        return []
    d, t = dates[0], times[0]
    return [Candidate(f"{d.value}T{t.value}", min(d.start, t.start), max(d.end, t.end), min(d.confidence, t.confidence))]
