"""The human queue page under a real `channel-worker serve` with SMS on (Twilio's REST API stood
in for by tests/support/fake_twilio.py), in Debian's chromium: a reviewer's reply, double-clicked,
is sent once by serve's own sender loop and its delivery status turns to "sent" on the open page;
claims, resolutions and releases made by someone else appear on an open page without reloading,
and a reply being typed there stays as it was (its text, its focus). Screenshots go to
var/screenshots/ (review-queue*.png are the ones in docs/images, copied by hand).
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import playwright.sync_api as playwright_api
import pytest

from tests.conftest import ROOT
from tests.support.fake_twilio import FakeTwilio
from tests.support.review_seed import PASSWORD
from tests.support.server import WorkerServer
from tests.test_review_browser import accessible, browser, log_in, shot  # noqa: F401 - the module's browser fixture
from tests.test_sms import ACCOUNT, TOKEN, Phone, db_rows

BANK = "examples/account_support.yaml"
expect = playwright_api.expect


def until(condition: Callable[[], object], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {timeout:g} s: {what}")
        time.sleep(0.1)


def add_users(var: Path, **roles: str) -> None:
    """Operators made as an operator makes them: `channel-worker users add NAME --role ROLE`."""
    for name, role in roles.items():
        added = subprocess.run([sys.executable, "-m", "worker.cli", "users", "add", name, "--role", role], cwd=ROOT,
                               env={"CHANNEL_WORKER_VAR": str(var), "PATH": "/usr/bin:/bin"}, input=PASSWORD + "\n",
                               capture_output=True, text=True, timeout=120)
        assert added.returncode == 0, added.stderr


@pytest.fixture
def bank_by_sms(tmp_path: Path) -> Iterator[tuple[WorkerServer, FakeTwilio]]:
    var = tmp_path / "var"
    add_users(var, rita="reviewer", ada="admin", vic="viewer")
    with FakeTwilio() as twilio:
        server = WorkerServer(BANK, {"TWILIO_ACCOUNT_SID": ACCOUNT, "TWILIO_AUTH_TOKEN": TOKEN,
                                     "TWILIO_API_BASE": twilio.base_url}, var)
        try:
            server.wait_ready(timeout=120)
            yield server, twilio
        finally:
            server.stop()


def hand_over(server: WorkerServer, count: int) -> list[Phone]:
    """`count` people text the bank asking for a person; each becomes an open handoff."""
    phones = []
    for _ in range(count):
        phone = Phone(server)
        phone.text("I want to talk to a real person")
        phones.append(phone)
    until(lambda: len(db_rows(server, "SELECT id FROM handoffs")) == count, f"{count} handoffs")
    return phones


def context(browser, server: WorkerServer):  # noqa: ANN001, ANN201
    return browser.new_context(base_url=server.base_url, bypass_csp=True, viewport={"width": 1280, "height": 900})


def test_an_sms_reply_double_clicked_is_sent_once_by_serve_and_shows_sent(
        browser, bank_by_sms: tuple[WorkerServer, FakeTwilio], tmp_path: Path) -> None:  # noqa: ANN001
    server, twilio = bank_by_sms
    [phone] = hand_over(server, 1)
    texts_before = len(twilio.sent)  # the worker's own replies went in the webhook answers (TwiML)
    ctx = context(browser, server)
    page = ctx.new_page()
    log_in(page, "rita")
    page.goto("/review/queue")
    row = page.locator("tr#handoff-1")
    assert row.get_by_label("Reply by SMS").count() == 0  # claim first
    row.get_by_role("button", name="Claim").click()
    expect(page.get_by_role("status")).to_contain_text("claimed")
    words = "Hi, this is Rita at Northwind Bank. I have frozen your card; a new one is on its way."
    page.locator("tr#handoff-1").get_by_label("Reply by SMS").fill(words)
    page.locator("tr#handoff-1").get_by_role("button", name="Send").dblclick()
    expect(page.get_by_role("status")).to_contain_text("reply")
    # serve's sender loop sends it; the open page shows it sent without being reloaded.
    until(lambda: [m for m in twilio.sent if m.get("Body") == words], "the reply at the Twilio stand-in")
    until(lambda: not db_rows(server, "SELECT 1 FROM sms_outbox WHERE state = 'pending'"), "an empty outbox")
    expect(page.locator("tr#handoff-1 .delivery")).to_have_text("sent", timeout=20_000)
    sent = [m for m in twilio.sent[texts_before:] if m.get("Body") == words]
    assert [(m["To"], m["From"]) for m in sent] == [(phone.number, "+15005550006")]  # once
    assert db_rows(server, "SELECT state, dedupe_key LIKE 'human:%' FROM sms_outbox") == [("sent", 1)]
    events = db_rows(server, "SELECT direction, text, json_extract(metadata, '$.by') FROM events "
                             "WHERE json_extract(metadata, '$.human')")
    assert events == [("out", words, "rita")]
    audit = db_rows(server, "SELECT kind, action FROM audit WHERE action = 'reply'")
    assert audit == [("review", "reply")]
    accessible(page)
    shot(page, tmp_path, "review-queue")  # docs/images/review-queue.png
    ctx.close()


def test_moves_by_others_appear_on_an_open_page_and_a_reply_being_typed_stays(
        browser, bank_by_sms: tuple[WorkerServer, FakeTwilio], tmp_path: Path) -> None:  # noqa: ANN001
    server, _ = bank_by_sms
    hand_over(server, 3)
    ada_ctx, rita_ctx = context(browser, server), context(browser, server)
    ada, rita = ada_ctx.new_page(), rita_ctx.new_page()
    log_in(ada, "ada")
    ada.goto("/review/queue")
    ada.locator("tr#handoff-2").get_by_role("button", name="Claim").click()
    expect(ada.get_by_role("status")).to_contain_text("claimed")
    ada.evaluate("window.stillTheSamePage = true")  # gone if the page is reloaded
    draft = "Hello, this is Ada. About the payments you did not make:"
    box = ada.locator("#reply-2")
    box.fill(draft)
    box.focus()
    log_in(rita, "rita")
    rita.goto("/review/queue")
    rita.locator("tr#handoff-1").get_by_role("button", name="Claim").click()
    expect(rita.get_by_role("status")).to_contain_text("claimed")
    rita.locator("tr#handoff-3").get_by_role("button", name="Resolve").click()
    expect(rita.get_by_role("status")).to_contain_text("resolved")
    # Ada's page hears of both within a poll (every 5 s), her draft untouched and still focused.
    expect(ada.locator("tr#handoff-1")).to_contain_text("by rita", timeout=20_000)
    expect(ada.locator("tr#handoff-3")).to_contain_text("resolved", timeout=20_000)
    expect(ada.locator("p.news")).to_contain_text("Handoff 1 is claimed by rita now.")
    assert "changed" in (ada.locator("tr#handoff-1").get_attribute("class") or "")
    assert ada.locator("tr#handoff-1").get_by_role("button", name="Claim").count() == 0
    assert ada.evaluate("window.stillTheSamePage") is True
    assert box.input_value() == draft
    assert ada.evaluate("document.activeElement && document.activeElement.id") == "reply-2"
    box.press("End")
    box.type(" they are refunded.")  # typing goes on where it was
    shot(ada, tmp_path, "review-queue-live")  # docs/images/review-queue-live.png
    # Someone releases Ada's handoff while she types: her text stays on the page, marked not sent.
    rita.goto("/review/queue")
    rita.locator("tr#handoff-2").get_by_role("button", name="Release to the worker").click()
    expect(rita.get_by_role("status")).to_contain_text("released")
    expect(ada.locator("tr#handoff-2")).to_contain_text("Not sent: handoff 2 is released now", timeout=20_000)
    assert ada.locator("#reply-2").input_value() == draft + " they are refunded."
    assert ada.locator("tr#handoff-2 form.reply").count() == 0  # nothing left to send it with
    assert ada.evaluate("window.stillTheSamePage") is True
    accessible(ada)
    ada_ctx.close()
    rita_ctx.close()


def test_who_may_reply_over_http(bank_by_sms: tuple[WorkerServer, FakeTwilio]) -> None:
    """The doors of the reply route under serve: a viewer gets 403, no CSRF token 403, a handoff
    not claimed by you or not in the queue 409/404, and nothing reaches the outbox."""
    import httpx

    server, twilio = bank_by_sms
    hand_over(server, 2)

    def session(name: str) -> tuple[httpx.Client, str]:
        client = httpx.Client(base_url=server.base_url, timeout=30)
        token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/review/login").text).group(1)
        client.post("/review/login", data={"username": name, "password": PASSWORD, "csrf_token": token})
        page = client.get("/review/queue").text
        return client, re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)

    vic, vic_csrf = session("vic")
    rita, rita_csrf = session("rita")
    ada, ada_csrf = session("ada")
    body = {"body": "hello from the queue", "idempotency_key": "k" * 24}
    assert vic.post("/review/queue/1/reply", data={**body, "csrf_token": vic_csrf}).status_code == 403
    assert rita.post("/review/queue/1/reply", data=body).status_code == 403  # no CSRF token
    open_one = rita.post("/review/queue/1/reply", data={**body, "csrf_token": rita_csrf})
    assert open_one.status_code == 409 and "claim it first" in open_one.text
    assert ada.post("/review/queue/1/claim", data={"csrf_token": ada_csrf}).status_code == 303
    others = rita.post("/review/queue/1/reply", data={**body, "csrf_token": rita_csrf})
    assert others.status_code == 409 and "claimed by ada" in others.text
    assert rita.post("/review/queue/99/reply", data={**body, "csrf_token": rita_csrf}).status_code == 404
    assert rita.post("/review/queue/2/claim", data={"csrf_token": rita_csrf}).status_code == 303
    assert rita.post("/review/queue/2/resolve", data={"csrf_token": rita_csrf}).status_code == 303
    done = rita.post("/review/queue/2/reply", data={**body, "csrf_token": rita_csrf})
    assert done.status_code == 409 and "no longer in the queue" in done.text
    assert not db_rows(server, "SELECT 1 FROM sms_outbox")
    assert not db_rows(server, "SELECT 1 FROM events WHERE dedupe_key LIKE 'human:%'")
    for client in (vic, rita, ada):
        client.close()
