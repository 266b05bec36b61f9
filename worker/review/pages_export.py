"""POST /review/export/conversations (every conversation the list's filter matches, the filter in
the query string as on the list's URL) and POST /review/export/conversation (one conversation):
JSON lines, CSV, or one self-contained HTML transcript.

The file is written by the CLI's own exporter (`transcripts.export.export`, as `channel-worker
export`): the same records, the same CSV columns with formula triggers (= + - @) quoted, and for
a viewer the same redactor (`extraction.redact.Redactor`, as `export --redact`). A viewer may
export what a viewer may see: conversations masked, the audit rows masked as well, and ids
replaced by the opaque references of the viewer's links (worker/review/refs.py: they open the
conversation on the pages for the rest of that session, and reveal nothing after it). Reviewers
and admins get everything as stored. The HTML transcript is rendered from the JSON lines
record (so it holds exactly what the jsonl export holds), escaped by Jinja2, with its CSS inline,
no script and no link to anywhere: it opens offline.

Exports stream: a producer task runs the exporter over the conversations batch by batch
(transcripts/review_export.py) into a buffer handed on every CHUNK characters through a short
queue, so memory holds one batch and a few chunks however many conversations match, and a slow
client slows the reading of the database instead of filling memory. Every export is an audit row
(kind `review`, action `export`): who, the format, the filter or the conversation, whether it was
masked, and how many conversations matched when it began (conversations started later are not
added to it). The row is written before the first byte is sent.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timezone
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse
from jinja2 import Environment, FileSystemLoader

from escalation.operators import role_allows
from escalation.review_sessions import ReviewSession
from transcripts import review_export
from transcripts.export import export
from transcripts.review_queries import ReviewFilter
from transcripts.store import ConversationRecord, Event, ExportFilter
from worker.review import refs
from worker.review.pages_conversations import parse_filter
from worker.review.render import HERE, page
from worker.review.session import Sessions

log = logging.getLogger(__name__)

FORMATS: dict[str, str] = {
    "jsonl": "application/x-ndjson; charset=utf-8",
    "csv": "text/csv; charset=utf-8",
    "html": "text/html; charset=utf-8",
}
CHUNK = 64 * 1024  # characters handed to the response at a time
QUEUE = 4  # chunks that may wait for a slow client
# The list's paging and order are not part of what is exported (every page, oldest first).
_NOT_FILTERS = {"page", "per_page", "sort", "order"}
# The transcript file: its own inline CSS only, nothing fetched, nothing run, even if opened from the site.
_FILE_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; sandbox"

_ENV = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True, trim_blocks=True, lstrip_blocks=True)
_END = object()


class ViewerRedaction:
    """The CLI's redactor (`export --redact`) for the texts and values, and the viewer's opaque
    references (refs.py) for the conversation ids."""

    def __init__(self, redactor: Any, ref_key: str):
        self.redactor = redactor
        self.ref_key = ref_key

    def conversation(self, person_texts: Any, fields: dict[str, Any] | None) -> Any:
        return self.redactor.conversation(person_texts, fields)

    def conversation_id(self, conversation_id: str) -> str:
        return refs.seal(self.ref_key, conversation_id)


class _Buffer:
    """What the exporter writes into (a text file's `write`), handed on in chunks."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.size = 0

    def write(self, text: str) -> int:
        self.parts.append(text)
        self.size += len(text)
        return len(text)

    def take(self) -> str:
        text = "".join(self.parts)
        self.parts.clear()
        self.size = 0
        return text


class _HtmlWriter:
    """Takes the exporter's JSON lines and writes each conversation as a section of the transcript."""

    def __init__(self, out: _Buffer):
        self.out = out
        self.pending = ""
        self.macros = _ENV.get_template("export_transcript.html").module

    def write(self, text: str) -> int:
        self.pending += text
        while "\n" in self.pending:
            line, self.pending = self.pending.split("\n", 1)
            if line.strip():
                self.out.write(str(self.macros.conversation(_view(json.loads(line)))))  # type: ignore[attr-defined]
        return len(text)


class _Source:
    """What the exporter reads from (a `TranscriptStore`'s shape): the audit rows through the
    real database, the conversations from `rows`; between two conversations the buffer is handed
    on when it is full, waiting while the client is behind."""

    def __init__(self, db: Any, rows: AsyncIterator[tuple[ConversationRecord, list[Event]]],
                 flush: Callable[[], Any]):
        self.db = db
        self.rows = rows
        self.flush = flush

    async def iter_conversations(self, flt: ExportFilter, batch: int = 500) -> AsyncIterator[tuple[ConversationRecord, list[Event]]]:
        async for item in self.rows:
            yield item
            await self.flush()  # the exporter has written `item` by the time it asks for the next


def stream(db: Any, rows: AsyncIterator[tuple[ConversationRecord, list[Event]]], fmt: str, redactor: Any,
           head: dict[str, Any]) -> AsyncIterator[bytes]:
    """The export's bytes, produced as they are sent."""
    queue: asyncio.Queue[Any] = asyncio.Queue(QUEUE)
    buffer = _Buffer()

    async def flush(force: bool = False) -> None:
        if buffer.size >= CHUNK or (force and buffer.size):
            await queue.put(buffer.take())

    async def produce() -> None:
        try:
            macros = _ENV.get_template("export_transcript.html").module if fmt == "html" else None
            if macros is not None:
                buffer.write(str(macros.head(**head)))  # type: ignore[attr-defined]
            target = _HtmlWriter(buffer) if macros is not None else buffer
            n = await export(_Source(db, rows, flush), target, "jsonl" if fmt == "html" else fmt,  # type: ignore[arg-type]
                             ExportFilter(), redactor=redactor)
            if macros is not None:
                buffer.write(str(macros.foot(n=n)))  # type: ignore[attr-defined]
            await flush(force=True)
            await queue.put(_END)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - handed to the response, which ends short
            log.exception("export failed")
            await queue.put(exc)

    async def body() -> AsyncIterator[bytes]:
        task = asyncio.create_task(produce())
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    return
                if isinstance(item, Exception):
                    raise item
                yield item.encode("utf-8")
        finally:
            task.cancel()  # the client went away: stop reading the database

    return body()


def _view(record: dict[str, Any]) -> dict[str, Any]:
    """One conversation of the HTML transcript, from its JSON lines record."""
    fields = []
    for name, value in (record.get("fields") or {}).items():
        if isinstance(value, dict):
            fields.append({"field": name, "value": value.get("value"), "confidence": value.get("confidence"),
                           "turn": value.get("turn")})
        else:
            fields.append({"field": name, "value": value, "confidence": None, "turn": None})
    turns = []
    for t in record.get("turns") or []:
        meta = t.get("metadata") or {}
        by = meta.get("by") if meta.get("human") else None
        speaker = "Person" if t.get("role") == "user" else f"{by} (a person, from the queue)" if by else \
            "Worker" if t.get("role") == "worker" else "System"
        turns.append({**t, "speaker": speaker, "subject": meta.get("subject") if isinstance(meta.get("subject"), str) else None})
    return {**record, "field_rows": fields, "turn_rows": turns}


def _when(value: Any) -> str:
    text = str(value or "")
    return text[:19].replace("T", " ") if text else ""


def _value(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


_ENV.filters["when"] = _when
_ENV.filters["value"] = _value


def _filename(stem: str, fmt: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-.")[:80] or "export"
    return f"{safe}.{fmt}"


def _response(body: AsyncIterator[bytes], fmt: str, filename: str) -> StreamingResponse:
    headers = {"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store",
               "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin", "X-Frame-Options": "DENY",
               "Content-Security-Policy": _FILE_CSP}
    return StreamingResponse(body, media_type=FORMATS[fmt], headers=headers)


def described(f: ReviewFilter) -> dict[str, Any]:
    """The filter as the audit row and the transcript's heading give it (what narrows the export)."""
    given = f.model_dump(exclude_defaults=True, mode="json")
    if not f.low_confidence:
        given.pop("below", None)
    return {k: v for k, v in given.items() if k not in _NOT_FILTERS}


def add_routes(router: APIRouter, sessions: Sessions) -> None:
    ctx = sessions.ctx
    viewer_post = Depends(sessions.require("viewer", post=True))

    def redaction(session: ReviewSession) -> ViewerRedaction | None:
        return None if role_allows(session.role, "reviewer") else ViewerRedaction(ctx.redactor, session.ref_key)

    def refused(request: Request, status: int, message: str) -> Response:
        return page(request, "error.html", status=status, title="Export refused", message=message)

    @router.post("/export/conversations", include_in_schema=False)
    async def export_list(request: Request, session: ReviewSession = viewer_post) -> Response:
        fmt = str((await request.form()).get("format") or "")
        if fmt not in FORMATS:
            return refused(request, 422, "Choose JSON lines, CSV or HTML.")
        f, problem = parse_filter(dict(request.query_params))
        if problem:  # never the whole database instead of a filter that did not parse
            return refused(request, 400, f"{problem}. Fix the filter on the list and export again.")
        started = datetime.now(timezone.utc)
        store = ctx.store()
        n = await review_export.count_matching(store, f, started)
        masked = redaction(session)
        filters = described(f)
        await ctx.record(session.operator, "export", inputs={
            "format": fmt, "filter": filters, "conversations": n, "masked": masked is not None, "role": session.role})
        rows = review_export.iter_matching(store, f, until=started)
        head = {"title": "Conversations", "operator": session.operator, "role": session.role, "at": started,
                "masked": masked is not None, "filters": filters, "count": n}
        return _response(stream(store.db, rows, fmt, masked, head), fmt,
                         _filename(f"conversations-{started:%Y%m%d-%H%M%S}", fmt))

    @router.post("/export/conversation", include_in_schema=False)
    async def export_one(request: Request, session: ReviewSession = viewer_post) -> Response:
        form = await request.form()
        fmt = str(form.get("format") or "")
        if fmt not in FORMATS:
            return refused(request, 422, "Choose JSON lines, CSV or HTML.")
        given = str(form.get("conversation") or "")
        masked = redaction(session)
        if given.startswith(refs.PREFIX):
            conversation_id = refs.open_ref(session.ref_key, given) or ""
        else:
            conversation_id = "" if masked else given  # viewers by reference only, as on the pages
        store = ctx.store()
        record = await store.conversation(conversation_id) if conversation_id else None
        if record is None:
            return page(request, "error.html", status=404, title="Not found",
                        message="There is no such conversation (it may have been purged).")
        started = datetime.now(timezone.utc)
        await ctx.record(session.operator, "export", conversation_id, record.worker, inputs={
            "format": fmt, "conversations": 1, "masked": masked is not None, "role": session.role})
        shown = ctx.redactor.conversation_id(conversation_id) if masked else conversation_id
        head = {"title": "Conversation", "operator": session.operator, "role": session.role, "at": started,
                "masked": masked is not None, "filters": None, "count": 1}
        rows = review_export.one(store, conversation_id)
        return _response(stream(store.db, rows, fmt, masked, head), fmt, _filename(f"conversation-{shown}", fmt))
