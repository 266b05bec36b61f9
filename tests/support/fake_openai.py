"""A local HTTP server that speaks OpenAI's chat-completions wire format.

It stands in for a hosted LLM, which cannot be reached from here. Each test sets the
proposals the "model" answers with; every request is recorded for inspection.
"""

from __future__ import annotations

import json
import time
from typing import Any

from tests.support.http_stub import HttpStub, JsonHandler


class _Handler(JsonHandler):
    def do_POST(self) -> None:  # noqa: N802
        stub: FakeOpenAI = self.server.stub  # type: ignore[attr-defined]
        body = json.loads(self.read_body())
        stub.requests.append(body)
        stub.headers.append(dict(self.headers))
        time.sleep(stub.delay)  # a model that takes its time
        if self.path != "/v1/chat/completions":
            return self.send_json(404, {"error": {"message": "not found"}})
        if stub.status != 200:
            return self.send_json(stub.status, {"error": {"message": "overloaded", "type": "server_error"}})
        content = json.dumps({"values": stub.proposals})
        self.send_json(200, {
            "id": "chatcmpl-test", "object": "chat.completion", "created": 1700000000, "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
        })


class FakeOpenAI(HttpStub):
    handler_class = _Handler

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.proposals: list[dict[str, Any]] = []
        self.status = 200
        self.delay = 0.0
        super().__init__()

    @property
    def base_url(self) -> str:
        return f"{self.origin}/v1"
