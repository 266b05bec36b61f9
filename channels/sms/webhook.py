"""Twilio Messaging webhooks: inbound SMS/MMS and delivery status callbacks.

Speaks Twilio's wire format: a form-encoded POST signed with `X-Twilio-Signature`
(HMAC-SHA1 of the public URL and the sorted parameters, keyed by the auth token), answered
with TwiML. Every inbound message is recorded by its MessageSid before it is answered.

Exactly one reply per message, whatever dies when:
- A turn that takes longer than the reply budget is answered later through the REST outbox;
  where the reply goes is decided once, in the transaction that commits the turn.
- A second delivery of a MessageSid (Twilio retries when it got no answer) gets the stored
  reply again if that reply went in a webhook response, which Twilio evidently never read;
  nothing if it went through the outbox, which sends it once.
- A delivery that finds the message still being processed waits for that; if the holder
  has been at it longer than any live request can be (the reply budget and a margin), the
  holder is dead: this delivery takes the claim over and answers. Every write of a turn is
  fenced by the claim it was made under, so a holder that was only slow cannot commit a
  second reply (`FenceLost`), and the person's message is stored once (its `dedupe_key`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field, ValidationError, field_validator
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from channels.sms.segments import shape
from channels.sms.sender import SmsSender
from channels.sms.store import MAX_ATTEMPTS, Claim, SmsStore
from channels.twilio.settings import TwilioSettings
from channels.twilio.signature import signed_params
from channels.seam import Conversations
from dialogue.events import Turn, TurnResult
from dialogue.render import render
from extraction.intents import compliance_keyword
from storage.clock import utcnow
from storage.crash_points import crash_point
from storage.db import FenceLost, Statement
from storage.safe_text import clean_text

log = logging.getLogger(__name__)

DEFAULT_MAX_SEGMENTS = 3
TWIML_TYPE = "application/xml"
TAKEOVER_MARGIN_SECONDS = 2.0  # beyond the reply budget: no live first delivery holds a message this long


class InboundSms(BaseModel):
    """The fields of Twilio's incoming-message webhook that the worker uses."""

    MessageSid: str = Field(pattern=r"^(SM|MM)[0-9a-fA-F]{32}$")
    AccountSid: str = Field(pattern=r"^AC[0-9a-fA-F]{32}$")
    From: str = Field(min_length=2, max_length=64)
    To: str = Field(min_length=2, max_length=64)
    Body: str = Field("", max_length=10000)
    NumMedia: int = Field(0, ge=0, le=10)

    @field_validator("From", "To", "Body", mode="before")
    @classmethod
    def _clean(cls, value: object) -> object:
        # Signed does not mean well-formed: NUL breaks PostgreSQL, control characters break TwiML.
        return clean_text(value) if isinstance(value, str) else value


class StatusCallback(BaseModel):
    MessageSid: str = Field(pattern=r"^(SM|MM)[0-9a-fA-F]{32}$")
    MessageStatus: str = Field(pattern=r"^[a-z_]+$", max_length=32)
    ErrorCode: str | None = Field(None, max_length=16)
    From: str | None = Field(None, max_length=64)
    To: str | None = Field(None, max_length=64)


def malformed(what: str, exc: ValidationError) -> Response:
    problem = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
    return Response(f"malformed {what}: {problem}", status_code=400, media_type="text/plain")


def conversation_key(person: str, service: str) -> str:
    return f"sms:{person}:{service}"


def twiml(*messages: str, action: str | None = None) -> Response:
    response = MessagingResponse()
    for body in map(clean_text, messages):
        if action:
            response.message(body, action=action, method="POST")
        else:
            response.message(body)
    return Response(content=str(response), media_type=TWIML_TYPE)


def build_router(conversations: Conversations, settings: TwilioSettings, store: SmsStore, sender: SmsSender) -> APIRouter:
    router = APIRouter()
    validator = RequestValidator(settings.auth_token)
    spec = conversations.spec
    max_segments = spec.channels.sms.max_segments or DEFAULT_MAX_SEGMENTS
    pending: set[asyncio.Task[Any]] = set()

    async def verified_form(request: Request) -> dict[str, str] | None:
        return await signed_params(request, settings, validator)

    def shaped(text: str) -> str:
        return shape(text, max_segments)

    def line(template: str, **extra: Any) -> str:
        """A line of the spec's script (every sentence a person reads comes from the spec)."""
        return render(template, spec.fields, {}, **extra)

    async def send_later(task: asyncio.Task[TurnResult], sid: str, claim: str) -> None:
        try:
            result = await task
        except FenceLost:
            log.warning("SMS %s: another delivery took this message over; it answers", sid)
            return
        except Exception as exc:
            log.exception("SMS %s: the turn failed after the webhook was answered", sid)
            await store.fail(sid, claim, f"{type(exc).__name__}: {exc}")
            return
        await sender.send_due(result.conversation_id)

    async def redelivered(sid: str) -> Response | str:
        """What a second delivery of `sid` gets: the stored reply, nothing, or (when its first
        delivery died holding it) the claim, as the token to answer under."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + settings.reply_budget_seconds + TAKEOVER_MARGIN_SECONDS
        while True:
            seen = await store.delivered(sid)
            if seen is None:
                return twiml()
            if not seen.in_flight:
                if seen.reply and seen.reply_via == "twiml":
                    log.warning("SMS %s delivered again after its reply was committed: answering it again", sid)
                    return twiml(seen.reply, action=settings.status_callback_url)
                return twiml()
            held = (utcnow() - seen.updated_at).total_seconds()
            if held > settings.reply_budget_seconds + TAKEOVER_MARGIN_SECONDS:
                token = await store.take_over(sid, seen.state)
                if token is not None:
                    log.warning("SMS %s: its first delivery held it %.1f s and is presumed dead; taking it over", sid, held)
                    return token
                continue
            if loop.time() > give_up:
                return twiml()
            await asyncio.sleep(0.05)

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
            settled = await redelivered(msg.MessageSid)
            if isinstance(settled, Response):
                return settled
            claim = Claim(won=True, opted_out=await store.is_opted_out(msg.From, msg.To), token=settled)
        try:
            return await answer(msg, params, key, media, claim, arrived)
        except FenceLost:
            log.warning("SMS %s: another delivery took this message over; it answers", msg.MessageSid)
            return twiml()

    async def answer(msg: InboundSms, params: dict[str, str], key: str, media: list[dict[str, Any]], claim: Claim,
                     arrived: Any) -> Response:
        token = claim.token
        assert token is not None
        crash_point("sms.after_claim")  # recorded and claimed, not yet answered
        status_action = settings.status_callback_url
        keyword = compliance_keyword(msg.Body)
        if keyword == "stop":
            first = await store.opt_out(msg.From, msg.To)
            reply = line(spec.script.sms_opted_out) if first else None
            await store.finish_inbound(msg.MessageSid, "opted_out", reply, claim=token)
            return twiml(reply, action=status_action) if reply else twiml()
        if keyword == "start" and claim.opted_out:
            await store.opt_in(msg.From, msg.To)
            reply = shaped(line(spec.script.sms_resubscribed, worker=spec.persona.split(",")[0]))
            await store.finish_inbound(msg.MessageSid, "opted_in", reply, claim=token)
            return twiml(reply, action=status_action)
        if claim.opted_out:
            await store.finish_inbound(msg.MessageSid, "ignored_opted_out", claim=token)
            return twiml()
        if keyword == "help":
            help_line = render(spec.script.help, spec.fields, {}, worker=spec.persona)  # a template like any line
            reply = shaped((help_line or line(spec.script.sms_help_unset, worker=spec.persona)) + " "
                           + line(spec.script.sms_help_footer))
            await store.finish_inbound(msg.MessageSid, "help", reply, claim=token)
            return twiml(reply, action=status_action)
        notice = ""
        if media:
            notice = line(spec.script.sms_media) + " "
        turn = Turn(conversation_id=key, channel="sms", text=msg.Body or None, time=arrived,
                    metadata={"message_sid": msg.MessageSid, "from": msg.From, "to": msg.To, "media": media},
                    dedupe_key=f"sms:{msg.MessageSid}")
        if not msg.Body.strip():
            reply = shaped(notice.strip() or line(spec.script.sms_empty))
            await store.finish_inbound(msg.MessageSid, "answered", reply, claim=token)
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
            writes = [store.finish_statement(msg.MessageSid, "answered", reply, claim=token, via=route["via"] if reply else None)]
            if reply and route["via"] == "outbox":
                writes.append(store.enqueue_statement(key, msg.From, msg.To, reply, dedupe_key=f"reply:{msg.MessageSid}"))
            return writes

        task = asyncio.ensure_future(conversations.handle(turn, after=bookkeeping))
        try:
            await asyncio.wait_for(asyncio.shield(task), settings.reply_budget_seconds)
        except asyncio.TimeoutError:
            if route.setdefault("via", "outbox") == "outbox":
                # Answer Twilio now; the reply follows through the REST API when the turn is done.
                later = asyncio.ensure_future(send_later(task, msg.MessageSid, token))
                pending.add(later)
                later.add_done_callback(pending.discard)
                return twiml()
            await task  # the reply was already promised to this response; it is committing now
        except FenceLost:
            raise
        except Exception as exc:
            if await store.fail(msg.MessageSid, token, f"{type(exc).__name__}: {exc}"):
                # It failed every time it was tried: a poison message, not a passing fault.
                # Recorded with the reason (`channel-worker status`) and answered with nothing,
                # so Twilio stops delivering it and the conversation can go on.
                log.exception("SMS %s: the turn failed again; given up after %d attempts", msg.MessageSid, MAX_ATTEMPTS)
                return twiml()
            # Recorded 'failed' with the reason: recovery runs the turn again after the recovery
            # period and answers through the outbox, as does a redelivery before then. Never a
            # 500: Twilio does not retry a 5xx by default, it counts it as the app's error (11200)
            # and sends the message to the Fallback URL, which would answer it a second time.
            log.exception("SMS %s: the turn failed; recovery will try it again", msg.MessageSid)
            return twiml()
        crash_point("sms.after_commit")  # the reply is committed and has not left: the worst moment
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
