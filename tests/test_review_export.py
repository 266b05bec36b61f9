"""Exports from the review console's pages (worker/review/pages_export.py), without a browser:
what each role gets (a viewer's file is the CLI's `export --redact` with the viewer's opaque
references as ids), the list's filter, CSRF, the audit row, the HTML transcript's escaping and
self-containment, CSV formula injection, and streaming with bounded memory; on SQLite and
PostgreSQL."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import tracemalloc
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from typing import Any

import pytest
from fastapi import FastAPI

from escalation.audit import AuditEntry, AuditTrail
from escalation.operators import OperatorStore
from escalation.review_sessions import SessionStore
from extraction.redact import Redactor
from tests.support.review_seed import EMAIL, SMS_HUMAN, SMS_LOST, seed, store_url
from tests.test_review import client_for, log_in
from transcripts import review_export
from transcripts.export import export
from transcripts.review_queries import insert_conversations
from transcripts.store import ConversationRecord, Event, ExportFilter, TranscriptStore
from worker.operator_auth import OperatorAuth, hash_password
from worker.review import ReviewContext, mount_review, pages_export

MARKUP = 'Hi <script>alert("x")</script><img src=x onerror=alert(1)> & <a href="https://evil.example">click</a>'
FORMULAS = ['=HYPERLINK("https://evil.example","x")', "+1 call me", "@SUM(A1:A9)", "-2+3", "  =1+1"]
MARKED = "console-markup-1"


async def _run(url: str, fn: Any) -> Any:
    store = await TranscriptStore.open(store_url(url))  # url: as given to seed()
    try:
        return await fn(store)
    finally:
        await store.close()


def on(url: str, fn: Any) -> Any:
    return asyncio.run(_run(url, fn))


async def add_markup_conversation(store: TranscriptStore) -> None:
    """A conversation whose person typed markup and spreadsheet formulas."""
    start = datetime.now(timezone.utc) - timedelta(minutes=1)
    texts = [MARKUP, *FORMULAS]
    for i, text in enumerate(texts):
        await store.append(Event(conversation_id=MARKED, channel="console", direction="in", text=text,
                                 time=start + timedelta(seconds=2 * i)), "account_support")
        await store.append(Event(conversation_id=MARKED, channel="console", direction="out", text="Noted.",
                                 time=start + timedelta(seconds=2 * i + 1)), "account_support")


async def cli_export(store: TranscriptStore, fmt: str, redact: bool, flt: ExportFilter | None = None) -> str:
    """What `channel-worker export [--redact]` writes for the same conversations."""
    out = io.StringIO()
    await export(store, out, fmt, flt or ExportFilter(), redactor=Redactor() if redact else None)  # type: ignore[arg-type]
    return out.getvalue()


def exports_of(url: str) -> list[AuditEntry]:
    """The export rows of the audit trail, oldest first."""
    async def read(store: TranscriptStore) -> list[AuditEntry]:
        rows = await store.db.fetchall("SELECT * FROM audit WHERE kind = 'review' AND action = 'export' ORDER BY id",
                                       (), ("inputs",))
        return [AuditEntry(**r) for r in rows]

    return on(url, read)


class Parsed(HTMLParser):
    """Every tag and attribute of a page, and its text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parsed(html: str) -> Parsed:
    p = Parsed()
    p.feed(html)
    return p


@pytest.fixture
def seeded(database_url: str) -> str:
    asyncio.run(seed(database_url))
    on(database_url, add_markup_conversation)
    return database_url


def test_a_viewers_export_is_the_clis_redacted_export_with_the_viewers_references(seeded: str) -> None:
    url = seeded
    with client_for(store_url(url)) as client:
        csrf = log_in(client, "vic")
        files = {fmt: client.post("/review/export/conversations", data={"csrf_token": csrf, "format": fmt})
                 for fmt in ("jsonl", "csv")}
        for fmt, answer in files.items():
            assert answer.status_code == 200, answer.text
            assert answer.headers["content-disposition"].startswith('attachment; filename="conversations-')
            assert answer.headers["content-disposition"].endswith(f'.{fmt}"')
        mine = [json.loads(line) for line in files["jsonl"].text.splitlines()]
        cli = [json.loads(line) for line in on(url, lambda s: cli_export(s, "jsonl", redact=True)).splitlines()]
        assert len(mine) == len(cli) == 6
        # The same records but for the ids: the viewer's are references that open on the pages.
        assert [{**r, "id": None} for r in mine] == [{**r, "id": None} for r in cli]
        for record in mine:
            assert record["id"].startswith("r.")
            assert client.get(f"/review/conversations/{record['id']}").status_code == 200
        text = files["jsonl"].text + files["csv"].text
        for secret in ("+1555", "45721198", "45721199", "zoe.khan", "Ana Silva", "Maria", SMS_LOST, EMAIL):
            assert secret not in text
        assert "[number]" in text and "[name]" in text
        rows = list(csv.DictReader(io.StringIO(files["csv"].text)))
        cli_rows = list(csv.DictReader(io.StringIO(on(url, lambda s: cli_export(s, "csv", redact=True)))))
        assert [{**r, "conversation_id": ""} for r in rows] == [{**r, "conversation_id": ""} for r in cli_rows]
        assert {r["conversation_id"] for r in rows} == {r["id"] for r in mine}
        # One conversation, by the reference of the viewer's link; never by its id.
        ref = next(r["id"] for r in mine if r["channel"] == "email")
        one = client.post("/review/export/conversation", data={"csrf_token": csrf, "format": "html", "conversation": ref})
        assert one.status_code == 200 and "zoe.khan" not in one.text and "[number]" in one.text
        assert "+1555" not in one.headers["content-disposition"] and "email" in one.headers["content-disposition"]
        assert "are masked" in one.text
        by_id = client.post("/review/export/conversation", data={"csrf_token": csrf, "format": "jsonl", "conversation": SMS_LOST})
        assert by_id.status_code == 404
    audit = exports_of(url)
    assert [(a.inputs["format"], a.inputs["masked"], a.inputs["conversations"], a.detail) for a in audit] == [
        ("jsonl", True, 6, "by vic"), ("csv", True, 6, "by vic"), ("html", True, 1, "by vic")]
    assert audit[2].conversation_id == EMAIL  # a conversation's export sits on its own trail


def test_reviewers_get_the_data_as_stored_and_the_list_filter_decides_what_is_exported(seeded: str) -> None:
    url = seeded
    with client_for(store_url(url)) as client:
        csrf = log_in(client, "rita")
        page = client.get("/review/conversations?channel=sms&page=1").text
        assert 'action="/review/export/conversations?channel=sms&amp;page=1"' in page  # the list's own URL
        answer = client.post("/review/export/conversations?channel=sms&page=1",
                             data={"csrf_token": csrf, "format": "jsonl"})
        assert answer.status_code == 200
        assert answer.text == on(url, lambda s: cli_export(s, "jsonl", redact=False, flt=ExportFilter(channel="sms")))
        assert {json.loads(line)["id"] for line in answer.text.splitlines()} == {SMS_LOST, SMS_HUMAN}
        words = client.post("/review/export/conversations?q=45721198", data={"csrf_token": csrf, "format": "csv"})
        assert {r["conversation_id"] for r in csv.DictReader(io.StringIO(words.text))} == {SMS_LOST}
        escalated = client.post("/review/export/conversations?escalated=no", data={"csrf_token": csrf, "format": "jsonl"})
        assert SMS_LOST not in escalated.text and "console-bye-1" in escalated.text
        # A filter that does not parse exports nothing (never everything instead).
        bad = client.post("/review/export/conversations?since=yesterday", data={"csrf_token": csrf, "format": "jsonl"})
        assert bad.status_code == 400 and "Filter ignored" in bad.text and "Export refused" in bad.text
        assert client.post("/review/export/conversations", data={"csrf_token": csrf, "format": "xlsx"}).status_code == 422
        one = client.post("/review/export/conversation", data={"csrf_token": csrf, "format": "jsonl", "conversation": SMS_LOST})
        assert one.headers["content-disposition"] == 'attachment; filename="conversation-sms-15551230001-15550000000.jsonl"'
        assert json.loads(one.text)["id"] == SMS_LOST and "45721198" in one.text
        page = client.get(f"/review/conversations/{SMS_LOST}").text
        assert 'action="/review/export/conversation"' in page and f'name="conversation" value="{SMS_LOST}"' in page
    audit = exports_of(url)
    assert [(a.inputs["format"], a.inputs.get("filter"), a.inputs["conversations"], a.inputs["masked"]) for a in audit] == [
        ("jsonl", {"channel": "sms"}, 2, False), ("csv", {"q": "45721198"}, 1, False),
        ("jsonl", {"escalated": False}, 2, False), ("jsonl", None, 1, False)]
    assert [a.detail for a in audit] == ["by rita"] * 4 and audit[3].conversation_id == SMS_LOST


def test_exports_need_a_session_and_the_forms_csrf_token(seeded: str) -> None:
    with client_for(store_url(seeded)) as client:
        anonymous = client.post("/review/export/conversations", data={"format": "jsonl"}, follow_redirects=False)
        assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/review/login")
        csrf = log_in(client, "ada")
        assert client.post("/review/export/conversations", data={"format": "jsonl"}).status_code == 403
        assert client.post("/review/export/conversation", data={"format": "jsonl", "conversation": SMS_LOST,
                                                                "csrf_token": "x" + csrf[1:]}).status_code == 403
    assert exports_of(seeded) == []


def test_the_html_transcript_escapes_what_was_typed_and_opens_offline(seeded: str) -> None:
    with client_for(store_url(seeded)) as client:
        csrf = log_in(client, "rita")
        answer = client.post("/review/export/conversation", data={"csrf_token": csrf, "format": "html", "conversation": MARKED})
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html")
        assert "sandbox" in answer.headers["content-security-policy"]
        html = answer.text
        page = parsed(html)
        tags = [t for t, _ in page.tags]
        assert "script" not in tags and "img" not in tags and "link" not in tags and "a" not in tags
        assert not [a for _, attrs in page.tags for a in attrs if a in ("src", "href", "onerror", "action")]
        assert "style" in tags and html.count("<style>") == 1
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
        assert MARKUP in "".join(page.text)  # shown as the person typed it, as text
        assert "default-src 'none'" in html
        # A list's transcript: one section per conversation.
        every = client.post("/review/export/conversations", data={"csrf_token": csrf, "format": "html"}).text
        assert every.count('<section class="conversation">') == 6 and every.rstrip().endswith("</html>")


def test_csv_cells_a_spreadsheet_would_run_are_quoted(seeded: str) -> None:
    with client_for(store_url(seeded)) as client:
        csrf = log_in(client, "rita")
        answer = client.post("/review/export/conversations?q=call+me", data={"csrf_token": csrf, "format": "csv"})
        assert answer.status_code == 200
    rows = [r for r in csv.DictReader(io.StringIO(answer.text)) if r["direction"] == "in"]
    assert [r["text"] for r in rows] == [MARKUP, *("'" + f for f in FORMULAS)]
    for row in csv.DictReader(io.StringIO(answer.text)):
        assert not any(v.lstrip().startswith(("=", "+", "-", "@")) for v in row.values())


# --- streaming ------------------------------------------------------------------------------------

class Recorder:
    """An ASGI `send` that counts what the response sends (without keeping it: its memory is measured)."""

    def __init__(self) -> None:
        self.start: dict[str, Any] = {}
        self.sizes: list[int] = []
        self.lines = 0
        self.tail = b""
        self.read_at_body: list[int] = []
        self.read = 0  # conversations read from the database so far

    async def __call__(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.start = message
        elif message["type"] == "http.response.body" and message.get("body"):
            body = message["body"]
            self.sizes.append(len(body))
            self.lines += body.count(b"\n")
            self.tail = (self.tail + body)[-20_000:]
            self.read_at_body.append(self.read)


async def post_asgi(app: FastAPI, path: str, query: str, cookie: str, form: str, send: Recorder) -> None:
    body = form.encode()
    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": query.encode(), "root_path": "",
             "client": ("127.0.0.1", 50000), "server": ("testserver", 80),
             "headers": [(b"host", b"testserver"), (b"cookie", f"cw_review={cookie}".encode()),
                         (b"content-type", b"application/x-www-form-urlencoded"),
                         (b"content-length", str(len(body)).encode())]}
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # no disconnect: the client reads to the end
        return {"type": "http.disconnect"}

    await app(scope, receive, send)


async def test_a_large_export_streams_with_bounded_memory(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    n, words = 3000, "lorem ipsum dolor sit amet " * 60  # ~1.6 kB a turn
    store = await TranscriptStore.open(store_url(database_url))
    try:
        start = datetime(2026, 1, 1, tzinfo=timezone.utc)
        rows = []
        for i in range(n):
            at = (start + timedelta(minutes=i)).isoformat()
            cid = f"console-bulk-{i:05d}"
            record = ConversationRecord(id=cid, worker="w", channel="console", started_at=at, updated_at=at,
                                        outcome="completed", escalation=None, fields={}, turns=1)
            events = [Event(conversation_id=cid, channel="console", direction="in", text=f"{i} {words}", time=at),
                      Event(conversation_id=cid, channel="console", direction="out", text=words, time=at)]
            rows.append((record, events))
        await insert_conversations(store, rows)
        del rows
        await OperatorStore(store.db).add_user("ada", "admin", hash_password("correct horse battery staple"))
        cookie, csrf = await SessionStore(store.db).create("ada", timedelta(hours=1))
        app = FastAPI()
        mount_review(app, ReviewContext(store=lambda: store, auth=OperatorAuth(lambda: OperatorStore(store.db)), worker="w"))
        real = review_export.iter_matching
        current: list[Recorder] = []

        async def counted(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            async for item in real(*args, **kwargs):
                current[-1].read += 1
                yield item

        monkeypatch.setattr(review_export, "iter_matching", counted)

        async def export_all(query: str) -> tuple[Recorder, int]:
            current.append(Recorder())
            tracemalloc.start()
            try:
                await post_asgi(app, "/review/export/conversations", query, cookie, f"csrf_token={csrf}&format=jsonl",
                                current[-1])
                return current[-1], tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()

        warm, _ = await export_all("until=2026-01-01")  # warm up: templates, routes and imports are not the export's memory
        first_day, first_peak = await export_all("until=2026-01-02")
        send, peak = await export_all("")
        assert 1400 < first_day.lines < 1500  # the first day (the list's own `until`)
        headers = dict(send.start["headers"])
        assert send.start["status"] == 200 and b"content-length" not in headers
        assert headers[b"content-disposition"].startswith(b'attachment; filename="conversations-')
        total = sum(send.sizes)
        last = send.tail.decode().splitlines()[-1]
        assert send.lines == n and json.loads(last)["id"] == f"console-bulk-{n - 1:05d}"
        # Streamed: many pieces, the first sent long before the last conversation was read ...
        assert len(send.sizes) > 20 and send.read_at_body[0] < n / 4
        assert max(send.sizes) < 4 * pages_export.CHUNK
        # ... and memory does not grow with the export: twice the conversations, about the same peak,
        # a fraction of the file's size.
        assert total > 8_000_000 and peak < total / 2 and peak < 1.25 * first_peak, (peak, first_peak, total)
        audit = [a for a in await AuditTrail(store.db).for_conversation("") if a.action == "export"]
        assert [(a.inputs["conversations"], a.detail) for a in audit] == [(warm.lines, "by ada"), (first_day.lines, "by ada"), (n, "by ada")]
    finally:
        await store.close()
