"""The KPI page and its figures on a seeded database whose numbers are known: eight conversations
written as stored rows (two workers, four channels, four tasks, three spec versions, two days),
labels, and voice latencies. Every expected figure below is worked out by hand from SEED (the
arithmetic is in the comments), not by calling the query again. SQLite and PostgreSQL both."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from escalation.drift import drift_status
from escalation.operators import OperatorStore
from escalation.rules import DriftBand
from storage.migrations import MIGRATIONS
from tests.support.review_seed import store_url
from transcripts.kpis import kpis, percentile
from transcripts.labels import FieldLabel, LabelStore
from transcripts.review_queries import insert_conversations
from transcripts.store import ConversationRecord, Event, TranscriptStore
from worker.operator_auth import hash_password
from worker.review import create_review_app

PASSWORD = "correct horse battery staple"

# id, channel, worker, task, spec_version, spec_hash, outcome, rule, confirmed, started, seconds to the
# last event, reasked fields, fallbacks, lowest confidence, voice latencies (ms)
SEED = [
    ("sms:+15551230001:+15550000000", "sms", "account_support", "lost_card", "v1", "1" * 64, "completed", None,
     1, "2026-11-02T10:00:00+00:00", 120, ["account_number"], 0, 0.95, None),
    ("sms:+15551230002:+15550000000", "sms", "account_support", "lost_card", "v1", "1" * 64, "completed", None,
     0, "2026-11-02T10:10:00+00:00", 60, [], 1, 0.85, None),
    ("email:<kpi-3@mail.example>", "email", "account_support", "dispute", "v1", "1" * 64, "escalated", "asks_for_human",
     0, "2026-11-02T11:00:00+00:00", 300, ["amount", "amount"], 2, 0.55, None),
    ("voice:CA0000000000000000000000000000004", "voice", "account_support", "lost_card", "v2", "2" * 64, "completed", None,
     1, "2026-11-03T09:00:00+00:00", 180, ["account_number"], 1, 0.72, [800, 1000, 1200]),
    ("voice:CA0000000000000000000000000000005", "voice", "account_support", "change_address", "v2", "2" * 64, "abandoned",
     None, 0, "2026-11-03T09:30:00+00:00", 30, [], 0, None, [900, 1500]),
    ("console-kpi-6", "console", "restaurant_booking", "book", None, "abcdef12" + "3" * 56, "completed", None,
     1, "2026-11-03T12:00:00+00:00", 90, [], 0, 0.91, None),
    ("console-kpi-7", "console", "restaurant_booking", None, None, None, None, None,
     0, "2026-11-03T12:30:00+00:00", 600, ["people"], 3, None, None),
    ("sms:+15551230008:+15550000000", "sms", "account_support", "lost_card", "v1", "1" * 64, "escalated",
     "action:freeze_card", 1, "2026-11-03T13:00:00+00:00", 240, [], 0, 0.65, None),
]
# (conversation, field, verdict) in the order given; the latest label of a value counts.
LABELS = [
    ("sms:+15551230001:+15550000000", "account_number", "right"),
    ("sms:+15551230002:+15550000000", "account_number", "wrong"),
    ("email:<kpi-3@mail.example>", "amount", "wrong"),
    ("email:<kpi-3@mail.example>", "amount", "right"),  # replaces the one above
    ("voice:CA0000000000000000000000000000004", "account_number", "wrong"),
    ("console-kpi-6", "people", "right"),
    ("console-kpi-6", "date", "right"),
    ("sms:+15551230008:+15550000000", "account_number", "right"),
]
# What a viewer must never see on the KPI page (the conversations' ids and values hold them).
PII = ["+1555123", "kpi-3@mail.example", "Maria", "Lopez", "45721198", "CA000000"]


def _rows():
    from datetime import datetime, timedelta

    for (cid, channel, worker, task, version, digest, outcome, rule, confirmed, started, seconds, reasked, fallbacks,
         low, latency) in SEED:
        start = datetime.fromisoformat(started)
        end = (start + timedelta(seconds=seconds)).isoformat()
        fields = {"name": {"value": "Maria Lopez", "text": "Maria Lopez", "start": 0, "end": 11, "turn": 1,
                           "confidence": low}} if low is not None else {}
        record = ConversationRecord(
            id=cid, worker=worker, channel=channel, started_at=started, updated_at=end, outcome=outcome,
            escalation={"rule": rule, "reason": "seed", "action": "transfer"} if rule else None, fields=fields, turns=2,
            spec_version=version, spec_hash=digest, min_confidence=low, task=task, tasks=f" {task} " if task else "",
            confirmed=confirmed, reasks=len(reasked), reasked="".join(f" {f}" for f in reasked), fallbacks=fallbacks,
            voice_latency=str(latency) if latency else None)
        events = [Event(conversation_id=cid, channel=channel, direction="in", text="I am Maria Lopez, 45721198",
                        time=started),
                  Event(conversation_id=cid, channel=channel, direction="out", text="Thank you.", time=end,
                        fields=fields, outcome=outcome)]
        yield record, events


async def seed_kpis(url: str) -> str:
    """The database of SEED and LABELS, with operators rita (reviewer) and vic (viewer); its store url."""
    target = store_url(url)
    if not url.startswith("postgres"):
        Path(target).parent.mkdir(parents=True, exist_ok=True)
    store = await TranscriptStore.open(target)
    try:
        await insert_conversations(store, list(_rows()))
        labels = LabelStore(store)
        for cid, field, verdict in LABELS:
            await labels.add(FieldLabel(conversation_id=cid, field=field, turn=1, stored_value="x", verdict=verdict,
                                        correct_value="Maria Lopez" if verdict == "wrong" else None, labelled_by="rita"))
        await labels.add(FieldLabel(conversation_id="console-kpi-6", field="time", turn=1, verdict="wrong",
                                    correct_value="20:00", labelled_by="rita", kind="missed"))  # not a stored value
        for name, role in (("rita", "reviewer"), ("vic", "viewer")):
            await OperatorStore(store.db).add_user(name, role, hash_password(PASSWORD))  # type: ignore[arg-type]
    finally:
        await store.close()
    return target


# The expected figures, by hand from SEED.
# Ended: every conversation but console-kpi-7 -> 7. Completed: 1, 2, 4, 6 -> 4/7 = 57.1%.
# Success (confirmed and neither escalated nor abandoned): 1, 4, 6 -> 3/7 = 42.9% (8 confirmed, then escalated).
# Escalated: 3, 8 -> 2/7 = 28.6%. Abandoned: 5 -> 1/7 = 14.3%.
# Handle: (120 + 60 + 300 + 180 + 30 + 90 + 240) / 7 = 1020 / 7 = 145.71 s = 2.4 min (7 is open: not counted).
# Re-asks: 1 + 2 + 1 + 1 = 5 over 8 conversations = 0.625; account_number 2, amount 2, people 1.
# Fallbacks: 1 + 2 + 1 + 3 = 7 over 8 = 0.875.
# Lowest confidence: 0.95 and 0.91 -> 0.9-1.0; 0.85 -> 0.8; 0.72 -> 0.7; 0.65 -> 0.6; 0.55 -> 0.5.
# Voice latencies: 800, 900, 1000, 1200, 1500 -> p50 by nearest rank = 3rd = 1000; p90, p95, p99 = 5th = 1500.
# Labels (latest per value): sms1 right, sms2 wrong, email amount right, voice4 wrong, kpi-6 people and date
# right, sms8 right -> 5 of 7 = 71.4%; account_number 2 of 4, amount 1 of 1, date 1 of 1, people 1 of 1.
TOTAL = {"conversations": 8, "ended": 7, "completed": 4, "success": 3, "escalated": 2, "abandoned": 1,
         "completion_rate": 0.5714, "success_rate": 0.4286, "escalation_rate": 0.2857, "abandonment_rate": 0.1429,
         "handle_seconds": 145.7, "reasks": 5, "fallbacks": 7, "reasks_per_conversation": 0.625,
         "fallbacks_per_conversation": 0.875, "voice_turns": 5,
         "voice_latency_ms": {"p50": 1000, "p90": 1500, "p95": 1500, "p99": 1500}}


async def test_the_figures_are_the_ones_worked_out_by_hand(database_url: str) -> None:
    store = await TranscriptStore.open(await seed_kpis(database_url))
    try:
        k = await kpis(store)
        assert k.total.summary() == TOTAL
        assert k.by_outcome == {"completed": 4, "escalated": 2, "": 1, "abandoned": 1}
        assert k.by_rule == {"action:freeze_card": 1, "asks_for_human": 1}
        assert k.reasks_by_field == {"account_number": 2, "amount": 2, "people": 1}
        assert k.confidence == [0, 0, 0, 0, 0, 1, 1, 1, 1, 2]
        assert (k.labelled, k.labelled_right) == (7, 5)
        assert k.accuracy_by_field == {"account_number": (2, 4), "amount": (1, 1), "date": (1, 1), "people": (1, 1)}
        by = {dim: {g.key: g for g in groups} for dim, groups in k.by.items()}
        # sms: 1, 2, 8: 2 completed, 1 success (1), 1 escalated (8); handle (120 + 60 + 240) / 3 = 140 s.
        sms = by["channel"]["sms"].summary()
        assert (sms["conversations"], sms["completed"], sms["success"], sms["escalated"], sms["handle_seconds"]) == (3, 2, 1, 1, 140.0)
        # voice: 4 completed and confirmed, 5 abandoned; handle (180 + 30) / 2 = 105 s; latencies as in the total.
        voice = by["channel"]["voice"].summary()
        assert (voice["success_rate"], voice["abandonment_rate"], voice["handle_seconds"]) == (0.5, 0.5, 105.0)
        assert voice["voice_latency_ms"] == {"p50": 1000, "p90": 1500, "p95": 1500, "p99": 1500}
        # console: 6 completed, 7 open -> ended 1, completion 100 %; fallbacks 3 over 2 conversations.
        console = by["channel"]["console"].summary()
        assert (console["ended"], console["completion_rate"], console["fallbacks_per_conversation"]) == (1, 1.0, 1.5)
        assert {t: g.conversations for t, g in by["task"].items()} == {
            "lost_card": 4, "dispute": 1, "change_address": 1, "book": 1, "": 1}
        assert by["task"]["lost_card"].summary()["success"] == 2  # 1 and 4; 8 was confirmed, then escalated
        assert {v: g.conversations for v, g in by["spec_version"].items()} == {"v1": 4, "v2": 2, "abcdef12": 1, "": 1}
        assert {d: g.conversations for d, g in by["day"].items()} == {"2026-11-02": 3, "2026-11-03": 5}
        assert [g.key for g in k.by["day"]] == ["2026-11-02", "2026-11-03"]
        assert {w: g.conversations for w, g in by["worker"].items()} == {"account_support": 6, "restaurant_booking": 2}
        # A period and a worker: 2026-11-03 only, account_support: 4, 5, 8.
        from datetime import datetime, timezone

        day = await kpis(store, since=datetime(2026, 11, 3, tzinfo=timezone.utc), worker="account_support")
        assert (day.total.conversations, day.total.completed, day.total.abandoned, day.total.escalated) == (3, 1, 1, 1)
        assert (day.labelled, day.labelled_right) == (2, 1)  # voice4 wrong, sms8 right
    finally:
        await store.close()


def test_percentiles_are_by_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert [percentile([800, 900, 1000, 1200, 1500], p) for p in (1, 20, 21, 50, 80, 81, 100)] == [
        800, 800, 900, 1000, 1200, 1500, 1500]


async def test_labelled_accuracy_of_the_last_labels_sounds_the_drift_alarm(database_url: str) -> None:
    store = await TranscriptStore.open(await seed_kpis(database_url))
    try:
        # account_support's stored values, latest label each: sms1 right, sms2 wrong, email amount right,
        # voice4 wrong, sms8 right -> 3 of 5 = 0.60.
        status = await drift_status(store, "account_support", DriftBand(window=5, min_labelled_accuracy=0.9,
                                                                         label_window=5))
        assert (status.labels, status.labelled_accuracy) == (5, 0.6)
        assert status.alarms == ["labelled accuracy 0.60 is below 0.90 (last 5 labelled values)"]
        assert not (await drift_status(store, "account_support", DriftBand(min_labelled_accuracy=0.5,
                                                                           label_window=5))).alarms
        quiet = await drift_status(store, "restaurant_booking", DriftBand(min_labelled_accuracy=0.99, label_window=50))
        assert quiet.labels == 2 and quiet.alarms == []  # 2 labels: fewer than a fifth of 50 (and 5)
    finally:
        await store.close()


def _log_in(client: TestClient, name: str) -> None:
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/review/login").text).group(1)
    answer = client.post("/review/login", data={"username": name, "password": PASSWORD, "csrf_token": token},
                         follow_redirects=False)
    assert answer.status_code == 303


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


@pytest.mark.parametrize("who", ["rita", "vic"])
def test_the_page_shows_the_hand_worked_figures_and_no_personal_data(who: str, database_url: str) -> None:
    import asyncio

    url = asyncio.run(seed_kpis(database_url))
    app = create_review_app(url, "account_support", drift=DriftBand(min_labelled_accuracy=0.9, label_window=5))
    with TestClient(app) as client:
        _log_in(client, who)
        answer = client.get("/review/kpis")
        assert answer.status_code == 200
        html, text = answer.text, _text(answer.text)
    for name, value, note in [("Conversations", "8", None), ("Ended", "7", None),
                              ("Completion", "57.1%", "4 completed"), ("Success (confirmed)", "42.9%", "3 confirmed and done"),
                              ("Escalation rate", "28.6%", "2 handed over"), ("Abandonment", "14.3%", "1 left"),
                              ("Mean handle time", "2.4 min", None), ("Re-asks", "0.62", "5 in all"),
                              ("Fallbacks", "0.88", "7 in all"), ("Labelled accuracy", "71.4%", "5 of 7 values"),
                              ("Voice latency p50", "1,000 ms", "5 spoken turns"), ("Voice latency p95", "1,500 ms", None)]:
        assert f" {name} {value} " in text, name
        if note:
            assert note in text
    # Each chart's accessible name carries every number.
    for title in ["Conversations by outcome: completed 4 (50.0%), escalated 2 (25.0%), open 1 (12.5%), abandoned 1 (12.5%)",
                  "Escalations by rule: action:freeze_card 1 (14.3%), asks_for_human 1 (14.3%)",
                  "Re-asks per field: account_number 2 (40.0%), amount 2 (40.0%), people 1 (20.0%)", "2 · 40.0%",
                  "0.5–0.6 1 (16.7%)", "0.9–1.0 2 (33.3%)", "2 · 33.3%",
                  "Share of labelled values marked right, per field: account_number 2 of 4 · 50.0%, amount 1 of 1 · 100.0%",
                  "p50 1,000 ms, p90 1,500 ms, p95 1,500 ms, p99 1,500 ms",
                  "Conversations started per day: 2026-11-02 3, 2026-11-03 5"]:
        assert title in html, title
    # Tables by dimension: sms row, lost_card row, v2 row, a day row.
    assert "sms 3 3 66.7% 33.3% 33.3% 0.0% 2.3 min 0.33 0.33 – –" in text
    assert "voice 2 2 50.0% 50.0% 0.0% 50.0% 105 s 0.50 0.50 1,000 ms 1,500 ms" in text
    assert "lost_card 4 4 75.0% 50.0% 25.0% 0.0% 2.5 min 0.50 0.50 1,000 ms 1,200 ms" in text  # (120+60+180+240)/4 = 150 s; 800, 1000, 1200
    assert "no task 1 0 – – – – – 1.00 3.00 – –" in text
    assert "abcdef12 1 1 100.0% 100.0% 0.0% 0.0% 90 s 0.00 0.00 – –" in text
    assert "2026-11-02 3 3 66.7% 33.3% 33.3% 0.0% 2.7 min 1.00 1.00 – –" in text  # (120+60+300)/3 = 160 s
    # The drift alarm, against the band `channel-worker review` passes.
    assert "Alarm: labelled accuracy 0.60 is below 0.90 (last 5 labelled values)" in text
    assert "Labelled accuracy of the last 5 values labelled in conversations of account_support: 60.0% (5 labelled)" in text
    for pii in PII:
        assert pii not in html, pii


def test_the_page_filters_the_period_and_worker(database_url: str) -> None:
    import asyncio

    url = asyncio.run(seed_kpis(database_url))
    with TestClient(create_review_app(url, "account_support")) as client:
        _log_in(client, "vic")
        text = _text(client.get("/review/kpis?since=2026-11-03&worker=restaurant_booking").text)
    assert " Conversations 2 " in text and " Ended 1 " in text and " Completion 100.0% " in text
    assert "no threshold is set" in text and "No alarm." in text


def test_migration_19_fills_voice_latencies_from_the_call_ended_events(tmp_path: Path) -> None:
    import asyncio

    async def run() -> list:
        store = await TranscriptStore.open(str(tmp_path / "t.sqlite"))
        try:
            cid = "voice:CA1"
            turns = [{"turn": 0, "input": "start", "dialogue_ms": 40, "tts_first_audio_ms": 300},
                     {"turn": 1, "input": "speech", "vad_wait_ms": 600, "stt_ms": 200, "hold_ms": 250,
                      "dialogue_ms": 30, "tts_first_audio_ms": 320},  # 600 + 250 + 30 + 320 = 1200
                     {"turn": 2, "input": "dtmf", "dialogue_ms": 20, "tts_first_audio_ms": 310},
                     {"turn": 3, "input": "speech", "vad_wait_ms": 600, "hold_ms": 100, "dialogue_ms": 50}]  # no audio
            for e in (Event(conversation_id=cid, channel="voice", direction="system", text=None,
                            time="2026-11-03T09:00:00+00:00", metadata={"event": "started"}),
                      Event(conversation_id=cid, channel="voice", direction="system", text=None,
                            time="2026-11-03T09:01:00+00:00", metadata={"event": "call ended", "turns": turns})):
                await store.append(e, worker="w")
            live = (await store.conversation(cid)).voice_latency  # kept by the summary update
            await store.db.execute("UPDATE conversations SET voice_latency = NULL")
            update = next(s for s in next(m for m in MIGRATIONS if m.version == 19).sqlite if s.startswith("UPDATE"))
            await store.db.execute(update)
            return [live, (await store.conversation(cid)).voice_latency]
        finally:
            await store.close()

    live, migrated = asyncio.run(run())
    assert live == "[1200]" and migrated == "[1200]"


def test_status_prints_the_labelled_accuracy_alarm_and_exits_3(tmp_path: Path) -> None:
    import asyncio
    import json
    import subprocess
    import sys

    from tests.conftest import ROOT

    url = asyncio.run(seed_kpis(str(tmp_path / "worker.sqlite")))
    spec = tmp_path / "bank.yaml"
    spec.write_text((ROOT / "examples/account_support.yaml").read_text().replace(
        "min_mean_confidence: 0.8}", "min_mean_confidence: 0.8, min_labelled_accuracy: 0.9, label_window: 5}"))
    done = subprocess.run([sys.executable, "-m", "worker.cli", "status", "--worker", str(spec)], cwd=ROOT,
                          env={"CHANNEL_WORKER_VAR": str(Path(url).parent), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 3, done.stderr
    figures = json.loads(done.stdout)
    assert (figures["labels"], figures["labelled_accuracy"]) == (5, 0.6)  # as in the drift test above
    assert "drift alarm labelled accuracy 0.60 is below 0.90 (last 5 labelled values)" in " ".join(done.stderr.split())
