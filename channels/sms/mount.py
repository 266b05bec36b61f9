"""The SMS channel on the worker's app: the signed webhook, and the outbox loop that sends
replies and answers what a crash left unanswered. On when the spec enables SMS and Twilio
credentials are set."""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from fastapi import FastAPI

from channels.seam import ChannelRuntime
from channels.sms.recovery import recover_unanswered
from channels.sms.sender import SmsSender
from channels.sms.store import SmsStore
from channels.sms.webhook import DEFAULT_MAX_SEGMENTS, build_router
from channels.twilio.settings import TwilioSettings

log = logging.getLogger(__name__)


class SmsSettingsSource(Protocol):
    def twilio_settings(self) -> TwilioSettings | None: ...


async def mount(app: FastAPI, runtime: ChannelRuntime) -> bool:
    spec = runtime.conversations.spec
    settings: SmsSettingsSource = runtime.settings
    twilio = settings.twilio_settings()
    if twilio is None or not spec.channels.sms.enabled:
        return False
    store = SmsStore(runtime.db)
    sender = SmsSender(twilio, store)
    app.include_router(build_router(runtime.conversations, twilio, store, sender))
    max_segments = spec.channels.sms.max_segments or DEFAULT_MAX_SEGMENTS
    interval = runtime.delivery_interval
    recovery_every = max(1, min(30, int(twilio.recovery_after_seconds / 2 / interval)))

    async def send_forever() -> None:
        passes = 0
        while True:
            try:
                # At start, then twice per recovery period (at most every 30 passes): answer
                # what a crash left unanswered.
                if passes % recovery_every == 0:
                    await recover_unanswered(runtime.conversations, store, sender, max_segments,
                                             twilio.recovery_after_seconds)
                await sender.send_due()
            except Exception:
                log.exception("SMS outbox pass failed")
            passes += 1
            await asyncio.sleep(interval)

    runtime.loops.start("sms", send_forever)
    runtime.on_close(sender.close)
    log.info("SMS channel on: POST %s/twilio/sms", twilio.public_base_url or "")
    return True
