"""Task routing: in-scope accuracy, out-of-scope rejection, and speed on one core.

    nice -n 10 .venv/bin/python bench/routing.py [--data ../shared/data] [--draws 20] [--examples 10] [--no-description] [--as-shipped]

The worker: 10 BANKING77 intents as tasks, 10 example phrases each, the intent's name in words
("card arrival") as its description. Which intents and which phrases: draw d (0..draws-1) uses
random.Random(d): `sample(sorted(intents), 10)`, then each intent's messages (file order) are
shuffled and the first 10 are its examples. The intent's other messages are in scope and are
split alternately into a tuning half and a held-out half.

Out of scope (a banking worker does none of them): CLINC150's `oos_*` queries and every CLINC150
intent, its own banking and credit-card intents included (a few of those mean the same as a
drawn task; counted as out of scope anyway, and reported apart). Tuning: 3,000 of CLINC's `train`
(random.Random("clinc-tune")) and all of `oos_train`; held-out: all of `val` and `oos_val`.

One threshold for all draws is chosen on the tuning split (the one with the best mean of in-scope
accuracy and out-of-scope rejection, pooled over the draws) and reported on both splits. In-scope
accuracy counts a rejected in-scope message as wrong. The TF-IDF nearest-neighbour baseline runs
on the same splits and is tuned the same way. Speed: `route()` one message at a time, as the
engine calls it, in a process pinned to one CPU; the model's load time and memory.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
import re
import resource
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from extraction.embeddings import MODEL_NAME, SentenceEncoder  # noqa: E402
from extraction.routing import DEFAULT_THRESHOLD, TaskExamples, TaskRouter  # noqa: E402

TASKS = 10
EXAMPLES = 10
CLINC_TUNE = 3000
# CLINC150's banking and credit-card domains (Larson et al. 2019): same domain as BANKING77, so
# the hardest out-of-scope queries for a banking worker; reported apart.
CLINC_BANKING = {
    "transfer", "transactions", "balance", "freeze_account", "pay_bill", "bill_balance", "bill_due",
    "interest_rate", "routing", "min_payment", "order_checks", "pin_change", "report_fraud",
    "account_blocked", "spending_history", "credit_score", "report_lost_card", "credit_limit",
    "rewards_balance", "new_card", "application_status", "card_declined", "international_fees",
    "apr", "redeem_rewards", "credit_limit_change", "damaged_card", "replacement_card_duration",
    "improve_credit_score", "expiration_date",
}


@dataclass
class Draw:
    tasks: list[TaskExamples]
    tune: list[tuple[str, int]]
    held: list[tuple[str, int]]


@dataclass
class Outcome:
    accuracy: float
    rejection: float
    by_kind: dict[str, float]


def load_banking(path: Path) -> dict[str, list[str]]:
    by_intent: dict[str, list[str]] = defaultdict(list)
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            by_intent[row["category"]].append(row["text"])
    return dict(by_intent)


def make_draw(by_intent: dict[str, list[str]], seed: int, description: bool, examples: int = EXAMPLES) -> Draw:
    rng = random.Random(seed)
    intents = rng.sample(sorted(by_intent), TASKS)
    tasks: list[TaskExamples] = []
    tune: list[tuple[str, int]] = []
    held: list[tuple[str, int]] = []
    for number, intent in enumerate(intents):
        messages = list(by_intent[intent])
        rng.shuffle(messages)
        words = intent.replace("_", " ").replace("?", "").strip()
        tasks.append(TaskExamples(name=intent, description=words if description else "", examples=messages[:examples]))
        rest = messages[examples:]
        tune += [(m, number) for m in rest[0::2]]
        held += [(m, number) for m in rest[1::2]]
    return Draw(tasks, tune, held)


def load_clinc(path: Path) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    data = json.loads(path.read_text())
    train = [(t, i) for t, i in data["train"]]
    random.Random("clinc-tune").shuffle(train)
    tune = train[:CLINC_TUNE] + [(t, "oos") for t, _ in data["oos_train"]]
    held = [(t, i) for t, i in data["val"]] + [(t, "oos") for t, _ in data["oos_val"]]
    return tune, held


def kind(intent: str) -> str:
    if intent == "oos":
        return "oos_*"
    return "CLINC banking/cards" if intent in CLINC_BANKING else "CLINC other"


def judge(in_scores: np.ndarray, gold: np.ndarray, oos_scores: np.ndarray, kinds: list[str], threshold: float) -> Outcome:
    pick = in_scores.argmax(axis=1)
    kept = in_scores.max(axis=1) >= threshold
    accuracy = float(((pick == gold) & kept).mean())
    rejected = oos_scores.max(axis=1) < threshold
    by_kind = {k: float(rejected[[x == k for x in kinds]].mean()) for k in sorted(set(kinds))}
    return Outcome(accuracy, float(rejected.mean()), by_kind)


def choose_threshold(pairs: list[tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]]) -> float:
    """The threshold with the best mean of accuracy and rejection on the tuning split, over all draws."""
    best, best_value = 0.0, -1.0
    for threshold in np.arange(0.0, 1.0, 0.005):
        outcomes = [judge(s, g, o, k, float(threshold)) for s, g, o, k in pairs]
        value = statistics.fmean((x.accuracy + x.rejection) / 2 for x in outcomes)
        if value > best_value + 1e-12:
            best, best_value = float(threshold), value
    return round(best, 3)


class TfidfNearest:
    """The baseline: TF-IDF over the examples' words, score of a task = its nearest example."""

    def __init__(self, tasks: list[TaskExamples]) -> None:
        docs = [(self.words(p), n) for n, t in enumerate(tasks) for p in t.phrases()]
        vocabulary = sorted({w for words, _ in docs for w in words})
        self.column = {w: i for i, w in enumerate(vocabulary)}
        df = np.zeros(len(vocabulary))
        for words, _ in docs:
            for w in set(words):
                df[self.column[w]] += 1
        self.idf = np.log((1 + len(docs)) / (1 + df)) + 1
        self.matrix = np.vstack([self.vector(words) for words, _ in docs])
        self.owner = np.array([n for _, n in docs])
        self.count = len(tasks)

    @staticmethod
    def words(text: str) -> list[str]:
        return re.findall(r"[a-z0-9']+", text.lower())

    def vector(self, words: list[str]) -> np.ndarray:
        v = np.zeros(len(self.column))
        for w in words:
            if w in self.column:
                v[self.column[w]] += 1
        v = np.where(v > 0, 1 + np.log(np.maximum(v, 1)), 0) * self.idf
        norm = np.linalg.norm(v)
        return v / norm if norm else v

    def scores(self, texts: list[str]) -> np.ndarray:
        similarity = np.vstack([self.vector(self.words(t)) for t in texts]) @ self.matrix.T
        return np.stack([similarity[:, self.owner == k].max(axis=1) for k in range(self.count)], axis=1)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return math.nan


def pin_one_core() -> int:
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return cpu


def fmt(o: Outcome) -> str:
    return f"in-scope {o.accuracy:.3f}  OOS rejection {o.rejection:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--draws", type=int, default=20, help="how many draws of 10 intents (seeds 0..N-1)")
    parser.add_argument("--examples", type=int, default=EXAMPLES, help="example phrases per task")
    parser.add_argument("--no-description", action="store_true", help="examples only, no description phrase")
    parser.add_argument("--as-shipped", action="store_true", help="run the model as shipped (float products), not re-quantised")
    parser.add_argument("--speed", type=int, default=1000, help="messages routed one at a time for speed")
    args = parser.parse_args()

    cpu = pin_one_core()
    rss_before = rss_mb()
    encoder = SentenceEncoder.load(requantise=not args.as_shipped)
    rss_after = rss_mb()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"model: {MODEL_NAME}{' AS SHIPPED (not re-quantised)' if args.as_shipped else ''}; "
          f"load {encoder.load_seconds:.2f} s; RSS {rss_before:.0f} -> {rss_after:.0f} MB "
          f"(+{rss_after - rss_before:.0f} MB; peak during load {peak:.0f} MB); pinned to CPU {cpu}")

    by_intent = load_banking(args.data / "banking77" / "train.csv")
    clinc_tune, clinc_held = load_clinc(args.data / "clinc150" / "train_val.json")
    draws = [make_draw(by_intent, seed, not args.no_description, args.examples) for seed in range(args.draws)]

    # Every message embedded once; the routers score the vectors (same code path as route()).
    texts = sorted({t for d in draws for t, _ in d.tune + d.held} | {t for t, _ in clinc_tune + clinc_held})
    started = time.perf_counter()
    vectors = dict(zip(texts, encoder.encode(texts)))
    print(f"embedded {len(texts)} messages in {time.perf_counter() - started:.1f} s")

    def stack(items: list[tuple[str, object]]) -> np.ndarray:
        return np.vstack([vectors[t] for t, _ in items])

    oos_tune_kinds = [kind(i) for _, i in clinc_tune]
    oos_held_kinds = [kind(i) for _, i in clinc_held]
    methods: dict[str, tuple[list, list]] = {"embeddings": ([], []), "TF-IDF nearest": ([], [])}
    for d in draws:
        router = TaskRouter.build(d.tasks, encoder=encoder)
        tfidf = TfidfNearest(d.tasks)
        for split, items, oos, kinds, slot in (
            ("tune", d.tune, clinc_tune, oos_tune_kinds, 0), ("held", d.held, clinc_held, oos_held_kinds, 1)
        ):
            gold = np.array([n for _, n in items])
            methods["embeddings"][slot].append(
                (router.score_vectors(stack(items)), gold, router.score_vectors(stack(oos)), kinds)
            )
            methods["TF-IDF nearest"][slot].append(
                (tfidf.scores([t for t, _ in items]), gold, tfidf.scores([t for t, _ in oos]), kinds)
            )

    print(f"\n{args.draws} draws x {TASKS} tasks x {args.examples} examples"
          f"{'' if args.no_description else ' + description'}; in scope: tune "
          f"{sum(len(d.tune) for d in draws)}, held-out {sum(len(d.held) for d in draws)} messages; "
          f"out of scope: tune {len(clinc_tune)}, held-out {len(clinc_held)}")
    for name, (tune, held) in methods.items():
        threshold = choose_threshold(tune)
        print(f"\n{name}: threshold {threshold} (chosen on tuning split)")
        for label, pairs in (("tuning ", tune), ("held-out", held)):
            outcomes = [judge(s, g, o, k, threshold) for s, g, o, k in pairs]
            mean = Outcome(
                statistics.fmean(x.accuracy for x in outcomes), statistics.fmean(x.rejection for x in outcomes),
                {k: statistics.fmean(x.by_kind[k] for x in outcomes) for k in outcomes[0].by_kind},
            )
            print(f"  {label}: {fmt(mean)}   (worst draw: in-scope {min(x.accuracy for x in outcomes):.3f}, "
                  f"rejection {min(x.rejection for x in outcomes):.3f})")
            if label == "held-out":
                print("    per draw: " + "; ".join(f"{x.accuracy:.3f}/{x.rejection:.3f}" for x in outcomes))
                print("    rejection by kind: " + ", ".join(f"{k} {v:.3f}" for k, v in mean.by_kind.items()))
        if name == "embeddings":
            row = []
            for t in (0.40, 0.425, 0.45, 0.475, 0.50, 0.525, 0.55):
                o = [judge(s, g, oo, k, t) for s, g, oo, k in tune]
                row.append(f"{t:.3f}: {statistics.fmean(x.accuracy for x in o):.3f}/"
                           f"{statistics.fmean(x.rejection for x in o):.3f}")
            print("  trade-off on the tuning split (threshold: in-scope/rejection): " + "; ".join(row))
        no_rejection = statistics.fmean(judge(s, g, o, k, -math.inf).accuracy for s, g, o, k in held)
        print(f"  held-out, no rejection at all: in-scope {no_rejection:.3f}")
        if name == "embeddings" and abs(threshold - DEFAULT_THRESHOLD) > 1e-9:
            shipped = [judge(s, g, o, k, DEFAULT_THRESHOLD) for s, g, o, k in held]
            print(f"  held-out at the shipped DEFAULT_THRESHOLD {DEFAULT_THRESHOLD}: in-scope "
                  f"{statistics.fmean(x.accuracy for x in shipped):.3f}, rejection "
                  f"{statistics.fmean(x.rejection for x in shipped):.3f}")

    # Speed: route() one message at a time, as the engine calls it (tokenise, model, score).
    router = TaskRouter.build(draws[0].tasks, encoder=encoder)
    mixed = [t for t, _ in draws[0].held] + [t for t, _ in clinc_held]
    sample = random.Random("speed").sample(mixed, min(args.speed, len(mixed)))
    for text in sample[:50]:
        router.route(text)
    latencies = []
    cpu_started, wall_started = time.process_time(), time.perf_counter()
    for text in sample:
        t0 = time.perf_counter()
        router.route(text)
        latencies.append(time.perf_counter() - t0)
    wall, cpu_time = time.perf_counter() - wall_started, time.process_time() - cpu_started
    latencies.sort()
    p50 = latencies[len(latencies) // 2] * 1000
    p95 = latencies[int(len(latencies) * 0.95)] * 1000
    started = time.perf_counter()
    router.route_many(sample)
    many = len(sample) / (time.perf_counter() - started)
    print(f"\nspeed, one core, route() one at a time over {len(sample)} messages: {len(sample) / wall:.0f} routings/s "
          f"wall ({len(sample) / cpu_time:.0f} per CPU-second); p50 {p50:.2f} ms, p95 {p95:.2f} ms; "
          f"route_many: {many:.0f}/s; RSS now {rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
