"""GET /review/conversations (the list), GET /review/conversations/{id} (one conversation), and
POST /review/labels (a reviewer's verdict on a stored value)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from escalation.operators import role_allows
from escalation.review_sessions import ReviewSession
from transcripts.labels import FieldLabel
from transcripts.review_queries import ReviewFilter, conversation_detail, list_conversations
from worker.review import pages_recording, refs, reply, timeline
from worker.review.render import page
from worker.review.session import PREFIX, Sessions

_BOOL = {"yes": True, "true": True, "1": True, "on": True, "no": False, "false": False, "0": False}


def parse_filter(params: dict[str, str]) -> tuple[ReviewFilter, str | None]:
    """The filter from the query string; empty fields are unset. A bad value gives the default
    filter and the reason."""
    given: dict[str, Any] = {k: v.strip() for k, v in params.items() if v and v.strip() and k in ReviewFilter.model_fields}
    for key in ("escalated", "low_confidence"):
        if key in given:
            given[key] = _BOOL.get(given[key].lower(), given[key])
    try:
        return ReviewFilter.model_validate(given), None
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False))
        return ReviewFilter(), f"Filter ignored: {problems}"


def _query(f: ReviewFilter, **changes: Any) -> str:
    values = {**f.model_dump(exclude_defaults=True, mode="json"), **changes}
    defaults = ReviewFilter().model_dump(mode="json")
    kept = {k: ("yes" if v is True else "no" if v is False else v) for k, v in values.items()
            if v is not None and v != defaults.get(k)}
    return urlencode(kept)


def add_routes(router: APIRouter, sessions: Sessions) -> None:
    ctx = sessions.ctx
    viewer = Depends(sessions.require("viewer"))
    reviewer_post = Depends(sessions.require("reviewer", post=True))
    pages_recording.add_routes(router, sessions)  # a call's recording, values the worker missed

    @router.get("", include_in_schema=False)
    async def home() -> Response:
        return RedirectResponse(f"{PREFIX}/conversations", status_code=303)

    @router.get("/conversations", include_in_schema=False)
    async def conversations(request: Request, session: ReviewSession = viewer) -> Response:
        f, problem = parse_filter(dict(request.query_params))
        store = ctx.store()
        found = await list_conversations(store, f)
        masked = not role_allows(session.role, "reviewer")
        # Viewers get opaque references, never the id (an SMS id holds both phone numbers).
        rows = [{"record": r, "href": f"{PREFIX}/conversations/{refs.seal(session.ref_key, r.id) if masked else _quote(r.id)}",
                 "shown_id": ctx.redactor.conversation_id(r.id) if masked else r.id} for r in found.rows]

        def sort_link(column: str) -> str:
            order = "asc" if f.sort == column and f.order == "desc" else "desc"
            return "?" + _query(f, sort=column, order=order, page=1)

        return page(request, "conversations.html", f=f, rows=rows, problem=problem, facets=await ctx.facets(),
                    page_no=found.page, has_next=found.has_next, masked=masked, sort_link=sort_link,
                    prev_link="?" + _query(f, page=found.page - 1) if found.page > 1 else None,
                    next_link="?" + _query(f, page=found.page + 1) if found.has_next else None)

    @router.get("/conversations/{conversation_id:path}", include_in_schema=False)
    async def conversation(request: Request, conversation_id: str, session: ReviewSession = viewer) -> Response:
        store = ctx.store()
        masked = not role_allows(session.role, "reviewer")
        if conversation_id.startswith(refs.PREFIX):
            conversation_id = refs.open_ref(session.ref_key, conversation_id) or ""
        elif masked:
            conversation_id = ""  # viewers by reference only: no probing for a phone number's conversation
        detail = await conversation_detail(store, conversation_id) if conversation_id else None
        if detail is None:
            return page(request, "error.html", status=404, title="Not found",
                        message="There is no such conversation (it may have been purged).")
        audit = await ctx.audit().for_conversation(conversation_id)
        labels = await ctx.labels().latest(conversation_id)
        view = timeline.build(detail.conversation, detail.events, audit, labels, ctx.redactor if masked else None,
                              missed=await ctx.labels().missed(conversation_id),
                              deliveries=await reply.statuses(store, [e for e in detail.events if e.metadata.get("human")]))
        return page(request, "conversation.html", t=view, can_label=not masked,
                    back=request.headers.get("referer") if _same_site_list(request) else None,
                    **await pages_recording.page_extras(ctx, view, masked))

    @router.post("/labels", include_in_schema=False)
    async def label(request: Request, session: ReviewSession = reviewer_post) -> Response:
        form = await request.form()
        conversation_id = str(form.get("conversation_id") or "")
        field_name, key = str(form.get("field") or ""), str(form.get("key") or "")
        verdict = str(form.get("verdict") or "")
        correct = str(form.get("correct_value") or "").strip()[:500] or None
        if verdict not in ("right", "wrong"):
            raise HTTPException(422, "choose right or wrong")
        detail = await conversation_detail(ctx.store(), conversation_id)
        if detail is None:
            raise HTTPException(404, "no such conversation")
        view = timeline.build(detail.conversation, detail.events, [], {}, None)
        value = next((v for v in view.values if v.key == key and v.field == field_name), None)
        if value is None:
            raise HTTPException(422, "no such stored value in this conversation")
        start, end = _span(form.get("span_start"), form.get("span_end"))
        if verdict == "right":
            start, end, correct = value.start, value.end, None
        saved = await ctx.labels().add(FieldLabel(
            conversation_id=conversation_id, field=field_name, turn=value.turn, stored_value=value.value,
            verdict=verdict, correct_value=correct, span_start=start, span_end=end,  # type: ignore[arg-type]
            labelled_by=session.operator))
        await ctx.record(session.operator, "label", conversation_id, detail.conversation.worker,
                         inputs={"field": field_name, "turn": value.turn, "verdict": verdict, "correct_value": correct})
        value.label = saved
        if request.headers.get("hx-request"):
            return page(request, "_value_row.html", v=value, t=view, can_label=True)
        return RedirectResponse(f"{PREFIX}/conversations/{_quote(conversation_id)}#value-{value.key}", status_code=303)


def _span(start: Any, end: Any) -> tuple[int | None, int | None]:
    try:
        a, b = int(str(start)), int(str(end))
    except (TypeError, ValueError):
        return None, None
    return (a, b) if 0 <= a < b else (None, None)


def _quote(conversation_id: str) -> str:
    from urllib.parse import quote

    return quote(conversation_id, safe=":@+")


def _same_site_list(request: Request) -> bool:
    referer = request.headers.get("referer") or ""
    return f"{request.url.netloc}{PREFIX}/conversations?" in referer or referer.endswith(f"{PREFIX}/conversations")
