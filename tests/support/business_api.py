"""A business's own system, as a real HTTP server on loopback, for the action and outcome
delivery tests: a booking API that misbehaves on purpose (slow, failing, malformed), and a
receiver of outcome deliveries that can be down, then up."""

from __future__ import annotations

import json
import threading
from http.server import ThreadingHTTPServer
from typing import Any

from tests.support.http_stub import HttpStub, JsonHandler


class Request:
    def __init__(self, method: str, path: str, headers: dict[str, str], body: bytes):
        self.method, self.path, self.headers, self.body = method, path, headers, body

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class _ApiHandler(JsonHandler):
    def do_GET(self) -> None:  # noqa: N802
        self._answer("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._answer("POST")

    def _answer(self, method: str) -> None:
        api: BookingApi = self.server.stub  # type: ignore[attr-defined]
        request = Request(method, self.path, dict(self.headers), self.read_body())
        with api.lock:
            api.requests.append(request)
            failures_left = api.fail_first.get(self.path.split("?")[0], 0)
            if failures_left:
                api.fail_first[self.path.split("?")[0]] = failures_left - 1
        route = self.path.split("?")[0]
        if failures_left:
            self.send_json(503, {"error": "busy"})
        elif route == "/availability":
            self.send_json(200, {"available": True, "times": ["19:00", "20:30"], "internal_note": "VIP table 4"})
        elif route == "/bookings":
            booked = api.book(request)
            if api.hold_answers:
                # The booking is made; its answer waits, as when the caller dies before reading it.
                api.booked.set()
                api.release.wait(30)
            self.send_json(201, booked)
        elif route == "/slow":
            api.release.wait(30)  # longer than any action's timeout; released when the server stops
            self.send_json(200, {"available": True})
        elif route == "/malformed":
            data = b"{'available': true"
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        elif route == "/huge":
            self.send_json(200, {"available": True, "times": ["19:00"] * 200_000})
        elif route == "/drip":
            # Headers at once, then the answer a byte at a time: each read is quick, the whole is not.
            data = json.dumps({"available": True}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            for byte in data:
                if api.release.wait(0.1):
                    break
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
        elif route == "/wrong-type":
            self.send_json(200, {"available": "yes", "times": ["19:00"]})
        elif route == "/refuse":
            self.send_json(422, {"error": "no such date"})
        else:
            self.send_json(404, {"error": "not found"})


class BookingApi(HttpStub):
    """Bookings are made once per Idempotency-Key, as a careful business API does: a repeat of a
    key returns the first booking. `fail_first[path] = n` answers 503 to the next n requests."""

    handler_class = _ApiHandler

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[Request] = []
        self.bookings: dict[str, dict[str, Any]] = {}  # Idempotency-Key -> booking
        self.fail_first: dict[str, int] = {}
        self.release = threading.Event()
        self.hold_answers = False  # True: /bookings books, sets `booked`, and answers only at the end
        self.booked = threading.Event()
        super().__init__()

    def book(self, request: Request) -> dict[str, Any]:
        key = request.headers.get("Idempotency-Key") or f"no-key-{len(self.requests)}"
        with self.lock:
            if key not in self.bookings:
                self.bookings[key] = {"booking_id": f"B{len(self.bookings) + 1}", "party": request.json()}
            return self.bookings[key]

    def __exit__(self, *exc: Any) -> None:
        self.release.set()
        super().__exit__(*exc)


class _ReceiverHandler(JsonHandler):
    def do_POST(self) -> None:  # noqa: N802
        receiver: OutcomeReceiver = self.server.stub  # type: ignore[attr-defined]
        request = Request("POST", self.path, dict(self.headers), self.read_body())
        with receiver.lock:
            status = 500 if receiver.fail > 0 else 200
            receiver.fail -= 1
            receiver.calls.append((status, request))
        self.send_json(status, {"ok": status == 200})


class OutcomeReceiver(HttpStub):
    """The business's endpoint for finished records, on a port chosen beforehand so it can be
    down (nothing listening) and then come up at the same address. Answers 500 to the first
    `fail` POSTs it sees, then 200."""

    handler_class = _ReceiverHandler

    def __init__(self, port: int, fail: int = 0):
        self.lock = threading.Lock()
        self.fail = fail
        self.calls: list[tuple[int, Request]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self.handler_class)
        self._server.stub = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def accepted(self) -> list[Request]:
        return [request for status, request in self.calls if status == 200]
