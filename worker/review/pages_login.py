"""GET/POST /review/login and POST /review/logout."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from escalation.review_sessions import ReviewSession
from worker.review import csrf
from worker.review.render import page
from worker.review.session import COOKIE, PREFIX, Sessions, safe_next


def add_routes(router: APIRouter, sessions: Sessions) -> None:
    def login_form(request: Request, status: int = 200, error: str | None = None, username: str = "",
                   retry_after: str | None = None, next_page: str | None = None) -> Response:
        token = request.cookies.get(csrf.LOGIN_COOKIE) or csrf.new_token()
        response = page(request, "login.html", status=status, csrf_token=token, error=error, username=username,
                        next=safe_next(next_page or request.query_params.get("next")))
        response.set_cookie(csrf.LOGIN_COOKIE, token, path=f"{PREFIX}/login", httponly=True, samesite="strict",
                            secure=sessions.ctx.secure_cookies)
        if retry_after:
            response.headers["Retry-After"] = retry_after
        return response

    @router.get("/login", include_in_schema=False)
    async def login_page(request: Request) -> Response:
        if await sessions.current(request) is not None:
            return RedirectResponse(safe_next(request.query_params.get("next")), status_code=303)
        return login_form(request)

    @router.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        form = await request.form()
        if not csrf.same(request.cookies.get(csrf.LOGIN_COOKIE), form.get("csrf_token")):  # type: ignore[arg-type]
            return login_form(request, 403, "The form had expired. Please log in again.", next_page=str(form.get("next") or ""))
        username, password = str(form.get("username") or "")[:200], str(form.get("password") or "")
        next_page = str(form.get("next") or "")
        try:
            token = await sessions.login(request, username, password)
        except HTTPException as refused:
            if refused.status_code == 429:
                return login_form(request, 429, "Too many failed attempts. Wait a minute and try again.", username,
                                  retry_after=(refused.headers or {}).get("Retry-After"), next_page=next_page)
            return login_form(request, 401, "Wrong user name or password.", username, next_page=next_page)
        response = RedirectResponse(safe_next(next_page), status_code=303)
        sessions.set_cookie(response, token)
        response.delete_cookie(csrf.LOGIN_COOKIE, path=f"{PREFIX}/login")
        return response

    @router.post("/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        session: ReviewSession | None = await sessions.current(request)
        if session is not None:
            await csrf.check(request, session.csrf_token)
            await sessions.ctx.sessions().end(request.cookies.get(COOKIE, ""))
            await sessions.ctx.record(session.operator, "logout")
        response = RedirectResponse(f"{PREFIX}/login", status_code=303)
        sessions.clear_cookie(response)
        return response
