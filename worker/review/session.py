"""Who is looking: the session cookie, role checks, login and logout.

The cookie (`cw_review`) is HttpOnly, SameSite=Lax, path /review, Secure when PUBLIC_BASE_URL
is https; it holds a random token whose hash names a row of `review_sessions`
(escalation/review_sessions.py says why server-side). A page asked for without a live session
answers 303 to the login form, with the page to come back to. Passwords are checked exactly as
HTTP Basic is (worker/operator_auth.py), and through the same failure limiter, so guesses on the
form and on Basic count together.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from urllib.parse import quote

from fastapi import HTTPException, Request

from escalation.operators import Role, role_allows
from escalation.review_sessions import ReviewSession
from worker.operator_auth import LimitReached
from worker.review import csrf
from worker.review.context import ReviewContext

COOKIE = "cw_review"
PREFIX = "/review"


def safe_next(target: str | None) -> str:
    """Only a path of the console itself: never another host (//evil.example, /\\evil.example)."""
    if target and target.startswith(PREFIX + "/") and not target.startswith(("//", "/\\")) and "\\" not in target \
            and not target.startswith(PREFIX + "/login"):
        return target
    return PREFIX + "/conversations"


def to_login(request: Request) -> HTTPException:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return HTTPException(303, "log in first", headers={"Location": f"{PREFIX}/login?next={quote(here, safe='')}"})


class Sessions:
    def __init__(self, ctx: ReviewContext):
        self.ctx = ctx

    async def current(self, request: Request) -> ReviewSession | None:
        token = request.cookies.get(COOKIE)
        return await self.ctx.sessions().get(token) if token else None

    def require(self, role: Role, post: bool = False) -> Callable[[Request], Awaitable[ReviewSession]]:
        """A dependency: the live session with at least `role`; POSTs also need the session's CSRF token."""
        async def dependency(request: Request) -> ReviewSession:
            session = await self.current(request)
            if session is None:
                raise to_login(request)
            if post:
                await csrf.check(request, session.csrf_token)
            if not role_allows(session.role, role):
                raise HTTPException(403, f"this needs the {role} role; {session.operator} is {session.role}")
            request.state.review_session = session
            return session

        return dependency

    async def login(self, request: Request, username: str, password: str) -> str:
        """A new session (its cookie token) for good credentials. Raises 429 while limited, 401 when wrong."""
        try:
            operator = await self.ctx.auth.check_password(request.client.host if request.client else "unknown",
                                                          username, password)
        except LimitReached as limited:
            raise HTTPException(429, "too many failed attempts; try again later",
                                headers={"Retry-After": str(math.ceil(limited.retry_after))}) from None
        if operator is None:
            raise HTTPException(401, "wrong user name or password")
        token, _ = await self.ctx.sessions().create(operator.name, self.ctx.session_lifetime)
        await self.ctx.record(operator.name, "login")
        return token

    def set_cookie(self, response, token: str) -> None:  # noqa: ANN001
        response.set_cookie(COOKIE, token, max_age=int(self.ctx.session_lifetime.total_seconds()), path=PREFIX,
                            httponly=True, samesite="lax", secure=self.ctx.secure_cookies)

    def clear_cookie(self, response) -> None:  # noqa: ANN001
        response.delete_cookie(COOKIE, path=PREFIX, httponly=True, samesite="lax", secure=self.ctx.secure_cookies)


