"""The restaurant's own booking system for the flow tests (tests/data/specs/flows_*.yaml): a
real HTTP server on loopback whose answers a test sets beforehand.

- GET /availability: `{"available": ..., "times": [...], "internal_note": ...}` (the note is not
  in the spec's result schema, so the worker must never say it);
- POST /bookings: books once per Idempotency-Key (a repeat of a key returns the first booking);
- POST /cancellations: 204.

`mode[path]` makes a path misbehave: "slow" (answers after the action's timeout), "malformed"
(not JSON), "wrong_type" (JSON outside the schema), "fail:N" (503 to the next N requests).
`hold_bookings`: /bookings books, sets `booked`, and waits for `release` before answering (as when
the caller dies before reading the answer)."""

from __future__ import annotations

import json
import threading
from typing import Any

from tests.support.business_api import Request
from tests.support.http_stub import HttpStub, JsonHandler

INTERNAL_NOTE = "VIP regular, give table 4"


class _Handler(JsonHandler):
    def do_GET(self) -> None:  # noqa: N802
        self._answer("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._answer("POST")

    def _raw(self, status: int, data: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _answer(self, method: str) -> None:
        api: FlowApi = self.server.stub  # type: ignore[attr-defined]
        route = self.path.split("?")[0]
        request = Request(method, self.path, dict(self.headers), self.read_body())
        with api.lock:
            api.requests.append(request)
            mode = api.mode.get(route, "")
            if mode.startswith("fail:"):
                left = int(mode.split(":")[1])
                api.mode[route] = f"fail:{left - 1}" if left > 1 else ""
        if mode == "slow":
            api.release.wait(30)
            return self.send_json(200, {"available": True, "times": []})
        if mode.startswith("fail:"):
            return self.send_json(503, {"error": "busy"})
        if mode == "malformed":
            return self._raw(200, b"{'available': true")
        if mode == "wrong_type":
            return self.send_json(200, {"available": "perhaps", "times": "19:00", "booking_id": 7})
        if route == "/availability":
            return self.send_json(200, {"available": api.available, "times": api.times, "internal_note": INTERNAL_NOTE})
        if route == "/bookings":
            booking = api.book(request)
            if api.hold_bookings:
                api.booked.set()
                api.release.wait(30)
            return self.send_json(201, booking)
        if route == "/cancellations":
            return self.send_json(200, {"cancelled": True})
        return self.send_json(404, {"error": "not found"})


class FlowApi(HttpStub):
    handler_class = _Handler

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[Request] = []
        self.bookings: dict[str, dict[str, Any]] = {}  # Idempotency-Key -> booking
        self.mode: dict[str, str] = {}
        self.available = True
        self.times = ["18:00", "21:30"]
        self.hold_bookings = False
        self.booked = threading.Event()
        self.release = threading.Event()
        super().__init__()

    def book(self, request: Request) -> dict[str, Any]:
        key = request.headers.get("Idempotency-Key") or f"no-key-{len(self.requests)}"
        with self.lock:
            if key not in self.bookings:
                self.bookings[key] = {"booking_id": f"B{len(self.bookings) + 1}", "party": request.json()}
            return {"booking_id": self.bookings[key]["booking_id"]}

    def to(self, route: str) -> list[Request]:
        with self.lock:
            return [r for r in self.requests if r.path.split("?")[0] == route]

    def __exit__(self, *exc: Any) -> None:
        self.release.set()
        super().__exit__(*exc)


def json_of(request: Request) -> Any:
    return json.loads(request.body) if request.body else None
