"""A call's recording, and values the worker missed, on the conversation page.

- GET /review/recordings/{conversation id}: the call's WAV, for reviewers and admins only (a
  voice is personal data: viewers get 403). The file is the one stored with the call (the `call
  ended` event's `recording`), served only if it is `<CallSid>.wav` of that call inside
  VOICE_RECORDINGS_DIR (worker/review/calls.py); nothing in the request names a path. HTTP Range
  requests are answered with 206 (Starlette's FileResponse), so the player can seek.
- POST /review/missed: a reviewer labels a value the person gave in a turn that the worker did
  not store: the words (selected on the page, or typed), the field, the right value. Appended to
  field_labels (kind `missed`) and audited (`label_missed`).
The page's script (seek the player from a turn's link, fill the missed-value form from selected
words) is static/conversation.js, served with the other static files (worker/review/__init__.py):
no data in it, and the page works without it.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import FileResponse, RedirectResponse, Response

from escalation.review_sessions import ReviewSession
from transcripts.labels import fields_seen, missed_value
from transcripts.review_queries import conversation_detail
from worker.review import calls, timeline
from worker.review.context import ReviewContext
from worker.review.render import page
from worker.review.session import PREFIX, Sessions

FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_FIELDS_SECONDS = 60.0


def recordings_dir() -> str | None:
    """VOICE_RECORDINGS_DIR, as `serve` reads it (empty counts as unset)."""
    return os.environ.get("VOICE_RECORDINGS_DIR") or None


def recording_url(conversation_id: str) -> str:
    from urllib.parse import quote

    return f"{PREFIX}/recordings/{quote(conversation_id, safe=':@+')}"


async def page_extras(ctx: ReviewContext, view: timeline.Timeline, masked: bool) -> dict[str, Any]:
    """What the conversation page adds for calls and missed values: the player's source (or why
    there is none), and the field names offered for a missed value."""
    extras: dict[str, Any] = {"recording_src": None, "recording_note": None, "field_names": []}
    if view.call is not None:
        if masked:
            extras["recording_note"] = "The recording is for reviewers and admins (a voice is personal data)."
        elif calls.recording_file(view.conversation_id, view.call.recording, recordings_dir()) is not None:
            extras["recording_src"] = recording_url(view.conversation_id)
        elif view.call.recording:
            extras["recording_note"] = "The recording is not available here (not in VOICE_RECORDINGS_DIR, or deleted)."
        else:
            extras["recording_note"] = "This call was not recorded."
    if not masked:
        extras["field_names"] = await _field_names(ctx, view)
    return extras


_seen_fields: dict[tuple[int, str], tuple[float, set[str]]] = {}


async def _field_names(ctx: ReviewContext, view: timeline.Timeline) -> list[str]:
    """The worker's fields: from its spec under `serve`, else the fields its recent conversations
    hold (read at most once a minute), and this conversation's."""
    names = {v.field for v in view.values}
    engine = ctx.engine() if ctx.engine is not None else None
    spec = getattr(engine, "spec", None)
    if spec is not None:
        names |= {f.name for f in spec.fields}
    else:
        worker = str(view.record.get("worker") or "")
        cached = _seen_fields.get((id(ctx), worker))
        if cached is None or time.monotonic() - cached[0] > _FIELDS_SECONDS:
            cached = _seen_fields[(id(ctx), worker)] = (time.monotonic(), await fields_seen(ctx.store(), worker))
        names |= cached[1]
    return sorted(names)


def find_span(text: str, words: str, start: Any, end: Any) -> tuple[int, int] | None:
    """Where `words` are in `text`: the span the page sent if it holds exactly those words, else
    their first occurrence (case aside)."""
    try:
        a, b = int(str(start)), int(str(end))
        if 0 <= a < b <= len(text) and text[a:b] == words:
            return a, b
    except (TypeError, ValueError):
        pass
    at = text.lower().find(words.lower())
    return (at, at + len(words)) if words and at >= 0 else None


def add_routes(router: APIRouter, sessions: Sessions) -> None:
    ctx = sessions.ctx
    reviewer = Depends(sessions.require("reviewer"))
    reviewer_post = Depends(sessions.require("reviewer", post=True))

    @router.get("/recordings/{conversation_id:path}", include_in_schema=False)
    async def recording(conversation_id: str, session: ReviewSession = reviewer) -> Response:
        detail = await conversation_detail(ctx.store(), conversation_id)
        if detail is None or detail.conversation.channel != "voice":
            raise HTTPException(404, "no such call")
        call = calls.call_of(detail.events)
        path: Path | None = calls.recording_file(conversation_id, call.recording, recordings_dir())
        if path is None:
            raise HTTPException(404, "this call has no recording here")
        return FileResponse(path, media_type="audio/wav", content_disposition_type="inline",
                            headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})

    @router.post("/missed", include_in_schema=False)
    async def missed(request: Request, session: ReviewSession = reviewer_post) -> Response:
        form = await request.form()
        conversation_id = str(form.get("conversation_id") or "")
        field_name = str(form.get("field") or "").strip()
        words = str(form.get("words") or "").strip()[:300]
        value = str(form.get("value") or "").strip()[:500] or words
        if not FIELD_NAME.match(field_name):
            raise HTTPException(422, "give the field's name (letters, digits, _)")
        if not words:
            raise HTTPException(422, "select or type the person's words that hold the value")
        try:
            turn = int(str(form.get("turn") or ""))
        except ValueError:
            raise HTTPException(422, "which turn?") from None
        detail = await conversation_detail(ctx.store(), conversation_id)
        if detail is None:
            raise HTTPException(404, "no such conversation")
        said = [e.text for e in detail.events if e.direction == "in" and e.text is not None]
        if not 1 <= turn <= len(said):
            raise HTTPException(422, "no such turn of the person's")
        span = find_span(said[turn - 1], words, form.get("span_start"), form.get("span_end"))
        if span is None:
            raise HTTPException(422, f"the person did not say {words!r} in turn {turn}")
        saved = await ctx.labels().add(missed_value(conversation_id, field_name, turn, value, span, session.operator))
        await ctx.record(session.operator, "label_missed", conversation_id, detail.conversation.worker,
                         inputs={"field": field_name, "turn": turn, "value": value, "span": list(span)})
        if request.headers.get("hx-request"):
            labels = await ctx.labels().missed(conversation_id)
            view = timeline.build(detail.conversation, detail.events, [], {}, None, missed=labels)
            return page(request, "_missed.html", t=view, saved=saved, can_label=True)
        from urllib.parse import quote

        return RedirectResponse(f"{PREFIX}/conversations/{quote(conversation_id, safe=':@+')}#missed", status_code=303)
