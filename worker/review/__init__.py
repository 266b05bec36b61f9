"""The review console: server-rendered pages under /review for the people who run a worker.

`mount_review(app, ctx)` adds them to `serve`'s app (worker/app.py, unless REVIEW_ENABLED=off);
`create_review_app(...)` is `channel-worker review`, the pages alone against the database.
Pages (Jinja2 templates in templates/, htmx and CSS in static/): login, the conversation list,
one conversation with its values marked in the person's words, labels, exports (pages_export.py)
and the admin pages (pages_admin.py). Queries are in
transcripts/review_queries.py and transcripts/labels.py; sessions in escalation/review_sessions.py.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta

from fastapi import APIRouter, FastAPI, HTTPException
from fastapi.responses import Response

from escalation.operators import OperatorStore
from escalation.rules import DriftBand
from transcripts.store import TranscriptStore
from worker.operator_auth import OperatorAuth
from worker.review import pages_admin, pages_conversations, pages_export, pages_kpis, pages_login, pages_queue
from worker.review.context import ReviewContext
from worker.review.render import STATIC
from worker.review.session import PREFIX, Sessions

__all__ = ["ReviewContext", "build_router", "create_review_app", "mount_review"]

# Served to anyone (no personal data in them): the login page needs its stylesheet.
_STATIC = {"htmx.min.js": "text/javascript", "review.css": "text/css", "conversation.js": "text/javascript"}


def build_router(ctx: ReviewContext) -> APIRouter:
    router = APIRouter(prefix=PREFIX)
    sessions = Sessions(ctx)
    cache: dict[str, bytes] = {}

    @router.get("/static/{name}", include_in_schema=False)
    async def static(name: str) -> Response:
        if name not in _STATIC:
            raise HTTPException(404, "not found")
        if name not in cache:
            cache[name] = (STATIC / name).read_bytes()
        return Response(cache[name], media_type=_STATIC[name],
                        headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"})

    pages_login.add_routes(router, sessions)
    pages_conversations.add_routes(router, sessions)
    pages_queue.add_routes(router, sessions)
    pages_kpis.add_routes(router, sessions)
    pages_export.add_routes(router, sessions)
    pages_admin.add_routes(router, sessions)
    return router


def mount_review(app: FastAPI, ctx: ReviewContext) -> None:
    app.include_router(build_router(ctx))


def create_review_app(database_url: str, worker: str, secure_cookies: bool = False,
                      session_hours: float = 12.0, max_request_bytes: int | None = None,
                      email_from: str | None = None, drift: DriftBand | None = None) -> FastAPI:
    """The console alone (`channel-worker review`): the same pages over the worker's database.
    `email_from`: the email channel's From address, for replies by email from the queue page;
    `drift`: the spec's drift band, whose labelled-accuracy threshold the KPI page shows."""
    state: dict[str, TranscriptStore] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state["store"] = await TranscriptStore.open(database_url)
        try:
            yield
        finally:
            await state["store"].close()

    app = FastAPI(title=f"channel-worker review: {worker}", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None, redirect_slashes=False)
    auth = OperatorAuth(lambda: OperatorStore(state["store"].db))
    ctx = ReviewContext(store=lambda: state["store"], auth=auth, worker=worker, secure_cookies=secure_cookies,
                        session_lifetime=timedelta(hours=session_hours), email_from=email_from, drift_band=drift)
    mount_review(app, ctx)

    @app.get("/", include_in_schema=False)
    async def root() -> Response:
        return Response(status_code=303, headers={"Location": f"{PREFIX}/conversations"})

    if max_request_bytes:
        from worker.body_limit import BodyLimit

        app.add_middleware(BodyLimit, max_bytes=max_request_bytes)
    return app
