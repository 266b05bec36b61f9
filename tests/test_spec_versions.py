"""Spec versions: every conversation keeps the version of the spec that ran it (its `version:`
label and content hash); exports, the status KPIs and a candidate rollout use it; `spec diff`
lists what changed in behaviour between two specs."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from dialogue.events import Turn
from dialogue.spec import WorkerSpec
from dialogue.spec_diff import diff_specs
from dialogue.spec_loader import load_spec, parse_spec
from storage import migrations
from storage.db import Database
from storage.migrations import MIGRATIONS, migrate
from transcripts.export import export
from transcripts.store import ExportFilter, TranscriptStore
from tests.conftest import ROOT, SPECS
from worker.config import Settings
from worker.rollout import CandidateRefused, SpecRollout, check_candidate, in_share
from worker.runtime import open_runtime

RESTAURANT = SPECS / "restaurant_booking.yaml"
MONDAY = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)
CANDIDATE_GREETING = ("Hi, this is Sam at Trattoria Luigi.", "Hello from the new Luigi's.")


def reformatted(text: str) -> str:
    """The same spec written otherwise: comments, blank lines, another key order and spacing."""
    assert "constraints: {min: 1, max: 12}" in text
    return ("# reformatted\n" + text.replace("\nfields:", "\n\n# what we collect\nfields:", 1)
            .replace("constraints: {min: 1, max: 12}", "constraints: {max: 12,   min: 1}   # party size", 1))


def variant(tmp_path: Path, name: str, *replacements: tuple[str, str], version: str | None = None) -> Path:
    """A copy of the restaurant spec with some text replaced and, optionally, a `version:` label."""
    text = RESTAURANT.read_text(encoding="utf-8")
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new, 1)
    if version is not None:
        text = text.replace("name: restaurant_booking\n", f"name: restaurant_booking\nversion: \"{version}\"\n", 1)
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def cli(*args: str, url: str | None = None, var: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    if url is not None and url.startswith("postgres"):
        env["DATABASE_URL"] = url
    elif url is not None:
        env["CHANNEL_WORKER_VAR"] = str(Path(url).parent)
    elif var is not None:
        env["CHANNEL_WORKER_VAR"] = str(var)
    return subprocess.run([sys.executable, "-m", "worker.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=180)


def sqlite_url(tmp_path: Path) -> str:
    """The file `channel-worker` itself opens under CHANNEL_WORKER_VAR."""
    return str(tmp_path / "var" / "transcripts.sqlite")


async def talk(conversations, conversation_id: str, *lines: str) -> list[str]:  # noqa: ANN001
    """Start a console conversation and say `lines`; the worker's replies, greeting first."""
    replies = [(await conversations.handle(Turn(conversation_id=conversation_id, channel="console", text=None,
                                                time=MONDAY))).reply]
    for line in lines:
        result = await conversations.handle(Turn(conversation_id=conversation_id, channel="console", text=line,
                                                 time=MONDAY))
        replies.append(result.reply)
    return replies


# --- the version of a spec -------------------------------------------------------------------

def test_a_spec_without_a_version_is_still_valid_and_a_version_is_kept(tmp_path: Path) -> None:
    assert load_spec(RESTAURANT).version is None
    assert load_spec(variant(tmp_path, "v.yaml", version="2026-11-23")).version == "2026-11-23"


def test_the_content_hash_ignores_formatting_and_comments_but_not_a_changed_line(tmp_path: Path) -> None:
    plain = load_spec(RESTAURANT)
    text = RESTAURANT.read_text(encoding="utf-8")
    assert parse_spec(reformatted(text)).content_hash() == plain.content_hash()
    assert len(plain.content_hash()) == 64
    changed = load_spec(variant(tmp_path, "c.yaml", ("How many people will there be?", "How many of you?")))
    assert changed.content_hash() != plain.content_hash()


# --- migration 14 and what is stored -----------------------------------------------------------

async def test_migration_14_adds_the_spec_version_and_old_conversations_keep_none(
        database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    db = await Database.open(database_url)
    try:
        monkeypatch.setattr(migrations, "MIGRATIONS", [m for m in MIGRATIONS if m.version < 14])
        await migrate(db)
        await db.execute("INSERT INTO conversations (id, worker, channel, started_at, updated_at, fields, turns) "
                         "VALUES (?, ?, ?, ?, ?, J?, 0)", ("old-1", "restaurant_booking", "sms", MONDAY, MONDAY, {}))
        monkeypatch.setattr(migrations, "MIGRATIONS", MIGRATIONS)
        assert (await migrate(db))[0] == 14  # and any later ones
        store = TranscriptStore(db)
        old = await store.conversation("old-1")
        assert old is not None and (old.spec_version, old.spec_hash) == (None, None)
    finally:
        await db.close()


async def test_a_conversation_stores_the_version_and_hash_of_the_spec_it_started_on(
        database_url: str, tmp_path: Path) -> None:
    spec = load_spec(variant(tmp_path, "v3.yaml", version="v3"))
    async with open_runtime(spec, Settings(database_url=database_url)) as runtime:
        await talk(runtime.conversations, "c-1", "table for 4 tomorrow at 7pm")
        record = await runtime.store.conversation("c-1")
    assert record is not None
    assert (record.spec_version, record.spec_hash) == ("v3", spec.content_hash())


async def test_the_stored_version_never_changes_after_the_conversation_started(database_url: str, tmp_path: Path) -> None:
    first = load_spec(variant(tmp_path, "a.yaml", version="a"))
    second = load_spec(variant(tmp_path, "b.yaml", CANDIDATE_GREETING, version="b"))
    async with open_runtime(first, Settings(database_url=database_url)) as runtime:
        await talk(runtime.conversations, "c-1")
    async with open_runtime(second, Settings(database_url=database_url)) as runtime:  # the file was replaced
        await runtime.conversations.handle(Turn(conversation_id="c-1", channel="console", text="table for 2",
                                                time=MONDAY))
        record = await runtime.store.conversation("c-1")
    assert record is not None and (record.spec_version, record.spec_hash) == ("a", first.content_hash())


# --- export and status -----------------------------------------------------------------------

async def _two_versions(database_url: str, tmp_path: Path) -> tuple[WorkerSpec, WorkerSpec]:
    a = load_spec(variant(tmp_path, "a.yaml", version="a"))
    b = load_spec(variant(tmp_path, "b.yaml", CANDIDATE_GREETING, version="b"))
    async with open_runtime(a, Settings(database_url=database_url)) as runtime:
        await talk(runtime.conversations, "a-done", "table for 4 tomorrow at 7pm", "Maria Lopez", "yes")
        await talk(runtime.conversations, "a-open", "table for 2")
    async with open_runtime(b, Settings(database_url=database_url)) as runtime:
        await talk(runtime.conversations, "b-human", "can I speak to a person")
    return a, b


async def test_exports_carry_the_spec_version_and_filter_by_label_or_hash(database_url: str, tmp_path: Path) -> None:
    a, b = await _two_versions(database_url, tmp_path)
    store = await TranscriptStore.open(database_url)
    try:
        out = io.StringIO()
        await export(store, out, "jsonl", ExportFilter())
        rows = {r["id"]: r for r in map(json.loads, out.getvalue().splitlines())}
        assert {k: (r["spec_version"], r["spec_hash"]) for k, r in rows.items()} == {
            "a-done": ("a", a.content_hash()), "a-open": ("a", a.content_hash()), "b-human": ("b", b.content_hash())}
        out = io.StringIO()
        await export(store, out, "csv", ExportFilter(spec_version="b"))
        events = list(csv.DictReader(io.StringIO(out.getvalue())))
        assert {e["conversation_id"] for e in events} == {"b-human"}
        assert {(e["spec_version"], e["spec_hash"]) for e in events} == {("b", b.content_hash())}
        by_hash = ExportFilter(spec_version=a.content_hash()[:10])
        assert await store.count_conversations(by_hash) == 2
        assert await store.count_conversations(ExportFilter(spec_version="nope")) == 0
    finally:
        await store.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_the_export_command_filters_by_spec_version(database_url: str, tmp_path: Path) -> None:
    db_file = sqlite_url(tmp_path)
    Path(db_file).parent.mkdir()
    await _two_versions(db_file, tmp_path)
    result = cli("export", "--spec-version", "a", url=db_file)
    assert result.returncode == 0, result.stderr
    assert sorted(json.loads(line)["id"] for line in result.stdout.splitlines()) == ["a-done", "a-open"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_status_breaks_the_kpis_down_per_spec_version(database_url: str, tmp_path: Path) -> None:
    db_file = sqlite_url(tmp_path)
    Path(db_file).parent.mkdir()
    a, b = await _two_versions(db_file, tmp_path)
    result = cli("status", "--worker", str(tmp_path / "b.yaml"), url=db_file)
    assert result.returncode == 0, result.stderr
    versions = {v["spec_version"]: v for v in json.loads(result.stdout)["by_spec_version"]}
    assert versions["a"] == {"spec_version": "a", "spec_hash": a.content_hash(), "conversations": 2, "ended": 1,
                             "completion_rate": 1.0, "escalation_rate": 0.0,
                             "mean_confidence": pytest.approx(versions["a"]["mean_confidence"])}
    assert 0.5 < versions["a"]["mean_confidence"] <= 1.0
    assert versions["b"]["spec_hash"] == b.content_hash()
    assert (versions["b"]["conversations"], versions["b"]["ended"], versions["b"]["escalation_rate"],
            versions["b"]["completion_rate"]) == (1, 1, 1.0, 0.0)


# --- serve --candidate -------------------------------------------------------------------------

def test_the_share_is_decided_by_a_stable_hash_of_the_conversation_id() -> None:
    ids = [f"sms:+1555{n:07d}:+15550000000" for n in range(4000)]
    taken = sum(in_share(i, 50) for i in ids)
    assert 1800 < taken < 2200
    assert 300 < sum(in_share(i, 10) for i in ids) < 500
    assert [in_share(i, 50) for i in ids] == [in_share(i, 50) for i in ids]  # the same answer every time
    assert not any(in_share(i, 0) for i in ids) and all(in_share(i, 100) for i in ids)
    # A conversation in the candidate's share at 10% is in it at any larger share too.
    assert all(in_share(i, 50) for i in ids if in_share(i, 10))


async def test_a_candidate_at_share_50_takes_about_half_and_each_conversation_stays_on_its_spec(
        database_url: str, tmp_path: Path) -> None:
    live = load_spec(variant(tmp_path, "a.yaml", version="a"))
    new = load_spec(variant(tmp_path, "b.yaml", CANDIDATE_GREETING, version="b"))
    ids = [f"console-{n:04d}" for n in range(40)]
    async with open_runtime(live, Settings(database_url=database_url), candidate=new, share=50) as runtime:
        assert isinstance(runtime.conversations, SpecRollout)
        greeted = {i: (await talk(runtime.conversations, i))[0] for i in ids}
        on_b = {i for i, g in greeted.items() if g.startswith("Hello from the new")}
        assert on_b == {i for i in ids if in_share(i, 50)}
        assert 10 <= len(on_b) <= 30
        # Across turns: the next lines of a conversation are answered by the spec it started on.
        for i in ids[:6]:
            await runtime.conversations.handle(Turn(conversation_id=i, channel="console", text="table for 4 tomorrow",
                                                    time=MONDAY))
            record = await runtime.store.conversation(i)
            assert record is not None
            assert (record.spec_version, record.spec_hash) == (("b", new.content_hash()) if i in on_b
                                                               else ("a", live.content_hash()))
    # After a restart with another share, started conversations stay where they were.
    async with open_runtime(live, Settings(database_url=database_url), candidate=new, share=0) as runtime:
        for i in ids:
            engine = await runtime.conversations.engine_for(i)
            assert engine.spec.version == ("b" if i in on_b else "a")
        assert (await runtime.conversations.engine_for("console-new")).spec.version == "a"
    store = await TranscriptStore.open(database_url)
    try:
        from escalation.drift import by_spec_version

        by_version = {v.spec_version: v.conversations for v in by_spec_version(await store.by_spec("restaurant_booking"))}
    finally:
        await store.close()
    assert by_version == {"a": 40 - len(on_b), "b": len(on_b)}


async def test_share_0_and_100_send_every_new_conversation_to_one_spec(database_url: str, tmp_path: Path) -> None:
    live = load_spec(variant(tmp_path, "a.yaml", version="a"))
    new = load_spec(variant(tmp_path, "b.yaml", CANDIDATE_GREETING, version="b"))
    async with open_runtime(live, Settings(database_url=database_url), candidate=new, share=0) as runtime:
        greetings = [(await talk(runtime.conversations, f"zero-{n}"))[0] for n in range(8)]
        assert all(g.startswith("Hi, this is Sam") for g in greetings)
    async with open_runtime(live, Settings(database_url=database_url), candidate=new, share=100) as runtime:
        greetings = [(await talk(runtime.conversations, f"all-{n}"))[0] for n in range(8)]
        assert all(g.startswith("Hello from the new") for g in greetings)
        # Conversations begun at share 0 are still on the live spec.
        assert (await runtime.conversations.engine_for("zero-3")).spec.version == "a"


def test_a_candidate_must_be_the_same_worker_on_the_same_channels(tmp_path: Path) -> None:
    live = load_spec(RESTAURANT)
    with pytest.raises(CandidateRefused, match="keep the worker's `name`"):
        check_candidate(live, load_spec(variant(tmp_path, "n.yaml", ("name: restaurant_booking", "name: other"))))
    no_sms = variant(tmp_path, "s.yaml", ("sms: {max_segments: 2}", "sms: {max_segments: 2, enabled: false}"))
    with pytest.raises(CandidateRefused, match="channels"):
        check_candidate(live, load_spec(no_sms))


def test_serve_refuses_an_invalid_candidate_with_its_file_and_line(tmp_path: Path) -> None:
    broken = variant(tmp_path, "broken.yaml", ("max: 12", "max: many"))
    result = cli("serve", "--worker", str(RESTAURANT), "--candidate", str(broken), "--share", "10", var=tmp_path)
    assert result.returncode == 2
    line = next(n for n, text in enumerate(broken.read_text().splitlines(), 1) if "max: many" in text)
    assert f"{broken}:{line}" in result.stderr
    other = variant(tmp_path, "other.yaml", ("name: restaurant_booking", "name: other_worker"))
    result = cli("serve", "--worker", str(RESTAURANT), "--candidate", str(other), var=tmp_path)
    assert result.returncode == 2 and "keep the worker's `name`" in result.stderr


# --- spec diff ---------------------------------------------------------------------------------

def test_spec_diff_finds_no_change_in_a_reformatted_spec_and_exits_0(tmp_path: Path) -> None:
    text = RESTAURANT.read_text(encoding="utf-8")
    other = tmp_path / "r.yaml"
    other.write_text(reformatted(text), encoding="utf-8")
    assert diff_specs(load_spec(RESTAURANT), load_spec(other)).identical
    result = cli("spec", "diff", str(RESTAURANT), str(other))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no behaviour changes" in result.stdout


def test_spec_diff_lists_each_kind_of_change_and_exits_1(tmp_path: Path) -> None:
    changed = variant(
        tmp_path, "b.yaml",
        ("constraints: {min: 1, max: 12}", "constraints: {min: 1, max: 10}"),
        ("How many people will there be?", "How many of you?"),
        CANDIDATE_GREETING,
        version="2",
    )
    found = diff_specs(load_spec(RESTAURANT), load_spec(changed))
    by_kind = {(c.kind, c.name): c for c in found.changes}
    people = by_kind[("field", "people")]
    assert people.change == "changed"
    assert any(d.startswith("constraints.max: 12") and d.endswith("10.0") for d in people.details)
    assert any(d.startswith("prompt:") for d in people.details)
    assert by_kind[("script", "greeting")].change == "changed"
    assert found.version == (None, "2")
    result = cli("spec", "diff", str(RESTAURANT), str(changed))
    assert result.returncode == 1
    assert "fields (1):" in result.stdout and "script lines (1):" in result.stdout
    as_json = json.loads(cli("spec", "diff", str(RESTAURANT), str(changed), "--json").stdout)
    assert not as_json["identical"] and as_json["b"]["version"] == "2"
    assert {(c["kind"], c["name"], c["change"]) for c in as_json["changes"]} == {
        ("field", "people", "changed"), ("script", "greeting", "changed")}


def test_spec_diff_only_in_the_version_label_is_the_same_behaviour(tmp_path: Path) -> None:
    found = diff_specs(load_spec(RESTAURANT), load_spec(variant(tmp_path, "v.yaml", version="7")))
    assert found.identical and found.hash[0] != found.hash[1]


def test_spec_diff_aligns_task_steps_in_order_and_names_rules_actions_and_knowledge(tmp_path: Path) -> None:
    example = ROOT / "examples" / "restaurant_booking.yaml"
    text = example.read_text(encoding="utf-8")
    edited = (text
              .replace("      - ask: [first_name, last_name]\n      - confirm\n",
                       "      - say: One more thing.\n      - ask: [first_name, last_name]\n      - confirm\n", 1)
              .replace("No problem. Do call again if another day suits you.", "No problem. Call again soon.", 1))
    b = tmp_path / "b.yaml"
    b.write_text(edited, encoding="utf-8")
    found = diff_specs(load_spec(example), load_spec(b))
    steps = [(c.name, c.change) for c in found.changes if c.kind == "step"]
    assert steps == [("book steps.2.then.1", "changed"), ("book steps.3", "added")]
    assert len(found.changes) == 2

    edited = (text
              .replace("      reason: Parties over twelve are booked by our events team.",
                       "      reason: Parties over twelve are booked by our events manager.", 1)
              .replace("/availability?date=", "/slots?date=", 1)
              .replace("  - question: When are you open?", "  - question: When do you open?", 1))
    b.write_text(edited, encoding="utf-8")
    found = diff_specs(load_spec(example), load_spec(b))
    assert [(c.kind, c.name, c.change) for c in found.changes] == [
        ("rule", "large_party", "changed"), ("action", "availability", "changed"),
        ("knowledge", "When are you open?", "removed"), ("knowledge", "When do you open?", "added")]
    assert found.changes[1].details == [
        'url: "${BOOKING_API_URL}/availability?date={date}&time={time}&people={people}" -> '
        '"${BOOKING_API_URL}/slots?date={date}&time={time}&people={people}"']


def test_spec_diff_reports_an_invalid_file_with_its_line_and_exits_2(tmp_path: Path) -> None:
    broken = variant(tmp_path, "broken.yaml", ("max: 12", "max: many"))
    result = cli("spec", "diff", str(RESTAURANT), str(broken))
    assert result.returncode == 2
    assert f"{broken}:" in result.stderr and "max" in result.stderr


def test_serve_with_a_candidate_splits_new_sms_conversations_and_keeps_each_on_its_spec(tmp_path: Path) -> None:
    """The real `serve` process, texted over its signed Twilio webhook by 24 people."""
    from xml.etree import ElementTree

    import httpx
    from twilio.request_validator import RequestValidator

    from tests.support.fake_twilio import FakeTwilio
    from tests.support.server import WorkerServer

    token, account, worker_number = "rollout-token-0123456789abcdef", "AC" + "b" * 32, "+15005550006"
    live = variant(tmp_path, "a.yaml", version="a")
    candidate = variant(tmp_path, "b.yaml", CANDIDATE_GREETING, ("How many people will there be?", "How many of you?"),
                        version="b")
    var = tmp_path / "var"
    people = [f"+1555010{n:04d}" for n in range(24)]

    def text(server: WorkerServer, number: str, body: str) -> str:
        url = server.base_url + "/twilio/sms"
        params = {"MessageSid": f"SM{os.urandom(16).hex()}", "AccountSid": account, "From": number,
                  "To": worker_number, "Body": body, "NumMedia": "0"}
        signature = RequestValidator(token).compute_signature(url, params)
        response = httpx.post(url, data=params, headers={"X-Twilio-Signature": signature}, timeout=30)
        assert response.status_code == 200, response.text
        return " ".join(m.text or "" for m in ElementTree.fromstring(response.text).iter("Message"))

    with FakeTwilio() as twilio:
        env = {"TWILIO_ACCOUNT_SID": account, "TWILIO_AUTH_TOKEN": token, "TWILIO_API_BASE": twilio.base_url}
        server = WorkerServer(str(live), env, var, args=("--candidate", str(candidate), "--share", "50"))
        try:
            server.wait_ready()
            first = {n: text(server, n, "table for tomorrow at 7pm") for n in people}
        finally:
            server.stop()
        on_b = {n for n, reply in first.items() if "Hello from the new" in reply}
        assert on_b == {n for n in people if in_share(f"sms:{n}:{worker_number}", 50)}
        assert 6 <= len(on_b) <= 18
        assert all("How many of you?" in first[n] for n in on_b)
        assert all("How many people will there be?" in first[n] for n in set(people) - on_b)
        # Restarted with the candidate at 0%: the conversations it started stay on it.
        server = WorkerServer(str(live), env, var, args=("--candidate", str(candidate), "--share", "0"))
        try:
            server.wait_ready()
            later = {n: text(server, n, "no, make it 7pm") for n in people[:8]}
            newcomer = text(server, "+15550199999", "hello")
            token = cli("tokens", "create", "dashboard", "--role", "viewer", var=var).stdout.strip()
            over_http = httpx.get(server.base_url + "/status", headers={"Authorization": f"Bearer {token}"}).json()
        finally:
            server.stop()
    for n, reply in later.items():
        assert ("How many of you?" in reply) == (n in on_b), (n, reply)
    assert "Hello from the new" not in newcomer
    status = cli("status", "--worker", str(live), var=var)
    assert status.returncode == 0, status.stderr
    counts = {v["spec_version"]: v["conversations"] for v in json.loads(status.stdout)["by_spec_version"]}
    assert counts == {"a": 24 - len(on_b) + 1, "b": len(on_b)}
    assert {v["spec_version"]: v["conversations"] for v in over_http["by_spec_version"]} == counts


async def test_a_candidate_identical_to_the_live_spec_is_the_live_spec(database_url: str, tmp_path: Path) -> None:
    live = load_spec(variant(tmp_path, "a.yaml", version="a"))
    async with open_runtime(live, Settings(database_url=database_url), candidate=live, share=100) as runtime:
        await talk(runtime.conversations, "same-1", "table for 2")
        assert await runtime.conversations.engine_for("same-1") is runtime.engine
        assert await runtime.conversations.engine_for("never-seen") is runtime.engine
