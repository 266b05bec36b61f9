"""The restaurant's own booking system for the flow tests (tests/data/specs/flows_*.yaml): a
real HTTP server on loopback whose answers a test sets beforehand.

- GET /availability: `{"available": ..., "times": [...], "internal_note": ...}` (the note is not
  in the spec's result schema, so the worker must never say it);
- POST /bookings: books once per Idempotency-Key (a repeat of a key returns the first booking,
  `{"booking_id": ..., "party": ...}`: the party is not in the spec's schema either);
- POST /cancellations: 204.

`mode[path]` makes a path misbehave: "slow" (answers after the action's timeout), "malformed"
(not JSON), "wrong_type" (JSON outside the schema), "fail:N" (503 to the next N requests).
`hold_answers`: /bookings books, sets `booked`, and waits for `release` before answering (as when
the caller dies before reading the answer)."""

from __future__ import annotations

from tests.support.business_api import BookingApi, Request
from tests.support.http_stub import JsonHandler

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
            if api.hold_answers:
                api.booked.set()
                api.release.wait(30)
            return self.send_json(201, booking)
        if route == "/cancellations":
            return self.send_json(200, {"cancelled": True})
        return self.send_json(404, {"error": "not found"})


class FlowApi(BookingApi):
    """BookingApi's bookings (once per Idempotency-Key, `hold_answers`, `booked`, `release`), with
    the flow specs' routes and answers set by the test."""

    handler_class = _Handler

    def __init__(self) -> None:
        super().__init__()
        self.mode: dict[str, str] = {}
        self.available = True
        self.times = ["18:00", "21:30"]

    def to(self, route: str) -> list[Request]:
        with self.lock:
            return [r for r in self.requests if r.path.split("?")[0] == route]
