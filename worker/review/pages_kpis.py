"""GET /review/kpis: completion, escalation rate overall and by rule, handle time, the lowest
confidence per conversation, and labelled accuracy, as numbers and as SVG bar charts drawn on the
server (each bar carries its number as text and a pattern-free outline, so it reads without colour)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from escalation.review_sessions import ReviewSession
from transcripts.review_queries import kpis
from worker.review.render import page
from worker.review.session import Sessions

BAR_WIDTH = 360


def bars(items: list[tuple[str, int]], total: int | None = None) -> dict[str, Any]:
    """One horizontal bar chart: label, count, share and bar length (in px) per item."""
    largest = max((n for _, n in items), default=0) or 1
    rows = []
    for i, (label, n) in enumerate(items):
        share = f"{100 * n / total:.1f}%" if total else ""
        rows.append({"label": label, "n": n, "share": share, "width": round(BAR_WIDTH * n / largest, 1), "y": i * 28})
    return {"rows": rows, "height": max(len(rows) * 28, 28), "bar_width": BAR_WIDTH}


def _date(text: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


def add_routes(router: APIRouter, sessions: Sessions) -> None:
    ctx = sessions.ctx
    viewer = Depends(sessions.require("viewer"))

    @router.get("/kpis", include_in_schema=False)
    async def kpi_page(request: Request, session: ReviewSession = viewer) -> Response:
        q = request.query_params
        since, until, worker = _date(q.get("since")), _date(q.get("until")), q.get("worker") or None
        k = await kpis(ctx.store(), since, until, worker)
        total = k.conversations
        ended = total - k.by_outcome.get("", 0)
        completed, escalated = k.by_outcome.get("completed", 0), k.by_outcome.get("escalated", 0)
        outcomes = sorted(((o or "open", n) for o, n in k.by_outcome.items()), key=lambda x: -x[1])
        confidence = [(f"{i / 10:.1f}–{(i + 1) / 10:.1f}", n) for i, n in enumerate(k.confidence)]
        return page(request, "kpis.html", active="kpis", k=k, total=total, ended=ended,
                    completion=f"{100 * completed / ended:.1f}%" if ended else "–",
                    escalation=f"{100 * escalated / ended:.1f}%" if ended else "–",
                    handle=f"{k.handle_seconds / 60:.1f} min" if k.handle_seconds is not None else "–",
                    accuracy=f"{100 * k.labelled_right / k.labelled:.1f}%" if k.labelled else "–",
                    outcome_chart=bars(outcomes, total), rule_chart=bars(list(k.by_rule.items()), ended),
                    confidence_chart=bars(confidence, sum(k.confidence)),
                    since=q.get("since") or "", until=q.get("until") or "", worker=worker or "",
                    facets=await ctx.facets())
