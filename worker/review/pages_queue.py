"""GET /review/queue (the human queue), GET /review/queue/live (its live updates) and
POST /review/queue/{id}/claim|resolve|release|reply.

The moves are escalation/handoff.py's (`Handoffs.claim`, `resolve`, `release`), so each is
audited (kind `queue`, under the logged-in name) exactly as over the JSON routes. Viewers see the
list without the person's data (no packet, no conversation, no replies), as on `GET /queue`.
Release gives the conversation back to the running worker: it needs `serve`; `channel-worker
review` alone can claim, resolve and reply (the reply waits in the channel's outbox for `serve`).

Replies (worker/review/reply.py) go by SMS or email to a handoff the reviewer has claimed; each
shows its delivery status (queued, sent, failed) from the channel's outbox.

Live updates: the page carries the rows it shows with a short version of each (status, claimer,
note, replies and their delivery status). htmx sends them every 5 s to /queue/live, which
answers 204 when nothing changed, or only the changed rows, swapped out of band, and a line
saying what others did and how many handoffs arrived. The page is never replaced: a reply being
typed stays, and its text box is kept even when its row is redrawn (`hx-preserve`).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from escalation.audit import AuditEntry, AuditTrail
from escalation.operators import role_allows
from escalation.queue import Handoff, HumanQueue, QueueError
from escalation.queue_page import handoff_page, handoffs_by_id, newest_handoff, open_after
from escalation.review_sessions import ReviewSession
from worker.review import refs
from worker.review.render import page
from worker.review.reply import CHANNELS, MAX_CHARS, Delivery, ReplyRefused, can_reply, deliveries, send_reply
from worker.review.session import PREFIX, Sessions

STATUSES = ("active", "open", "claimed", "resolved", "released")
_DONE = {"claim": "claimed", "resolve": "resolved", "release": "released to the worker",
         "reply_sms": "reply queued to the person by SMS", "reply_email": "reply queued to the person by email",
         "reply_again": "that reply was already sent (sent once)"}
_SEEN_MAX = 200  # rows one live request may ask about (a page shows at most 100)


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


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, default=str).encode()).hexdigest()[:8]


def _version(h: Handoff, replies: list[Delivery], replying: bool) -> str:
    """A short digest of what a row shows, in two parts: the handoff (a move someone made) and
    its replies' delivery (queued -> sent); a row is redrawn when either changes."""
    return (_digest([h.status, h.claimed_by, h.note, h.updated_at, replying]) + "-"
            + _digest([(r.key, r.status, r.detail) for r in replies]))


def _parse_seen(text: str) -> dict[int, tuple[str, bool]]:
    """`12.ab12cd34-0f1e2d3c,13.0f...r` -> {12: (version, had a reply form)}; anything malformed is skipped."""
    seen: dict[int, tuple[str, bool]] = {}
    for part in text.split(",")[:_SEEN_MAX]:
        ident, _, version = part.partition(".")
        if ident.isdigit() and len(ident) < 12 and version:
            replying = version.endswith("r")
            seen[int(ident)] = (version.removesuffix("r")[:20], replying)
    return seen


def _number(text: str | None, default: int = 0) -> int:
    return int(text) if text and text.isdigit() and len(text) < 12 else default


def add_routes(router: APIRouter, sessions: Sessions) -> None:
    ctx = sessions.ctx
    viewer = Depends(sessions.require("viewer"))
    reviewer_post = Depends(sessions.require("reviewer", post=True))

    async def rows_for(items: list[Handoff], session: ReviewSession) -> list[dict[str, Any]]:
        full = role_allows(session.role, "reviewer")
        sent = await deliveries(ctx.store(), [h.conversation_id for h in items]) if full else {}
        rows = []
        for h in items:
            replies = sent.get(h.conversation_id, [])
            replying = full and can_reply(h, session.operator)
            rows.append({
                "h": h, "href": f"{PREFIX}/conversations/{refs.seal(session.ref_key, h.conversation_id)}",
                "key": secrets.token_urlsafe(24), "summary": h.packet.get("summary") if full else None,
                "fields": h.packet.get("fields") if full else None, "note": h.note if full else None,
                "replies": replies, "can_reply": replying, "replyable_channel": h.channel in CHANNELS,
                "max_chars": MAX_CHARS.get(h.channel, 0), "version": _version(h, replies, replying),
                "changed": False, "had_draft": False})
        return rows

    def poll(status: str, page_no: int, after: int, fresh: int, rows: list[dict[str, Any]]) -> str:
        seen = ",".join(f"{r['h'].id}.{r['version']}{'r' if r['can_reply'] else ''}" for r in rows)
        return f"status={status}&page={page_no}&after={after}&fresh={fresh}&seen={seen}"

    @router.get("/queue", include_in_schema=False)
    async def queue_page(request: Request, session: ReviewSession = viewer) -> Response:
        status = request.query_params.get("status") or "active"
        status = status if status in STATUSES else "active"
        page_no = max(1, _number(request.query_params.get("page"), 1))
        db = ctx.store().db
        items, more = await handoff_page(db, status, page_no)
        full = role_allows(session.role, "reviewer")
        rows = await rows_for(items, session)
        which = request.query_params.get("id", "")
        which = which if which.isdigit() else ""
        done, refused = request.query_params.get("done"), request.query_params.get("refused")
        message = f"Handoff {which}: {_DONE[done]}." if which and done in _DONE else None
        error = None
        if which and refused in ("claim", "resolve", "release"):
            error = (f"Handoff {which} could not be {_DONE[refused]}: it is in another state now, or no longer exists."
                     if refused != "release" or ctx.engine is not None else
                     "Releasing to the worker needs the running worker (channel-worker serve); this console runs alone.")
        newest = await newest_handoff(db)
        return page(request, "queue.html", active="queue", rows=rows, shown=status, statuses=STATUSES, full=full,
                    newest=newest, message=message, error=error, can_release=ctx.engine is not None, more=more,
                    page_no=page_no, poll=poll(status, page_no, newest, 0, rows))

    @router.get("/queue/live", include_in_schema=False)
    async def live(request: Request, session: ReviewSession = viewer) -> Response:
        """The rows of an open queue page that changed since it last heard (204: none did), out of
        band, with a line on what others did and on new handoffs."""
        q = request.query_params
        status = q.get("status") if q.get("status") in STATUSES else "active"
        page_no, after, fresh_before = max(1, _number(q.get("page"), 1)), _number(q.get("after")), _number(q.get("fresh"))
        seen = _parse_seen(q.get("seen", ""))
        db = ctx.store().db
        current = await handoffs_by_id(db, list(seen))
        rows = await rows_for([current[i] for i in seen if i in current], session)
        changed, changes = [], []
        for row in rows:
            h = row["h"]
            version, had_draft = seen[h.id]
            if row["version"] == version:
                continue
            row["had_draft"] = had_draft and not row["can_reply"]
            changed.append(row)
            if row["version"].split("-")[0] != version.split("-")[0]:  # a move, not only a delivery status
                row["changed"] = True
                who = f" by {h.claimed_by}" if h.status == "claimed" and h.claimed_by else ""
                changes.append(f"Handoff {h.id} is {h.status}{who} now." if h.claimed_by != session.operator or
                               h.status != "claimed" else f"Handoff {h.id} changed.")
        fresh = await open_after(db, after)
        if not changed and fresh == fresh_before:
            return Response(status_code=204, headers={"Cache-Control": "no-store"})
        # The next poll asks about every row with its version as now shown.
        return page(request, "_queue_live.html", rows=changed, changes=changes, fresh=fresh, oob=True,
                    news=bool(changes) or fresh != fresh_before,
                    full=role_allows(session.role, "reviewer"), can_release=ctx.engine is not None,
                    poll=poll(status, page_no, after, fresh, rows))

    async def _act(request: Request, op: str, handoff_id: int, session: ReviewSession) -> Response:
        form = await request.form()
        note = str(form.get("note") or "").strip()[:2000] or None
        try:
            await move(ctx, op, handoff_id, session.operator, note)
        except QueueError:
            # Messages are chosen here from the op and id, never text from the URL (no injected wording).
            return RedirectResponse(f"{PREFIX}/queue?refused={op}&id={handoff_id}", status_code=303)
        return RedirectResponse(f"{PREFIX}/queue?done={op}&id={handoff_id}", status_code=303)

    @router.post("/queue/{handoff_id}/reply", include_in_schema=False)
    async def reply(request: Request, handoff_id: int, session: ReviewSession = reviewer_post) -> Response:
        form = await request.form()
        try:
            handoff = await HumanQueue(ctx.store().db).get(handoff_id)
        except QueueError:
            return page(request, "error.html", status=404, title="Reply not sent",
                        message=f"There is no handoff {handoff_id} in the queue.")
        try:
            sent = await send_reply(ctx.store(), handoff, str(form.get("body") or ""),
                                    str(form.get("idempotency_key") or ""), session.operator, ctx.email_from)
        except ReplyRefused as exc:
            return page(request, "error.html", status=409, title="Reply not sent", message=str(exc))
        done = f"reply_{handoff.channel}" if sent else "reply_again"
        return RedirectResponse(f"{PREFIX}/queue?done={done}&id={handoff_id}", status_code=303)

    @router.post("/queue/{handoff_id}/claim", include_in_schema=False)
    async def claim(request: Request, handoff_id: int, session: ReviewSession = reviewer_post) -> Response:
        return await _act(request, "claim", handoff_id, session)

    @router.post("/queue/{handoff_id}/resolve", include_in_schema=False)
    async def resolve(request: Request, handoff_id: int, session: ReviewSession = reviewer_post) -> Response:
        return await _act(request, "resolve", handoff_id, session)

    @router.post("/queue/{handoff_id}/release", include_in_schema=False)
    async def release(request: Request, handoff_id: int, session: ReviewSession = reviewer_post) -> Response:
        return await _act(request, "release", handoff_id, session)
