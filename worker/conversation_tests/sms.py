"""The SMS channel for real: the worker's own Twilio webhook app (channels/sms), in this process,
sent Twilio-signed form posts over httpx's ASGI transport; the reply is what its TwiML says.

Differences from a live line, on purpose: the turn's time is the case's clock (a wrapper on the
`Conversations` seam stamps it), and the reply budget is long (60 s), so a slow stub still
answers in the TwiML instead of through the REST outbox. Twilio's REST API is never reached: its
base URL is a closed local port, and nothing here sends through it."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any
from xml.etree import ElementTree

import httpx
from fastapi import FastAPI
from twilio.request_validator import RequestValidator

from channels.sms.sender import SmsSender
from channels.sms.store import SmsStore
from channels.sms.webhook import build_router
from channels.twilio.settings import TwilioSettings
from dialogue.engine import DialogueEngine
from dialogue.events import Turn, TurnResult
from dialogue.spec import WorkerSpec
from worker.conversation_tests.channel import Clock, Reply

TOKEN = "conversation-test-auth-token"
ACCOUNT = "AC" + "0" * 32
PUBLIC_URL = "https://worker.test"
WORKER_NUMBER = "+15005550006"
PERSON_NUMBER = "+15005550100"
REPLY_BUDGET_SECONDS = 60.0


class ClockedConversations:
    """The engine as the SMS webhook sees it (channels.seam.Conversations), with each turn
    stamped by the case's clock instead of the wall clock."""

    def __init__(self, engine: DialogueEngine, clock: Clock):
        self._engine, self._clock = engine, clock

    @property
    def spec(self) -> WorkerSpec:
        return self._engine.spec

    async def handle(self, turn: Turn, after: Any = None) -> TurnResult:
        return await self._engine.handle(turn.model_copy(update={"time": self._clock()}), after=after)

    def __getattr__(self, name: str) -> Any:  # end, record, open_handoff, reply_after: as they are
        return getattr(self._engine, name)


class SmsChannel:
    def __init__(self, engine: DialogueEngine, clock: Clock):
        twilio = TwilioSettings(account_sid=ACCOUNT, auth_token=TOKEN, public_base_url=PUBLIC_URL,
                                api_base="http://127.0.0.1:9", reply_budget_seconds=REPLY_BUDGET_SECONDS)
        store = SmsStore(engine.store.db)
        self._sender = SmsSender(twilio, store)
        app = FastAPI()
        app.include_router(build_router(ClockedConversations(engine, clock), twilio, store, self._sender))  # type: ignore[arg-type]
        self._http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=PUBLIC_URL, timeout=120)
        self._validator = RequestValidator(TOKEN)
        self.conversation_id = f"sms:{PERSON_NUMBER}:{WORKER_NUMBER}"

    async def start(self) -> Reply:
        return Reply(text=None)

    async def send(self, line: str) -> Reply:
        params = {"MessageSid": "SM" + uuid.uuid4().hex, "AccountSid": ACCOUNT, "From": PERSON_NUMBER,
                  "To": WORKER_NUMBER, "Body": line, "NumMedia": "0"}
        path = "/twilio/sms"
        signature = self._validator.compute_signature(PUBLIC_URL + path, params)
        response = await self._http.post(path, data=params, headers={"X-Twilio-Signature": signature})
        if response.status_code != 200:
            raise RuntimeError(f"the SMS webhook answered {response.status_code}: {response.text[:200]}")
        return Reply(text=" ".join(_messages(response.text)) or None)

    async def close(self) -> None:
        await self._http.aclose()
        await self._sender.close()


def _messages(twiml: str) -> Sequence[str]:
    root = ElementTree.fromstring(twiml)
    return [m.text or "" for m in root.iter("Message")]
