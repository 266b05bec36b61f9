"""The examples' conversation tests (examples/tests/*.test.yaml), per channel: each case run alone
(one at a time, so a case's time is its own) after one warm-up round (the first engine loads the
routing model; the speech models are loaded once, before any voice case), then the median and
p95 per case; for voice also per line (case time / its lines: synthesis, the telephone codec,
recognition and the turn). Then how many variants of the examples' lines (`--vary`) the worker
gets right, per kind of variant.

Targets (issue 20): console, SMS (and email) cases at most 50 ms each; a voice case at most 3 s
per turn.

    .venv/bin/python bench/tests.py [--rounds 5] [--voice-rounds 1] [--vary 3] [--vary-voice]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from worker.conversation_tests.loader import load_test_file  # noqa: E402
from worker.conversation_tests.runner import run_batches, run_case, speech_for  # noqa: E402
from worker.conversation_tests.variants import case_variants  # noqa: E402
from worker.settings import WorkerSettings  # noqa: E402

TARGET_MS = 50.0
VOICE_TARGET_MS_PER_TURN = 3000.0


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


async def timings(rounds: int, voice_rounds: int) -> None:
    files = [load_test_file(p) for p in sorted((ROOT / "examples" / "tests").glob("*.test.yaml"))]
    env = WorkerSettings.from_env()
    times: dict[str, list[float]] = {}
    per_turn: list[float] = []
    failed = 0
    cases = [(f, c) for f in files for c in f.tests.cases]
    async with speech_for([c for _, c in cases]) as speech:
        for round_no in range(max(rounds, voice_rounds) + 1):
            for loaded, case in cases:
                if round_no > (voice_rounds if case.channel == "voice" else rounds):
                    continue
                if speech is not None:
                    speech.forget_spoken()  # every round synthesizes the caller's lines again
                started = time.perf_counter()
                result = await run_case(loaded, case, env, speech)
                seconds = time.perf_counter() - started
                failed += not result.passed
                if round_no:  # round 0 warms up
                    times.setdefault(case.channel, []).append(seconds * 1000)
                    if case.channel == "voice":
                        per_turn.append(seconds * 1000 / len(case.steps))
    print(f"examples' conversation tests: {len(cases)} cases, {rounds} rounds ({voice_rounds} for voice)"
          f"{f', {failed} case runs FAILED' if failed else ''}")
    print(f"{'channel':<8} {'runs':>5} {'median ms':>10} {'p95 ms':>8}  target")
    for channel, values in sorted(times.items()):
        median = statistics.median(values)
        if channel == "voice":
            print(f"{channel:<8} {len(values):>5} {median:>10.1f} {p95(values):>8.1f}  (per case; per line below)")
            continue
        verdict = "met" if median <= TARGET_MS else "NOT met"
        print(f"{channel:<8} {len(values):>5} {median:>10.1f} {p95(values):>8.1f}  <= {TARGET_MS:.0f} ms: {verdict} (median)")
    if per_turn:
        median = statistics.median(per_turn)
        verdict = "met" if median <= VOICE_TARGET_MS_PER_TURN else "NOT met"
        print(f"{'voice/line':<10} {len(per_turn):>3} {median:>10.1f} {p95(per_turn):>8.1f}  "
              f"<= {VOICE_TARGET_MS_PER_TURN:.0f} ms per turn: {verdict} (median)")


async def variants(vary: int, with_voice: bool) -> None:
    files = [load_test_file(p) for p in sorted((ROOT / "examples" / "tests").glob("*.test.yaml"))]
    runs = [(f, v, vc) for f in files for c in f.tests.cases if with_voice or c.channel != "voice"
            for v, vc in case_variants(f.spec, c, vary)]
    started = time.perf_counter()
    [results] = await run_batches([[(f, vc) for f, _, vc in runs]], jobs=2)
    seconds = time.perf_counter() - started
    total, right = Counter(), Counter()
    for (_, variant, _), result in zip(runs, results):
        total[variant.kind] += 1
        right[variant.kind] += result.passed
    channels = "all channels" if with_voice else "console, SMS and email"
    print(f"\nvariants of the examples' lines (--vary {vary}, {channels}): {sum(right.values())} of "
          f"{sum(total.values())} right ({seconds:.0f} s)")
    for kind in sorted(total):
        print(f"  {kind:<8} {right[kind]:>4} of {total[kind]:<4} ({100 * right[kind] / total[kind]:.0f}%)")


async def main(args: argparse.Namespace) -> None:
    await timings(args.rounds, args.voice_rounds)
    if args.vary:
        await variants(args.vary, args.vary_voice)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--voice-rounds", type=int, default=1, help="rounds of the voice cases (slow)")
    parser.add_argument("--vary", type=int, default=3, help="variants per line (0: none)")
    parser.add_argument("--vary-voice", action="store_true", help="vary the voice cases too (minutes)")
    asyncio.run(main(parser.parse_args()))
