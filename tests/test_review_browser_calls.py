"""A call's conversation page in a real browser (Debian's chromium driven by Playwright, as in
tests/test_review_browser.py, whose helpers this uses): the recording's player loads and a turn's
link seeks it; a value the worker missed is labelled with the keyboard alone and comes out of
the export with its span; selecting words fills the form; axe finds no serious violation.
Screenshots go to var/screenshots/ (11-call-missed-value.png is docs/images/review-call.png)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import playwright.sync_api as playwright_api
import pytest

from tests.support.review_call_seed import CALL, EXPECTED, SECOND, seed_calls
from tests.support.review_seed import seed, store_url
from tests.test_review_browser import Server, accessible, browser, log_in, shot  # noqa: F401 (browser: a fixture)
from transcripts.labels import LabelStore
from transcripts.store import TranscriptStore

expect = playwright_api.expect


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("review-browser-calls")
    url = str(base / "worker.sqlite")

    async def both() -> None:
        await seed(url)
        await seed_calls(url, base / "recordings", base / "elsewhere")

    # In a thread of its own: Playwright's sync API keeps an event loop running in this one.
    seeding = threading.Thread(target=lambda: asyncio.run(both()))
    seeding.start()
    seeding.join()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("VOICE_RECORDINGS_DIR", str(base / "recordings"))
        with Server(store_url(url)) as running:
            yield running


@pytest.fixture
def page(browser, server: Server):  # noqa: ANN001, ANN201, F811
    context = browser.new_context(base_url=server.base, bypass_csp=True, viewport={"width": 1280, "height": 900})
    try:
        yield context.new_page()
    finally:
        context.close()


def dataset(url: str) -> list[dict]:
    result: list[list[dict]] = []

    async def read() -> None:
        store = await TranscriptStore.open(url)
        try:
            result.append(await LabelStore(store).dataset())
        finally:
            await store.close()

    reading = threading.Thread(target=lambda: asyncio.run(read()))
    reading.start()
    reading.join()
    return result[0]


def test_the_player_loads_and_a_turns_link_seeks_it(page, tmp_path: Path) -> None:  # noqa: ANN001
    log_in(page, "rita")
    page.wait_for_url("**/review/conversations")
    page.goto(f"/review/conversations/{CALL}")
    player = page.locator("audio#recording")
    expect(player).to_be_visible()
    page.wait_for_function("document.getElementById('recording').readyState >= 1", timeout=15000)
    assert abs(page.evaluate("document.getElementById('recording').duration") - 26.0) < 0.1
    link = page.get_by_role("link", name="Play turn 2 from 0:12.9 in the recording")
    link.click()
    # The player is at the turn (seeking needs the server's Range answers), whether or not
    # this headless browser may play sound.
    page.wait_for_function(f"Math.abs(document.getElementById('recording').currentTime - {EXPECTED['turn 2']}) < 0.6",
                           timeout=15000)
    assert page.evaluate("document.getElementById('recording').error") is None
    assert page.url.endswith(CALL)  # seeking the page's player, not opening the file
    # The keyboard too: focus the greeting's link and press Enter.
    page.get_by_role("link", name="Play the worker's line from 0:00.4 in the recording").first.focus()
    page.keyboard.press("Enter")
    page.wait_for_function("document.getElementById('recording').currentTime < 3.5", timeout=15000)
    assert page.locator(".reread .plain").inner_text().startswith("my account number is for five")
    assert "last word to reply" in page.locator("li.turn.person").nth(1).locator("dl.timings").inner_text()
    accessible(page)
    shot(page, tmp_path, "10-call")


def test_a_missed_value_labelled_with_the_keyboard_is_exported_with_its_span(page, server: Server,  # noqa: ANN001
                                                                            tmp_path: Path) -> None:
    log_in(page, "rita")
    page.wait_for_url("**/review/conversations")
    page.goto(f"/review/conversations/{CALL}")
    # Keyboard only: tab to the turn's "missed value" disclosure, open it, fill the form, submit.
    summary = page.locator("#missed-form-2 summary")
    page.locator("li.turn.person", has=page.locator("#said-2")).locator("a.seek").focus()
    for _ in range(20):
        if page.evaluate("document.activeElement === document.querySelector('#missed-form-2 summary')"):
            break
        page.keyboard.press("Tab")
    expect(summary).to_be_focused()
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    expect(page.locator("#missed-words-2")).to_be_focused()
    page.keyboard.type("account number")
    page.keyboard.press("Tab")
    page.keyboard.type("account_kind")
    page.keyboard.press("Tab")
    page.keyboard.type("current account")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    expect(page.locator("#missed tbody tr")).to_have_count(1)
    expect(page.locator("#missed tbody tr")).to_contain_text("account_kind")
    expect(page.locator("#missed-status")).to_have_text("Saved: account_kind = current account in turn 2.")
    accessible(page)
    shot(page, tmp_path, "11-call-missed-value")
    [record] = [r for r in dataset(server.url) if r["conversation_id"] == CALL]
    at = SECOND.index("account number")
    [label] = record["labels"]
    assert record["userInput"]["text"] == SECOND and record["turn"] == 2
    assert (label["slot"], label["value"], label["valueSpan"], label["missed"]) == (
        "account_kind", "current account", {"startIndex": at, "endIndex": at + len("account number")}, True)


def test_selecting_words_fills_the_form_with_their_span(page) -> None:  # noqa: ANN001
    log_in(page, "rita")
    page.wait_for_url("**/review/conversations")
    page.goto(f"/review/conversations/{CALL}")
    # Select "number is 45721198": across the marked value, whose tooltip is not part of the words.
    page.evaluate("""() => {
        const p = document.getElementById('said-2');
        const first = p.firstChild, mark = p.querySelector('mark').firstChild;
        const range = document.createRange();
        range.setStart(first, first.nodeValue.indexOf('number'));
        range.setEnd(mark, mark.nodeValue.length);
        getSelection().removeAllRanges();
        getSelection().addRange(range);
        p.dispatchEvent(new MouseEvent('mouseup', {bubbles: true}));
    }""")
    form = page.locator("#missed-form-2")
    expect(form).to_have_attribute("open", "")
    at = SECOND.index("number")
    assert form.locator("input[name=words]").input_value() == "number is 45721198"
    assert form.locator("input[name=span_start]").input_value() == str(at)
    assert form.locator("input[name=span_end]").input_value() == str(len(SECOND))
