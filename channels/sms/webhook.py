"""Twilio Messaging webhooks: inbound SMS/MMS and delivery status callbacks.

Speaks Twilio's wire format: a form-encoded POST signed with `X-Twilio-Signature`
(HMAC-SHA1 of the public URL and the sorted parameters, keyed by the auth token), answered
with TwiML. Every inbound message is recorded by its MessageSid before it is answered; a
second delivery of the same MessageSid, even one that overlaps the first, gets no reply.
A turn that takes longer than the reply budget is answered later through the REST outbox.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field, ValidationError
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from channels.sms.segments import shape
from channels.sms.sender import SmsSender
from channels.sms.settings import TwilioSettings
from channels.sms.store import SmsStore
from channels.twilio_signature import signed_params
from dialogue.engine import DialogueEngine
from dialogue.events import Turn, TurnResult, utcnow
from transcripts.db import Statement

log = logging.getLogger(__name__)

STOP_WORDS = {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"}
START_WORDS = {"START", "UNSTOP", "YES"}
HELP_WORDS = {"HELP", "INFO"}
DEFAULT_MAX_SEGMENTS = 3
TWIML_TYPE = "application/xml"


class InboundSms(BaseModel):
    """The fields of Twilio's incoming-message webhook that the worker uses."""

    MessageSid: str = Field(pattern=r"^(SM|MM)[0-9a-fA-F]{32}$")
    AccountSid: str = Field(pattern=r"^AC[0-9a-fA-F]{32}$")
    From: str = Field(min_length=2, max_length=64)
    To: str = Field(min_length=2, max_length=64)
    Body: str = Field("", max_length=10000)
    NumMedia: int = Field(0, ge=0, le=10)


class StatusCallback(BaseModel):
    MessageSid: str = Field(pattern=r"^(SM|MM)[0-9a-fA-F]{32}$")
    MessageStatus: str = Field(pattern=r"^[a-z_]+$")
    ErrorCode: str | None = None
    From: str | None = None
    To: str | None = None


def malformed(what: str, exc: ValidationError) -> Response:
    problem = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
    return Response(f"malformed {what}: {problem}", status_code=400, media_type="text/plain")


def conversation_key(person: str, service: str) -> str:
    return f"sms:{person}:{service}"


def twiml(*messages: str, action: str | None = None) -> Response:
    response = MessagingResponse()
    for body in messages:
        if action:
            response.message(body, action=action, method="POST")
        else:
            response.message(body)
    return Response(content=str(response), media_type=TWIML_TYPE)


def build_router(engine: DialogueEngine, settings: TwilioSettings, store: SmsStore, sender: SmsSender) -> APIRouter:
    router = APIRouter()
    validator = RequestValidator(settings.auth_token)
    spec = engine.spec
    max_segments = spec.channels.sms.max_segments or DEFAULT_MAX_SEGMENTS
    pending: set[asyncio.Task[Any]] = set()

    async def verified_form(request: Request) -> dict[str, str] | None:
        return await signed_params(request, settings, validator)

    def shaped(text: str) -> str:
        return shape(text, max_segments)

    async def send_later(task: asyncio.Task[TurnResult], sid: str) -> None:
        try:
            await task
        except Exception:
            log.exception("SMS %s: the turn failed after the webhook was answered", sid)
            await store.finish_inbound(sid, "failed")
            return
        await sender.send_due()

    @router.post("/twilio/sms")
    async def inbound(request: Request) -> Response:
        params = await verified_form(request)
        if params is None:
            return Response("invalid Twilio signature", status_code=403, media_type="text/plain")
        try:
            msg = InboundSms.model_validate(params)
        except ValidationError as exc:
            return malformed("Twilio webhook", exc)
        arrived = utcnow()
        key = conversation_key(msg.From, msg.To)
        media = [
            {"url": params.get(f"MediaUrl{i}"), "content_type": params.get(f"MediaContentType{i}")}
            for i in range(msg.NumMedia)
        ]
        claim = await store.claim_inbound(msg.MessageSid, key, msg.From, msg.To, msg.Body, media)
        if not claim.won:
            log.info("SMS %s delivered again; already answered or being answered", msg.MessageSid)
            return twiml()
        status_action = settings.status_callback_url
        word = re.sub(r"[^A-Za-z]", "", msg.Body).upper()
        if word in STOP_WORDS:
            first = await store.opt_out(msg.From, msg.To)
            reply = "You have been unsubscribed and will get no more messages. Reply START to resubscribe." if first else None
            await store.finish_inbound(msg.MessageSid, "opted_out", reply)
            return twiml(reply, action=status_action) if reply else twiml()
        if word in START_WORDS and claim.opted_out:
            await store.opt_in(msg.From, msg.To)
            reply = shaped(f"You are resubscribed to {spec.persona.split(',')[0]}. Reply HELP for help, STOP to stop.")
            await store.finish_inbound(msg.MessageSid, "opted_in", reply)
            return twiml(reply, action=status_action)
        if claim.opted_out:
            await store.finish_inbound(msg.MessageSid, "ignored_opted_out")
            return twiml()
        if word in HELP_WORDS:
            reply = shaped((spec.script.help or f"This is {spec.persona}.") + " Reply STOP to unsubscribe.")
            await store.finish_inbound(msg.MessageSid, "help", reply)
            return twiml(reply, action=status_action)
        notice = ""
        if media:
            notice = "Thanks! I can only read text messages, so I couldn't open what you attached. "
        turn = Turn(conversation_id=key, channel="sms", text=msg.Body or None, time=arrived,
                    metadata={"message_sid": msg.MessageSid, "from": msg.From, "to": msg.To, "media": media})
        if not msg.Body.strip():
            reply = shaped(notice.strip() or "Sorry, that message was empty.")
            await store.finish_inbound(msg.MessageSid, "answered", reply)
            return twiml(reply, action=status_action)

        # Where the reply goes is decided once, when the turn commits: in this response if the
        # webhook is still waiting, else through the REST outbox in the same transaction. So a
        # crash at any point leaves either the reply on its way or the message for recovery.
        route: dict[str, str] = {}
        reply_text: dict[str, str | None] = {}

        def bookkeeping(result: TurnResult) -> list[Statement]:
            reply = shaped(notice + result.reply) if result.reply else None
            reply_text["reply"] = reply
            route.setdefault("via", "twiml")
            writes = [store.finish_statement(msg.MessageSid, "answered", reply)]
            if reply and route["via"] == "outbox":
                writes.append(store.enqueue_statement(key, msg.From, msg.To, reply, dedupe_key=f"reply:{msg.MessageSid}"))
            return writes

        task = asyncio.ensure_future(engine.handle(turn, after=bookkeeping))
        try:
            await asyncio.wait_for(asyncio.shield(task), settings.reply_budget_seconds)
        except asyncio.TimeoutError:
            if route.setdefault("via", "outbox") == "outbox":
                # Answer Twilio now; the reply follows through the REST API when the turn is done.
                later = asyncio.ensure_future(send_later(task, msg.MessageSid))
                pending.add(later)
                later.add_done_callback(pending.discard)
                return twiml()
            await task  # the reply was already promised to this response; it is committing now
        except Exception:
            log.exception("SMS %s: the turn failed; Twilio will deliver it again", msg.MessageSid)
            await store.finish_inbound(msg.MessageSid, "failed")
            return Response("temporary failure", status_code=500, media_type="text/plain")
        reply = reply_text.get("reply")
        return twiml(reply, action=status_action) if reply else twiml()

    @router.post("/twilio/sms/status")
    async def status(request: Request) -> Response:
        params = await verified_form(request)
        if params is None:
            return Response("invalid Twilio signature", status_code=403, media_type="text/plain")
        try:
            cb = StatusCallback.model_validate(params)
        except ValidationError as exc:
            return malformed("status callback", exc)
        known = await store.update_status(cb.MessageSid, cb.MessageStatus, cb.ErrorCode)
        if not known and cb.From and cb.To:
            # A TwiML reply gets its MessageSid only now: record it against its conversation.
            await store.record_outbound(cb.MessageSid, conversation_key(cb.To, cb.From), cb.From, cb.To, "", cb.MessageStatus)
            await store.update_status(cb.MessageSid, cb.MessageStatus, cb.ErrorCode)
        return Response(status_code=204)

    return router
