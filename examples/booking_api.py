"""A small booking system for the bundled examples: the business's own API that the workers'
actions call. Standard library only, in memory, one process; not part of the worker.

    python -m examples.booking_api --port 8765
    export BOOKING_API_URL=http://127.0.0.1:8765     # examples/restaurant_booking.yaml
    export BANK_API_URL=http://127.0.0.1:8765/bank    # examples/account_support.yaml

Trattoria Luigi (restaurant_booking.yaml):
    GET  /availability?date=2026-12-01&time=19:30&people=4
         -> {"available": true, "times": []}  or, when full, {"available": false, "times": ["19:00", "21:00", "21:30"]}
    POST /bookings          {"date", "time", "people", "name"}       -> 201 {"booking_id", "date", "time", "people", "name"}
    POST /bookings/find     {"name", "date"}                          -> {"found", "booking_id", "time", "people"}
    POST /bookings/change   {"name", "date", "time"}                  -> {"found", "changed", "booking_id", "time", "times"}
    POST /bookings/cancel   {"name", "date"}                          -> {"found", "booking_id"}
    GET  /bookings          every booking (for a person checking what the worker did)

Outcome deliveries (the workers' `on_outcome:`), signed with OUTCOME_WEBHOOK_SECRET:
    POST /hooks/outcomes    the finished record; 401 unless X-Channel-Worker-Signature is right
    GET  /hooks/outcomes    every record received (a repeated Idempotency-Key is kept once)
    (/bank/hooks/outcomes for the bank: the same checks, the same list)

Northwind Bank (account_support.yaml), under /bank:
    POST /bank/cards/freeze {"account_number"}                        -> {"frozen", "card_last4", "reference"}
    POST /bank/disputes     {"account_number", "amount", "merchant", "charge_date"} -> 201 {"case_id"}
    POST /bank/addresses    {"account_number", "address"}             -> {"updated", "reference"}
    GET  /bank/log          every write, in order

The restaurant seats people at the half hours from 12:00 to 22:30. Every evening at 20:00 is
fully booked (a standing party of regulars), so a worker's "we're full, how about..." branch is
always reachable; `--full 19:30,20:00` changes that. A slot also fills up when its bookings reach
SEATS people. A booking or a change is found by the name (the first name is enough) and the date.

Every write honours `Idempotency-Key`: a repeated key gets the first answer again and the write
happens once, as a payment or booking API does. That is what lets a worker re-run a turn safely.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import threading
from datetime import date, datetime, time, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

OPENS, LAST_SEATING = time(12, 0), time(22, 30)
SEATS = 40  # people per half-hour slot
DEFAULT_FULL = ("20:00",)
OFFERED = 3  # free times offered when the time asked for is full


class Problem(Exception):
    """A request the API refuses (4xx) with a reason."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


def slots() -> list[time]:
    out, at = [], datetime.combine(date.min, OPENS)
    while at.time() <= LAST_SEATING:
        out.append(at.time())
        at += timedelta(minutes=30)
    return out


def _hhmm(value: time) -> str:
    return value.strftime("%H:%M")


def _date(value: Any, name: str = "date") -> date:
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise Problem(400, f"{name}: not a date (YYYY-MM-DD)") from None


def _time(value: Any, name: str = "time") -> time:
    try:
        return time.fromisoformat(str(value)).replace(second=0, microsecond=0)
    except ValueError:
        raise Problem(400, f"{name}: not a time (HH:MM)") from None


def _people(value: Any) -> int:
    try:
        people = int(value)
    except (TypeError, ValueError):
        raise Problem(400, "people: not a number") from None
    if not 1 <= people <= SEATS:
        raise Problem(400, f"people: 1 to {SEATS}")
    return people


def _name_matches(booked: str, asked: str) -> bool:
    booked, asked = booked.strip().casefold(), asked.strip().casefold()
    return bool(asked) and (booked == asked or booked.split()[0] == asked.split()[0])


class Store:
    """The restaurant's book and the bank's log, in memory, behind one lock."""

    def __init__(self, full: tuple[str, ...] = DEFAULT_FULL):
        self.full = {_time(t) for t in full}
        self.bookings: dict[str, dict[str, Any]] = {}
        self.bank_log: list[dict[str, Any]] = []
        self.answers: dict[str, tuple[int, dict[str, Any]]] = {}  # Idempotency-Key -> first answer
        self.outcomes: list[dict[str, Any]] = []  # outcome records received
        self.lock = threading.Lock()
        self._next = 1000
        # People seated per (date, time): kept as bookings are made, moved and cancelled, so a
        # check costs the same with ten bookings or ten thousand (a scan of every booking per
        # slot made the SMS bench's booking system its slowest part).
        self._seats: dict[tuple[str, str], int] = {}

    def _id(self, prefix: str) -> str:
        self._next += 1
        return f"{prefix}{self._next}"

    # --- the restaurant

    def _seated(self, day: date, at: time, leaving: str | None = None) -> int:
        key = (day.isoformat(), _hhmm(at))
        seated = self._seats.get(key, 0)
        moving = self.bookings.get(leaving) if leaving else None
        if moving is not None and moving["status"] == "booked" and (moving["date"], moving["time"]) == key:
            seated -= moving["people"]
        return seated

    def _seat(self, booking: dict[str, Any], sign: int) -> None:
        key = (booking["date"], booking["time"])
        self._seats[key] = self._seats.get(key, 0) + sign * booking["people"]

    def free(self, day: date, at: time, people: int, leaving: str | None = None) -> bool:
        if at not in slots() or at in self.full:
            return False
        return self._seated(day, at, leaving) + people <= SEATS

    def nearest(self, day: date, at: time, people: int, leaving: str | None = None) -> list[str]:
        minutes = at.hour * 60 + at.minute
        free = [s for s in slots() if self.free(day, s, people, leaving)]
        near = sorted(free, key=lambda s: (abs(s.hour * 60 + s.minute - minutes), s))[:OFFERED]
        return [_hhmm(s) for s in sorted(near)]

    def availability(self, query: dict[str, str]) -> dict[str, Any]:
        day, at, people = _date(query.get("date")), _time(query.get("time")), _people(query.get("people", 2))
        if self.free(day, at, people):
            return {"available": True, "times": []}
        return {"available": False, "times": self.nearest(day, at, people)}

    def book(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        day, at, people = _date(body.get("date")), _time(body.get("time")), _people(body.get("people"))
        name = str(body.get("name") or "").strip()
        if not name:
            raise Problem(400, "name: required")
        if not self.free(day, at, people):
            raise Problem(409, f"{_hhmm(at)} on {day} is full")
        booking = {"booking_id": self._id("B"), "date": day.isoformat(), "time": _hhmm(at), "people": people,
                   "name": name, "status": "booked"}
        self.bookings[booking["booking_id"]] = booking
        self._seat(booking, +1)
        return 201, {k: booking[k] for k in ("booking_id", "date", "time", "people", "name")}

    def _find(self, body: dict[str, Any]) -> dict[str, Any] | None:
        day, name = _date(body.get("date")).isoformat(), str(body.get("name") or "")
        return next((b for b in self.bookings.values()
                     if b["status"] == "booked" and b["date"] == day and _name_matches(b["name"], name)), None)

    def find(self, body: dict[str, Any]) -> dict[str, Any]:
        found = self._find(body)
        if found is None:
            return {"found": False}
        return {"found": True, "booking_id": found["booking_id"], "time": found["time"], "people": found["people"]}

    def change(self, body: dict[str, Any]) -> dict[str, Any]:
        found, at = self._find(body), _time(body.get("time"))
        if found is None:
            return {"found": False, "changed": False, "times": []}
        day = date.fromisoformat(found["date"])
        if not self.free(day, at, found["people"], leaving=found["booking_id"]):
            return {"found": True, "changed": False, "booking_id": found["booking_id"], "time": found["time"],
                    "times": self.nearest(day, at, found["people"], leaving=found["booking_id"])}
        self._seat(found, -1)
        found["time"] = _hhmm(at)
        self._seat(found, +1)
        return {"found": True, "changed": True, "booking_id": found["booking_id"], "time": found["time"], "times": []}

    def cancel(self, body: dict[str, Any]) -> dict[str, Any]:
        found = self._find(body)
        if found is None:
            return {"found": False}
        found["status"] = "cancelled"  # its seats are free again
        self._seat(found, -1)
        return {"found": True, "booking_id": found["booking_id"]}

    # --- outcome deliveries

    def outcome(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        self.outcomes.append(body)
        return 200, {"received": True}

    # --- the bank

    def _account(self, body: dict[str, Any]) -> str:
        account = str(body.get("account_number") or "")
        if not (account.isdigit() and len(account) == 8):
            raise Problem(400, "account_number: 8 digits")
        return account

    def freeze(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        account = self._account(body)
        answer = {"frozen": True, "card_last4": account[-4:], "reference": self._id("FRZ-")}
        self.bank_log.append({"kind": "freeze", "account_number": account, **answer})
        return 200, answer

    def dispute(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        account = self._account(body)
        answer = {"case_id": self._id("DSP-")}
        self.bank_log.append({"kind": "dispute", "account_number": account, "amount": body.get("amount"),
                              "merchant": body.get("merchant"), "charge_date": body.get("charge_date"), **answer})
        return 201, answer

    def address(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        account = self._account(body)
        if not str(body.get("address") or "").strip():
            raise Problem(400, "address: required")
        answer = {"updated": True, "reference": self._id("ADR-")}
        self.bank_log.append({"kind": "address", "account_number": account, "address": body["address"], **answer})
        return 200, answer


WRITES = {
    "/bookings": Store.book,
    "/bookings/find": lambda s, b: (200, s.find(b)),
    "/bookings/change": lambda s, b: (200, s.change(b)),
    "/bookings/cancel": lambda s, b: (200, s.cancel(b)),
    "/hooks/outcomes": Store.outcome,
    "/bank/hooks/outcomes": Store.outcome,
    "/bank/cards/freeze": Store.freeze,
    "/bank/disputes": Store.dispute,
    "/bank/addresses": Store.address,
}


HOOKS = ("/hooks/outcomes", "/bank/hooks/outcomes")


class Handler(BaseHTTPRequestHandler):
    server: BookingServer
    protocol_version = "HTTP/1.1"
    # Headers and body leave in two writes; with Nagle's algorithm on, the body waits for the
    # client's delayed ACK of the headers, and every call on a kept-alive connection took 44 ms.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        if self.server.verbose:
            super().log_message(format, *args)

    def _send(self, status: int, payload: Any) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        url = urlsplit(self.path)
        store = self.server.store
        try:
            with store.lock:
                if url.path == "/availability":
                    query = {k: v[0] for k, v in parse_qs(url.query).items()}
                    return self._send(200, store.availability(query))
                if url.path == "/bookings":
                    return self._send(200, sorted(store.bookings.values(), key=lambda b: b["booking_id"]))
                if url.path == "/bank/log":
                    return self._send(200, store.bank_log)
                if url.path in HOOKS:
                    return self._send(200, store.outcomes)
                if url.path == "/healthz":
                    return self._send(200, {"status": "ok"})
        except Problem as problem:
            return self._send(problem.status, {"error": problem.reason})
        self._send(404, {"error": f"no such path: {url.path}"})

    def _signed(self, raw: bytes) -> bool:
        # Checked over the exact bytes received, before parsing them (docs/actions.md).
        secret, header = self.server.webhook_secret, self.headers.get("X-Channel-Worker-Signature") or ""
        if not secret:
            return False
        expected = "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, header)

    def do_POST(self) -> None:  # noqa: N802
        path = urlsplit(self.path).path
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        write = WRITES.get(path)
        if write is None:
            return self._send(404, {"error": f"no such path: {path}"})
        if path in HOOKS and not self._signed(raw):
            return self._send(401, {"error": "the signature does not match the body"})
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return self._send(400, {"error": "the body is not JSON"})
        if not isinstance(body, dict):
            return self._send(400, {"error": "the body is a JSON object"})
        key = self.headers.get("Idempotency-Key")
        store = self.server.store
        with store.lock:
            if key and key in store.answers:
                status, answer = store.answers[key]
                return self._send(status, answer)
            try:
                status, answer = write(store, body)
            except Problem as problem:
                status, answer = problem.status, {"error": problem.reason}
            if key and status < 500:
                store.answers[key] = (status, answer)  # the first answer, refusals included
        self._send(status, answer)


class BookingServer(ThreadingHTTPServer):
    daemon_threads = True
    # The standard library's default backlog is 5: a burst of a worker's calls then waits for
    # TCP to retry its dropped connections (a second or more each), and the calls time out.
    request_queue_size = 256

    def __init__(self, host: str = "127.0.0.1", port: int = 0, full: tuple[str, ...] = DEFAULT_FULL,
                 verbose: bool = False, webhook_secret: str | None = None):
        super().__init__((host, port), Handler)
        self.store = Store(full)
        self.verbose = verbose
        self.webhook_secret = webhook_secret

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m examples.booking_api", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0: any free port (printed)")
    parser.add_argument("--full", default=",".join(DEFAULT_FULL),
                        help="times that are always fully booked, comma-separated (default: %(default)s)")
    parser.add_argument("--quiet", action="store_true", help="do not log each request")
    args = parser.parse_args(argv)
    full = tuple(t.strip() for t in args.full.split(",") if t.strip())
    # The same variable the worker signs outcome deliveries with; unset, every delivery is refused.
    server = BookingServer(args.host, args.port, full, verbose=not args.quiet,
                           webhook_secret=os.environ.get("OUTCOME_WEBHOOK_SECRET"))
    # The first line says where it listens; scripts and tests read it.
    print(f"booking API listening on {server.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
