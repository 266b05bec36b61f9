"""The review console in a real browser: Debian's chromium driven by Playwright (never
`playwright install`; the browser is /usr/bin/chromium, from scripts/install-system-packages.sh).

Each page is screenshotted into the test's tmp folder and copied to var/screenshots/ (gitignored)
for a person to look at, and checked with axe-core (vendored, tests/support/vendor/axe.min.js):
no serious or critical violation.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import playwright.sync_api as playwright_api  # a dev dependency in the lock file: never skipped
import pytest
import uvicorn

from tests.conftest import ROOT
from tests.support.receivers import free_port
from tests.support.review_seed import BOOKING, PASSWORD, SMS_LOST, seed, store_url
from worker.review import create_review_app

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
AXE = ROOT / "tests/support/vendor/axe.min.js"
SHOTS = ROOT / "var/screenshots"

if not CHROMIUM.exists():  # what CI skips nobody checks: a missing browser fails the run
    pytest.fail("chromium is not installed at /usr/bin/chromium (scripts/install-system-packages.sh installs it)",
                pytrace=False)


class Server:
    def __init__(self, url: str):
        self.url = url
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(create_review_app(url, "account_support"), host="127.0.0.1", port=self.port,
                                log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "review server did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    url = str(tmp_path_factory.mktemp("review-browser") / "worker.sqlite")
    # In a thread of its own: Playwright's sync API keeps an event loop running in this one.
    seeding = threading.Thread(target=lambda: asyncio.run(seed(url)))
    seeding.start()
    seeding.join()
    with Server(store_url(url)) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with playwright_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser, server: Server):  # noqa: ANN001, ANN201
    # bypass_csp: only so axe can be injected; the pages' own CSP is checked by test_review.py.
    context = browser.new_context(base_url=server.base, bypass_csp=True, viewport={"width": 1280, "height": 900})
    try:
        yield context.new_page()
    finally:
        context.close()


def shot(page, tmp_path: Path, name: str) -> None:  # noqa: ANN001
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    SHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, SHOTS / path.name)


def accessible(page) -> None:  # noqa: ANN001
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    bad = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3]) for v in result["violations"]
           if v["impact"] in ("serious", "critical")]
    assert not bad, f"axe: {bad}"


def log_in(page, name: str, password: str = PASSWORD) -> None:  # noqa: ANN001
    page.goto("/review/login")
    page.fill("#username", name)
    page.fill("#password", password)
    page.click("button[type=submit]")


def test_no_session_goes_to_login_and_back_to_the_page_asked_for(page, tmp_path: Path) -> None:  # noqa: ANN001
    page.goto("/review/conversations?channel=sms")
    assert "/review/login?next=" in page.url
    accessible(page)
    shot(page, tmp_path, "01-login")
    page.fill("#username", "rita")
    page.fill("#password", "wrong password here")
    page.click("button[type=submit]")
    assert page.get_by_role("alert").inner_text() == "Wrong user name or password."
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/review/conversations?channel=sms")
    assert page.locator("table.list tbody tr").count() == 2


def test_filter_open_a_conversation_see_the_highlights_and_label_a_value(page, tmp_path: Path) -> None:  # noqa: ANN001
    log_in(page, "rita")
    page.wait_for_url("**/review/conversations")
    assert page.locator("table.list tbody tr").count() == 5
    accessible(page)
    shot(page, tmp_path, "02-conversations")
    page.select_option("#channel", "sms")
    page.check("#low_confidence")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**channel=sms**")
    assert "low_confidence=yes" in page.url
    assert page.locator("table.list tbody tr").count() == 1
    page.goto("/review/conversations?q=45721198")
    page.click(f"a:has-text('{SMS_LOST}')")
    page.wait_for_url("**/review/conversations/sms:**")
    mark = page.locator("mark.value", has_text="45721198")
    tip = mark.locator(".tip")
    assert not tip.is_visible()
    mark.focus()
    assert tip.is_visible() and tip.inner_text() == "account_number = 45721198 · confidence 0.90 · turn 2"
    assert page.locator("li.event.escalation", has_text="action:freeze_card").count() >= 1
    accessible(page)
    shot(page, tmp_path, "03-conversation")
    row = page.locator("tr#value-account_number-2-21")
    row.get_by_label("Wrong").check()
    row.get_by_label("Right value of account_number").fill("45721189")
    url = page.url
    row.get_by_role("button", name="Save label").click()
    expect = playwright_api.expect
    expect(page.locator("tr#value-account_number-2-21 .label-now")).to_contain_text("wrong: should be 45721189")
    assert page.url == url  # htmx swapped the row in place
    shot(page, tmp_path, "04-labelled")
    page.goto(f"/review/conversations/{BOOKING}")
    assert page.locator("mark.value").count() == 3


def test_a_viewer_sees_personal_data_masked(page, tmp_path: Path) -> None:  # noqa: ANN001
    log_in(page, "vic")
    page.wait_for_url("**/review/conversations")
    assert "+1555" not in page.content()
    page.goto("/review/conversations?q=45721198")
    page.locator("table.list tbody a").first.click()
    page.wait_for_url("**/review/conversations/r.**")
    text = page.locator("main").inner_text()
    assert "45721198" not in text and "[number]" in text and "Ana" not in text
    assert "45721189" not in text  # a reviewer's correction (test above) is masked too
    assert page.get_by_role("button", name="Save label").count() == 0
    accessible(page)
    shot(page, tmp_path, "05-viewer-masked")


def test_a_post_without_the_csrf_token_is_refused(page) -> None:  # noqa: ANN001
    log_in(page, "rita")
    page.wait_for_url("**/review/conversations")
    answer = page.request.post("/review/labels", form={"conversation_id": SMS_LOST, "field": "account_number",
                                                         "key": "account_number-2-21", "verdict": "right"})
    assert answer.status == 403


def test_wrong_passwords_are_rate_limited(browser, tmp_path: Path) -> None:  # noqa: ANN001
    # A server of its own: the limit counts per client address, and every test here is 127.0.0.1.
    url = str(tmp_path / "worker.sqlite")
    seeding = threading.Thread(target=lambda: asyncio.run(seed(url)))
    seeding.start()
    seeding.join()
    with Server(store_url(url)) as own:
        context = browser.new_context(base_url=own.base)
        page = context.new_page()
        for i in range(10):
            log_in(page, "ada", f"not the password {i}")
            assert page.get_by_role("alert").inner_text() == "Wrong user name or password."
        log_in(page, "ada")  # the right password, too late
        assert page.get_by_role("alert").inner_text() == "Too many failed attempts. Wait a minute and try again."
        assert "/review/login" in page.url
        shot(page, tmp_path, "06-rate-limited")
        context.close()


async def _new_handoff(url: str) -> None:
    from escalation.queue import HumanQueue
    from transcripts.store import TranscriptStore

    store = await TranscriptStore.open(url)
    try:
        await HumanQueue(store.db).open("sms:+15551239999:+15550000000", "account_support", "sms", "asks_for_human",
                                        "You asked to speak with a person.", {"summary": "new"})
    finally:
        await store.close()


def test_the_human_queue_page_claims_and_resolves(page, server: Server, tmp_path: Path) -> None:  # noqa: ANN001
    log_in(page, "rita")
    page.wait_for_url("**/review/conversations")
    page.get_by_role("link", name="Human queue").click()
    page.wait_for_url("**/review/queue")
    rows = page.locator("table.queue tbody tr")
    assert rows.count() == 4
    accessible(page)
    shot(page, tmp_path, "07-queue")
    first = rows.first
    handoff = first.get_attribute("id")
    first.get_by_role("button", name="Claim").click()
    assert page.get_by_role("status").inner_text().endswith(": claimed.")
    row = page.locator(f"tr#{handoff}")
    assert "by rita" in row.inner_text()
    row.get_by_label("Reply by SMS").fill("Hi, this is Rita from the bank: your card is frozen now.")
    row.get_by_role("button", name="Send").dblclick()  # a double submit
    expect = playwright_api.expect
    expect(page.get_by_role("status")).to_contain_text("reply")
    page.goto(f"/review/conversations/{SMS_LOST}")
    assert page.locator("li.turn.human").count() == 1  # stored (and queued) once
    assert "rita (a person, from the queue)" in page.locator("li.turn.human").inner_text()
    shot(page, tmp_path, "09-human-reply")
    page.goto("/review/queue")
    row = page.locator(f"tr#{handoff}")
    row.get_by_label(re.compile("Note on handoff")).fill("called back, card frozen")
    row.get_by_role("button", name="Resolve").click()
    assert page.get_by_role("status").inner_text().endswith(": resolved.")
    assert page.locator(f"tr#{handoff}").count() == 0
    # A handoff arriving meanwhile is announced without reloading (htmx asks every 10 s).
    assert page.locator("p.news").inner_text() == ""
    arrive = threading.Thread(target=lambda: asyncio.run(_new_handoff(server.url)))
    arrive.start()
    arrive.join()
    playwright_api.expect(page.locator("p.news")).to_have_text(re.compile("1 new handoff since"), timeout=15_000)
    page.goto("/review/queue?status=resolved")
    assert "called back, card frozen" in page.locator(f"tr#{handoff}").inner_text()
    shot(page, tmp_path, "08-queue-resolved")


def test_the_kpi_page_draws_its_charts_on_the_server(page, tmp_path: Path) -> None:  # noqa: ANN001
    log_in(page, "vic")
    page.wait_for_url("**/review/conversations")
    page.get_by_role("link", name="KPIs").click()
    page.wait_for_url("**/review/kpis")
    figures = page.locator("dl.kpis").inner_text()
    assert "Conversations\n5" in figures and "Escalation rate\n80.0%" in figures
    # The chart's accessible name carries every number; the bars carry them as text too.
    rules = page.get_by_role("img", name=re.compile("Escalations by rule: action:freeze_card 2 \\(40.0%\\)"))
    assert rules.count() == 1
    assert "asks_for_human" in (rules.text_content() or "") and "1 · 20.0%" in (rules.text_content() or "")
    accessible(page)
    shot(page, tmp_path, "10-kpis")


def test_serve_mounts_the_console_beside_the_worker(browser, tmp_path: Path) -> None:  # noqa: ANN001
    """The pages under `channel-worker serve` itself (not the console alone): log in with an
    operator made by `users add`, and the JSON operator routes still want HTTP Basic."""
    import subprocess
    import sys

    import httpx

    from tests.support.server import WorkerServer

    var = tmp_path / "var"
    env = {"CHANNEL_WORKER_VAR": str(var), "PATH": "/usr/bin:/bin"}
    added = subprocess.run([sys.executable, "-m", "worker.cli", "users", "add", "ada", "--role", "admin"], cwd=ROOT,
                           env=env, input=PASSWORD + "\n", capture_output=True, text=True, timeout=120)
    assert added.returncode == 0, added.stderr
    server = WorkerServer("examples/account_support.yaml", {}, var)
    try:
        server.wait_ready()
        context = browser.new_context(base_url=server.base_url, bypass_csp=True)
        page = context.new_page()
        page.goto("/review/")  # no such page (no slash redirects): a 404, not a way around the login
        page.goto("/review/conversations")
        assert "/review/login" in page.url
        page.fill("#username", "ada")
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url("**/review/conversations")
        assert page.locator("td.empty").inner_text() == "No conversation matches this filter."
        page.get_by_role("link", name="KPIs").click()
        assert page.locator("dl.kpis").inner_text().startswith("Conversations\n0")
        context.close()
        assert httpx.get(f"{server.base_url}/queue").status_code == 401
    finally:
        server.stop()
