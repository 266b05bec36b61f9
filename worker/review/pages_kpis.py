"""GET /review/kpis (any role): completion, success, escalation overall and by rule, abandonment,
handle time, re-asks per field, fallbacks, the confidence distribution, labelled accuracy with the
drift alarm's window, voice latency percentiles, and all of them by channel, worker, task, spec
version and day. Figures from transcripts/kpis.py, formatted and drawn (SVG bars on the server) by
worker/report.py, which `channel-worker report` shares. No conversation id or value is shown, so
viewers see the same page."""

from __future__ import annotations

from datetime import datetime, timezone

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from escalation.drift import drift_status
from escalation.review_sessions import ReviewSession
from escalation.rules import DriftBand
from transcripts.kpis import kpis
from worker.report import period_text, view
from worker.review.render import page
from worker.review.session import Sessions


def _date(text: str | None) -> datetime | None:
    """A date or time of the URL, UTC when it has no offset (days are UTC days, as stored)."""
    try:
        moment = datetime.fromisoformat(text) if text else None
    except ValueError:
        return None
    return moment.replace(tzinfo=timezone.utc) if moment is not None and moment.tzinfo is None else moment


def add_routes(router: APIRouter, sessions: Sessions) -> None:
    ctx = sessions.ctx
    viewer = Depends(sessions.require("viewer"))

    def band() -> DriftBand | None:
        """The running spec's drift band (serve), or the one `channel-worker review` was given."""
        if ctx.drift_band is not None:
            return ctx.drift_band
        try:
            return ctx.engine().spec.escalation.drift if ctx.engine is not None else None
        except Exception:  # noqa: BLE001 - no engine running: no band
            return None

    @router.get("/kpis", include_in_schema=False)
    async def kpi_page(request: Request, session: ReviewSession = viewer) -> Response:
        q = request.query_params
        since, until, worker = _date(q.get("since")), _date(q.get("until")), q.get("worker") or None
        store = ctx.store()
        k = await kpis(store, since, until, worker)
        drifting = band()
        drift = await drift_status(store, worker or ctx.worker, drifting)
        return page(request, "kpis.html", active="kpis", v=view(k, drift, drifting), period=period_text(k), links=True,
                    since=q.get("since") or "", until=q.get("until") or "", worker=worker or "",
                    facets=await ctx.facets())
