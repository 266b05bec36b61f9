"""The admin pages under /review/admin (admin role only; reviewers and viewers get 403):

- users: list, add (a role and a password under the rules of `users add`: 12 to 1024 characters,
  typed twice), change the role, set a new password, remove. Every change ends that user's review
  sessions in the same transaction (as `users add --replace` does), and the last admin can be
  neither demoted nor removed (escalation/operators.py checks it inside the transaction);
- API tokens: list (never the secret: only its hash is stored), issue (the token is shown once, on
  the page that issued it), revoke;
- retention: the policy (RETENTION_DAYS of this process), what purges have removed so far, and a
  purge now (transcripts/retention.py) behind a preview of what it would delete and a confirmation.

Every form carries the session's CSRF token; every change is an audit row (kind `review`, action
user_add, user_role, user_password, user_remove, token_issue, token_revoke, purge) under the
logged-in name, committed with the change where the change is one transaction. Refusals (a
wrong token, a missing role) and errors (a short password, the last admin) are pages a person
can read, not JSON. Messages after a change are chosen from fixed texts by a code in the URL,
never taken from it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from escalation.audit import AuditEntry, AuditTrail
from escalation.operators import ROLES, LastAdmin, OperatorError, OperatorStore, check_name, role_allows, valid_name
from escalation.review_sessions import ReviewSession
from storage.db import Statement
from transcripts.retention import RetentionSettings, purge, purged_counts
from worker.operator_auth import MIN_PASSWORD_LENGTH, check_new_password, hash_password, new_token
from worker.review import csrf
from worker.review.render import page
from worker.review.session import PREFIX, Sessions, to_login

ADMIN = f"{PREFIX}/admin"
MAX_DAYS = 36_500
_DONE = {
    "added": "User {name} added.", "role": "User {name} now has the role {role}; their sessions ended.",
    "password": "User {name} has a new password; their sessions ended.", "removed": "User {name} removed; their sessions ended.",
    "revoked": "Token {name} revoked: it stops working now.",
}


def _retention_policy() -> tuple[RetentionSettings | None, str | None]:
    """RETENTION_DAYS and RETENTION_INTERVAL_SECONDS as this process read them (serve reads the
    same environment at start); an invalid value is reported, not raised."""
    from worker.settings import RetentionEnv

    try:
        env = RetentionEnv()
        return RetentionSettings(days=RetentionSettings.parse_days(env.retention_days),
                                 interval_seconds=env.retention_interval_seconds), None
    except ValueError as exc:
        return None, str(exc)


def add_routes(router: APIRouter, sessions: Sessions) -> None:
    ctx = sessions.ctx

    async def admin(request: Request, post: bool = False) -> ReviewSession | Response:
        """The admin's session, or the page that says why not (403: a wrong CSRF token, another role)."""
        session = await sessions.current(request)
        if session is None:
            raise to_login(request)
        request.state.review_session = session
        if post and not csrf.same(session.csrf_token, await csrf.submitted(request)):
            return page(request, "error.html", status=403, title="Form refused",
                        message="The form had expired or did not come from this console (missing or wrong CSRF "
                                "token). Reload the page and try again.")
        if not role_allows(session.role, "admin"):
            return page(request, "error.html", status=403, title="Admins only",
                        message=f"The admin pages are for admins; {session.operator} is a {session.role}.")
        return session

    def operators() -> OperatorStore:
        return OperatorStore(ctx.store().db)

    def audit(session: ReviewSession, action: str, **inputs: Any) -> list[Statement]:
        return AuditTrail.statements([AuditEntry(conversation_id="", worker=ctx.worker, kind="review", action=action,
                                                 inputs=inputs, detail=f"by {session.operator}")])

    def done(code: str, name: str, **more: str) -> Response:
        query = "&".join(f"{k}={v}" for k, v in {"done": code, "name": name, **more}.items())
        return RedirectResponse(f"{ADMIN}/users?{query}", status_code=303)

    # --- users ---------------------------------------------------------------------------------

    async def users_page(request: Request, status: int = 200, error: str | None = None,
                         form: dict[str, str] | None = None) -> Response:
        q = request.query_params
        message = None
        code, name, role = q.get("done", ""), q.get("name", ""), q.get("role", "")
        if code in _DONE and valid_name(name) and (role in ROLES or code != "role"):
            message = _DONE[code].format(name=name, role=role)
        return page(request, "admin_users.html", status=status, active="admin", tab="users",
                    users=await operators().users(), roles=ROLES, message=message, error=error, form=form or {},
                    min_password=MIN_PASSWORD_LENGTH)

    def new_password(form: Any) -> str:
        password, again = str(form.get("password") or ""), str(form.get("password_again") or "")
        check_new_password(password)  # ValueError: the CLI's rule, in its words
        if password != again:
            raise ValueError("the two passwords differ")
        return password

    def named(name: str) -> str:
        if not valid_name(name):
            raise OperatorError(f"no user {name[:64]}")
        return name

    @router.get("/admin", include_in_schema=False)
    async def admin_home(request: Request) -> Response:
        who = await admin(request)
        return who if isinstance(who, Response) else RedirectResponse(f"{ADMIN}/users", status_code=303)

    @router.get("/admin/users", include_in_schema=False)
    async def users(request: Request) -> Response:
        who = await admin(request)
        return who if isinstance(who, Response) else await users_page(request)

    @router.post("/admin/users", include_in_schema=False)
    async def add_user(request: Request) -> Response:
        who = await admin(request, post=True)
        if isinstance(who, Response):
            return who
        form = await request.form()
        name, role = str(form.get("name") or "").strip(), str(form.get("role") or "")
        kept = {"name": name[:64], "role": role}
        try:
            check_name(name, "user name")
            if role not in ROLES:
                raise OperatorError(f"choose a role: {', '.join(ROLES)}")
            password = new_password(form)
            hashed = await asyncio.to_thread(hash_password, password)  # scrypt: off the event loop
            await operators().create_user(name, role, hashed,  # type: ignore[arg-type]
                                          also=audit(who, "user_add", name=name, role=role))
        except OperatorError as exc:
            return await users_page(request, 409 if "exists" in str(exc) else 422, f"Not added: {exc}.", kept)
        except ValueError as exc:
            return await users_page(request, 422, f"Not added: {exc}.", kept)
        return done("added", name)

    @router.post("/admin/users/{name}/role", include_in_schema=False)
    async def change_role(request: Request, name: str) -> Response:
        who = await admin(request, post=True)
        if isinstance(who, Response):
            return who
        role = str((await request.form()).get("role") or "")
        if role not in ROLES:
            return await users_page(request, 422, f"Role not changed: choose one of {', '.join(ROLES)}.")
        try:
            await operators().change_user(named(name), role=role,  # type: ignore[arg-type]
                                          also=audit(who, "user_role", name=name, role=role))
        except LastAdmin as exc:
            return await users_page(request, 409, f"Role not changed: {exc}.")
        except OperatorError as exc:
            return await users_page(request, 404, f"Role not changed: {exc}.")
        return _after_own_change(who, name) or done("role", name, role=role)

    @router.post("/admin/users/{name}/password", include_in_schema=False)
    async def reset_password(request: Request, name: str) -> Response:
        who = await admin(request, post=True)
        if isinstance(who, Response):
            return who
        try:
            password = new_password(await request.form())
            hashed = await asyncio.to_thread(hash_password, password)
            await operators().change_user(named(name), password_hash=hashed, also=audit(who, "user_password", name=name))
        except OperatorError as exc:
            return await users_page(request, 404, f"Password not changed: {exc}.")
        except ValueError as exc:
            return await users_page(request, 422, f"Password of {name} not changed: {exc}.")
        return _after_own_change(who, name) or done("password", name)

    @router.get("/admin/users/{name}/remove", include_in_schema=False)
    async def remove_form(request: Request, name: str) -> Response:
        who = await admin(request)
        if isinstance(who, Response):
            return who
        known = {u.name: u for u in await operators().users()}
        if name not in known:
            return await users_page(request, 404, f"There is no user {name[:64]}.")
        return page(request, "admin_confirm.html", active="admin", tab="users", title=f"Remove {name}?",
                    action=f"{ADMIN}/users/{name}/remove", button=f"Remove {name}", back=f"{ADMIN}/users",
                    text=f"{name} ({known[name].role}) will no longer be able to log in, and their open sessions end "
                         "now. Their name stays in the audit trail.")

    @router.post("/admin/users/{name}/remove", include_in_schema=False)
    async def remove_user(request: Request, name: str) -> Response:
        who = await admin(request, post=True)
        if isinstance(who, Response):
            return who
        try:
            await operators().remove_user(named(name), keep_an_admin=True, also=audit(who, "user_remove", name=name))
        except LastAdmin as exc:
            return await users_page(request, 409, f"Not removed: {exc}.")
        except OperatorError as exc:
            return await users_page(request, 404, f"Not removed: {exc}.")
        return _after_own_change(who, name) or done("removed", name)

    def _after_own_change(who: ReviewSession, name: str) -> Response | None:
        """An admin who changed their own account has just ended their own session: to the login form."""
        return RedirectResponse(f"{PREFIX}/login", status_code=303) if name == who.operator else None

    # --- API tokens ----------------------------------------------------------------------------

    async def tokens_page(request: Request, status: int = 200, error: str | None = None, issued: Any = None,
                          form: dict[str, str] | None = None) -> Response:
        q = request.query_params
        name = q.get("name", "")
        message = _DONE["revoked"].format(name=name) if q.get("done") == "revoked" and valid_name(name) else None
        return page(request, "admin_tokens.html", status=status, active="admin", tab="tokens",
                    tokens=await operators().tokens(), roles=ROLES, message=message, error=error, issued=issued,
                    form=form or {})

    @router.get("/admin/tokens", include_in_schema=False)
    async def tokens(request: Request) -> Response:
        who = await admin(request)
        return who if isinstance(who, Response) else await tokens_page(request)

    @router.post("/admin/tokens", include_in_schema=False)
    async def issue_token(request: Request) -> Response:
        who = await admin(request, post=True)
        if isinstance(who, Response):
            return who
        form = await request.form()
        name, role = str(form.get("name") or "").strip(), str(form.get("role") or "")
        token = new_token()
        try:
            if role not in ROLES:
                raise OperatorError(f"choose a role: {', '.join(ROLES)}")
            await operators().add_token(token.id, name, role, token.secret_hash,  # type: ignore[arg-type]
                                        also=audit(who, "token_issue", name=name, role=role, id=token.id))
        except OperatorError as exc:
            return await tokens_page(request, 409 if "exists" in str(exc) else 422, f"Not issued: {exc}.",
                                     form={"name": name[:64], "role": role})
        # Shown on this page only (no redirect: it is never in a URL, and the page is not cached).
        return await tokens_page(request, issued={"name": name, "role": role, "token": token.token})

    @router.get("/admin/tokens/{name}/revoke", include_in_schema=False)
    async def revoke_form(request: Request, name: str) -> Response:
        who = await admin(request)
        if isinstance(who, Response):
            return who
        if not valid_name(name) or name not in {t.name for t in await operators().tokens()}:
            return await tokens_page(request, 404, f"There is no token named {name[:64]}.")
        return page(request, "admin_confirm.html", active="admin", tab="tokens", title=f"Revoke the token {name}?",
                    action=f"{ADMIN}/tokens/{name}/revoke", button=f"Revoke {name}", back=f"{ADMIN}/tokens",
                    text=f"Programs using the token {name} are refused from now on. This cannot be undone; "
                         "issue a new token if they still need one.")

    @router.post("/admin/tokens/{name}/revoke", include_in_schema=False)
    async def revoke_token(request: Request, name: str) -> Response:
        who = await admin(request, post=True)
        if isinstance(who, Response):
            return who
        try:
            if not valid_name(name):
                raise OperatorError(f"no token named {name[:64]}")
            await operators().revoke_token(name, also=audit(who, "token_revoke", name=name))
        except OperatorError as exc:
            return await tokens_page(request, 404, f"Not revoked: {exc}.")
        return RedirectResponse(f"{ADMIN}/tokens?done=revoked&name={name}", status_code=303)

    # --- retention -----------------------------------------------------------------------------

    async def retention_page(request: Request, status: int = 200, error: str | None = None) -> Response:
        policy, problem = _retention_policy()
        counts = await purged_counts(ctx.store().db)
        purged = {"conversations": sum(c.conversations for c in counts), "events": sum(c.events for c in counts),
                  "last": max((c.last_purged_at for c in counts), default=None), "days": len({c.day for c in counts})}
        q = request.query_params
        message = None
        if q.get("done") == "purged" and q.get("n", "").isdigit():
            message = f"Purged {int(q['n'])} conversation(s) and everything of theirs."
        return page(request, "admin_retention.html", status=status, active="admin", tab="retention", policy=policy,
                    problem=problem, purged=purged, alone=ctx.engine is None, error=error, message=message,
                    workers=(await ctx.facets()).get("worker", []),
                    days=(policy.days if policy and policy.days else ""))

    def purge_params(source: Any) -> tuple[int, str | None]:
        raw = str(source.get("days") or "").strip()
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_DAYS:
            raise ValueError(f"give the number of days without activity, a whole number from 1 to {MAX_DAYS}")
        worker = str(source.get("worker") or "").strip() or None
        return int(raw), worker

    @router.get("/admin/retention", include_in_schema=False)
    async def retention(request: Request) -> Response:
        who = await admin(request)
        return who if isinstance(who, Response) else await retention_page(request)

    @router.get("/admin/retention/purge", include_in_schema=False)
    async def purge_form(request: Request) -> Response:
        who = await admin(request)
        if isinstance(who, Response):
            return who
        try:
            days, worker = purge_params(request.query_params)
        except ValueError as exc:
            return await retention_page(request, 422, f"No purge: {exc}.")
        return await preview(request, days, worker)

    async def preview(request: Request, days: int, worker: str | None, status: int = 200,
                      error: str | None = None) -> Response:
        """What a purge now would delete (a dry run), and the form that confirms it."""
        report = await purge(ctx.store().db, days, worker=worker, dry_run=True)
        return page(request, "admin_purge.html", status=status, active="admin", tab="retention", report=report,
                    days=days, worker=worker or "", error=error,
                    rows=[(t, n) for t, n in report.rows.items() if n and t != "conversations"])

    @router.post("/admin/retention/purge", include_in_schema=False)
    async def purge_now(request: Request) -> Response:
        who = await admin(request, post=True)
        if isinstance(who, Response):
            return who
        form = await request.form()
        try:
            days, worker = purge_params(form)
        except ValueError as exc:
            return await retention_page(request, 422, f"No purge: {exc}.")
        if form.get("confirm") != "yes":
            return await preview(request, days, worker, 422, "Nothing was purged: tick the box to confirm first.")
        report = await purge(ctx.store().db, days, worker=worker)
        await AuditTrail(ctx.store().db).record_many([AuditEntry(
            conversation_id="", worker=ctx.worker, kind="review", action="purge", detail=f"by {who.operator}",
            inputs={"older_than_days": days, "worker": worker, "conversations": report.conversations,
                    "rows": {t: n for t, n in report.rows.items() if n}})])
        return RedirectResponse(f"{ADMIN}/retention?done=purged&n={report.conversations}", status_code=303)
