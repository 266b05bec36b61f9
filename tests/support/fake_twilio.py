"""A local HTTP server speaking the wire format of Twilio's Messages REST API.

Twilio's REST API is a paid cloud service that cannot be reached from here; this stands in
for it. Tests script the status codes it answers with (e.g. 429, 500, then 201) and read the
messages it was asked to send.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs


class FakeTwilio:
    def __init__(self) -> None:
        self.script: list[int] = []  # status codes to answer with, in order; then 201
        self.requests: list[dict[str, Any]] = []
        self.sent: list[dict[str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                match = re.fullmatch(r"/2010-04-01/Accounts/(AC\w+)/Messages\.json", self.path)
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()).items()}
                outer.requests.append({"path": self.path, "form": form, "auth": self.headers.get("Authorization")})
                if not match:
                    return self._json(404, {"code": 20404, "message": "The requested resource was not found", "status": 404})
                status = outer.script.pop(0) if outer.script else 201
                if status != 201:
                    messages = {429: (20429, "Too Many Requests"), 400: (21211, "The 'To' number is not a valid phone number."),
                                500: (20500, "Internal Server Error"), 503: (20503, "Service Unavailable")}
                    code, message = messages.get(status, (20000 + status, "Error"))
                    return self._json(status, {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}", "status": status})
                sid = "SM" + uuid.uuid4().hex
                outer.sent.append({**form, "Sid": sid})
                return self._json(201, {
                    "sid": sid, "account_sid": match.group(1), "to": form.get("To"), "from": form.get("From"),
                    "body": form.get("Body"), "status": "queued", "num_segments": "1", "direction": "outbound-api",
                    "api_version": "2010-04-01", "date_created": "Sun, 22 Nov 2026 10:00:00 +0000",
                    "uri": f"/2010-04-01/Accounts/{match.group(1)}/Messages/{sid}.json",
                })

            def _json(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeTwilio:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()
