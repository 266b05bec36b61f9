"""The review console's admin pages (worker/review/pages_admin.py), without a browser: admins
only (every route refuses reviewers and viewers), CSRF, users (the CLI's password rule, each
change ends the user's sessions, the last admin stays), API tokens (shown once, never listed),
retention (the policy, a purge only after a confirmation), every change audited; on SQLite and
PostgreSQL."""

from __future__ import annotations

import asyncio
import re
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from escalation.audit import AuditEntry
from escalation.operators import LastAdmin, OperatorStore
from escalation.review_sessions import SessionStore
from tests.support.review_seed import PASSWORD, seed, store_url
from tests.test_review import client_for, csrf_of, log_in
from transcripts.review_queries import insert_conversations
from transcripts.store import ConversationRecord, Event, TranscriptStore
from worker.operator_auth import hash_password, verify_password
from worker.review import ReviewContext, build_router

NEW_PASSWORD = "a new and long password"
# Every admin route, with a POST form that would change something if it were let through.
ROUTES: list[tuple[str, str, dict[str, str]]] = [
    ("GET", "/review/admin", {}),
    ("GET", "/review/admin/users", {}),
    ("POST", "/review/admin/users", {"name": "mallory", "role": "admin", "password": NEW_PASSWORD, "password_again": NEW_PASSWORD}),
    ("POST", "/review/admin/users/ada/role", {"role": "viewer"}),
    ("POST", "/review/admin/users/ada/password", {"password": NEW_PASSWORD, "password_again": NEW_PASSWORD}),
    ("GET", "/review/admin/users/ada/remove", {}),
    ("POST", "/review/admin/users/ada/remove", {}),
    ("GET", "/review/admin/tokens", {}),
    ("POST", "/review/admin/tokens", {"name": "mallory", "role": "admin"}),
    ("GET", "/review/admin/tokens/grafana/revoke", {}),
    ("POST", "/review/admin/tokens/grafana/revoke", {}),
    ("GET", "/review/admin/retention", {}),
    ("GET", "/review/admin/retention/purge?days=1", {}),
    ("POST", "/review/admin/retention/purge", {"days": "1", "confirm": "yes"}),
]


def on(url: str, fn: Any) -> Any:
    async def run() -> Any:
        store = await TranscriptStore.open(store_url(url))
        try:
            return await fn(store)
        finally:
            await store.close()

    return asyncio.run(run())


def admin_audit(url: str) -> list[AuditEntry]:
    async def read(store: TranscriptStore) -> list[AuditEntry]:
        rows = await store.db.fetchall("SELECT * FROM audit WHERE kind = 'review' AND action NOT IN ('login', 'logout') "
                                       "ORDER BY id", (), ("inputs",))
        return [AuditEntry(**r) for r in rows]

    return on(url, read)


def alert(html: str) -> str:
    found = re.search(r'role="alert">([^<]*)<', html)
    return found.group(1) if found else ""


def status(html: str) -> str:
    found = re.search(r'role="status">([^<]*)<', html)
    return found.group(1) if found else ""


def logged_in(url: str, name: str, password: str = PASSWORD) -> tuple[TestClient, str]:
    client = client_for(store_url(url))
    client.__enter__()
    return client, log_in(client, name, password)


@pytest.fixture
def seeded(database_url: str) -> str:
    asyncio.run(seed(database_url))
    return database_url


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = str(tmp_path_factory.mktemp("review-admin") / "worker.sqlite")
    asyncio.run(seed(url))
    return url


def test_every_admin_route_refuses_reviewers_and_viewers(shared: str) -> None:
    routes = build_router(ReviewContext(store=lambda: None, auth=None, worker="w")).routes  # type: ignore[arg-type,return-value]
    paths = {(m, r.path) for r in routes if isinstance(r, APIRoute) and r.path.startswith("/review/admin")
             for m in r.methods}
    listed = {(m, re.sub(r"/(ada|grafana)/", lambda x: "/{name}/", p.split("?")[0])) for m, p, _ in ROUTES}
    assert paths == listed, "a new admin route needs a line in ROUTES"
    for name in ("rita", "vic"):
        with client_for(store_url(shared)) as client:
            csrf = log_in(client, name)
            for method, path, form in ROUTES:
                answer = client.request(method, path, data={**form, "csrf_token": csrf} if method == "POST" else None,
                                        follow_redirects=False)
                assert answer.status_code == 403, (name, method, path)
                assert "The admin pages are for admins" in answer.text and answer.headers["content-type"].startswith("text/html")
            assert 'href="/review/admin/users"' not in client.get("/review/conversations").text
    with client_for(store_url(shared)) as client:  # no session: to the login form
        for method, path, form in ROUTES:
            answer = client.request(method, path, data=form or None, follow_redirects=False)
            assert answer.status_code == 303 and answer.headers["location"].startswith("/review/login?next="), path
    assert admin_audit(shared) == []
    users = on(shared, lambda s: OperatorStore(s.db).users())
    assert [(u.name, u.role) for u in users] == [("ada", "admin"), ("rita", "reviewer"), ("vic", "viewer")]


def test_admin_forms_need_the_csrf_token(shared: str) -> None:
    with client_for(store_url(shared)) as client:
        csrf = log_in(client, "ada")
        page = client.get("/review/admin/users").text
        assert 'href="/review/admin/users" aria-current="page">Admin' in page
        assert page.count(f'name="csrf_token" value="{csrf}"') >= 2 + 3 * 2  # logout, add, and each user's forms
        for method, path, form in ROUTES:
            if method == "POST":
                for token in (None, "x" + csrf[1:]):
                    data = {**form, "csrf_token": token} if token else form
                    answer = client.post(path, data=data, follow_redirects=False)
                    assert answer.status_code == 403 and "CSRF" in answer.text, path
    assert admin_audit(shared) == []


def test_users_are_added_changed_and_removed_ending_their_sessions_and_audited(seeded: str) -> None:
    url = seeded
    admin, csrf = logged_in(url, "ada")
    try:
        def add(**form: str) -> Any:
            return admin.post("/review/admin/users", data={"csrf_token": csrf, **form}, follow_redirects=True)

        good = {"name": "bob", "role": "reviewer", "password": NEW_PASSWORD, "password_again": NEW_PASSWORD}
        short = add(**{**good, "password": "too short", "password_again": "too short"})
        assert short.status_code == 422 and alert(short.text) == "Not added: the password must have at least 12 characters."
        assert 'value="bob"' in short.text and "too short" not in short.text  # the name kept, never the password
        differ = add(**{**good, "password_again": NEW_PASSWORD + "!"})
        assert differ.status_code == 422 and alert(differ.text) == "Not added: the two passwords differ."
        bad_name = add(**{**good, "name": "<b>bob</b>"})
        assert bad_name.status_code == 422 and "is not allowed" in alert(bad_name.text) and "<b>bob" not in bad_name.text
        assert add(**{**good, "role": "root"}).status_code == 422
        added = add(**good)
        assert added.status_code == 200 and status(added.text) == "User bob added."
        assert add(**good).status_code == 409

        bob, _ = logged_in(url, "bob", NEW_PASSWORD)
        try:
            assert bob.get("/review/conversations", follow_redirects=False).status_code == 200
            changed = admin.post("/review/admin/users/bob/role", data={"csrf_token": csrf, "role": "viewer"})
            assert status(changed.text) == "User bob now has the role viewer; their sessions ended."
            assert bob.get("/review/conversations", follow_redirects=False).status_code == 303  # ended at once
            log_in(bob, "bob", NEW_PASSWORD)
            assert "masked" in bob.get("/review/conversations").text
            reset = admin.post("/review/admin/users/bob/password",
                               data={"csrf_token": csrf, "password": "another long password", "password_again": "another long password"})
            assert status(reset.text) == "User bob has a new password; their sessions ended."
            assert bob.get("/review/conversations", follow_redirects=False).status_code == 303
            short = admin.post("/review/admin/users/bob/password", data={"csrf_token": csrf, "password": "x", "password_again": "x"})
            assert short.status_code == 422 and "at least 12 characters" in alert(short.text)
            log_in(bob, "bob", "another long password")
            confirm = admin.get("/review/admin/users/bob/remove")
            assert confirm.status_code == 200 and "Remove bob?" in confirm.text and 'action="/review/admin/users/bob/remove"' in confirm.text
            removed = admin.post("/review/admin/users/bob/remove", data={"csrf_token": csrf})
            assert status(removed.text) == "User bob removed; their sessions ended."
            assert bob.get("/review/conversations", follow_redirects=False).status_code == 303
            again = admin.post("/review/admin/users/bob/remove", data={"csrf_token": csrf})
            assert again.status_code == 404 and alert(again.text) == "Not removed: no user bob."
        finally:
            bob.__exit__(None, None, None)
    finally:
        admin.__exit__(None, None, None)
    audit = admin_audit(url)
    assert [(a.action, a.inputs, a.detail, a.conversation_id) for a in audit] == [
        ("user_add", {"name": "bob", "role": "reviewer"}, "by ada", ""),
        ("user_role", {"name": "bob", "role": "viewer"}, "by ada", ""),
        ("user_password", {"name": "bob"}, "by ada", ""),
        ("user_remove", {"name": "bob"}, "by ada", "")]
    assert NEW_PASSWORD not in str(on(url, lambda s: s.db.fetchall("SELECT * FROM audit")))


def test_the_last_admin_is_neither_demoted_nor_removed(seeded: str) -> None:
    url = seeded
    admin, csrf = logged_in(url, "ada")
    try:
        demoted = admin.post("/review/admin/users/ada/role", data={"csrf_token": csrf, "role": "reviewer"})
        assert demoted.status_code == 409
        assert alert(demoted.text) == "Role not changed: ada is the last admin; make another user admin first."
        removed = admin.post("/review/admin/users/ada/remove", data={"csrf_token": csrf})
        assert removed.status_code == 409 and "ada is the last admin" in alert(removed.text)
        promoted = admin.post("/review/admin/users/rita/role", data={"csrf_token": csrf, "role": "admin"})
        assert status(promoted.text) == "User rita now has the role admin; their sessions ended."
        # With another admin, ada may step down: her own session ends with it.
        own = admin.post("/review/admin/users/ada/role", data={"csrf_token": csrf, "role": "reviewer"}, follow_redirects=False)
        assert own.status_code == 303 and own.headers["location"] == "/review/login"
        assert admin.get("/review/admin/users", follow_redirects=False).status_code == 303
    finally:
        admin.__exit__(None, None, None)
    roles = {u.name: u.role for u in on(url, lambda s: OperatorStore(s.db).users())}
    assert roles == {"ada": "reviewer", "rita": "admin", "vic": "viewer"}

    async def at_once(store: TranscriptStore) -> list[Any]:
        # Two admins demoting each other in the same instant: one of them stays admin.
        operators = OperatorStore(store.db)
        await operators.change_user("ada", role="admin")
        return await asyncio.gather(operators.change_user("ada", role="viewer"), operators.change_user("rita", role="viewer"),
                                    return_exceptions=True)

    results = on(url, at_once)
    assert sorted(type(r).__name__ for r in results) == ["LastAdmin", "NoneType"]
    assert any(isinstance(r, LastAdmin) for r in results)
    assert on(url, lambda s: OperatorStore(s.db).admins()) == 1


def test_api_tokens_are_shown_once_listed_without_their_secret_and_revoked(seeded: str) -> None:
    url = seeded
    admin, csrf = logged_in(url, "ada")
    try:
        issued = admin.post("/review/admin/tokens", data={"csrf_token": csrf, "name": "grafana", "role": "viewer"})
        assert issued.status_code == 200 and issued.headers["cache-control"] == "no-store"
        token = re.search(r'id="issued-token" class="token" value="([^"]+)"', issued.text).group(1)  # type: ignore[union-attr]
        secret = token.split("_", 2)[2]
        listed = admin.get("/review/admin/tokens").text
        assert "grafana" in listed and secret not in listed and token not in listed
        assert secret not in str(on(url, lambda s: s.db.fetchall("SELECT * FROM api_tokens")))
        twice = admin.post("/review/admin/tokens", data={"csrf_token": csrf, "name": "grafana", "role": "viewer"})
        assert twice.status_code == 409 and alert(twice.text) == "Not issued: a token named grafana exists; revoke it first."
        assert admin.post("/review/admin/tokens", data={"csrf_token": csrf, "name": "a b", "role": "viewer"}).status_code == 422
        confirm = admin.get("/review/admin/tokens/grafana/revoke")
        assert "Revoke the token grafana?" in confirm.text
        revoked = admin.post("/review/admin/tokens/grafana/revoke", data={"csrf_token": csrf})
        assert status(revoked.text) == "Token grafana revoked: it stops working now."
        assert on(url, lambda s: OperatorStore(s.db).tokens()) == []
    finally:
        admin.__exit__(None, None, None)
    audit = admin_audit(url)
    assert [(a.action, a.inputs.get("name"), a.detail) for a in audit] == [("token_issue", "grafana", "by ada"),
                                                                            ("token_revoke", "grafana", "by ada")]
    assert secret not in str(audit)


async def _old_conversations(store: TranscriptStore) -> None:
    old = datetime.now(timezone.utc) - timedelta(days=100)
    rows = []
    for i in range(3):
        at = (old + timedelta(minutes=i)).isoformat()
        cid = f"console-old-{i}"
        rows.append((ConversationRecord(id=cid, worker="account_support", channel="console", started_at=at,
                                        updated_at=at, outcome="completed", escalation=None, fields={}, turns=1),
                     [Event(conversation_id=cid, channel="console", direction="in", text="hello", time=at)]))
    await insert_conversations(store, rows)


def test_retention_shows_the_policy_and_purges_only_after_a_confirmation(seeded: str, monkeypatch: pytest.MonkeyPatch) -> None:
    url = seeded
    on(url, _old_conversations)
    monkeypatch.setenv("RETENTION_DAYS", "90")
    admin, csrf = logged_in(url, "ada")
    try:
        page = admin.get("/review/admin/retention").text
        assert "<strong>90 days</strong>" in page and "every 60 minutes" in page and 'value="90"' in page
        assert "This console runs alone" in page
        preview = admin.get("/review/admin/retention/purge?days=30&worker=")
        assert preview.status_code == 200 and "Purge 3 conversation(s)?" in preview.text
        assert admin.get("/review/admin/retention/purge?days=0").status_code == 422
        unconfirmed = admin.post("/review/admin/retention/purge", data={"csrf_token": csrf, "days": "30"})
        assert unconfirmed.status_code == 422 and alert(unconfirmed.text) == "Nothing was purged: tick the box to confirm first."
        assert len(on(url, lambda s: s.db.fetchall("SELECT id FROM conversations WHERE id LIKE 'console-old-%'"))) == 3
        done = admin.post("/review/admin/retention/purge", data={"csrf_token": csrf, "days": "30", "confirm": "yes"})
        assert done.status_code == 200 and status(done.text) == "Purged 3 conversation(s) and everything of theirs."
        assert on(url, lambda s: s.db.fetchall("SELECT id FROM conversations WHERE id LIKE 'console-old-%'")) == []
        assert re.search(r"<dt>Conversations purged so far</dt><dd>3</dd>", done.text)
        monkeypatch.setenv("RETENTION_DAYS", "off")
        assert "<strong>Everything is kept</strong>" in admin.get("/review/admin/retention").text
        monkeypatch.setenv("RETENTION_DAYS", "soon")
        assert "RETENTION_DAYS is not valid" in admin.get("/review/admin/retention").text
    finally:
        admin.__exit__(None, None, None)
    [purge] = admin_audit(url)
    assert (purge.action, purge.inputs["older_than_days"], purge.inputs["conversations"], purge.detail) == (
        "purge", 30, 3, "by ada")
    assert purge.inputs["rows"]["events"] == 3


async def test_a_removed_users_sessions_end_with_them(database_url: str) -> None:
    """Also under `users remove`: a user added later under the same name must not inherit them."""
    store = await TranscriptStore.open(store_url(database_url))
    try:
        operators, sessions = OperatorStore(store.db), SessionStore(store.db)
        await operators.add_user("bob", "reviewer", hash_password(PASSWORD))
        token, _ = await sessions.create("bob", timedelta(hours=1))
        await operators.remove_user("bob")
        await operators.add_user("bob", "admin", hash_password(NEW_PASSWORD))
        assert await sessions.get(token) is None
        stored, role = await operators.password_hash("bob")  # type: ignore[misc]
        assert role == "admin" and verify_password(NEW_PASSWORD, stored)
    finally:
        await store.close()
