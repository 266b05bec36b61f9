"""Retry timing shared by every outbox (SMS, email replies, team notifications)."""

from __future__ import annotations

MAX_BACKOFF_SECONDS = 300.0


def backoff(attempts: int, base: float = 1.0) -> float:
    """Seconds to wait after the given number of failed attempts: 1, 2, 4 ... up to five minutes, times `base`."""
    return base * min(MAX_BACKOFF_SECONDS, 2.0 ** max(0, attempts - 1))
