"""Named places where a kill test may have the server die, at the worst moment, on purpose.

`CHANNEL_WORKER_CRASH_AT="sms.after_commit=0.05,outbox.after_send=0.1"` makes the process
group (every `serve` process) receive SIGKILL with that probability each time the code passes
the named point. Unset (always, outside tests/support/crash_run.py), a point costs one
dictionary lookup. Random external kills rarely land in the microseconds between a commit
and the answer leaving; these points land there every time they fire.
"""

from __future__ import annotations

import os
import random
import signal


def _parse(setting: str) -> dict[str, float]:
    points = {}
    for item in filter(None, (part.strip() for part in setting.split(","))):
        name, _, chance = item.partition("=")
        points[name] = float(chance or 1)
    return points


_POINTS = _parse(os.environ.get("CHANNEL_WORKER_CRASH_AT", ""))


def crash_point(name: str) -> None:
    chance = _POINTS.get(name)
    if chance and random.random() < chance:
        os.killpg(os.getpgrp(), signal.SIGKILL)
