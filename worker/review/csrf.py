"""CSRF tokens. Every form of the console carries `csrf_token`; every POST is refused (403)
unless it matches:

- after login, the session's own token (synchroniser token, stored with the session);
- on the login form, before there is a session, a random token set in a cookie scoped to
  /review/login and repeated in the form (double submit): another site can make a browser send
  the cookie but cannot read it to put it in the form.

htmx requests send the token as the `X-CSRF-Token` header (set once on <body>) or in the form.
"""

from __future__ import annotations

import hmac
import secrets

from fastapi import HTTPException, Request

LOGIN_COOKIE = "cw_review_login"
HEADER = "x-csrf-token"


def new_token() -> str:
    return secrets.token_urlsafe(32)


def same(expected: str | None, given: str | None) -> bool:
    return bool(expected) and bool(given) and hmac.compare_digest(str(expected).encode(), str(given).encode())


async def submitted(request: Request) -> str | None:
    """The token the request carries: the header, else the form field."""
    header = request.headers.get(HEADER)
    if header:
        return header
    form = await request.form()
    value = form.get("csrf_token")
    return value if isinstance(value, str) else None


async def check(request: Request, expected: str) -> None:
    if not same(expected, await submitted(request)):
        raise HTTPException(403, "missing or wrong CSRF token; reload the page and try again")
