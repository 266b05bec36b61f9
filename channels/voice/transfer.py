"""Putting a live call through to a person: the call is updated through Twilio's Calls API
with TwiML that dials the rule's number (or SIP address), showing the caller's own number.

Updating the call ends its Media Stream: from then on Twilio carries the call, and the
worker's part is over. A caller must never be left in silence, so the TwiML says a line
if nobody answers, and a refused update is reported back for the worker to say so.
"""

from __future__ import annotations

import asyncio
import logging

from pydantic import BaseModel
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client
from twilio.twiml.voice_response import Dial, VoiceResponse

from channels.twilio.rest import close_client, rest_client
from channels.twilio.settings import TwilioSettings
from dialogue.spec import Script

log = logging.getLogger(__name__)
# The spec's default line; a call put through by the worker says the spec's own (`script.voice_no_answer`).
NO_ANSWER: str = Script.model_fields["voice_no_answer"].default
ATTEMPTS = 3  # a caller is waiting on the line: a few quick tries, not the outbox's patience


class TransferResult(BaseModel):
    ok: bool
    to: str
    attempts: int
    status: str | None = None  # the call's status as Twilio reported it
    error: str | None = None


def dial_twiml(to: str, caller_id: str | None, timeout_seconds: int = 30, no_answer: str = NO_ANSWER) -> str:
    """TwiML that dials `to` (an E.164 number, or a `sip:` address) for the caller."""
    response = VoiceResponse()
    # answerOnBridge: the caller hears ringing, not silence, until someone picks up.
    dial = Dial(caller_id=caller_id or None, answer_on_bridge=True, timeout=timeout_seconds)
    if to.lower().startswith(("sip:", "sips:")):
        dial.sip(to)
    else:
        dial.number(to)
    response.append(dial)
    response.say(no_answer)  # reached only when the dialled party does not answer
    return str(response)


class CallControl:
    """The worker's own Calls API client (pipecat's serializer hang-up is off)."""

    def __init__(self, settings: TwilioSettings, retry_seconds: float = 0.5):
        self.settings = settings
        self.retry_seconds = retry_seconds
        self._client: Client | None = None

    def _rest(self) -> Client:
        if self._client is None:
            self._client = rest_client(self.settings)
        return self._client

    async def transfer(self, call_sid: str, to: str, caller_id: str | None,
                       no_answer: str = NO_ANSWER) -> TransferResult:
        """`no_answer` is said when nobody picks up: the spec's `script.voice_no_answer`."""
        twiml = dial_twiml(to, caller_id, no_answer=no_answer)
        error = None
        for attempt in range(1, ATTEMPTS + 1):
            try:
                call = await self._rest().calls(call_sid).update_async(twiml=twiml)
                return TransferResult(ok=True, to=to, attempts=attempt, status=call.status)
            except TwilioRestException as exc:
                error = f"{exc.status} {exc.code}: {exc.msg}"
                if exc.status != 429 and exc.status < 500:
                    break  # the request itself is wrong (a finished call, a bad number): no retry helps
            except Exception as exc:  # network trouble
                error = f"{type(exc).__name__}: {exc}"
            log.warning("transfer of call %s to %s failed (attempt %d): %s", call_sid, to, attempt, error)
            if attempt < ATTEMPTS:
                await asyncio.sleep(self.retry_seconds * attempt)
        return TransferResult(ok=False, to=to, attempts=attempt, error=error)

    async def close(self) -> None:
        if self._client is not None:
            await close_client(self._client)
            self._client = None
