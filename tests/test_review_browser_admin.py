"""The admin pages and exports in a real browser (Debian's chromium driven by Playwright, with the
helpers of tests/test_review_browser.py): an admin adds a reviewer who then logs in; an export
downloads and opens offline; axe-core finds no serious or critical violation on the new pages.
Screenshots go to the test's tmp folder and var/screenshots/."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import playwright.sync_api as playwright_api
import pytest

import tests.test_review_browser as rb  # its helpers; importing its tests by name would run them twice
from tests.support.review_seed import SMS_LOST, seed, store_url

NEW_PASSWORD = "rosa's own long password"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[rb.Server]:
    """A server of this module's own: admins change users here."""
    url = str(tmp_path_factory.mktemp("review-browser-admin") / "worker.sqlite")
    seeding = threading.Thread(target=lambda: asyncio.run(seed(url)))  # Playwright's loop runs in this thread
    seeding.start()
    seeding.join()
    with rb.Server(store_url(url)) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with playwright_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(rb.CHROMIUM), args=rb.ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def context(browser, server: rb.Server):  # noqa: ANN001, ANN201
    made = browser.new_context(base_url=server.base, bypass_csp=True, viewport={"width": 1280, "height": 900},
                               accept_downloads=True)
    try:
        yield made
    finally:
        made.close()


def test_an_admin_adds_a_reviewer_who_then_logs_in(browser, context, server: rb.Server, tmp_path: Path) -> None:  # noqa: ANN001
    page = context.new_page()
    rb.log_in(page, "ada")
    page.wait_for_url("**/review/conversations")
    page.get_by_role("link", name="Admin").click()
    page.wait_for_url("**/review/admin/users")
    rb.accessible(page)
    page.fill("#new-name", "rosa")
    page.select_option("#new-role", "reviewer")
    page.fill("#new-password", "short")
    page.fill("#new-password-again", "short")
    page.evaluate("document.querySelector('#new-password').removeAttribute('minlength');"
                  "document.querySelector('#new-password-again').removeAttribute('minlength')")  # the server's rule
    page.get_by_role("button", name="Add user").click()
    assert page.get_by_role("alert").inner_text() == "Not added: the password must have at least 12 characters."
    assert page.input_value("#new-name") == "rosa"
    page.fill("#new-password", NEW_PASSWORD)
    page.fill("#new-password-again", NEW_PASSWORD)
    page.get_by_role("button", name="Add user").click()
    page.wait_for_url("**/review/admin/users?done=added**")
    assert page.get_by_role("status").inner_text() == "User rosa added."
    page.locator("#user-rosa summary").click()
    rb.accessible(page)
    rb.shot(page, tmp_path, "20-admin-users")
    # The reviewer, in a browser of their own.
    other = browser.new_context(base_url=server.base)
    try:
        rosa = other.new_page()
        rb.log_in(rosa, "rosa", NEW_PASSWORD)
        rosa.wait_for_url("**/review/conversations")
        assert rosa.locator(".who").inner_text().startswith("rosa reviewer")
        assert rosa.get_by_role("link", name="Admin").count() == 0
        assert rosa.request.get("/review/admin/users").status == 403
        # Her role changed by the admin: her session ends at once.
        page.locator("#user-rosa select").select_option("viewer")
        page.locator("#user-rosa").get_by_role("button", name="Change role").click()
        assert page.get_by_role("status").inner_text() == "User rosa now has the role viewer; their sessions ended."
        rosa.reload()
        assert "/review/login" in rosa.url
    finally:
        other.close()
    page.get_by_role("link", name="API tokens").click()
    page.fill("#token-name", "grafana")
    page.get_by_role("button", name="Issue token").click()
    assert page.input_value("#issued-token").startswith("cwk_")
    rb.accessible(page)
    rb.shot(page, tmp_path, "21-admin-tokens")
    page.get_by_role("link", name="Retention").click()
    page.fill("#days", "30")
    rb.accessible(page)
    rb.shot(page, tmp_path, "22-admin-retention")
    page.get_by_role("button", name="Show what would be purged").click()
    page.wait_for_url("**/review/admin/retention/purge?days=30**")
    assert "Purge 0 conversation(s)?" in page.locator("main").inner_text()
    rb.accessible(page)


def test_an_export_downloads_and_opens_offline(context, tmp_path: Path) -> None:  # noqa: ANN001
    page = context.new_page()
    rb.log_in(page, "rita")
    page.wait_for_url("**/review/conversations")
    page.goto("/review/conversations?channel=sms")
    rb.accessible(page)
    rb.shot(page, tmp_path, "23-list-export")
    with page.expect_download() as waiting:
        page.get_by_role("button", name="HTML transcript").click()
    download = waiting.value
    assert download.suggested_filename.startswith("conversations-") and download.suggested_filename.endswith(".html")
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    # Offline: every request the file would make is refused, and none is made.
    # bypass_csp: only so axe can be injected (the file's own policy lets no script run).
    offline = context.browser.new_context(offline=True, bypass_csp=True, viewport={"width": 1100, "height": 900})
    try:
        asked: list[str] = []
        transcript = offline.new_page()
        transcript.on("request", lambda r: asked.append(r.url) if not r.url.startswith("file:") else None)
        transcript.goto(saved.as_uri())
        assert transcript.locator("section.conversation").count() == 2
        assert transcript.get_by_role("heading", name=SMS_LOST).count() == 1
        assert "my account number is 45721198" in transcript.locator("body").inner_text()
        assert asked == []
        rb.accessible(transcript)
        rb.shot(transcript, tmp_path, "24-export-transcript")
    finally:
        offline.close()
    # One conversation, from its page: a CSV.
    page.goto(f"/review/conversations/{SMS_LOST}")
    rb.accessible(page)
    rb.shot(page, tmp_path, "25-conversation-export")
    with page.expect_download() as waiting:
        page.get_by_role("button", name="CSV").click()
    assert waiting.value.suggested_filename == "conversation-sms-15551230001-15550000000.csv"
    csv_text = Path(waiting.value.path()).read_text()
    assert csv_text.startswith("conversation_id,") and SMS_LOST in csv_text
