"""The voice channel on the worker's app: the signed call webhook and the media stream. On when
the spec enables voice, Twilio credentials are set and TWILIO_VOICE is not off (a text-only
deployment then never loads the speech models: 600 MB and a few seconds at start)."""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from fastapi import FastAPI

from channels.seam import ChannelRuntime
from channels.twilio.settings import TwilioSettings
from channels.voice.admission import VoiceLimits
from channels.voice.tuning import VoiceTuning

log = logging.getLogger(__name__)


class VoiceSettingsSource(Protocol):
    def twilio_settings(self) -> TwilioSettings | None: ...
    def voice_enabled(self) -> bool: ...
    def voice_limits(self) -> VoiceLimits: ...
    def voice_tuning(self) -> VoiceTuning: ...


async def mount(app: FastAPI, runtime: ChannelRuntime) -> bool:
    spec = runtime.conversations.spec
    settings: VoiceSettingsSource = runtime.settings
    twilio = settings.twilio_settings()
    if twilio is None or not spec.channels.voice.enabled or not settings.voice_enabled():
        return False
    # Imported only here: pipecat and the speech models are for voice alone.
    from channels.voice.recogniser import Recogniser
    from channels.voice.speakable import fixed_lines
    from channels.voice.transfer import CallControl
    from channels.voice.tts import PiperServer
    from channels.voice.webhook import build_router

    voice = PiperServer()
    await voice.__aenter__()
    runtime.on_close(voice.__aexit__)
    recogniser = await asyncio.to_thread(Recogniser)
    warming = asyncio.create_task(voice.warm(fixed_lines(spec)))  # the script's lines, ready before callers need them

    async def stop_warming() -> None:
        warming.cancel()

    runtime.on_close(stop_warming)
    calls = CallControl(twilio)
    runtime.on_close(calls.close)
    app.include_router(build_router(runtime.conversations, runtime.db, twilio, recogniser, voice, calls,
                                    settings.voice_limits(), settings.voice_tuning()))
    log.info("voice channel on: POST %s/twilio/voice", twilio.public_base_url or "")
    return True
