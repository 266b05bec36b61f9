"""A local HTTP server speaking the wire format of Twilio's Messages and Calls REST APIs.

Twilio's REST API is a paid cloud service that cannot be reached from here; this stands in
for it. Tests script the status codes it answers with (e.g. 429, 500, then 201) and read the
messages it was asked to send and the call updates (transfers) it was asked to make.
"""

from __future__ import annotations

import re
import uuid
from typing import Any
from datetime import datetime, timezone
from email.utils import format_datetime
from urllib.parse import parse_qs, urlparse

from tests.support.http_stub import HttpStub, JsonHandler

_ERRORS = {429: (20429, "Too Many Requests"), 400: (21211, "The 'To' number is not a valid phone number."),
           500: (20500, "Internal Server Error"), 503: (20503, "Service Unavailable")}


def _rfc2822(moment: datetime) -> str:
    return format_datetime(moment.astimezone(timezone.utc), usegmt=False)


class _Handler(JsonHandler):
    def do_GET(self) -> None:  # noqa: N802
        """The message log (`GET .../Messages.json?To=&From=&DateSent>=`), one page of it."""
        stub: FakeTwilio = self.server.stub  # type: ignore[attr-defined]
        url = urlparse(self.path)
        match = re.fullmatch(r"/2010-04-01/Accounts/(AC\w+)/Messages\.json", url.path)
        if not match:
            return self.send_json(404, {"code": 20404, "message": "The requested resource was not found", "status": 404})
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        after = query.get("DateSent>")
        since = datetime.fromisoformat(after.replace("Z", "+00:00")) if after else None
        found = [m for m in list(stub.sent)
                 if m.get("To") == query.get("To", m.get("To")) and m.get("From") == query.get("From", m.get("From"))
                 # Twilio filters DateSent by day (YYYY-MM-DD), whatever time of day is given.
                 and (since is None or m["_created"].date() >= since.date())]
        self.send_json(200, {
            "messages": [self._message(match.group(1), m) for m in reversed(found)], "next_page_uri": None,
            "first_page_uri": url.path, "previous_page_uri": None, "page": 0, "page_size": 50,
            "start": 0, "end": max(0, len(found) - 1), "uri": self.path,
        })

    @staticmethod
    def _message(account: str, m: dict[str, Any]) -> dict[str, Any]:
        return {"sid": m["Sid"], "account_sid": account, "to": m.get("To"), "from": m.get("From"), "body": m.get("Body"),
                "status": "sent", "num_segments": "1", "direction": "outbound-api", "api_version": "2010-04-01",
                "date_created": _rfc2822(m["_created"]), "date_sent": _rfc2822(m["_created"]),
                "uri": f"/2010-04-01/Accounts/{account}/Messages/{m['Sid']}.json"}

    def do_POST(self) -> None:  # noqa: N802
        stub: FakeTwilio = self.server.stub  # type: ignore[attr-defined]
        match = re.fullmatch(r"/2010-04-01/Accounts/(AC\w+)/Messages\.json", self.path)
        form = {k: v[0] for k, v in parse_qs(self.read_body().decode()).items()}
        stub.requests.append({"path": self.path, "form": form, "auth": self.headers.get("Authorization")})
        call = re.fullmatch(r"/2010-04-01/Accounts/(AC\w+)/Calls/(CA\w+)\.json", self.path)
        if call:
            return self._update_call(stub, call.group(1), call.group(2), form)
        if not match:
            return self.send_json(404, {"code": 20404, "message": "The requested resource was not found", "status": 404})
        status = stub.script.pop(0) if stub.script else 201
        if status != 201:
            code, message = _ERRORS.get(status, (20000 + status, "Error"))
            return self.send_json(status, {"code": code, "message": message, "status": status,
                                           "more_info": f"https://www.twilio.com/docs/errors/{code}"})
        sid = "SM" + uuid.uuid4().hex
        stub.sent.append({**form, "Sid": sid, "_created": datetime.now(timezone.utc)})
        self.send_json(201, {
            "sid": sid, "account_sid": match.group(1), "to": form.get("To"), "from": form.get("From"),
            "body": form.get("Body"), "status": "queued", "num_segments": "1", "direction": "outbound-api",
            "api_version": "2010-04-01", "date_created": "Sun, 22 Nov 2026 10:00:00 +0000",
            "uri": f"/2010-04-01/Accounts/{match.group(1)}/Messages/{sid}.json",
        })


    def _update_call(self, stub: FakeTwilio, account: str, call_sid: str, form: dict[str, str]) -> None:
        status = stub.script.pop(0) if stub.script else 200
        if status != 200:
            code, message = _ERRORS.get(status, (20000 + status, "Error"))
            return self.send_json(status, {"code": code, "message": message, "status": status,
                                           "more_info": f"https://www.twilio.com/docs/errors/{code}"})
        stub.call_updates.append({**form, "CallSid": call_sid})
        self.send_json(200, {
            "sid": call_sid, "account_sid": account, "status": "in-progress", "direction": "inbound",
            "api_version": "2010-04-01", "date_created": "Sun, 22 Nov 2026 10:00:00 +0000",
            "uri": f"/2010-04-01/Accounts/{account}/Calls/{call_sid}.json",
        })


class FakeTwilio(HttpStub):
    handler_class = _Handler

    def __init__(self) -> None:
        self.script: list[int] = []  # status codes to answer with, in order; then 201
        self.requests: list[dict[str, Any]] = []
        self.sent: list[dict[str, str]] = []
        self.call_updates: list[dict[str, str]] = []
        super().__init__()

    @property
    def base_url(self) -> str:
        return self.origin
