"""Labelling a value the worker missed, on SQLite and PostgreSQL: the reviewer gives the words
of the person's turn (selected, so with their span, or typed, and found), the field and the
right value; it is appended to field_labels (kind `missed`), audited, shown on the page, and
written by `channel-worker export --labels` in the span format with its span. Viewers get no
form and a 403; a POST without the session's CSRF token is refused."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path

from escalation.audit import AuditTrail
from tests.conftest import ROOT
from tests.support.review_seed import SMS_HUMAN, SMS_LOST, seed, store_url
from tests.test_review import client_for, csrf_of, log_in
from transcripts.labels import LabelStore
from transcripts.review_queries import kpis
from transcripts.store import TranscriptStore

SAID = "someone stole my card and there are payments I did not make"  # SMS_HUMAN's first turn
PAYMENTS = "there are payments I did not make"


def test_a_missed_value_is_appended_audited_shown_and_exported_with_its_span(database_url: str, tmp_path: Path) -> None:
    asyncio.run(seed(database_url))
    url = store_url(database_url)
    with client_for(url) as client:
        csrf = log_in(client, "rita")
        page = client.get(f"/review/conversations/{SMS_HUMAN}").text
        form = re.search(r'<details class="missed-form" id="missed-form-1">.*?</details>', page, re.S)
        assert form and 'action="/review/missed"' in form.group(0) and 'name="turn" value="1"' in form.group(0)
        assert csrf_of(form.group(0)) == csrf
        base = {"conversation_id": SMS_HUMAN, "turn": "1", "csrf_token": csrf}
        at = SAID.index(PAYMENTS)
        # Selected on the page: the words come with their span.
        saved = client.post("/review/missed", data={**base, "words": PAYMENTS, "span_start": str(at),
                                                    "span_end": str(at + len(PAYMENTS)), "field": "unknown_payments",
                                                    "value": "yes"}, headers={"HX-Request": "true"})
        assert saved.status_code == 200 and saved.text.startswith('<div id="missed" class="missed">')
        assert "<th scope=\"row\">unknown_payments</th><td>yes</td><td>“there are payments I did not make”</td>" in saved.text
        assert 'id="missed-status" hx-swap-oob="innerHTML">Saved: unknown_payments = yes in turn 1.' in saved.text
        # Typed, in other case, with a span that does not hold them (ignored): found in the turn.
        typed = client.post("/review/missed", data={**base, "words": "STOLE my card", "span_start": "0", "span_end": "4",
                                                    "field": "card_situation", "value": "lost"}, follow_redirects=False)
        assert typed.status_code == 303 and typed.headers["location"] == f"/review/conversations/{SMS_HUMAN}#missed"
        # Changed: both kept, the latest counts. No right value: the words are the value.
        client.post("/review/missed", data={**base, "words": "stole", "field": "card_situation"})
        for refused, why in (({"words": "a lost wallet", "field": "card_situation"}, "did not say"),
                             ({"words": "stole", "field": "card situation"}, "field"),
                             ({"words": "stole", "field": "card_situation", "turn": "9"}, "no such turn"),
                             ({"words": "", "field": "card_situation"}, "words")):
            answer = client.post("/review/missed", data={**base, **refused})
            assert answer.status_code == 422 and why in answer.text, (refused, answer.text)
        assert client.post("/review/missed", data={**base, "conversation_id": "sms:+1:+2", "words": "x",
                                                   "field": "f"}).status_code == 404
        page = client.get(f"/review/conversations/{SMS_HUMAN}").text
        shown = re.findall(r'<tr><th scope="row">([^<]+)</th><td>([^<]*)</td><td>“([^”]*)”</td><td class="num">(\d+)</td>'
                           r"<td>([^<]+)</td></tr>", page)
        assert shown == [("card_situation", "stole", "stole", "1", "rita"),
                         ("unknown_payments", "yes", PAYMENTS, "1", "rita")]
        # A verdict on a stored value of the same conversation stays its own label.
        key = re.search(r'name="key" value="([^"]+)"', client.get(f"/review/conversations/{SMS_LOST}").text).group(1)  # type: ignore[union-attr]
        assert client.post("/review/labels", data={"conversation_id": SMS_LOST, "field": key.split("-")[0], "key": key,
                                                   "verdict": "right", "csrf_token": csrf}).status_code in (200, 303)

    async def read() -> tuple[list, list, dict, list, list, object]:
        store = await TranscriptStore.open(url)
        try:
            labels = LabelStore(store)
            return (await labels.for_conversation(SMS_HUMAN), await labels.missed(SMS_HUMAN),
                    await labels.latest(SMS_HUMAN), await labels.dataset(),
                    [a for a in await AuditTrail(store.db).for_conversation(SMS_HUMAN) if a.kind == "review"],
                    await kpis(store))
        finally:
            await store.close()

    every, missed, latest, dataset, audit, figures = asyncio.run(read())
    stole = SAID.index("stole")
    assert [(x.kind, x.field, x.verdict, x.stored_value, x.correct_value, x.span_start, x.span_end, x.labelled_by)
            for x in every] == [
        ("missed", "unknown_payments", "wrong", None, "yes", at, at + len(PAYMENTS), "rita"),
        ("missed", "card_situation", "wrong", None, "lost", stole, stole + len("stole my card"), "rita"),
        ("missed", "card_situation", "wrong", None, "stole", stole, stole + len("stole"), "rita")]
    assert [(x.field, x.correct_value) for x in missed] == [("card_situation", "stole"), ("unknown_payments", "yes")]
    assert latest == {}  # no verdict on a stored value of this conversation
    assert [(a.action, a.inputs) for a in audit] == [
        ("label_missed", {"field": "unknown_payments", "turn": 1, "value": "yes", "span": [at, at + len(PAYMENTS)]}),
        ("label_missed", {"field": "card_situation", "turn": 1, "value": "lost", "span": [stole, stole + 13]}),
        ("label_missed", {"field": "card_situation", "turn": 1, "value": "stole", "span": [stole, stole + 5]})]
    assert all(a.detail == "by rita" for a in audit)
    [record] = [r for r in dataset if r["conversation_id"] == SMS_HUMAN]
    assert record["userInput"] == {"text": SAID} and record["turn"] == 1 and record["absent"] == []
    assert [{k: v for k, v in x.items() if k != "labelled_at"} for x in record["labels"]] == [
        {"slot": "unknown_payments", "value": "yes", "labelled_by": "rita", "missed": True,
         "valueSpan": {"startIndex": at, "endIndex": at + len(PAYMENTS)}},
        {"slot": "card_situation", "value": "stole", "labelled_by": "rita", "missed": True,
         "valueSpan": {"startIndex": stole, "endIndex": stole + 5}}]
    for x in record["labels"]:
        span = x["valueSpan"]
        assert SAID[span["startIndex"]:span["endIndex"]] in ("stole", PAYMENTS)
    assert (figures.labelled, figures.labelled_right) == (1, 1)  # labelled accuracy: stored values only

    out = tmp_path / "labels.jsonl"
    env = {"PATH": "/usr/bin:/bin", **({"DATABASE_URL": url} if url.startswith("postgres")
                                       else {"CHANNEL_WORKER_VAR": str(Path(url).parent)})}
    done = subprocess.run([sys.executable, "-m", "worker.cli", "export", "--labels", "-o", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert [json.loads(line) for line in out.read_text().splitlines()] == dataset


def test_viewers_get_no_form_and_a_refusal(database_url: str) -> None:
    asyncio.run(seed(database_url))
    url = store_url(database_url)
    with client_for(url) as client:
        csrf = log_in(client, "vic")
        listing = client.get("/review/conversations?channel=sms").text
        for ref in re.findall(r'href="(/review/conversations/r\.[^"]+)"', listing):
            page = client.get(ref).text
            assert "missed-form" not in page and "/review/missed" not in page and "field-names" not in page
        answer = client.post("/review/missed", data={"conversation_id": SMS_HUMAN, "turn": "1", "words": "stole",
                                                     "field": "card_situation", "csrf_token": csrf})
        assert answer.status_code == 403
    with client_for(url) as client:  # a reviewer, but without the session's CSRF token
        csrf = log_in(client, "rita")
        form = {"conversation_id": SMS_HUMAN, "turn": "1", "words": "stole", "field": "card_situation"}
        assert client.post("/review/missed", data=form).status_code == 403
        assert client.post("/review/missed", data={**form, "csrf_token": csrf[::-1]}).status_code == 403
    with client_for(url) as client:  # no session: to the login form, nothing stored
        answer = client.post("/review/missed", data=form, follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/review/login")

    async def count() -> int:
        store = await TranscriptStore.open(url)
        try:
            return len(await LabelStore(store).for_conversation(SMS_HUMAN))
        finally:
            await store.close()

    assert asyncio.run(count()) == 0
