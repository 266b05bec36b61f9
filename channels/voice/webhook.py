"""Twilio Voice: the call webhook answers with TwiML that connects a bidirectional Media
Stream to this worker; the stream itself is `WS /twilio/media` (channels/voice/call.py).

Only Twilio starts or joins a call. The webhook must carry Twilio's signature; it announces the
call (channels/voice/admission.py: refused with a busy message over VOICE_MAX_CALLS) and puts a
stream token for that CallSid in the TwiML (channels/voice/stream_token.py). The stream's upgrade
must carry Twilio's signature over the stream URL, send `start` within
VOICE_START_TIMEOUT_SECONDS, and present an unexpired token for the CallSid it names, which it
then claims once. Anything less is closed with 1008 (policy violation) and a log line, before a
speech pipeline exists: a refused socket costs a handshake and a few messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from urllib.parse import urlsplit

from fastapi import APIRouter, Request, Response, WebSocket
from twilio.request_validator import RequestValidator
from twilio.twiml.voice_response import Connect, Stream, VoiceResponse

from channels.seam import Conversations
from channels.twilio.settings import TwilioSettings
from channels.twilio.signature import signed_params
from channels.voice import stream_token
from channels.voice.admission import HEARTBEAT_SECONDS, Announced, CallAdmissions, VoiceLimits
from channels.voice.call import NoStart, read_start, run_call
from channels.voice.recogniser import Recogniser
from channels.voice.transfer import CallControl
from channels.voice.tts import PiperServer
from channels.voice.tuning import VoiceTuning
from dialogue.render import render
from storage.db import Database

log = logging.getLogger(__name__)
MEDIA_PATH = "/twilio/media"
POLICY_VIOLATION = 1008


def stream_url(settings: TwilioSettings, seen_base: str) -> str:
    """The stream's public URL, as written in the TwiML and signed by Twilio on the upgrade:
    PUBLIC_BASE_URL (behind a proxy, what the app sees is not what Twilio called) with
    https -> wss, or the base this request arrived on."""
    base = urlsplit(settings.public_base_url or seen_base)
    scheme = "wss" if base.scheme in ("https", "wss") else "ws"
    return f"{scheme}://{base.netloc}{MEDIA_PATH}"


def hangup_twiml(say: str | None = None) -> str:
    response = VoiceResponse()
    if say:
        response.say(say)
    response.hangup()
    return str(response)


def build_router(conversations: Conversations, db: Database, settings: TwilioSettings, recogniser: Recogniser,
                 voice: PiperServer, calls: CallControl, limits: VoiceLimits | None = None,
                 tuning: VoiceTuning | None = None) -> APIRouter:
    router = APIRouter()
    validator = RequestValidator(settings.auth_token)
    limits = limits or VoiceLimits()
    admissions = CallAdmissions(db, limits)
    secret = stream_token.stream_secret(settings.auth_token, limits.stream_secret)
    waiting = {"sockets": 0}
    max_waiting = 2 * limits.max_calls

    @router.post("/twilio/voice")
    async def incoming_call(request: Request) -> Response:
        params = await signed_params(request, settings, validator)
        if params is None:
            return Response("invalid Twilio signature", status_code=403, media_type="text/plain")
        call_sid = params.get("CallSid", "")
        if not call_sid:
            return Response("no CallSid", status_code=400, media_type="text/plain")
        token, grant = stream_token.issue(call_sid, params.get("From", ""), params.get("To", ""), secret,
                                          now=time.time(), ttl_seconds=limits.token_seconds)
        announced = await admissions.announce(call_sid, grant.nonce)
        if announced is Announced.busy:
            log.warning("call %s refused: %d calls in progress (VOICE_MAX_CALLS)", call_sid, limits.max_calls)
            busy = render(conversations.spec.script.voice_busy, conversations.spec.fields, {})
            return Response(content=hangup_twiml(busy), media_type="application/xml")
        if announced is Announced.known:
            # A call gets one stream, ever; Twilio asks this webhook once per call.
            log.warning("call %s announced again after its stream started; hanging up", call_sid)
            return Response(content=hangup_twiml(), media_type="application/xml")
        stream = Stream(url=stream_url(settings, str(request.base_url)))
        stream.parameter(name=stream_token.PARAMETER, value=token)
        connect = Connect()
        connect.append(stream)
        response = VoiceResponse()
        response.append(connect)
        return Response(content=str(response), media_type="application/xml")

    async def refuse(websocket: WebSocket, reason: str, call_sid: str = "") -> None:
        client = websocket.client.host if websocket.client else "?"
        log.warning("media stream from %s refused%s: %s", client, f" (call {call_sid})" if call_sid else "", reason)
        with contextlib.suppress(Exception):  # the client may be gone already
            await websocket.close(code=POLICY_VIOLATION, reason="policy violation")

    @router.websocket(MEDIA_PATH)
    async def media(websocket: WebSocket) -> None:
        signature = websocket.headers.get("x-twilio-signature", "")
        await websocket.accept()
        # Twilio signs the stream URL alone (no parameters); see stream_url.
        if not signature or not validator.validate(stream_url(settings, str(websocket.base_url)), {}, signature):
            return await refuse(websocket, "missing or invalid X-Twilio-Signature")
        # The upgrade's signature covers only the stream URL, so one seen on the wire can be
        # replayed: until the token in `start` proves the call, a socket costs a place here,
        # and there are only as many places as calls could be announced at once.
        if waiting["sockets"] >= max_waiting:
            return await refuse(websocket, f"{max_waiting} streams already waiting for their start")
        waiting["sockets"] += 1
        try:
            start = await read_start(websocket, limits.start_timeout_seconds)
        except NoStart as exc:
            return await refuse(websocket, str(exc))
        finally:
            waiting["sockets"] -= 1
        try:
            grant = stream_token.verify(start.custom_parameters.get(stream_token.PARAMETER, ""), secret,
                                        start.call_sid, now=time.time())
        except stream_token.StreamTokenError as exc:
            return await refuse(websocket, str(exc), start.call_sid)
        if not await admissions.claim(grant.call_sid, grant.nonce):
            return await refuse(websocket, "stream token already used, or the call has a stream", start.call_sid)
        beating = asyncio.create_task(heartbeat(admissions, grant.call_sid))
        try:
            await run_call(websocket, start, grant, conversations, recogniser, voice, calls, tuning)
        except Exception:
            log.exception("call failed")
        finally:
            beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beating
            await admissions.end(grant.call_sid)

    return router


async def heartbeat(admissions: CallAdmissions, call_sid: str) -> None:
    """Keep the call counted as in progress while it runs (a dead process's calls stop counting)."""
    while True:
        await asyncio.sleep(HEARTBEAT_SECONDS)
        try:
            await admissions.beat(call_sid)
        except Exception:  # a database hiccup must not end the call
            log.exception("heartbeat of call %s failed", call_sid)
