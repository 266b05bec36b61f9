"""Send SMS through Twilio's Messages REST API from the outbox, with retries.

429 and 5xx answers (and network errors) back off and retry; other 4xx answers are
recorded as failed and not retried (the request itself is wrong: a bad number, a blocked
recipient). Numbers on the opt-out list are never sent to; their items are 'suppressed'.
"""

from __future__ import annotations

import logging
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from channels.sms.settings import TwilioSettings
from channels.sms.store import OutboxItem, SmsStore
from channels.twilio_rest import close_client, rest_client
from dialogue.events import utcnow
from transcripts.outbox import backoff

log = logging.getLogger(__name__)


class SmsSender:
    def __init__(self, settings: TwilioSettings, store: SmsStore, backoff_base: float = 1.0):
        self.settings = settings
        self.store = store
        self.backoff_base = backoff_base
        self._client: Client | None = None

    def client(self) -> Client:
        # Created lazily inside the running loop: the async HTTP client binds to it.
        if self._client is None:
            self._client = rest_client(self.settings)
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await close_client(self._client)
            self._client = None

    async def send_due(self) -> int:
        sent = 0
        for item in await self.store.due(utcnow()):
            sent += await self._send(item)
        return sent

    async def _send(self, item: OutboxItem) -> int:
        if not await self.store.lease(item):
            return 0  # another sender (task or process) has it
        attempts = item.attempts + 1
        if await self.store.is_opted_out(item.to_number, item.from_number):
            await self.store.mark(item.id, "suppressed", attempts, "recipient opted out")
            return 0
        try:
            message = await self.client().messages.create_async(
                to=item.to_number, from_=item.from_number, body=item.body,
                status_callback=self.settings.status_callback_url,
            )
        except TwilioRestException as exc:
            if exc.status == 429 or exc.status >= 500:
                await self.store.mark(item.id, "pending", attempts, f"{exc.status}: {exc.msg}",
                                      retry_in=backoff(attempts, self.backoff_base))
                log.warning("SMS %s: Twilio answered %s, retrying", item.id, exc.status)
            else:
                await self.store.mark(item.id, "failed", attempts, f"{exc.status} {exc.code}: {exc.msg}")
                log.error("SMS %s to %s refused by Twilio (%s %s): %s", item.id, item.to_number, exc.status, exc.code, exc.msg)
            return 0
        except Exception as exc:  # network trouble: try again later
            await self.store.mark(item.id, "pending", attempts, f"{type(exc).__name__}: {exc}",
                                  retry_in=backoff(attempts, self.backoff_base))
            return 0
        await self.store.mark(item.id, "sent", attempts, message_sid=message.sid)
        await self.store.record_outbound(message.sid, item.conversation_id, item.from_number, item.to_number, item.body,
                                         message.status or "queued")
        return 1
