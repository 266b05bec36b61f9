"""GET /review/queue (the human queue) and POST /review/queue/{id}/claim|resolve|release.

The moves are escalation/handoff.py's (`Handoffs.claim`, `resolve`, `release`), so each is
audited (kind `queue`, under the logged-in name) exactly as over the JSON routes. Viewers see the
list without the person's data (no packet, no conversation), as on `GET /queue`. Release gives
the conversation back to the running worker: it needs `serve`; `channel-worker review` alone can
claim and resolve.
"""

from __future__ import annotations

import secrets
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from escalation.audit import AuditEntry, AuditTrail
from escalation.operators import role_allows
from escalation.queue import Handoff, HumanQueue, QueueError
from escalation.review_sessions import ReviewSession
from worker.review import refs
from worker.review.render import page
from worker.review.reply import ReplyRefused, reply_by_sms
from worker.review.session import PREFIX, Sessions

STATUSES = ("active", "open", "claimed", "resolved", "released")
_DONE = {"claim": "claimed", "resolve": "resolved", "release": "released to the worker",
         "reply": "reply queued to the person by SMS", "reply_again": "that reply was already sent (sent once)"}


async def move(ctx: Any, op: str, handoff_id: int, by: str, note: str | None) -> Handoff:
    """One queue move through the engine's Handoffs (serve), or the queue and audit trail directly
    (the console alone), recorded the same way."""
    if ctx.engine is not None:
        handoffs = ctx.engine().handoffs
        if op == "claim":
            return await handoffs.claim(handoff_id, by)
        if op == "resolve":
            return await handoffs.resolve(handoff_id, note, by=by)
        return await handoffs.release(handoff_id, ctx.engine(), note, by=by)
    if op == "release":
        raise QueueError("releasing to the worker needs the running worker (channel-worker serve)")
    db = ctx.store().db
    queue = HumanQueue(db)
    handoff = await (queue.claim(handoff_id, by) if op == "claim" else queue.resolve(handoff_id, note))
    await AuditTrail(db).record(AuditEntry(
        conversation_id=handoff.conversation_id, worker=handoff.worker, kind="queue", rule=handoff.rule, action=op,
        inputs={"handoff_id": handoff.id, "status": handoff.status, "by": by},
        detail=f"claimed by {by}" if op == "claim" else note))
    return handoff


def add_routes(router: APIRouter, sessions: Sessions) -> None:
    ctx = sessions.ctx
    viewer = Depends(sessions.require("viewer"))
    reviewer_post = Depends(sessions.require("reviewer", post=True))

    @router.get("/queue", include_in_schema=False)
    async def queue_page(request: Request, session: ReviewSession = viewer) -> Response:
        status = request.query_params.get("status") or "active"
        status = status if status in STATUSES else "active"
        queue = HumanQueue(ctx.store().db)
        if status == "active":
            items = await queue.list(status="open") + await queue.list(status="claimed")
            items.sort(key=lambda h: h.id)
        else:
            items = await queue.list(status=status)
        full = role_allows(session.role, "reviewer")
        rows = []
        for h in items:
            href = f"{PREFIX}/conversations/{refs.seal(session.ref_key, h.conversation_id)}"
            rows.append({"h": h, "href": href, "key": secrets.token_urlsafe(24), "summary": h.packet.get("summary") if full else None,
                         "fields": h.packet.get("fields") if full else None, "note": h.note if full else None})
        which = request.query_params.get("id", "")
        which = which if which.isdigit() else ""
        done, refused = request.query_params.get("done"), request.query_params.get("refused")
        message = f"Handoff {which}: {_DONE[done]}." if which and done in _DONE else None
        error = None
        if which and refused in ("claim", "resolve", "release"):
            error = (f"Handoff {which} could not be {_DONE[refused]}: it is in another state now, or no longer exists."
                     if refused != "release" or ctx.engine is not None else
                     "Releasing to the worker needs the running worker (channel-worker serve); this console runs alone.")
        newest = max((h.id for h in await queue.list()), default=0)
        return page(request, "queue.html", active="queue", rows=rows, shown=status, statuses=STATUSES, full=full, newest=newest,
                    message=message, error=error, can_release=ctx.engine is not None)

    async def _act(request: Request, op: str, handoff_id: int, session: ReviewSession) -> Response:
        form = await request.form()
        note = str(form.get("note") or "").strip()[:2000] or None
        try:
            await move(ctx, op, handoff_id, session.operator, note)
        except QueueError:
            # Messages are chosen here from the op and id, never text from the URL (no injected wording).
            return RedirectResponse(f"{PREFIX}/queue?refused={op}&id={handoff_id}", status_code=303)
        return RedirectResponse(f"{PREFIX}/queue?done={op}&id={handoff_id}", status_code=303)

    @router.get("/queue/news", include_in_schema=False)
    async def news(request: Request, session: ReviewSession = viewer) -> Response:
        """What htmx asks for every 10 s from the queue page: a line when handoffs newer than the
        page arrived (the page itself is not replaced: a reply being typed stays as it is)."""
        after = request.query_params.get("after", "0")
        after_id = int(after) if after.isdigit() else 0
        fresh = [h for h in await HumanQueue(ctx.store().db).list(status="open") if h.id > after_id]
        return page(request, "_queue_news.html", fresh=len(fresh))

    @router.post("/queue/{handoff_id}/reply", include_in_schema=False)
    async def reply(request: Request, handoff_id: int, session: ReviewSession = reviewer_post) -> Response:
        form = await request.form()
        try:
            handoff = await HumanQueue(ctx.store().db).get(handoff_id)
            sent = await reply_by_sms(ctx.store(), handoff, str(form.get("body") or ""),
                                      str(form.get("idempotency_key") or ""), session.operator)
        except (QueueError, ReplyRefused) as exc:
            return page(request, "error.html", status=409, title="Reply not sent", message=str(exc))
        return RedirectResponse(f"{PREFIX}/queue?done={'reply' if sent else 'reply_again'}&id={handoff_id}", status_code=303)

    @router.post("/queue/{handoff_id}/claim", include_in_schema=False)
    async def claim(request: Request, handoff_id: int, session: ReviewSession = reviewer_post) -> Response:
        return await _act(request, "claim", handoff_id, session)

    @router.post("/queue/{handoff_id}/resolve", include_in_schema=False)
    async def resolve(request: Request, handoff_id: int, session: ReviewSession = reviewer_post) -> Response:
        return await _act(request, "resolve", handoff_id, session)

    @router.post("/queue/{handoff_id}/release", include_in_schema=False)
    async def release(request: Request, handoff_id: int, session: ReviewSession = reviewer_post) -> Response:
        return await _act(request, "release", handoff_id, session)

