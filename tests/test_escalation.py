"""A worker hands over exactly when its spec says so, with everything a person needs, and
never acts outside what its spec allows."""

from __future__ import annotations

import asyncio
import getpass
import json
import logging
import os
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from dialogue.spec import WorkerSpec
from dialogue.spec_loader import parse_spec
from escalation.evaluate import Facts, holds
from escalation.notify import Notifier, SmtpSettings
from escalation.rules import EscalationRule
from tests.conftest import ROOT
from tests.support.receivers import FlakySmtp, FlakyWebhook
from tests.support.server import WorkerServer
from tests.support.talk import MONDAY_MORNING, Talk, engine_for

BASE = textwrap.dedent(
    """\
    name: desk
    persona: Alex
    goal: Open a case.
    timezone: Europe/London
    script:
      greeting: Hello.
      confirmation: "Account {account}, amount {amount}, reason {reason}?"
      closing: Done.
    fields:
      - {name: account, type: digits, prompt: "Account number?", constraints: {min_length: 4, max_length: 4}}
      - {name: amount, type: money, prompt: "How much?"}
      - {name: reason, type: choice, prompt: "Why?", constraints: {choices: [billing, fraud, other]}}
    """
)


def spec_with(extra: str) -> WorkerSpec:
    return parse_spec(BASE + textwrap.dedent(extra))


def facts(**kw) -> Facts:  # noqa: ANN003
    base = dict(intents=set(), fields={}, turns=1, reasks={}, elapsed_seconds=0.0, channel="sms",
                local_time=datetime(2026, 11, 23, 10, 0))  # a Monday, 10:00
    base.update(kw)
    return Facts(**base)


def when(condition: dict) -> object:
    return EscalationRule.model_validate({"id": "r", "when": condition, "reason": "x"}).when


FIELD = {"amount": {"value": {"amount": 900.0, "currency": "USD"}, "confidence": 0.95},
         "reason": {"value": "fraud", "confidence": 0.7}}


@pytest.mark.parametrize("condition,fact_args,expected", [
    ({"intent": "human"}, {"intents": {"human"}}, True),
    ({"intent": ["legal", "abuse"]}, {"intents": {"complaint"}}, False),
    ({"field": "reason", "equals": "fraud"}, {"fields": FIELD}, True),
    ({"field": "reason", "in": ["billing", "other"]}, {"fields": FIELD}, False),
    ({"field": "amount", "gt": 500}, {"fields": FIELD}, True),
    ({"field": "amount", "lte": 500}, {"fields": FIELD}, False),
    ({"field": "reason", "confidence_below": 0.82}, {"fields": FIELD}, True),
    ({"field": "amount", "confidence_below": 0.82}, {"fields": FIELD}, False),
    ({"field": "account", "present": False}, {"fields": FIELD}, True),
    ({"count": "turns", "gt": 6}, {"turns": 7}, True),
    ({"count": "reasks", "field": "account", "gte": 2}, {"reasks": {"account": 2}}, True),
    ({"count": "reasks", "gte": 2}, {"reasks": {"account": 1}}, False),
    ({"count": "elapsed_seconds", "gt": 600}, {"elapsed_seconds": 601}, True),
    ({"channel": "voice"}, {"channel": "sms"}, False),
    ({"channel": ["sms", "email"]}, {"channel": "sms"}, True),
    ({"outside_hours": {"start": "09:00", "end": "17:00"}}, {}, False),
    ({"outside_hours": {"start": "09:00", "end": "17:00"}}, {"local_time": datetime(2026, 11, 23, 18, 30)}, True),
    ({"outside_hours": {"days": ["mon", "tue"]}}, {"local_time": datetime(2026, 11, 28, 10, 0)}, True),
    ({"inside_hours": {"start": "09:00", "end": "17:00"}}, {}, True),
    ({"all": [{"intent": "complaint"}, {"count": "turns", "gt": 3}]}, {"intents": {"complaint"}, "turns": 4}, True),
    ({"any": [{"intent": "legal"}, {"field": "amount", "gt": 5000}]}, {"fields": FIELD}, False),
    ({"not": {"channel": "voice"}}, {}, True),
])
def test_each_condition_kind(condition: dict, fact_args: dict, expected: bool) -> None:
    assert holds(when(condition), facts(**fact_args)) is expected


async def test_the_first_rule_in_order_wins_and_every_rule_that_fired_is_audited(tmp_path: Path) -> None:
    spec = spec_with("""
        escalation:
          rules:
            - {id: big_amount, when: {field: amount, gt: 500}, action: transfer, to: "+15550100", reason: Large amounts go to a specialist.}
            - {id: fraud, when: {field: reason, equals: fraud}, action: transfer, to: "+15550199", reason: Fraud desk.}
        """)
    async with engine_for(spec, str(tmp_path / "db")) as engine:
        talk = Talk(engine, channel="sms")
        await talk.start()
        await talk.say("account 1234, $900, it's fraud")
        assert talk.last.escalation.rule == "big_amount"
        assert talk.last.actions[1].to == "+15550100"
        audit = await engine.handoffs.audit.for_conversation("conv-1")
    fired = [(a.rule, a.detail) for a in audit if a.kind == "rule_fired"]
    assert fired == [("big_amount", "acted on"), ("fraud", "fired after big_amount; the first rule in order wins")]
    first = next(a for a in audit if a.kind == "rule_fired")
    assert first.inputs["fields"]["reason"]["value"] == "fraud" and first.inputs["channel"] == "sms"
    kinds = [a.kind for a in audit]
    assert "handoff" in kinds
    assert [a.action for a in audit if a.kind == "action_taken"][-3:] == ["say", "transfer", "end"]


async def test_a_notify_rule_tells_the_team_once_and_the_conversation_goes_on(tmp_path: Path) -> None:
    spec = spec_with("""
        escalation:
          notify: {webhook: "http://127.0.0.1:9/never"}
          rules:
            - {id: legal, when: {intent: legal}, action: notify, reason: Legal action mentioned.}
        """)
    async with engine_for(spec, str(tmp_path / "db")) as engine:
        talk = Talk(engine, channel="email")
        await talk.start()
        reply = await talk.say("my lawyer will hear about this. account 1234")
        assert "How much?" in reply and talk.last.outcome is None
        await talk.say("my lawyer again")
        notes = await engine.handoffs.notifier.all("conv-1")
        queue = await engine.handoffs.queue.list()
    assert [(n.kind, n.payload["rule"]) for n in notes] == [("webhook", "legal")]
    assert queue == []


async def test_an_action_the_spec_does_not_authorise_is_refused_and_audited(tmp_path: Path, caplog) -> None:  # noqa: ANN001
    spec = spec_with("""
        allowed_actions: [reply, ask, confirm, end]
        escalation: {max_reasks: 1, on_reask_limit: escalate}
        """)
    async with engine_for(spec, str(tmp_path / "db")) as engine:
        talk = Talk(engine)
        await talk.start()
        await talk.say("hmm")  # the first words: why the person called, not counted as a failed answer
        await talk.say("err")
        with caplog.at_level(logging.WARNING):
            await talk.say("what")
        kinds = [a.kind for a in talk.last.actions]
        audit = await engine.handoffs.audit.for_conversation("conv-1")
    assert "transfer" not in kinds and kinds[-1] == "end"
    refused = [a for a in audit if a.kind == "action_refused"]
    assert [(a.action, a.rule) for a in refused] == [("transfer", "reask_limit")]
    assert "refused action transfer" in caplog.text
    assert await _queue_empty(tmp_path)


async def _queue_empty(tmp_path: Path) -> bool:
    from storage.db import Database

    db = await Database.open(str(tmp_path / "var" / "transcripts.sqlite"))
    try:
        return (await db.fetchone("SELECT COUNT(*) AS n FROM handoffs"))["n"] == 0
    finally:
        await db.close()


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
async def test_the_audit_trail_cannot_be_edited(account_support: WorkerSpec, database_url: str) -> None:
    async with engine_for(account_support, database_url) as engine:
        talk = Talk(engine)
        await talk.start()
        await talk.say("get me a human")
        db = engine.store.db
        with pytest.raises(Exception, match="append-only"):
            await db.execute("UPDATE audit SET detail = 'x'")
        with pytest.raises(Exception, match="append-only"):
            await db.execute("DELETE FROM audit")
        assert len(await engine.handoffs.audit.for_conversation("conv-1")) >= 3


async def test_the_handoff_packet_has_what_a_person_needs(account_support: WorkerSpec, tmp_path: Path) -> None:
    async with engine_for(account_support, str(tmp_path / "db")) as engine:
        talk = Talk(engine, channel="sms")
        await talk.start()
        await talk.say("12345678")
        await talk.say("someone made suspicious payments, it's fraud")
        [handoff] = await engine.handoffs.queue.list()
    packet = handoff.packet
    assert (handoff.status, handoff.rule, packet["channel"]) == ("open", "high_risk_reason", "sms")
    assert packet["fields"]["account_number"] == {"value": "12345678", "text": "12345678", "confidence": packet["fields"]["account_number"]["confidence"], "turn": 1}
    assert packet["fields"]["reason"]["value"] == "fraud"
    assert "Still missing: callback_phone, email." in packet["summary"]
    assert [t["role"] for t in packet["transcript"]][-1] == "worker"
    assert "fraud team" in packet["transcript"][-1]["text"]
    # On SMS nobody can be put through: the person is told the team will follow up.
    assert packet["transcript"][-1]["text"].startswith("A member of our team will follow up")
    assert "conv-1" in packet["link"]


async def test_notifications_are_retried_until_delivered_exactly_once(account_support: WorkerSpec, tmp_path: Path) -> None:
    with FlakySmtp(refuse=2) as smtp, FlakyWebhook(fail=2) as hook:
        spec = account_support.model_copy(deep=True)
        spec.escalation.notify.email = ["team@northwind.example"]
        spec.escalation.notify.webhook = hook.url
        async with engine_for(spec, str(tmp_path / "db")) as engine:
            notifier = engine.handoffs.notifier
            notifier.smtp = SmtpSettings(host="127.0.0.1", port=smtp.port, tls="none", sender="worker@northwind.example")
            notifier.backoff_base = 0.01
            talk = Talk(engine)
            await talk.start()
            await talk.say("I want to talk to a person")
            for _ in range(50):
                await notifier.deliver_due(datetime.now(timezone.utc) + timedelta(seconds=1))
                if await notifier.pending_count() == 0:
                    break
                await asyncio.sleep(0.02)
            notes = await notifier.all()
    assert sorted((n.kind, n.status, n.attempts) for n in notes) == [("email", "delivered", 3), ("webhook", "delivered", 3)]
    assert len(smtp.accepted) == 1 and smtp.attempts == 3
    mail = smtp.accepted[0]
    assert mail["To"] == "team@northwind.example" and "asks_for_human" not in mail["Subject"]
    assert "You asked to speak with a person." in mail["Subject"]
    assert [status for status, _, _ in hook.calls] == [500, 500, 200]
    keys = {headers["Idempotency-Key"] for _, _, headers in hook.calls}
    assert len(keys) == 1  # every retry is the same notification
    assert hook.calls[-1][1]["rule"] == "asks_for_human"


async def test_drift_alarm_when_escalations_leave_the_band(account_support: WorkerSpec, tmp_path: Path, caplog) -> None:  # noqa: ANN001
    spec = account_support.model_copy(deep=True)
    spec.escalation.drift.window = 10
    async with engine_for(spec, str(tmp_path / "db")) as engine:
        with caplog.at_level(logging.WARNING):
            for i in range(6):
                talk = Talk(engine, conversation_id=f"c{i}", start=MONDAY_MORNING + timedelta(minutes=i))
                await talk.start()
                await talk.say("agent please")
        status = await engine.handoffs.check_drift("c5")
    assert status.escalation_rate == 1.0 and status.conversations == 6
    assert status.alarms == ["escalation rate 1.00 is above 0.40"]
    assert "drift alarm for worker account_support" in caplog.text


def _cli(*args: str, var: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["CHANNEL_WORKER_VAR"] = str(var)
    return subprocess.run([sys.executable, "-m", "worker.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          env=env, input=stdin, timeout=120)


def test_queue_commands_from_handoff_to_release(tmp_path: Path) -> None:
    var = tmp_path / "var"
    worker = ["--worker", "tests/data/specs/account_support.yaml"]
    script = tmp_path / "s.txt"
    script.write_text("my account is 12345678\nI want to talk to a human\n")
    chat = _cli("chat", *worker, "--script", str(script), "--json", "--conversation-id", "q-1", var=var)
    assert json.loads(chat.stdout)["escalation"]["rule"] == "asks_for_human"

    listed = json.loads(_cli("queue", "list", *worker, "--json", var=var).stdout)
    assert [(h["id"], h["status"], h["conversation_id"]) for h in listed] == [(1, "open", "q-1")]
    shown = json.loads(_cli("queue", "show", *worker, "1", var=var).stdout)
    assert shown["packet"]["fields"]["account_number"]["value"] == "12345678"
    assert "claimed by ana" in _cli("queue", "claim", *worker, "1", "--by", "ana", var=var).stdout
    again = _cli("queue", "claim", *worker, "1", "--by", "bo", var=var)
    assert again.returncode == 1 and "is claimed; it cannot be claimed" in again.stderr
    assert "released" in _cli("queue", "release", *worker, "1", "--note", "customer is fine", var=var).stdout
    # A name typed on the command line is who took it; the audit trail names the account that typed it.
    audit = [e for e in json.loads(_cli("export", "--format", "jsonl", var=var).stdout.splitlines()[0])["audit"]
             if e["kind"] == "queue"]
    assert [(e["action"], e["inputs"]["by"]) for e in audit] == [("claim", f"cli:{getpass.getuser()}"),
                                                                  ("release", f"cli:{getpass.getuser()}")]

    # Back with the worker: the next message is answered where the conversation left off.
    script.write_text("it's about a charge on my bill\n")
    resumed = json.loads(_cli("chat", *worker, "--script", str(script), "--json", "--conversation-id", "q-1", var=var).stdout)
    assert resumed["fields"]["reason"]["value"] == "billing"
    assert resumed["escalation"] is None and resumed["turns"][-1]["text"].endswith("call you back on?")

    missing = _cli("queue", "resolve", *worker, "99", var=var)
    assert missing.returncode == 1 and "no handoff 99" in missing.stderr
    export = [json.loads(x) for x in _cli("export", var=var).stdout.splitlines()]
    assert {a["kind"] for a in export[0]["audit"]} >= {"rule_fired", "handoff", "queue", "action_taken"}


def test_the_queue_over_http(tmp_path: Path) -> None:
    import httpx

    var = tmp_path / "var"
    script = tmp_path / "s.txt"
    script.write_text("speak to an agent\n")
    _cli("chat", "--worker", "tests/data/specs/account_support.yaml", "--script", str(script), "--conversation-id", "h-1", var=var)
    # The queue routes are for operators (tests/test_operator_auth.py covers who may do what).
    for name in ("ana", "bo"):
        assert _cli("users", "add", name, "--role", "reviewer", var=var, stdin="a long enough password\n").returncode == 0
    ana = bo = None
    server = WorkerServer("tests/data/specs/account_support.yaml", {}, var)
    base = server.base_url
    try:
        server.wait_ready()
        ana, bo = (httpx.Client(base_url=base, auth=(n, "a long enough password")) for n in ("ana", "bo"))
        [item] = ana.get("/queue", params={"status": "open"}).json()
        assert item["conversation_id"] == "h-1" and item["packet"]["rule"] == "asks_for_human"
        claimed = ana.post(f"/queue/{item['id']}/claim").json()
        assert claimed["status"] == "claimed" and claimed["claimed_by"] == "ana"
        conflict = bo.post(f"/queue/{item['id']}/claim")
        assert conflict.status_code == 409
        assert ana.post(f"/queue/{item['id']}/resolve", json={"note": "called back"}).json()["status"] == "resolved"
        assert ana.get("/queue/999").status_code == 404
        detail = ana.get("/queue/conversations/h-1").json()
        assert detail["conversation"]["outcome"] == "escalated" and any(a["kind"] == "queue" for a in detail["audit"])
        metrics = ana.get("/metrics").text
        assert 'channel_worker_escalation_rate{worker="account_support"} 1.0' in metrics
        assert 'channel_worker_queue_open{worker="account_support"} 0' in metrics
    finally:
        for client in (ana, bo):
            if client is not None:
                client.close()
        server.stop()
