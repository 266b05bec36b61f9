"""Jinja2 templates (worker/review/templates) rendered on the server, and the headers every page
carries: a Content-Security-Policy that allows only this site's own scripts and styles (htmx is
a vendored file; no inline script), no caching (pages hold personal data), no framing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
_ENV = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(("html",)),
                   trim_blocks=True, lstrip_blocks=True)

HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


def _confidence(value: Any) -> str:
    return f"{float(value):.2f}" if isinstance(value, (int, float)) else "–"


def _when(value: Any) -> str:
    text = str(value or "")
    return text[:16].replace("T", " ") if text else ""


_ENV.filters["confidence"] = _confidence
_ENV.filters["when"] = _when


def page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    session = getattr(request.state, "review_session", None)
    html = _ENV.get_template(template).render(request=request, session=session, **context)
    return HTMLResponse(html, status_code=status, headers=HEADERS)
