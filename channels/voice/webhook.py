"""Twilio Voice: the call webhook answers with TwiML that connects a bidirectional Media
Stream to this worker; the stream itself is `WS /twilio/media` (channels/voice/call.py)."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from fastapi import APIRouter, Request, Response, WebSocket
from twilio.request_validator import RequestValidator
from twilio.twiml.voice_response import Connect, Stream, VoiceResponse

from channels.sms.settings import TwilioSettings
from channels.twilio_signature import signed_params
from channels.voice.call import run_call
from channels.voice.recogniser import Recogniser
from channels.voice.transfer import CallControl
from channels.voice.tts import PiperServer
from dialogue.engine import DialogueEngine

log = logging.getLogger(__name__)


def build_router(engine: DialogueEngine, settings: TwilioSettings, recogniser: Recogniser, voice: PiperServer,
                 calls: CallControl) -> APIRouter:
    router = APIRouter()
    validator = RequestValidator(settings.auth_token)

    @router.post("/twilio/voice")
    async def incoming_call(request: Request) -> Response:
        params = await signed_params(request, settings, validator)
        if params is None:
            return Response("invalid Twilio signature", status_code=403, media_type="text/plain")
        base = urlsplit(settings.public_base_url or str(request.base_url))
        scheme = "wss" if base.scheme == "https" else "ws"
        stream = Stream(url=f"{scheme}://{base.netloc}/twilio/media")
        stream.parameter(name="from", value=params.get("From", ""))
        stream.parameter(name="to", value=params.get("To", ""))
        connect = Connect()
        connect.append(stream)
        response = VoiceResponse()
        response.append(connect)
        return Response(content=str(response), media_type="application/xml")

    @router.websocket("/twilio/media")
    async def media(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            await run_call(websocket, engine, recogniser, voice, calls)
        except Exception:
            log.exception("call failed")

    return router
