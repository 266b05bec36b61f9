"""Measure extraction against labelled data: span F1 on Restaurants-8k, value accuracy on
NLU++, and how well confidence predicts correctness. Used by bench/extraction.py and by the
accuracy-floor tests; the data lives outside the repository (../shared/data)."""

from __future__ import annotations

import json
import zlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from extraction.base import ExtractionContext, Extractor
from extraction.fields import FieldSpec, FieldType

RESTAURANT_SLOTS = ("date", "time", "people", "first_name", "last_name")
NLUPP_NOW = datetime(2022, 3, 15, 9, 0)


@dataclass
class SlotCounts:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    def f1(self) -> tuple[float, float, float]:
        p = self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0
        r = self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0
        return p, r, (2 * p * r / (p + r) if p + r else 0.0)


@dataclass
class SpanReport:
    exact: dict[str, SlotCounts] = field(default_factory=lambda: defaultdict(SlotCounts))
    overlap: dict[str, SlotCounts] = field(default_factory=lambda: defaultdict(SlotCounts))
    confidence: list[tuple[float, bool]] = field(default_factory=list)  # (confidence, exactly right)
    samples: list[tuple[str, float, bool]] = field(default_factory=list)  # (slot, confidence, exactly right)
    errors: list[dict[str, Any]] = field(default_factory=list)

    @staticmethod
    def micro(counts: dict[str, SlotCounts]) -> tuple[float, float, float]:
        total = SlotCounts(sum(c.tp for c in counts.values()), sum(c.fp for c in counts.values()),
                           sum(c.fn for c in counts.values()))
        return total.f1()


def load_restaurant8k(path: Path) -> list[dict[str, Any]]:
    examples = []
    for item in json.loads(path.read_text()):
        gold = {}
        for label in item.get("labels", []):
            span = label["valueSpan"]
            gold[label["slot"]] = (span.get("startIndex", 0), span["endIndex"])
        examples.append({
            "text": item["userInput"]["text"],
            "requested": item.get("context", {}).get("requestedSlots", []),
            "gold": gold,
            "id": item.get("id", ""),
        })
    return examples


def evaluate_spans(
    extractor: Extractor, fields: Sequence[FieldSpec], examples: Iterable[dict[str, Any]], now: datetime,
    keep_errors: bool = False,
) -> SpanReport:
    report = SpanReport()
    names = [f.name for f in fields]
    for ex in examples:
        text = ex["text"]
        asked = ex["requested"]
        # A slot listed twice was asked again: it is the one the system asked for last.
        again = [r for r in asked if asked.count(r) > 1]
        requested = [r for r in dict.fromkeys(again + asked) if r in names]
        found = extractor.extract(text, fields, ExtractionContext(requested=requested, now=now))
        predicted = {e.field: (e.start, e.end, e.confidence) for e in found}
        for slot in names:
            gold = ex["gold"].get(slot)
            pred = predicted.get(slot)
            exact, over = report.exact[slot], report.overlap[slot]
            if pred is not None:
                right = gold is not None and (pred[0], pred[1]) == gold
                report.confidence.append((pred[2], right))
                report.samples.append((slot, pred[2], right))
                if right:
                    exact.tp += 1
                else:
                    exact.fp += 1
                    if gold is not None:
                        exact.fn += 1
                if gold is not None and pred[0] < gold[1] and gold[0] < pred[1]:
                    over.tp += 1
                else:
                    over.fp += 1
                    if gold is not None:
                        over.fn += 1
            elif gold is not None:
                exact.fn += 1
                over.fn += 1
            if keep_errors and (gold is not None or pred is not None) and (gold != (pred[:2] if pred else None)):
                report.errors.append({
                    "slot": slot, "text": text, "requested": requested,
                    "gold": text[gold[0]:gold[1]] if gold else None,
                    "pred": text[pred[0]:pred[1]] if pred else None,
                })
    return report


# ---- NLU++ ------------------------------------------------------------------------------

def _field(name: str, type_: FieldType, **extra: Any) -> FieldSpec:
    return FieldSpec(name=name, type=type_, prompt=f"{name}?", **extra)


NLUPP_SLOTS: dict[str, tuple[str, FieldSpec]] = {
    # NLU++ is British English: 9/3/2019 is the 9th of March, as a UK worker's spec would say.
    "date": ("dates", _field("date", FieldType.date, constraints={"date_order": "DMY"})),
    "date_from": ("dates", _field("date", FieldType.date, constraints={"date_order": "DMY"})),
    "date_to": ("dates", _field("date", FieldType.date, constraints={"date_order": "DMY"})),
    "time": ("times", _field("time", FieldType.time)),
    "time_from": ("times", _field("time", FieldType.time)),
    "time_to": ("times", _field("time", FieldType.time)),
    "people": ("counts", _field("people", FieldType.count)),
    "adults": ("counts", _field("adults", FieldType.count, units=["adult", "adults", "grown-ups", "grownups", "people", "persons", "person"])),
    "kids": ("counts", _field("kids", FieldType.count, units=["kid", "kids", "child", "children", "boys", "boy", "girls", "girl", "sons", "son", "daughters", "daughter", "toddler", "toddlers", "babies", "baby", "infant", "infants", "minor", "minors", "teenagers", "teens", "little ones", "little humans", "ankle biters"])),
    "rooms": ("counts", _field("rooms", FieldType.count, units=["room", "rooms", "bedroom", "bedrooms", "suite", "suites"])),
    "number": ("counts", _field("number", FieldType.integer)),
    "amount_of_money": ("money", _field("amount", FieldType.money)),
}


def nlupp_canonical(slot: str, value: Any) -> Any:
    kind = NLUPP_SLOTS[slot][0]
    if kind == "dates":
        return f"{value['year']:04d}-{value['month']:02d}-{value['day']:02d}"
    if kind == "times":
        return f"{value['hour']:02d}:{value['minute']:02d}"
    if kind == "money":
        currency = value.get("currency")
        return (round(float(value["amount"]), 2), None if currency in (None, "ambiguous") else currency)
    return int(value)


def load_nlupp(root: Path) -> list[dict[str, Any]]:
    examples = []
    for path in sorted(root.glob("*/fold*.json")):
        for item in json.loads(path.read_text()):
            for slot, info in (item.get("slots") or {}).items():
                # A few labels say only 'ambiguous'; they have no canonical value to compare with.
                if slot in NLUPP_SLOTS and isinstance(info.get("value"), (dict, int, float)):
                    examples.append({"text": item["text"], "slot": slot, "span": tuple(info["span"]),
                                     "value": nlupp_canonical(slot, info["value"]), "domain": path.parent.name,
                                     "fold": int(path.stem.removeprefix("fold"))})
    return examples


def _normalise(kind: str, value: Any) -> Any:
    if kind == "money":
        return (round(float(value["amount"]), 2), value.get("currency"))
    return value


def evaluate_values(candidates_for: Any, examples: Iterable[dict[str, Any]], now: datetime = NLUPP_NOW,
                    keep_errors: bool = False) -> tuple[dict[str, list[int]], list[dict[str, Any]]]:
    """For each labelled value: is there a candidate overlapping its span with the canonical value?

    `candidates_for(text, field, now, requested)` returns every reading of `field` in `text` (not only the
    winner), since one NLU++ utterance often holds two values of a type (from/to)."""
    scores: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    errors: list[dict[str, Any]] = []
    for ex in examples:
        kind, spec = NLUPP_SLOTS[ex["slot"]]
        start, end = ex["span"]
        # "number" answers a question ("3", "it will be 7"): read it as the reply to "how many?".
        requested = ex["slot"] == "number"
        readings = [c for c in candidates_for(ex["text"], spec, now, requested) if c.start < end and start < c.end]
        # Money: a currency the text does not say is not wrong when the label says 'ambiguous'.
        right = any(_normalise(kind, c.value) == ex["value"] for c in readings)
        if kind == "money" and not right and ex["value"][1] is None:
            right = any(_normalise(kind, c.value)[0] == ex["value"][0] for c in readings)
        scores[kind][0] += int(right)
        scores[kind][1] += 1
        if keep_errors and not right:
            errors.append({**ex, "got": [(c.value, ex["text"][c.start:c.end]) for c in readings]})
    return dict(scores), errors


def calibration(pairs: list[tuple[float, bool]], bins: Sequence[float] = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 1.01)) -> list[dict[str, Any]]:
    """How often values at each confidence level were right, and the expected calibration error."""
    rows = []
    for lo, hi in zip(bins, bins[1:]):
        inside = [(c, ok) for c, ok in pairs if lo <= c < hi]
        if not inside:
            continue
        rows.append({
            "range": f"[{lo:.2f}, {min(hi, 1.0):.2f}{']' if hi > 1 else ')'}",
            "n": len(inside),
            "mean_confidence": sum(c for c, _ in inside) / len(inside),
            "accuracy": sum(ok for _, ok in inside) / len(inside),
        })
    return rows


def expected_calibration_error(pairs: list[tuple[float, bool]]) -> float:
    rows = calibration(pairs)
    total = sum(r["n"] for r in rows)
    return sum(r["n"] * abs(r["mean_confidence"] - r["accuracy"]) for r in rows) / total if total else 0.0


# ---- splits: tune on one part, report the other ------------------------------------------

def split_halves(examples: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Restaurants-8k in two contiguous halves (turns of one conversation stay together):
    the first is tuned on, the second only reported."""
    half = len(examples) // 2
    return {"tune": examples[:half], "report": examples[half:]}


def dialogue_of(turn_id: str) -> str:
    """The Schema-Guided Dialogue conversation a DSTC8 turn belongs to: "23_0001710" is turn 10
    of dialogue "23_00017"."""
    service, _, rest = turn_id.partition("_")
    return f"{service}_{rest[:5]}"


def split_dialogues(examples: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """A DSTC8 set in two halves by a hash of the conversation (its turns stay together; the
    same halves on every run): "tune" may be studied, "report" is only measured."""
    halves: dict[str, list[dict[str, Any]]] = {"tune": [], "report": []}
    for ex in examples:
        halves["tune" if zlib.crc32(dialogue_of(ex["id"]).encode()) % 2 == 0 else "report"].append(ex)
    return halves


# RentalCars_1 is split into halves (tuned on the first); Buses_1 stays report only.
DSTC8_SPLIT = ("RentalCars_1",)


NLUPP_TUNE_FOLDS = range(0, 5)  # folds 0-4 are tuned on; 5-9 are only reported


# ---- NLU++ role-strict: each label checked in the field of its role -----------------------

def _spec(name: str, type_: FieldType, **extra: Any) -> FieldSpec:
    return FieldSpec(name=name, type=type_, prompt=f"{name.replace('_', ' ')}?", **extra)


# Beside a party-size field, "adults" counts grown-ups only: "5 people" is the party's size.
_COUNT_UNITS = {"adults": ["adult", "adults", "grown-ups", "grownups", "grown ups"],
                "kids": NLUPP_SLOTS["kids"][1].units, "rooms": NLUPP_SLOTS["rooms"][1].units}
# The fields a hotel worker and a banking worker would have; labels and descriptions as a spec
# author would write them, nothing taken from the data's values.
NLUPP_ROLE_SPECS: dict[str, list[FieldSpec]] = {
    "hotels": [
        _spec("check_in", FieldType.date, role="start", label="check-in date", description="the day the guests arrive",
              constraints={"date_order": "DMY"}),
        _spec("check_out", FieldType.date, role="end", label="check-out date", description="the day the guests leave",
              constraints={"date_order": "DMY"}),
        _spec("arrival_time", FieldType.time, role="start", label="arrival time", description="when the guests arrive or check in"),
        _spec("departure_time", FieldType.time, role="end", label="departure time", description="when the guests leave or check out"),
        _spec("people", FieldType.count, label="number of guests"),
        _spec("adults", FieldType.count, units=_COUNT_UNITS["adults"]),
        _spec("kids", FieldType.count, units=_COUNT_UNITS["kids"]),
        _spec("rooms", FieldType.count, units=_COUNT_UNITS["rooms"]),
        _spec("number", FieldType.integer),
    ],
    "banking": [
        _spec("start_date", FieldType.date, role="start", label="date", description="the date, or the first day of a period",
              constraints={"date_order": "DMY"}),
        _spec("end_date", FieldType.date, role="end", label="end date", description="the last day of a period",
              constraints={"date_order": "DMY"}),
        _spec("start_time", FieldType.time, role="start", label="time"),
        _spec("end_time", FieldType.time, role="end", label="end time"),
        _spec("amount", FieldType.money),
        _spec("number", FieldType.integer),
    ],
}
# Which field a label belongs in: a single date is the start of its (one-day) period.
NLUPP_ROLE_FIELD: dict[str, dict[str, str]] = {
    "hotels": {"date": "check_in", "date_from": "check_in", "date_to": "check_out", "time": "arrival_time",
               "time_from": "arrival_time", "time_to": "departure_time", "people": "people", "adults": "adults",
               "kids": "kids", "rooms": "rooms", "number": "number"},
    "banking": {"date": "start_date", "date_from": "start_date", "date_to": "end_date", "time": "start_time",
                "time_from": "start_time", "time_to": "end_time", "amount_of_money": "amount", "number": "number"},
}


def load_nlupp_utterances(root: Path, folds: Iterable[int]) -> list[dict[str, Any]]:
    """Every utterance of the given folds (with or without slots), its labels canonicalised."""
    wanted = {f"fold{i}.json" for i in folds}
    out = []
    for path in sorted(root.glob("*/fold*.json")):
        if path.name not in wanted:
            continue
        for item in json.loads(path.read_text()):
            labels = {}
            for slot, info in (item.get("slots") or {}).items():
                if slot in NLUPP_SLOTS and isinstance(info.get("value"), (dict, int, float)):
                    labels[slot] = (tuple(info["span"]), nlupp_canonical(slot, info["value"]))
            out.append({"text": item["text"], "domain": path.parent.name, "labels": labels,
                        "slots": set(item.get("slots") or {})})
    return out


def _fields_for(domain: str, slot: str) -> list[str]:
    """The field a label belongs in; a label without a role ("date", "time") may be in either of its type's pair."""
    where = NLUPP_ROLE_FIELD[domain]
    if slot in ("date", "time"):
        return [where[f"{slot}_from"], where[f"{slot}_to"]]
    return [where[slot]]


@dataclass
class RoleReport:
    right: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    spurious: int = 0  # utterances with a value in a field where none was labelled
    utterances: int = 0
    confidence: list[tuple[float, bool]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)


def evaluate_roles(extractor: Extractor, utterances: Iterable[dict[str, Any]], now: datetime = NLUPP_NOW,
                   keep_errors: bool = False) -> RoleReport:
    """NLU++ scored as a worker uses it: the whole spec at once, each label right only when the
    field of its role holds its value (span overlapping the label's)."""
    report = RoleReport()
    for ex in utterances:
        fields = NLUPP_ROLE_SPECS[ex["domain"]]
        where = NLUPP_ROLE_FIELD[ex["domain"]]
        # "number" answers a question ("3", "it will be 7"): read as the reply to "how many?".
        requested = ["number"] if "number" in ex["labels"] else []
        found = {e.field: e for e in extractor.extract(ex["text"], fields, ExtractionContext(requested=requested, now=now))}
        labelled_fields = {f for s in ex["labels"] if s in where for f in _fields_for(ex["domain"], s)}
        report.utterances += 1
        # A value in a field where nothing was labelled (a period such as "for 3 nights" read as a
        # check-out date counts: that is one of the errors this figure is for).
        if any(f not in labelled_fields for f in found):
            report.spurious += 1
        for slot, (span, value) in ex["labels"].items():
            if slot not in where:
                continue
            kind = NLUPP_SLOTS[slot][0]
            ok = False
            got = None
            for name in _fields_for(ex["domain"], slot):
                got = found.get(name)
                if got is not None and got.start < span[1] and span[0] < got.end:
                    v = _normalise(kind, got.value)
                    ok = v == value or (kind == "money" and value[1] is None and v[0] == value[0])
                    if ok:
                        break
            if got is not None:
                report.confidence.append((got.confidence, ok))
            report.right[kind][0] += int(ok)
            report.right[kind][1] += 1
            if keep_errors and not ok:
                report.errors.append({"kind": kind, "slot": slot, "field": where[slot], "text": ex["text"],
                                      "gold": (ex["text"][span[0]:span[1]], value),
                                      "got": {f: (e.text, e.value) for f, e in found.items()}})
    return report


# ---- unseen domains (DSTC8 span sets): bus tickets and car rental ---------------------------

DSTC8_SPECS: dict[str, list[FieldSpec]] = {
    # As a worker's author would write them from the domain (Schema-Guided Dialogue descriptions).
    "Buses_1": [
        # No `role`: the two places are told apart by their names and labels alone.
        _spec("from_location", FieldType.place, label="departure city", description="city the bus leaves from"),
        _spec("to_location", FieldType.place, label="destination city", description="city the bus goes to"),
        _spec("leaving_date", FieldType.date, label="departure date", description="date of the trip"),
    ],
    "RentalCars_1": [
        _spec("pickup_city", FieldType.place, label="pick-up city", description="city where the car is picked up"),
        _spec("pickup_date", FieldType.date, label="pick-up date", description="date the rental starts"),
        _spec("dropoff_date", FieldType.date, label="drop-off date", description="date the car is returned"),
        _spec("pickup_time", FieldType.time, label="pick-up time", description="time the car is picked up"),
    ],
}
DSTC8_NOW = datetime(2019, 3, 1, 12, 0)


def auroc(pairs: list[tuple[float, bool]]) -> float:
    """Chance that a right reading has a higher confidence than a wrong one (ties count half)."""
    right = sorted(c for c, ok in pairs if ok)
    wrong = sorted(c for c, ok in pairs if not ok)
    if not right or not wrong:
        return float("nan")
    import bisect

    total = 0.0
    for c in right:
        lo = bisect.bisect_left(wrong, c)
        hi = bisect.bisect_right(wrong, c)
        total += lo + 0.5 * (hi - lo)
    return total / (len(right) * len(wrong))


# ---- confidence: every reading and whether it was right ------------------------------------

def scored_spans(extractor: Extractor, fields: Sequence[FieldSpec], examples: Iterable[dict[str, Any]],
                 now: datetime) -> list[tuple[float, bool]]:
    """(confidence, exactly right) for each value read from span-labelled examples."""
    return [(c, ok) for _, c, ok in typed_spans(extractor, fields, examples, now)]


def scored_roles(extractor: Extractor, utterances: Iterable[dict[str, Any]],
                 now: datetime = NLUPP_NOW) -> list[tuple[float, bool]]:
    """(confidence, right) for each value read from NLU++ with the role specs; a value in a field
    with no label is wrong."""
    return [(c, ok) for _, c, ok in typed_roles(extractor, utterances, now)]


def typed_spans(extractor: Extractor, fields: Sequence[FieldSpec], examples: Iterable[dict[str, Any]],
                now: datetime) -> list[tuple[str, float, bool]]:
    """(field type, confidence, exactly right) for each value read: what the calibration is fitted on."""
    names = [f.name for f in fields]
    types = {f.name: f.type.value for f in fields}
    pairs = []
    for ex in examples:
        asked = ex["requested"]
        again = [r for r in asked if asked.count(r) > 1]
        requested = [r for r in dict.fromkeys(again + asked) if r in names]
        for e in extractor.extract(ex["text"], fields, ExtractionContext(requested=requested, now=now)):
            pairs.append((types[e.field], e.confidence, ex["gold"].get(e.field) == (e.start, e.end)))
    return pairs


def typed_roles(extractor: Extractor, utterances: Iterable[dict[str, Any]],
                now: datetime = NLUPP_NOW) -> list[tuple[str, float, bool]]:
    """(field type, confidence, right) for each value read from NLU++ with the role specs."""
    pairs = []
    for ex in utterances:
        fields = NLUPP_ROLE_SPECS[ex["domain"]]
        types = {f.name: f.type.value for f in fields}
        requested = ["number"] if "number" in ex["labels"] else []
        wanted: dict[str, list[tuple[tuple[int, int], str, Any]]] = defaultdict(list)
        for slot, (span, value) in ex["labels"].items():
            if slot in NLUPP_ROLE_FIELD[ex["domain"]]:
                for name in _fields_for(ex["domain"], slot):
                    wanted[name].append((span, NLUPP_SLOTS[slot][0], value))
        for e in extractor.extract(ex["text"], fields, ExtractionContext(requested=requested, now=now)):
            ok = False
            for span, kind, value in wanted.get(e.field, []):
                if e.start < span[1] and span[0] < e.end:
                    v = _normalise(kind, e.value)
                    ok = ok or v == value or (kind == "money" and value[1] is None and v[0] == value[0])
            pairs.append((types[e.field], e.confidence, ok))
    return pairs
