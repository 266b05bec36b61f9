"""The worker's HTTP face: health, the human queue as JSON, and monitoring figures.

Channels that arrive over HTTP (SMS and voice webhooks) mount their routes here too.
"""

from __future__ import annotations

import asyncio
import gc
import os
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, HTTPException

from channels.sms.sender import SmsSender
from channels.sms.store import SmsStore
from channels.email.channel import EmailChannel
from channels.sms.recovery import recover_unanswered
from channels.sms.webhook import DEFAULT_MAX_SEGMENTS
from channels.sms.webhook import build_router as build_sms_router
from dialogue.spec import WorkerSpec
from escalation.operators import OperatorStore
from worker.body_limit import BodyLimit
from worker.config import Settings
from worker.settings import WorkerSettings
from worker.operator_auth import OperatorAuth
from worker.operator_routes import build_router as build_operator_router
from worker.runtime import open_engine
from worker.supervisor import Supervisor
from transcripts.retention import purge_forever

log = logging.getLogger(__name__)


def create_app(spec: WorkerSpec, settings: Settings | None = None, delivery_interval: float = 1.0,
               env: WorkerSettings | None = None) -> FastAPI:
    """`env`: the environment as `serve` read it once; without it, it is read here (at start for the channels)."""
    state: dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        started = env or WorkerSettings.from_env()
        async with open_engine(spec, settings or started.config(), env=started) as engine:
            state["engine"] = engine
            # Everything loaded so far (models, graph, caches) lives as long as the process.
            # Frozen, the collector stops rescanning it: full collections under load went
            # from about 100 ms to a few, and they were the slowest requests' wait.
            gc.collect()
            gc.freeze()
            notifier = engine.handoffs.notifier

            async def deliver_forever() -> None:
                # The outbox loop: notifications are retried here until they are delivered.
                while True:
                    try:
                        await notifier.deliver_due()
                    except Exception:  # a database hiccup must not stop deliveries for good
                        log.exception("notification delivery pass failed")
                    await asyncio.sleep(delivery_interval)

            # Long-running loops are supervised: restarted after a crash, and /healthz says which is down.
            supervisor = state["supervisor"] = Supervisor()
            tasks = [supervisor.start("notifications", deliver_forever)]
            retention = started.retention_settings()
            if retention.days:  # RETENTION_DAYS: old conversations purged hourly (transcripts/retention.py)
                tasks.append(supervisor.start("retention", lambda: purge_forever(engine.store.db, retention)))
            sms = None
            twilio = started.twilio_settings() if (spec.channels.sms.enabled or spec.channels.voice.enabled) else None
            if twilio is not None and spec.channels.sms.enabled:
                sms_store = SmsStore(engine.store.db)
                sms = SmsSender(twilio, sms_store)
                app.include_router(build_sms_router(engine, twilio, sms_store, sms))
                state["sms_store"] = sms_store

                max_segments = spec.channels.sms.max_segments or DEFAULT_MAX_SEGMENTS

                recovery_every = max(1, min(30, int(twilio.recovery_after_seconds / 2 / delivery_interval)))

                async def send_sms_forever() -> None:
                    passes = 0
                    while True:
                        try:
                            # At start, then twice per recovery period (at most every 30 passes):
                            # answer what a crash left unanswered.
                            if passes % recovery_every == 0:
                                await recover_unanswered(engine, sms_store, sms, max_segments, twilio.recovery_after_seconds)
                            await sms.send_due()
                        except Exception:
                            log.exception("SMS outbox pass failed")
                        passes += 1
                        await asyncio.sleep(delivery_interval)

                tasks.append(supervisor.start("sms", send_sms_forever))
                log.info("SMS channel on: POST %s/twilio/sms", twilio.public_base_url or "")
            voice = None
            # Voice comes with the Twilio settings, as SMS does; TWILIO_VOICE=off leaves the speech
            # models unloaded (600 MB and a few seconds at start) on a text-only deployment.
            if (twilio is not None and spec.channels.voice.enabled
                    and started.twilio.voice_on):
                # Imported only here: pipecat and the speech models are for voice alone.
                from channels.voice.recogniser import Recogniser
                from channels.voice.transfer import CallControl
                from channels.voice.tts import PiperServer
                from channels.voice.webhook import build_router as build_voice_router

                voice = PiperServer()
                await voice.__aenter__()
                recogniser = await asyncio.to_thread(Recogniser)
                from channels.voice.speakable import fixed_lines

                tasks.append(asyncio.create_task(voice.warm(fixed_lines(spec))))  # the script's lines, ready before callers need them
                calls = CallControl(twilio)
                app.include_router(build_voice_router(engine, twilio, recogniser, voice, calls, started.voice_limits()))
                log.info("voice channel on: POST %s/twilio/voice", twilio.public_base_url or "")
            email = started.email_settings() if spec.channels.email.enabled else None
            email_channel = None
            if email is not None:
                email_channel = EmailChannel(engine, email)
                tasks.append(supervisor.start("email", email_channel.run))
                log.info("email channel on: %s@%s:%s/%s", email.imap.user, email.imap.host, email.imap.port, email.imap.folder)
            state["ready"] = True
            try:
                yield
            finally:
                state["ready"] = False
                if email_channel is not None:
                    email_channel.stop()
                for task in tasks:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                if sms is not None:
                    await sms.close()
                if voice is not None:
                    await voice.__aexit__()
                    await calls.close()

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

    # Outermost of our middleware: no route, signature check or form parser sees more than this.
    app.add_middleware(BodyLimit, max_bytes=built.http.max_request_bytes)
    return app
