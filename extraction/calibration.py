"""Turn a reader's raw confidence into the probability that the value is right.

Each reader (time, date, count...) scores its readings by how explicit they were. Those raw
scores are ordered but not probabilities. `calibration.json`, fitted on the labelled
development data (the tune split) by `bench/extraction.py --fit-calibration`, maps (field type, raw score)
to the share of such readings that were right, shrunk towards the type's overall rate
when there were few of them. Unknown pairs keep their raw score.

The raw score is first moved by the situation the value was said in (`rules.situation`): an
answer to a question the worker asked is likelier right, a value in a question of the
person's own or in talk of the past ("I booked it yesterday") likelier one nobody meant to
give. The table is fitted on every reading of the tune split, a value put in a field where
nothing was labelled counting as wrong, so that the confidence ranks right above wrong.
"""

from __future__ import annotations

import functools
import json
from collections import defaultdict
from pathlib import Path

TABLE = Path(__file__).with_name("calibration.json")
PRIOR_WEIGHT = 8.0


@functools.lru_cache(maxsize=1)
def _table() -> dict[str, dict[str, float]]:
    if not TABLE.exists():
        return {}
    return json.loads(TABLE.read_text())


def calibrated_type(field_type: str) -> bool:
    return field_type in _table()


def situated(raw: float, offset: float) -> float:
    """The reader's score moved by what the message around it says (`rules.situation`)."""
    return round(min(0.99, max(0.05, raw + offset)), 2)


def calibrated(field_type: str, raw: float, offset: float = 0.0) -> float:
    """`offset` applies only to the types the table was fitted for; others keep their raw score."""
    row = _table().get(field_type)
    if not row:
        return raw
    score = situated(raw, offset)
    return row.get(f"{score:.2f}", score)


def fit(samples: list[tuple[str, float, bool]]) -> dict[str, dict[str, float]]:
    """samples: (field type, raw score, was right). Returns the table to store."""
    by_type: dict[str, list[tuple[float, bool]]] = defaultdict(list)
    for field_type, raw, ok in samples:
        by_type[field_type].append((round(raw, 2), ok))
    table: dict[str, dict[str, float]] = {}
    for field_type, rows in by_type.items():
        prior = sum(ok for _, ok in rows) / len(rows)
        cells: dict[float, list[int]] = defaultdict(lambda: [0, 0])
        for raw, ok in rows:
            cells[raw][0] += int(ok)
            cells[raw][1] += 1
        # Shrink each cell towards the type's rate, then pool adjacent cells that break the
        # order of the raw scores (isotonic regression, pool-adjacent-violators).
        blocks: list[list[float]] = []  # [weighted sum, weight, first raw, last raw]
        for raw in sorted(cells):
            right, n = cells[raw]
            value = (right + PRIOR_WEIGHT * prior) / (n + PRIOR_WEIGHT)
            blocks.append([value * n, float(n), raw, raw])
            while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
                last = blocks.pop()
                blocks[-1][0] += last[0]
                blocks[-1][1] += last[1]
                blocks[-1][3] = last[3]
        smoothed = {}
        for total, weight, lo, hi in blocks:
            for raw in cells:
                if lo <= raw <= hi:
                    smoothed[raw] = total / weight
        table[field_type] = {f"{raw:.2f}": round(min(0.99, value), 3) for raw, value in smoothed.items()}
    return table


def save(table: dict[str, dict[str, float]]) -> None:
    TABLE.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
    _table.cache_clear()
