"""Local receivers for team notifications: an SMTP server (aiosmtpd) and a webhook endpoint,
each able to refuse the first N deliveries, as real servers do when they are busy."""

from __future__ import annotations

import json
import socket
from email import message_from_bytes
from email.message import Message
from typing import Any

from aiosmtpd.controller import Controller

from tests.support.http_stub import HttpStub, JsonHandler


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FlakySmtp:
    """Answers `refusal` (451: try again later) to the first `refuse` messages, then accepts."""

    def __init__(self, refuse: int = 0, refusal: str = "451 4.3.0 Try again later"):
        self.refuse = refuse
        self.refusal = refusal
        self.attempts = 0
        self.accepted: list[Message] = []
        outer = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
                outer.attempts += 1
                if outer.attempts <= outer.refuse:
                    return outer.refusal
                outer.accepted.append(message_from_bytes(envelope.content))
                return "250 Message accepted for delivery"

        self.port = free_port()
        self._controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> FlakySmtp:
        self._controller.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._controller.stop()


class _WebhookHandler(JsonHandler):
    def do_POST(self) -> None:  # noqa: N802
        stub: FlakyWebhook = self.server.stub  # type: ignore[attr-defined]
        body = json.loads(self.read_body())
        status = 500 if len(stub.calls) < stub.fail else 200
        stub.calls.append((status, body, dict(self.headers)))
        self.send_json(status, None)


class FlakyWebhook(HttpStub):
    """Answers 500 to the first `fail` POSTs, then 200; records every body and header."""

    handler_class = _WebhookHandler

    def __init__(self, fail: int = 0):
        self.fail = fail
        self.calls: list[tuple[int, dict[str, Any], dict[str, str]]] = []
        super().__init__()

    @property
    def url(self) -> str:
        return f"{self.origin}/hooks/handoff"
