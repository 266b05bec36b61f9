"""The KPI page in a real browser (Debian's chromium under Playwright, as tests/test_review_browser.py,
whose helpers it uses): the hand-worked figures of tests/test_review_kpis.py's seed render, the
charts are named with their numbers, axe finds no serious violation, and a viewer sees no
personal data. Its screenshot goes to var/screenshots/ (docs/images/review-kpis.png is it, copied by
hand, so a test run leaves docs/images as committed)."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from escalation.rules import DriftBand
from tests.test_review_browser import Server, accessible, browser, log_in, page, shot  # noqa: F401 (fixtures)
from tests.test_review_kpis import PII, seed_kpis
from worker.review import create_review_app


class KpiServer(Server):
    """The console alone, as `channel-worker review` runs it for a spec with a labelled-accuracy band."""

    def __init__(self, url: str):
        super().__init__(url)
        app = create_review_app(url, "account_support", drift=DriftBand(min_labelled_accuracy=0.9, label_window=5))
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    url = str(tmp_path_factory.mktemp("review-kpis-browser") / "worker.sqlite")
    seeded: list[str] = []
    # In a thread of its own: Playwright's sync API keeps an event loop running in this one.
    seeding = threading.Thread(target=lambda: seeded.append(asyncio.run(seed_kpis(url))))
    seeding.start()
    seeding.join()
    with KpiServer(seeded[0]) as running:
        yield running


def test_the_kpi_page_renders_the_seeded_numbers(page, tmp_path: Path) -> None:  # noqa: ANN001, F811
    log_in(page, "vic")  # a viewer: the page is for every role
    page.wait_for_url("**/review/conversations")
    page.get_by_role("link", name="KPIs").click()
    page.wait_for_url("**/review/kpis")
    figures = page.locator("dl.kpis").inner_text()
    for name, value in [("Conversations", "8"), ("Ended", "7"), ("Completion", "57.1%"), ("Success (confirmed)", "42.9%"),
                        ("Escalation rate", "28.6%"), ("Abandonment", "14.3%"), ("Mean handle time", "2.4 min"),
                        ("Re-asks", "0.62"), ("Fallbacks", "0.88"), ("Labelled accuracy", "71.4%"),
                        ("Voice latency p50", "1,000 ms"), ("Voice latency p95", "1,500 ms")]:
        assert f"{name}\n{value}" in figures, name
    # Charts: their accessible names carry every number; the bars carry them as text too.
    outcomes = page.get_by_role("img", name="Conversations by outcome: completed 4 (50.0%), escalated 2 (25.0%), "
                                            "open 1 (12.5%), abandoned 1 (12.5%)")
    assert outcomes.count() == 1 and "4 · 50.0%" in (outcomes.text_content() or "")
    latency = page.get_by_role("img", name=re.compile(r"Voice reply latency percentiles.*p50 1,000 ms, p90 1,500 ms"))
    assert latency.count() == 1
    assert page.get_by_role("img", name=re.compile(r"^Re-asks per field: account_number 2 \(40\.0%\)")).count() == 1
    assert page.get_by_role("img", name=re.compile(r"account_number 2 of 4 · 50\.0%")).count() == 1
    # The tables: each dimension, as headed rows.
    task = page.get_by_role("table", name="KPIs by task")
    lost = task.get_by_role("row", name=re.compile("^lost_card"))
    assert lost.inner_text().split("\t")[:6] == ["lost_card", "4", "4", "75.0%", "50.0%", "25.0%"]
    day = page.get_by_role("table", name="KPIs by day").get_by_role("row", name=re.compile("^2026-11-03"))
    assert day.inner_text().split("\t")[:3] == ["2026-11-03", "5", "4"]
    assert page.get_by_role("table", name="KPIs by spec version").get_by_role("row", name=re.compile("^v2")).count() == 1
    assert page.get_by_role("alert").inner_text().startswith("Alarm: labelled accuracy 0.60 is below 0.90")
    html = page.content()
    for pii in PII:
        assert pii not in html, pii
    accessible(page)
    shot(page, tmp_path, "11-kpis-seeded")  # var/screenshots/11-kpis-seeded.png is docs/images/review-kpis.png
    # The period form narrows the figures (and keeps its choice).
    page.select_option("#worker", "restaurant_booking")
    page.fill("#since", "2026-11-03")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**worker=restaurant_booking**")
    assert "Conversations\n2" in page.locator("dl.kpis").inner_text()
    assert page.locator("#worker").input_value() == "restaurant_booking"
    # A task row links to the conversation list filtered by that task.
    page.get_by_role("table", name="KPIs by task").get_by_role("link", name="book").click()
    page.wait_for_url("**/review/conversations?task=book")
    assert page.locator("table.list tbody tr").count() == 1
