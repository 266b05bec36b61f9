"""The operator routes: the human queue, conversations, monitoring figures and (if asked for)
the API docs. Every route here needs operator credentials (worker/operator_auth.py):

- viewer: the queue list with the person's data left out (no packet, no conversation id, no
  note), /metrics and /status;
- reviewer: also a handoff's packet, a conversation's history, claim, resolve and release;
- admin: everything a reviewer may (and whatever comes later).

Queue actions are recorded under the authenticated operator's name, never a name from the body.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from dialogue.spec import WorkerSpec
from escalation.drift import by_spec_version, drift_status, prometheus
from escalation.operators import role_allows
from escalation.queue import Handoff, QueueError
from worker.operator_auth import Operator, OperatorAuth

class NoteBody(BaseModel):
    note: str | None = Field(None, max_length=2000)


_NOTE_BODY = TypeAdapter(NoteBody | None)
# The body is read by the handler (see _note), so the schema is declared here for the API docs.
_NOTE_OPENAPI = {"requestBody": {"required": False,
                                  "content": {"application/json": {"schema": NoteBody.model_json_schema()}}}}


async def _note(request: Request) -> str | None:
    """The optional `{"note": ...}` body. Read here, after authentication: a body parameter would
    be parsed by FastAPI before any dependency runs, answering 422 to callers without credentials."""
    raw = await request.body()
    if not raw.strip():
        return None
    try:
        body = _NOTE_BODY.validate_json(raw)
    except ValidationError as exc:
        # As FastAPI reports a body: located under "body"; raw bytes (unparsable JSON) are not echoed.
        errors = [{**{k: v for k, v in e.items() if not (k == "input" and isinstance(v, bytes))},
                   "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        raise RequestValidationError(errors) from None
    return body.note if body else None


def _for_viewer(handoff: Handoff) -> Handoff:
    # The packet (what the person typed, their fields), the conversation id (a phone number on
    # SMS) and the operator's note stay with reviewers.
    return handoff.model_copy(update={"packet": {}, "conversation_id": "", "note": None})


def build_router(spec: WorkerSpec, engine: Callable[[], Any], auth: OperatorAuth,
                 openapi: Callable[[], dict[str, Any]], title: str, api_docs: bool) -> APIRouter:
    """`engine()` gives the running engine; `openapi()` the app's schema (used with api_docs)."""
    # Authentication for every route on this router, even one added without a role check.
    router = APIRouter(dependencies=[Depends(auth.authenticate)])
    viewer, reviewer = Depends(auth.require_role("viewer")), Depends(auth.require_role("reviewer"))

    def handoffs() -> Any:
        return engine().handoffs

    @router.get("/queue", response_model=list[Handoff])
    async def queue_list(status: str | None = Query(None, pattern="^(open|claimed|resolved|released)$"),
                         operator: Operator = viewer) -> list[Handoff]:
        items = await handoffs().queue.list(status=status, worker=spec.name)
        return items if role_allows(operator.role, "reviewer") else [_for_viewer(h) for h in items]

    @router.get("/queue/{handoff_id}", response_model=Handoff, dependencies=[reviewer])
    async def queue_show(handoff_id: int) -> Handoff:
        try:
            return await handoffs().queue.get(handoff_id)
        except QueueError as exc:
            raise HTTPException(404, str(exc)) from None

    @router.get("/queue/conversations/{conversation_id}", dependencies=[reviewer])
    async def conversation(conversation_id: str) -> dict[str, Any]:
        running = engine()
        record = await running.store.conversation(conversation_id)
        if record is None:
            raise HTTPException(404, f"no conversation {conversation_id}")
        events = await running.store.events(conversation_id)
        audit = await handoffs().audit.for_conversation(conversation_id)
        return {"conversation": record.model_dump(), "events": [e.model_dump(mode="json") for e in events],
                "audit": [a.model_dump(mode="json") for a in audit]}

    async def _move(coro: Any) -> Handoff:
        try:
            return await coro
        except QueueError as exc:
            status = 404 if str(exc).startswith("no handoff") else 409
            raise HTTPException(status, str(exc)) from None

    @router.post("/queue/{handoff_id}/claim", response_model=Handoff)
    async def queue_claim(handoff_id: int, operator: Operator = reviewer) -> Handoff:
        # No body: whoever authenticated takes it (a `by` sent by an old client is ignored).
        return await _move(handoffs().claim(handoff_id, operator.audit_name))

    @router.post("/queue/{handoff_id}/resolve", response_model=Handoff, openapi_extra=_NOTE_OPENAPI)
    async def queue_resolve(handoff_id: int, request: Request, operator: Operator = reviewer) -> Handoff:
        note = await _note(request)
        return await _move(handoffs().resolve(handoff_id, note, by=operator.audit_name))

    @router.post("/queue/{handoff_id}/release", response_model=Handoff, openapi_extra=_NOTE_OPENAPI)
    async def queue_release(handoff_id: int, request: Request, operator: Operator = reviewer) -> Handoff:
        note = await _note(request)
        return await _move(handoffs().release(handoff_id, engine(), note, by=operator.audit_name))

    @router.get("/metrics", response_class=PlainTextResponse, dependencies=[viewer])
    async def metrics() -> str:
        running = engine()
        status = await drift_status(running.store, spec.name, spec.escalation.drift)
        open_count = len(await handoffs().queue.list(status="open", worker=spec.name))
        pending = await handoffs().notifier.pending_count()
        return prometheus(status, {"queue_open": open_count, "notifications_pending": pending})

    @router.get("/status", dependencies=[viewer])
    async def status() -> dict[str, Any]:
        running = engine()
        figures = (await drift_status(running.store, spec.name, spec.escalation.drift)).model_dump()
        # As `channel-worker status`: the figures per spec version (serve --candidate decides by them).
        versions = by_spec_version(await running.store.by_spec(spec.name))
        return {**figures, "by_spec_version": [v.model_dump(mode="json") for v in versions]}

    if api_docs:
        # The browser sends the Basic credentials it was asked for on /docs with the page's own
        # fetch of /openapi.json (same origin, same realm).
        @router.get("/openapi.json", include_in_schema=False, dependencies=[viewer])
        async def openapi_json() -> JSONResponse:
            return JSONResponse(openapi())

        @router.get("/docs", include_in_schema=False, dependencies=[viewer])
        async def swagger() -> HTMLResponse:
            return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{title} - docs")

        @router.get("/redoc", include_in_schema=False, dependencies=[viewer])
        async def redoc() -> HTMLResponse:
            return get_redoc_html(openapi_url="/openapi.json", title=f"{title} - ReDoc")

    return router
