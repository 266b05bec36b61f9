"""The worker's HTTP face: health, the human queue as JSON, and monitoring figures.

Channels that arrive over HTTP (SMS and voice webhooks) mount their routes here too.
"""

from __future__ import annotations

import asyncio
import gc
import os
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import FastAPI, HTTPException

from actions.deliveries import OutcomeDeliverer
from channels.email import mount as email_channel
from channels.seam import ChannelRuntime
from channels.sms import mount as sms_channel
from channels.voice import mount as voice_channel
from dialogue.spec import WorkerSpec
from escalation.operators import OperatorStore
from transcripts.retention import purge_forever
from worker.body_limit import BodyLimit
from worker.config import Settings
from worker.operator_auth import OperatorAuth
from worker.operator_routes import build_router as build_operator_router
from worker.runtime import Runtime, open_runtime
from worker.settings import WorkerSettings
from worker.spec_env import missing_variables

log = logging.getLogger(__name__)


# Each channel mounts itself (routes, loops, what to close) when the spec and settings enable it.
CHANNELS: list[tuple[str, Callable[[FastAPI, ChannelRuntime], Awaitable[bool]]]] = [
    ("sms", sms_channel.mount), ("voice", voice_channel.mount), ("email", email_channel.mount),
]


def start_core_loops(runtime: Runtime) -> None:
    """The core's own supervised loops: handoff notifications, outcome deliveries, and the retention purge."""
    notifier = runtime.notifier

    async def deliver_forever() -> None:
        # The outbox loop: notifications are retried here until they are delivered.
        while True:
            try:
                await notifier.deliver_due()
            except Exception:  # a database hiccup must not stop deliveries for good
                log.exception("notification delivery pass failed")
            await asyncio.sleep(runtime.delivery_interval)

    runtime.loops.start("notifications", deliver_forever)

    async def deliver_outcomes_forever() -> None:
        # The outcome outbox (on_outcome:): finished records POSTed, signed, until each is delivered.
        # Always on: rows queued under an earlier version of the spec still go out.
        deliverer = OutcomeDeliverer(runtime.db)
        try:
            await deliverer.run(asyncio.Event(), every=runtime.delivery_interval)
        finally:
            await deliverer.aclose()

    runtime.loops.start("outcome_deliveries", deliver_outcomes_forever)
    retention = runtime.settings.retention_settings()
    if retention.days:  # RETENTION_DAYS: old conversations purged hourly (transcripts/retention.py)
        runtime.loops.start("retention", lambda: purge_forever(runtime.db, retention))


def create_app(spec: WorkerSpec, settings: Settings | None = None, delivery_interval: float = 1.0,
               env: WorkerSettings | None = None, candidate: WorkerSpec | None = None,
               share: float = 0.0) -> FastAPI:
    """`env`: the environment as `serve` read it once; without it, it is read here (at start for the channels).
    `candidate`: a second version of the spec for `share` percent of new conversations (worker/rollout.py)."""
    state: dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        started = env or WorkerSettings.from_env()
        for problem in missing_variables(spec, os.environ):
            log.warning("worker %s: %s", spec.name, problem)
        async with open_runtime(spec, settings or started.config(), env=started, delivery_interval=delivery_interval,
                                candidate=candidate, share=share) as runtime:
            # The operator routes release a handed-over conversation to the spec it started on.
            state["engine"], state["supervisor"] = runtime.conversations, runtime.loops
            if candidate is not None:
                log.info("worker %s: candidate version %s (%s) takes %g%% of new conversations", spec.name,
                         candidate.version or "-", candidate.content_hash()[:12], share)
            # Everything loaded so far (models, graph, caches) lives as long as the process.
            # Frozen, the collector stops rescanning it: full collections under load went
            # from about 100 ms to a few, and they were the slowest requests' wait.
            gc.collect()
            gc.freeze()
            start_core_loops(runtime)
            for name, mount in CHANNELS:
                if await mount(app, runtime):
                    log.debug("channel %s mounted", name)
            state["ready"] = True
            try:
                yield
            finally:
                state["ready"] = False

    # FastAPI's native OpenTelemetry looks up the global providers on every request; keep it
    # for deployments that export traces, skip its cost for everyone else.
    built = env or WorkerSettings.from_env()
    otel = built.http.otel
    telemetry = None if otel else {"tracing": False, "metrics": False, "logs": False}
    # FastAPI's own docs routes are off: with OPERATOR_API_DOCS=on the operator router serves
    # them behind authentication. No slash redirects: `/queue/` would answer 307 to anyone with a
    # Location built from the caller's Host header; it is a 404 like any unknown path.
    app = FastAPI(title=f"channel-worker: {spec.name}", lifespan=lifespan, telemetry=telemetry,
                  docs_url=None, redoc_url=None, openapi_url=None, redirect_slashes=False)

    @app.get("/healthz")
    async def healthz() -> dict[str, str | int]:
        if not state.get("ready"):
            raise HTTPException(503, "starting")
        down = state["supervisor"].unhealthy()
        if down:  # a channel loop crashed and waits to be restarted
            raise HTTPException(503, {"status": "unhealthy", "down": down})
        # The process id tells which of several `serve --workers` processes answered.
        return {"status": "ok", "worker": spec.name, "pid": os.getpid()}

    # Everything but /healthz and the Twilio webhooks (signed by Twilio) needs an operator.
    auth = OperatorAuth(lambda: OperatorStore(state["engine"].store.db))
    app.include_router(build_operator_router(spec, lambda: state["engine"], auth, app.openapi, app.title, built.http.api_docs))
    if built.http.review_on:  # the review console under /review, behind its own login (REVIEW_ENABLED=off: none)
        from datetime import timedelta

        from worker.review import ReviewContext, mount_review

        mount_review(app, ReviewContext(
            store=lambda: state["engine"].store, auth=auth, worker=spec.name, engine=lambda: state["engine"],
            secure_cookies=built.twilio.public_base_url.lower().startswith("https://"),
            session_lifetime=timedelta(hours=built.http.review_session_hours),
            email_from=email.smtp.sender if (email := built.email_settings()) and spec.channels.email.enabled else None))

    # Outermost of our middleware: no route, signature check or form parser sees more than this.
    app.add_middleware(BodyLimit, max_bytes=built.http.max_request_bytes)
    return app
