"""What the review console's pages share: the store, the operators' password check and failure
limiter, cookie settings, the audit trail and one redactor for viewers."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from escalation.audit import AuditEntry, AuditTrail
from escalation.review_sessions import SessionStore
from extraction.redact import Redactor
from transcripts.labels import LabelStore
from transcripts.review_queries import facets
from transcripts.store import TranscriptStore
from worker.operator_auth import OperatorAuth


@dataclass
class ReviewContext:
    store: Callable[[], TranscriptStore]
    auth: OperatorAuth
    worker: str  # the worker this process serves; audit rows not tied to a conversation carry it
    secure_cookies: bool = False  # PUBLIC_BASE_URL is https: cookies only over https
    session_lifetime: timedelta = timedelta(hours=12)
    # The running engine (serve), for the queue's release; None when `channel-worker review` runs alone.
    engine: Callable[[], Any] | None = None
    # The email channel's From address (EMAIL_FROM) when email is configured: replies by email from the queue.
    email_from: str | None = None
    # Pseudonyms of conversation ids for viewers, stable for the life of the process.
    redactor: Redactor = field(default_factory=Redactor)

    # The spec's drift band (`channel-worker review`; under serve the engine's spec has it): the KPI
    # page shows the labelled-accuracy alarm against it.
    drift_band: Any = None

    _facets: tuple[float, dict[str, list[str]]] | None = None

    async def facets(self) -> dict[str, list[str]]:
        """The filter menus' values (workers, channels, outcomes), read at most once a minute: three
        DISTINCT scans per page view cost PostgreSQL most of the list's time at 100,000 rows."""
        now = time.monotonic()
        if self._facets is None or now - self._facets[0] > 60:
            self._facets = (now, await facets(self.store()))
        return self._facets[1]

    def sessions(self) -> SessionStore:
        return SessionStore(self.store().db)

    def labels(self) -> LabelStore:
        return LabelStore(self.store())

    def audit(self) -> AuditTrail:
        return AuditTrail(self.store().db)

    async def record(self, operator: str, action: str, conversation_id: str = "", worker: str | None = None,
                     inputs: dict[str, Any] | None = None, detail: str | None = None) -> None:
        """One audit row per reviewer action (kind `review`), under the logged-in name."""
        await self.audit().record(AuditEntry(conversation_id=conversation_id, worker=worker or self.worker,
                                             kind="review", action=action, inputs=inputs or {},
                                             detail=detail or f"by {operator}"))
