"""Exactly once under kill: SIGKILL the SMS worker mid-request, many times, and count.

    .venv/bin/python bench/kill.py [--runs 3] [--conversations 40] [--only sqlite,postgres]

Each run (tests/support/crash_run.py) starts `channel-worker serve` with the restaurant worker,
on SQLite with one process or on PostgreSQL (a local server this script starts) with
`--workers 2`, and has `--conversations` people text it at once (3 messages each, every
message waiting for its reply), signed as Twilio signs, each delivery retried with the same
MessageSid until it gets an answer. Meanwhile the whole server is killed with SIGKILL at
random moments (every 0.2-1.2 s of uptime) and, more often, at named worst moments
(storage/crash_points.py: after a reply is committed and before it leaves, after a
message is claimed, after it is recorded, after Twilio accepted an outbox send), then started
again. Counted after each run, from what the people received and from the database:

  lost         messages that never got a reply
  duplicated   replies beyond one per message (webhook responses plus REST sends)
  dup turns    a person's message stored more than once in the transcript
  unfinished   conversations that did not end with a booking
  slow         replies later than a person waits (300 s): that person's script stops there, so
               it also shows as unfinished; the reply still counts as delivered if it came

Also printed: kills, crash points fired, retries, and retries answered (a stored reply sent
again, or a dead holder's claim taken over).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.crash_run import Report, crash_run  # noqa: E402
from tests.support.postgres import start_postgres  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 2)[2])
    parser.add_argument("--runs", type=int, default=3, help="runs per database (default 3)")
    parser.add_argument("--conversations", type=int, default=40, help="people texting at once per run (default 40)")
    parser.add_argument("--only", default="sqlite,postgres", help="sqlite, postgres or both (default both)")
    parser.add_argument("--seed", type=int, default=2026, help="first run's seed; run i uses seed + i")
    parser.add_argument("--deaths", type=int, default=40,
                        help="kills plus crash points per run (default 40); then the server runs on undisturbed")
    args = parser.parse_args()
    which = set(args.only.split(","))
    reports: list[Report] = []
    postgres = start_postgres() if "postgres" in which else None
    header = (f"{'database':<12}{'procs':>6}{'run':>4}{'msgs':>6}{'kills':>6}{'crash pts':>10}{'retries':>8}"
              f"{'re-answered':>12}{'lost':>6}{'dup':>5}{'dup turns':>10}{'unfinished':>11}{'slow':>6}{'seconds':>9}")
    print(header)
    try:
        for database in ("sqlite", "postgres"):
            if database not in which:
                continue
            for run in range(args.runs):
                with tempfile.TemporaryDirectory() as tmp:
                    url = postgres.create_database(f"kill_{run}_{int(time.time())}") if database == "postgres" else None
                    report = asyncio.run(crash_run(Path(tmp), conversations=args.conversations, database_url=url,
                                                   processes=2 if url else 1, seed=args.seed + run, deaths=args.deaths))
                reports.append(report)
                print(f"{report.database:<12}{report.processes:>6}{run + 1:>4}{report.messages:>6}{report.kills:>6}"
                      f"{report.crash_points:>10}{report.retries:>8}{report.retried_answered:>12}{report.lost:>6}"
                      f"{report.duplicated:>5}{report.duplicated_user_turns:>10}{report.unfinished:>11}"
                      f"{report.slow:>6}{report.seconds:>9.0f}", flush=True)
                for problem in report.problems[:5]:
                    print(f"    {problem}")
    finally:
        if postgres is not None:
            postgres.stop()
    total = {k: sum(getattr(r, k) for r in reports) for k in ("messages", "kills", "crash_points", "lost", "duplicated",
                                                              "duplicated_user_turns", "unfinished")}
    print(f"total: {total['messages']} messages, {total['kills']} kills, {total['crash_points']} crash points; "
          f"lost {total['lost']}, duplicated {total['duplicated']}, duplicated user turns "
          f"{total['duplicated_user_turns']}, unfinished {total['unfinished']}")
    return 0 if all(r.clean for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
