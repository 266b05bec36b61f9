"""Wall time per case of the examples' conversation tests (examples/tests/*.test.yaml), per
channel: each case run alone (one at a time, so a case's time is its own), `--rounds` times,
after one warm-up round (the first engine loads the routing model), then the median and p95.

Target (issue 20): console and SMS cases at most 50 ms each.

    .venv/bin/python bench/tests.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from worker.conversation_tests.loader import load_test_file  # noqa: E402
from worker.conversation_tests.runner import run_case  # noqa: E402
from worker.settings import WorkerSettings  # noqa: E402

TARGET_MS = 50.0


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


async def main(rounds: int) -> None:
    files = [load_test_file(p) for p in sorted((ROOT / "examples" / "tests").glob("*.test.yaml"))]
    env = WorkerSettings.from_env()
    times: dict[str, list[float]] = {}
    failed = 0
    for round_no in range(rounds + 1):
        for loaded in files:
            for case in loaded.tests.cases:
                started = time.perf_counter()
                result = await run_case(loaded, case, env)
                seconds = time.perf_counter() - started
                failed += not result.passed
                if round_no:  # round 0 warms up
                    times.setdefault(case.channel, []).append(seconds * 1000)
    print(f"examples' conversation tests: {sum(len(f.tests.cases) for f in files)} cases, {rounds} rounds"
          f"{f', {failed} case runs FAILED' if failed else ''}")
    print(f"{'channel':<8} {'runs':>5} {'median ms':>10} {'p95 ms':>8}  target <= {TARGET_MS:.0f} ms")
    for channel, values in sorted(times.items()):
        median = statistics.median(values)
        verdict = "met" if median <= TARGET_MS else "NOT met"
        print(f"{channel:<8} {len(values):>5} {median:>10.1f} {p95(values):>8.1f}  {verdict} (median)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    asyncio.run(main(parser.parse_args().rounds))
