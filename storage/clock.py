"""The one clock every layer reads: aware UTC, the form every stored time takes.

It lives in the storage layer because storage stamps rows with it (retention, the audit trail)
and every package above may import storage, never the other way."""

from __future__ import annotations

from datetime import datetime, timezone


def utcnow() -> datetime:
    return datetime.now(timezone.utc)
