"""The review console without a browser: who may see what, sessions, CSRF, the failure limit,
the list's filters on SQLite and PostgreSQL, labels (appended, audited, exported)."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from escalation.audit import AuditTrail
from tests.conftest import ROOT
from tests.support.review_seed import BOOKING, EMAIL, PASSWORD, SMS_HUMAN, SMS_LOST, seed, store_url
from transcripts.labels import LabelStore
from transcripts.review_queries import ReviewFilter, list_conversations
from transcripts.store import TranscriptStore
from worker.review import create_review_app


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = str(tmp_path_factory.mktemp("review") / "worker.sqlite")
    asyncio.run(seed(url))
    return store_url(url)


def client_for(url: str, secure: bool = False) -> TestClient:
    return TestClient(create_review_app(url, "account_support", secure_cookies=secure),
                      base_url="https://testserver" if secure else "http://testserver")


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no csrf_token in the page"
    return found.group(1)


def log_in(client: TestClient, name: str, password: str = PASSWORD) -> str:
    token = csrf_of(client.get("/review/login").text)
    answer = client.post("/review/login", data={"username": name, "password": password, "csrf_token": token},
                         follow_redirects=False)
    assert answer.status_code == 303, answer.text
    return csrf_of(client.get("/review/conversations").text)


def test_anonymous_callers_are_sent_to_the_login_form(seeded: str) -> None:
    with client_for(seeded) as client:
        for path in ("/review", "/review/conversations?channel=sms", f"/review/conversations/{SMS_LOST}"):
            answer = client.get(path, follow_redirects=False)
            if path == "/review":
                answer = client.get(answer.headers["location"], follow_redirects=False)
            assert answer.status_code == 303 and answer.headers["location"].startswith("/review/login?next=")
        assert client.post("/review/labels", data={"verdict": "right"}, follow_redirects=False).status_code == 303
        login = client.get("/review/login")
        assert login.status_code == 200 and 'name="username"' in login.text and 'name="password"' in login.text
        assert "default-src 'self'" in login.headers["content-security-policy"]
        assert client.get("/review/static/htmx.min.js").status_code == 200
        assert client.get("/review/static/..%2F__init__.py").status_code == 404


def test_the_session_cookie_is_httponly_lax_secure_behind_https_and_logout_ends_it(seeded: str) -> None:
    with client_for(seeded, secure=True) as client:
        token = csrf_of(client.get("/review/login").text)
        answer = client.post("/review/login", data={"username": "rita", "password": PASSWORD, "csrf_token": token,
                                                    "next": "//evil.example/x"}, follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"] == "/review/conversations"
        cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith("cw_review="))
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" in cookie and "Path=/review" in cookie
        session = client.cookies.get("cw_review")
        csrf = csrf_of(client.get("/review/conversations").text)
        assert client.post("/review/logout", data={"csrf_token": csrf}, follow_redirects=False).status_code == 303
        client.cookies.set("cw_review", session)  # the old cookie, replayed: the session is gone
        assert client.get("/review/conversations", follow_redirects=False).status_code == 303


def test_posts_without_the_right_csrf_token_are_refused(seeded: str) -> None:
    with client_for(seeded) as client:
        client.get("/review/login")
        refused = client.post("/review/login", data={"username": "rita", "password": PASSWORD}, follow_redirects=False)
        assert refused.status_code == 403 and "cw_review" not in client.cookies
        csrf = log_in(client, "rita")
        page = client.get(f"/review/conversations/{SMS_LOST}").text
        key = re.search(r'name="key" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
        form = {"conversation_id": SMS_LOST, "field": key.split("-")[0], "key": key, "verdict": "right"}
        assert client.post("/review/labels", data=form).status_code == 403
        assert client.post("/review/labels", data={**form, "csrf_token": "x" + csrf[1:]}).status_code == 403
        assert client.post("/review/logout", data={}).status_code == 403
        assert client.post("/review/labels", data={**form, "csrf_token": csrf}, follow_redirects=False).status_code == 303


def test_a_viewer_sees_personal_data_masked_and_cannot_label(seeded: str) -> None:
    with client_for(seeded) as client:
        csrf = log_in(client, "vic")
        listing = client.get("/review/conversations").text
        assert "+15551230001" not in listing and "sms:" in listing and "/review/conversations/r." in listing
        assert client.get(f"/review/conversations/{SMS_LOST}").status_code == 404  # by reference only

        def only(query: str) -> str:
            [ref] = re.findall(r'href="(/review/conversations/r\.[^"]+)"', client.get(f"/review/conversations?{query}").text)
            return client.get(ref).text

        page = only("q=45721198")
        assert "45721198" not in page and "Ana" not in page and "+1555" not in page
        assert "[number]" in page and "<mark" in page and 'name="verdict"' not in page
        email = only("channel=email")
        assert "zoe.khan" not in email and "45721199" not in email and "Subject: Lost card" in email
        form = {"conversation_id": SMS_LOST, "field": "account_number", "key": "account_number-2-21",
                "verdict": "wrong", "csrf_token": csrf}
        assert client.post("/review/labels", data=form).status_code == 403
    with client_for(seeded) as client:  # a reviewer's correction is personal data too
        csrf = log_in(client, "rita")
        client.post("/review/labels", data={**form, "csrf_token": csrf, "correct_value": "45721189"})
    with client_for(seeded) as client:
        log_in(client, "vic")
        page = only("q=45721198")
        assert "45721189" not in page and "should be <strong>[number]</strong>" in page


def test_a_reviewer_sees_values_marked_in_the_persons_words(seeded: str) -> None:
    with client_for(seeded) as client:
        log_in(client, "rita")
        page = client.get(f"/review/conversations/{SMS_LOST}").text
        marks = re.findall(r'<mark class="value[^"]*" tabindex="0" aria-describedby="(tip-\d+)">([^<]*)<span class="tip" '
                           r'role="tooltip" id="\1">([^<]*)</span>', page)
        assert ("45721198", "account_number = 45721198 · confidence 0.90 · turn 2") in [(m[1], m[2]) for m in marks]
        assert "action:freeze_card" in page and "The card system did not answer" in page
        email = client.get(f"/review/conversations/{EMAIL}").text
        assert "Subject: Lost card" in email and "<details class=\"quoted\">" in email
        assert re.search(r"<summary>Quoted text</summary><pre>On Mon, 23 Nov 2026", email)


def test_wrong_passwords_are_limited_like_http_basic(tmp_path: Path) -> None:
    url = str(tmp_path / "worker.sqlite")
    asyncio.run(seed(url))
    with client_for(store_url(url)) as client:
        token = csrf_of(client.get("/review/login").text)
        codes = [client.post("/review/login", data={"username": "rita", "password": f"guess {i}", "csrf_token": token}).status_code
                 for i in range(11)]
        assert codes[:10] == [401] * 10 and codes[10] == 429
        right = client.post("/review/login", data={"username": "rita", "password": PASSWORD, "csrf_token": token})
        assert right.status_code == 429 and "Too many failed attempts" in right.text and right.headers["retry-after"]


def test_labels_are_appended_audited_and_exported_in_the_benchmarks_span_format(tmp_path: Path) -> None:
    url = str(tmp_path / "worker.sqlite")
    asyncio.run(seed(url))
    with client_for(store_url(url)) as client:
        csrf = log_in(client, "rita")
        base = {"conversation_id": BOOKING, "csrf_token": csrf}
        right = client.post("/review/labels", data={**base, "field": "people", "key": "people-1-12", "verdict": "right"},
                            headers={"HX-Request": "true"})
        assert right.status_code == 200 and right.text.startswith('<tr id="value-people-1-12"') and "by rita" in right.text
        for value in ("2026-12-05", "2026-12-11"):  # changed twice: both kept, the latest counts
            client.post("/review/labels", data={**base, "field": "date", "key": "date-1-17", "verdict": "wrong",
                                                "correct_value": value})

    async def read() -> tuple[list, list, list]:
        store = await TranscriptStore.open(store_url(url))
        try:
            labels = LabelStore(store)
            return (await labels.for_conversation(BOOKING), await labels.dataset(),
                    [a for a in await AuditTrail(store.db).for_conversation(BOOKING) if a.kind == "review"])
        finally:
            await store.close()

    every, dataset, audit = asyncio.run(read())
    assert [(label.field, label.correct_value, label.labelled_by) for label in every] == [
        ("people", None, "rita"), ("date", "2026-12-05", "rita"), ("date", "2026-12-11", "rita")]
    assert [(a.action, a.inputs["field"], a.detail) for a in audit] == [("label", "people", "by rita"),
                                                                         ("label", "date", "by rita"), ("label", "date", "by rita")]
    [turn] = dataset
    assert turn["userInput"]["text"] == "a table for 4 on Friday at 8pm please"
    assert {(x["slot"], x["value"], json.dumps(x.get("valueSpan"))) for x in turn["labels"]} == {
        ("people", 4, json.dumps({"startIndex": 12, "endIndex": 13})), ("date", "2026-12-11", "null")}
    out = tmp_path / "labels.jsonl"
    env = {"CHANNEL_WORKER_VAR": str(Path(store_url(url)).parent), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "worker.cli", "export", "--labels", "-o", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert [json.loads(line) for line in out.read_text().splitlines()] == dataset


async def test_the_list_filters_searches_sorts_and_pages(database_url: str) -> None:
    await seed(database_url)
    store = await TranscriptStore.open(store_url(database_url))
    try:
        async def ids(**given: object) -> list[str]:
            return [r.id for r in (await list_conversations(store, ReviewFilter(**given))).rows]

        every = await ids()
        assert len(every) == 5 and every[0] == BOOKING  # newest first
        assert await ids(sort="started", order="asc") == every[::-1]
        assert set(await ids(channel="sms")) == {SMS_LOST, SMS_HUMAN}
        assert await ids(rule="asks_for_human") == [SMS_HUMAN]
        assert "console-bye-1" in await ids(escalated=False) and SMS_LOST not in await ids(escalated=False)
        assert set(await ids(low_confidence=True)) == {SMS_HUMAN, EMAIL}
        assert await ids(q="+15551230002") == [SMS_HUMAN]
        assert await ids(q="zoe.khan@example.org") == [EMAIL]
        assert await ids(q="PAYMENTS I did") == [SMS_HUMAN]
        assert await ids(q="100%_") == []
        assert await ids(worker="restaurant_booking") == [BOOKING]
        first = await list_conversations(store, ReviewFilter(per_page=2))
        second = await list_conversations(store, ReviewFilter(per_page=2, page=3))
        assert first.has_next and [r.id for r in first.rows] == every[:2]
        assert not second.has_next and [r.id for r in second.rows] == every[4:]
        spec_hash = (await store.conversation(SMS_LOST)).spec_hash  # type: ignore[union-attr]
        assert set(await ids(spec_version=spec_hash[:8])) == {SMS_LOST, SMS_HUMAN, EMAIL, "console-bye-1"}
    finally:
        await store.close()


def test_review_enabled_off_leaves_no_review_routes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dialogue.spec_loader import load_spec
    from worker.app import create_app
    from worker.config import Settings

    spec = load_spec(ROOT / "examples/account_support.yaml")
    for value, expected in (("off", 404), ("on", 200)):
        monkeypatch.setenv("REVIEW_ENABLED", value)
        app = create_app(spec, Settings(database_url=str(tmp_path / f"{value}.sqlite"), var_dir=tmp_path / "var"))
        with TestClient(app) as client:
            assert client.get("/review/login").status_code == expected


def test_the_queue_page_claims_and_resolves_under_the_logged_in_name(tmp_path: Path) -> None:
    url = str(tmp_path / "worker.sqlite")
    asyncio.run(seed(url))
    with client_for(store_url(url)) as client:
        log_in(client, "vic")
        seen = client.get("/review/queue").text
        assert "asks_for_human" in seen and "45721198" not in seen and "Claim" not in seen and "Packet" not in seen
        csrf = csrf_of(seen)
        assert client.post("/review/queue/1/claim", data={"csrf_token": csrf}).status_code == 403
    with client_for(store_url(url)) as client:
        csrf = log_in(client, "rita")
        page = client.get("/review/queue").text
        ids = re.findall(r'<tr id="handoff-(\d+)"', page)
        assert len(ids) == 4 and "Collected: card_situation=lost, account_number=45721198" in page
        poll = re.search(r'hx-get="(/review/queue/live\?[^"]+)" hx-trigger="every 5s"', page)
        assert poll and "after=4" in poll.group(1)  # live updates: tests/test_review_queue_live.py
        assert client.get(poll.group(1).replace("&amp;", "&")).status_code == 204  # nothing changed
        assert "<strong>2 new handoffs</strong>" in client.get("/review/queue/live?after=2").text
        assert client.post(f"/review/queue/{ids[0]}/claim", data={}).status_code == 403  # no CSRF token
        claimed = client.post(f"/review/queue/{ids[0]}/claim", data={"csrf_token": csrf})
        assert "Handoff 1: claimed." in claimed.text and "by rita" in claimed.text
        again = client.post(f"/review/queue/{ids[0]}/claim", data={"csrf_token": csrf})
        assert "Handoff 1 could not be claimed" in again.text
        done = client.post(f"/review/queue/{ids[0]}/resolve", data={"csrf_token": csrf, "note": "card frozen by phone"})
        assert "Handoff 1: resolved." in done.text and f'id="handoff-{ids[0]}"' not in done.text
        assert "card frozen by phone" in client.get("/review/queue?status=resolved").text
        refused = client.post(f"/review/queue/{ids[1]}/release", data={"csrf_token": csrf})  # the console alone
        assert "needs the running worker" in refused.text

    async def audit() -> list:
        store = await TranscriptStore.open(store_url(url))
        try:
            return [a for a in await AuditTrail(store.db).for_conversation(SMS_LOST) if a.kind == "queue"]
        finally:
            await store.close()

    assert [(a.action, a.inputs["by"]) for a in asyncio.run(audit())] == [("claim", "rita"), ("resolve", "rita")]


def test_a_reply_by_sms_goes_through_the_outbox_once_even_when_submitted_twice(tmp_path: Path) -> None:
    from channels.sms.store import SmsStore

    url = str(tmp_path / "worker.sqlite")
    asyncio.run(seed(url))
    with client_for(store_url(url)) as client:
        csrf = log_in(client, "rita")
        client.post("/review/queue/1/claim", data={"csrf_token": csrf})  # a reply needs the handoff claimed
        page = client.get("/review/queue").text
        [form] = re.findall(r'action="/review/queue/(\d+)/reply">\s*<input type="hidden" name="csrf_token" value="[^"]+">\s*'
                            r'<input type="hidden" name="idempotency_key" value="([^"]+)">', page)[:1]
        handoff, key = form
        body = {"csrf_token": csrf, "idempotency_key": key, "body": "Hi Ana, I have frozen your card. Sam"}
        first = client.post(f"/review/queue/{handoff}/reply", data=body)
        second = client.post(f"/review/queue/{handoff}/reply", data=body)
        assert "reply queued to the person by SMS" in first.text and "already sent (sent once)" in second.text
        shown = client.get(f"/review/conversations/{SMS_LOST}").text
        assert "rita (a person, from the queue)" in shown and "I have frozen your card" in shown
        rows = re.split(r'<tr id="handoff-', client.get("/review/queue").text)[1:]
        assert [("/reply" in row) for row in rows] == [True, False, False, False]  # claimed sms, sms, email, console

    async def read() -> tuple[list, list, list]:
        store = await TranscriptStore.open(store_url(url))
        try:
            events = [e for e in await store.events(SMS_LOST) if e.metadata.get("human")]
            audit = [a for a in await AuditTrail(store.db).for_conversation(SMS_LOST) if a.action == "reply"]
            return await SmsStore(store.db).outbox(SMS_LOST), events, audit
        finally:
            await store.close()

    outbox, events, audit = asyncio.run(read())
    assert [(o.to_number, o.from_number, o.body) for o in outbox] == [
        ("+15551230001", "+15550000000", "Hi Ana, I have frozen your card. Sam")]
    assert [(e.direction, e.metadata["by"]) for e in events] == [("out", "rita")]
    assert [a.inputs["by"] for a in audit] == ["rita"]


async def test_the_kpis_count_the_seeded_conversations(database_url: str) -> None:
    from transcripts.labels import FieldLabel
    from transcripts.review_queries import kpis

    await seed(database_url)
    store = await TranscriptStore.open(store_url(database_url))
    try:
        labels = LabelStore(store)
        await labels.add(FieldLabel(conversation_id=BOOKING, field="people", turn=1, stored_value=4, verdict="right",
                                    labelled_by="rita"))
        await labels.add(FieldLabel(conversation_id=BOOKING, field="date", turn=1, stored_value="x", verdict="wrong",
                                    labelled_by="rita"))
        k = await kpis(store)
        assert (k.conversations, k.by_outcome) == (5, {"escalated": 4, "abandoned": 1})
        assert k.by_rule == {"action:freeze_card": 2, "asks_for_human": 1, "action:availability": 1}
        assert k.confidence == [0, 0, 0, 0, 0, 0, 0, 2, 0, 2]  # 0.75, 0.75; 0.90, 0.939
        assert k.by_channel["sms"] == {"total": 2, "completed": 0, "escalated": 2}
        assert (k.labelled, k.labelled_right) == (2, 1) and k.handle_seconds is not None and k.handle_seconds > 0
        assert (await kpis(store, worker="restaurant_booking")).conversations == 1
    finally:
        await store.close()


async def test_a_purged_conversation_takes_its_labels_with_it(tmp_path: Path) -> None:
    from datetime import timedelta

    from storage.clock import utcnow
    from transcripts.labels import FieldLabel
    from transcripts.retention import purge

    url = str(tmp_path / "worker.sqlite")
    await seed(url)
    store = await TranscriptStore.open(store_url(url))
    try:
        await LabelStore(store).add(FieldLabel(conversation_id=BOOKING, field="people", turn=1, stored_value=4,
                                               verdict="wrong", correct_value="5", labelled_by="rita"))
        report = await purge(store.db, 30, now=utcnow() + timedelta(days=60))
        assert report.rows["field_labels"] == 1 and await LabelStore(store).for_conversation(BOOKING) == []
    finally:
        await store.close()


def test_a_new_password_ends_the_users_review_sessions(tmp_path: Path) -> None:
    url = str(tmp_path / "worker.sqlite")
    asyncio.run(seed(url))
    var = Path(store_url(url)).parent
    with client_for(store_url(url)) as client:
        log_in(client, "rita")
        assert client.get("/review/conversations", follow_redirects=False).status_code == 200
        env = {"CHANNEL_WORKER_VAR": str(var), "PATH": "/usr/bin:/bin"}
        done = subprocess.run([sys.executable, "-m", "worker.cli", "users", "add", "rita", "--role", "reviewer", "--replace"],
                              cwd=ROOT, env=env, input="a brand new password here\n", capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
        assert client.get("/review/conversations", follow_redirects=False).status_code == 303
