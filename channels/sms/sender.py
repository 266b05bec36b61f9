"""Send SMS through Twilio's Messages REST API from the outbox, with retries.

429 and 5xx answers (and network errors) back off and retry; other 4xx answers are
recorded as failed and not retried (the request itself is wrong: a bad number, a blocked
recipient). Numbers on the opt-out list are never sent to; their items are 'suppressed'.

Twilio's Messages API takes no idempotency key, so a process killed after Twilio accepted a
message and before the outbox row says 'sent' would send it again once the lease lapsed.
An item whose previous attempt never recorded an outcome ('in flight') is first looked up in
Twilio's message log (same sender, recipient and body, created since that attempt began); if
it is there, it is marked sent instead of being sent twice.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from channels.sms.store import IN_FLIGHT, OutboxItem, SmsStore
from channels.twilio.rest import close_client, rest_client
from channels.twilio.settings import TwilioSettings
from storage.clock import utcnow
from storage.crash_points import crash_point
from storage.outbox import backoff

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

    async def send_due(self, conversation_id: str | None = None) -> int:
        """Send what is due: one conversation's replies (a late reply, just committed), or the
        oldest due of all (the sending loop). A late reply sends only its own: when every late
        reply swept the whole outbox, 300 texts a second with Twilio unreachable spent 90 % of
        the server's CPU re-reading and re-trying the same backlog (bench/sms.py, py-spy)."""
        sent = 0
        for item in await self.store.due(utcnow(), conversation_id):
            sent += await self._send(item)
        return sent

    async def _already_sent(self, item: OutboxItem) -> str | None:
        """The sid of this item's message if an attempt that died before recording it got it to Twilio."""
        since = item.created_at - timedelta(seconds=2)  # Twilio's dates have whole seconds
        messages = await self.client().messages.list_async(
            to=item.to_number, from_=item.from_number, date_sent_after=since, limit=50)
        candidates = [m for m in messages if m.body == item.body and m.sid
                      and (m.date_created is None or m.date_created >= since)]
        # The same words may have been sent for another item (a repeated re-ask): those are accounted for.
        taken = await self.store.known_sids([m.sid for m in candidates])
        return next((m.sid for m in candidates if m.sid not in taken), None)

    async def _send(self, item: OutboxItem) -> int:
        if not await self.store.lease(item):
            return 0  # another sender (task or process) has it
        attempts = item.attempts + 1
        if await self.store.is_opted_out(item.to_number, item.from_number):
            await self.store.mark(item.id, "suppressed", attempts, "recipient opted out")
            return 0
        if item.last_error == IN_FLIGHT:
            try:
                sid = await self._already_sent(item)
            except Exception as exc:  # cannot tell: sending now could be the second copy, so wait
                await self.store.mark(item.id, "pending", item.attempts, IN_FLIGHT,
                                      retry_in=backoff(attempts, self.backoff_base))
                log.warning("SMS %s: cannot check whether an interrupted send went out (%s); retrying later", item.id, exc)
                return 0
            if sid is not None:
                log.warning("SMS %s: an interrupted send had reached Twilio as %s; not sending it again", item.id, sid)
                await self.store.mark(item.id, "sent", attempts, message_sid=sid)
                await self.store.record_outbound(sid, item.conversation_id, item.from_number, item.to_number, item.body, "sent")
                return 1
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
        crash_point("outbox.after_send")  # Twilio has it; the outbox does not know yet
        await self.store.mark(item.id, "sent", attempts, message_sid=message.sid)
        await self.store.record_outbound(message.sid, item.conversation_id, item.from_number, item.to_number, item.body,
                                         message.status or "queued")
        return 1
