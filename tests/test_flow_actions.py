"""A worker's calls to the business's system, inside its conversations: what the person hears
when the system is slow, failing or answers nonsense (the action's `on_error`, never a crash,
never a silent success); an effect that happens once however often its turn runs (a write
conflict between two engines, a process killed after the system booked), while a step run again
on purpose asks again; and the finished records delivered once each, signed, after the receiver
was down. Real HTTP servers on loopback; SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import pytest
import yaml

from actions.client import idempotency_key
from actions.deliveries import SIGNATURE_HEADER, OutcomeDeliverer, deliveries, verify
from dialogue.engine import DialogueEngine
from dialogue.events import Turn
from dialogue.spec import WorkerSpec
from storage.clock import utcnow
from tests.conftest import ROOT, TEST_DATA
from tests.support.business_api import OutcomeReceiver
from tests.support.flow_api import FlowApi
from tests.support.receivers import free_port
from tests.support.talk import Talk, engine_for

SPEC_PATH = TEST_DATA / "specs" / "flows_restaurant.yaml"
SECRET = "whsec-" + uuid.uuid4().hex
BOOKING = ["I'd like to book a table for 2 tomorrow at 8pm", "no", "Maria"]  # then "yes" books


def spec_with(book_steps: list[Any] | None = None, **availability: Any) -> WorkerSpec:
    """The test spec with its `availability` action changed (timeout, retries, on_error...), or
    the book task's steps replaced."""
    data = yaml.safe_load(SPEC_PATH.read_text())
    action = next(a for a in data["actions"] if a["name"] == "availability")
    action.update(availability)
    if book_steps is not None:
        next(t for t in data["tasks"] if t["name"] == "book")["steps"] = book_steps
    return WorkerSpec.model_validate(data)


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[FlowApi]:
    with FlowApi() as server:
        monkeypatch.setenv("FLOW_API", server.origin)
        monkeypatch.setenv("OUTCOME_SECRET", SECRET)
        monkeypatch.setenv("OUTCOME_URL", "http://127.0.0.1:9/outcomes")
        yield server


@pytest.fixture
def receiver_port(monkeypatch: pytest.MonkeyPatch, api: FlowApi) -> int:
    port = free_port()
    monkeypatch.setenv("OUTCOME_URL", f"http://127.0.0.1:{port}/outcomes")
    return port


@pytest.fixture
async def engine(api: FlowApi, database_url: str) -> AsyncIterator[DialogueEngine]:
    async with engine_for(spec_with(), database_url) as e:
        yield e


def talk(engine: DialogueEngine, channel: str = "console") -> Talk:
    return Talk(engine, conversation_id=f"flow-{uuid.uuid4().hex}", channel=channel)


async def converse(t: Talk, lines: list[str]) -> list[str]:
    replies = [await t.start()]
    for line in lines:
        replies.append(await t.say(line))
    return replies


# --- when the system misbehaves ------------------------------------------------------------------

async def test_a_timeout_says_the_error_line_and_hands_over(api: FlowApi, database_url: str) -> None:
    api.mode["/availability"] = "slow"
    async with engine_for(spec_with(timeout=0.5, retries=0), database_url) as engine:
        t = talk(engine)
        *_, reply = await converse(t, BOOKING[:1])
        assert reply.startswith("Got it. I can't check the book right now. I'm passing you to a colleague")
        assert t.last.outcome == "escalated"
        assert [(c["name"], c["ok"], c["error"]["kind"]) for c in t.last.calls] == [("availability", False, "timeout")]
        handoff = await engine.open_handoff(t.id)
        assert handoff is not None and handoff.reason == "The booking system did not answer."


async def test_a_5xx_then_success_goes_on_as_if_nothing_happened(api: FlowApi, database_url: str) -> None:
    api.mode["/availability"] = "fail:1"
    async with engine_for(spec_with(retries=1), database_url) as engine:
        t = talk(engine)
        *_, reply = await converse(t, BOOKING[:1])
        assert reply == "Got it. Does anyone in your party have a food allergy?"
        assert [(c["name"], c["ok"]) for c in t.last.calls] == [("availability", True)]
        requests = api.to("/availability")
        assert len(requests) == 2 and len({r.headers["Idempotency-Key"] for r in requests}) == 1


async def test_malformed_json_with_continue_says_the_line_and_takes_the_next_step(api: FlowApi, database_url: str) -> None:
    api.mode["/availability"] = "malformed"
    async with engine_for(spec_with(on_error={"say": "I couldn't check, but let's go on.", "then": "continue"}),
                          database_url) as engine:
        t = talk(engine)
        *_, reply = await converse(t, BOOKING[:1])
        assert reply == "Got it. I couldn't check, but let's go on. Does anyone in your party have a food allergy?"
        assert t.last.calls[0]["error"]["kind"] == "malformed_json" and t.last.calls[0]["results"] == {}
        assert t.last.outcome is None


async def test_a_response_outside_the_schema_with_end_ends_the_conversation(api: FlowApi, database_url: str) -> None:
    api.mode["/availability"] = "wrong_type"
    async with engine_for(spec_with(on_error={"say": "Sorry, something is wrong with our bookings.", "then": "end"}),
                          database_url) as engine:
        t = talk(engine)
        *_, reply = await converse(t, BOOKING[:1])
        assert reply == "Got it. Sorry, something is wrong with our bookings. Okay, goodbye."
        assert t.last.outcome == "abandoned" and t.last.ended
        assert t.last.calls[0]["error"]["kind"] == "schema_violation"
        # Nothing of the refused answer was kept, so nothing of it can be said or tested.
        state = await engine.graph.aget_state({"configurable": {"thread_id": t.id}})
        assert state.values["results"] == {} and "perhaps" not in reply


async def test_retry_later_calls_again_on_the_next_turn_under_the_same_key(api: FlowApi, database_url: str) -> None:
    api.mode["/availability"] = "fail:1"
    on_error = {"say": "The book is busy; say anything and I'll try again.", "then": "retry_later"}
    async with engine_for(spec_with(retries=0, on_error=on_error), database_url) as engine:
        t = talk(engine)
        *_, reply = await converse(t, BOOKING[:1])
        assert reply == "Got it. The book is busy; say anything and I'll try again."
        assert t.last.outcome is None and not t.last.ended
        reply = await t.say("ok")
        assert reply == "Does anyone in your party have a food allergy?"
        requests = api.to("/availability")
        assert len(requests) == 2 and len({r.headers["Idempotency-Key"] for r in requests}) == 1


async def test_a_failed_call_retried_with_other_values_is_a_new_request(api: FlowApi, database_url: str) -> None:
    api.mode["/availability"] = "fail:1"
    on_error = {"say": "The book is busy; say anything and I'll try again.", "then": "retry_later"}
    async with engine_for(spec_with(retries=0, on_error=on_error), database_url) as engine:
        t = talk(engine)
        await converse(t, BOOKING[:1])
        reply = await t.say("actually make it 7pm")
        assert reply == "No problem, I've changed the time to 19:00. Does anyone in your party have a food allergy?"
        first, second = api.to("/availability")
        assert "20%3A00" in first.path and "19%3A00" in second.path
        # 8pm's request may have arrived; 7pm's must not be taken for a repeat of it.
        assert first.headers["Idempotency-Key"] != second.headers["Idempotency-Key"]


# --- an effect happens once ----------------------------------------------------------------------

async def test_a_step_run_again_on_purpose_asks_again_under_a_new_key(engine: DialogueEngine, api: FlowApi) -> None:
    t = talk(engine)
    await converse(t, BOOKING)
    await t.say("no")
    reply = await t.say("make it 7pm")  # a correction at the read-back: availability is checked again
    assert "changed the time to 19:00" in reply and reply.endswith("at 19:00 for Maria. Is that right?")
    assert [(c["name"], c["reused"]) for c in t.last.calls] == [("availability", False)]
    first, second = api.to("/availability")
    assert "20%3A00" in first.path and "19%3A00" in second.path
    assert first.headers["Idempotency-Key"] != second.headers["Idempotency-Key"]
    await t.say("yes")
    assert t.last.outcome == "completed" and len(api.bookings) == 1


async def test_a_value_changed_after_its_check_is_checked_again_before_anything_is_booked(
        engine: DialogueEngine, api: FlowApi) -> None:
    t = talk(engine)
    await converse(t, BOOKING[:1])
    api.available = False  # 8pm was free; 7pm is not
    reply = await t.say("actually make it 7pm")
    assert reply.startswith("No problem, I've changed the time to 19:00. Sorry, we're full then.")
    assert t.last.outcome == "full" and api.to("/bookings") == []
    assert ["20%3A00" in r.path for r in api.to("/availability")] == [True, False]


async def test_a_correction_at_the_read_back_never_repeats_a_write_made_before_it(
        api: FlowApi, database_url: str) -> None:
    # A design that books (holds the table) before the read-back: a correction re-reads the
    # steps after that write only.
    steps = [{"ask": ["date", "time", "people"]}, {"call": "availability"}, {"call": "create_booking"},
             {"ask": "first_name"}, "confirm", "end"]
    async with engine_for(spec_with(book_steps=steps), database_url) as engine:
        t = talk(engine)
        *_, reply = await converse(t, ["I'd like to book a table for 2 tomorrow at 8pm", "Maria"])
        assert reply.endswith("Is that right?") and len(api.bookings) == 1
        reply = await t.say("no, my name is Anna")
        assert reply.endswith("for Anna. Is that right?")
        await t.say("yes")
    assert t.last.outcome == "completed"
    assert len(api.to("/bookings")) == 1 and len(api.to("/availability")) == 1


async def wait_for(condition: Any, what: str, seconds: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def test_a_turn_run_again_after_a_write_conflict_books_once(api: FlowApi, postgres_url: str) -> None:
    """Two engines (two processes' worth) on one PostgreSQL take a turn of one conversation at
    the same moment: both reach the booking step, one commits, the other runs its turn again."""
    spec = spec_with()
    async with engine_for(spec, postgres_url) as one, engine_for(spec, postgres_url) as two:
        t = talk(one, channel="sms")
        await converse(t, BOOKING)
        api.hold_answers = True  # each request books (once per key) and waits
        turns = [asyncio.create_task(e.handle(Turn(conversation_id=t.id, channel="sms", text=text,
                                                   time=t.clock + timedelta(seconds=5))))
                 for e, text in ((one, "yes"), (two, "yes please"))]
        await wait_for(lambda: len(api.to("/bookings")) == 2, "both turns to reach the booking system")
        api.release.set()
        results = await asyncio.gather(*turns)
        assert one.conflicts + two.conflicts >= 1
    assert len(api.bookings) == 1
    assert len({r.headers["Idempotency-Key"] for r in api.to("/bookings")}) == 1
    assert any(r.outcome == "completed" and "Your reference is B1" in r.reply for r in results)


async def test_a_turn_killed_after_the_system_booked_books_once_when_it_runs_again(
        api: FlowApi, database_url: str) -> None:
    async with engine_for(spec_with(), database_url) as engine:
        t = talk(engine, channel="sms")
        await converse(t, BOOKING)
        when = (t.clock + timedelta(seconds=5)).isoformat()
        api.hold_answers = True
        child = subprocess.Popen(
            [sys.executable, "-m", "tests.support.run_turn", database_url, str(SPEC_PATH), t.id, when, "SM-yes", "yes"],
            cwd=ROOT, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert await asyncio.to_thread(api.booked.wait, 60), "the turn never reached the booking system"
            child.kill()
            _, stderr = await asyncio.to_thread(child.communicate, timeout=30)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        assert child.returncode < 0, stderr.decode()[-2000:]  # killed, not finished
        api.hold_answers = False
        # The channel delivers the message again (same id); the turn runs again here.
        again = await engine.handle(Turn(conversation_id=t.id, channel="sms", text="yes",
                                         time=t.clock + timedelta(seconds=5), dedupe_key="SM-yes"))
    assert again.outcome == "completed" and "Your reference is B1" in again.reply
    assert len(api.bookings) == 1 and len(api.to("/bookings")) == 2
    assert {r.headers["Idempotency-Key"] for r in api.to("/bookings")} == {
        idempotency_key(t.id, "book.8#0")}


async def test_a_turn_that_died_after_its_call_was_stored_reuses_the_result_without_a_request(
        api: FlowApi, database_url: str) -> None:
    async with engine_for(spec_with(), database_url) as engine:
        t = talk(engine, channel="sms")
        await converse(t, BOOKING)
        when = (t.clock + timedelta(seconds=5)).isoformat()
        # The child dies at the last moment: the booking made and its result stored, the turn not
        # committed. It is a process group of its own, as `serve` is: the crash point kills the group.
        child = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "tests.support.run_turn", database_url, str(SPEC_PATH), t.id, when, "SM-yes", "yes"],
            cwd=ROOT, env={**os.environ, "CHANNEL_WORKER_CRASH_AT": "turn.before_commit=1"}, capture_output=True,
            timeout=120, start_new_session=True)
        assert child.returncode < 0 and child.stdout == b"", child.stderr.decode()[-2000:]
        assert len(api.bookings) == 1
        again = await engine.handle(Turn(conversation_id=t.id, channel="sms", text="yes",
                                         time=t.clock + timedelta(seconds=5), dedupe_key="SM-yes"))
    assert again.outcome == "completed" and "Your reference is B1" in again.reply
    assert [(c["name"], c["reused"]) for c in again.calls] == [("create_booking", True)]
    assert len(api.to("/bookings")) == 1  # the stored result, no second request


# --- the finished records ------------------------------------------------------------------------

async def test_each_finished_task_is_delivered_once_signed_after_the_receiver_was_down(
        receiver_port: int, engine: DialogueEngine) -> None:
    t = talk(engine, channel="sms")
    await converse(t, ["I'd like to book a table for 2 tomorrow", "actually I need to cancel my booking for Friday",
                       "Maria", "8pm", "no", "yes"])
    assert t.last.outcome == "completed"
    # The last turn delivered again (a redelivered message runs its turn again): no new record.
    await engine.handle(Turn(conversation_id=t.id, channel="sms", text="yes", time=t.clock))
    db = engine.store.db
    deliverer = OutcomeDeliverer(db, backoff_base=0.01)
    try:
        assert await deliverer.deliver_due() == 0  # nothing listens yet
        with OutcomeReceiver(receiver_port) as receiver:
            assert await deliverer.deliver_due(now=utcnow() + timedelta(hours=1)) == 2
            assert await deliverer.deliver_due(now=utcnow() + timedelta(hours=2)) == 0
    finally:
        await deliverer.aclose()
    bodies = []
    for request in receiver.accepted:
        assert verify(SECRET, request.body, request.headers[SIGNATURE_HEADER])
        bodies.append(json.loads(request.body))
    assert [(b["task"], b["outcome"]) for b in bodies] == [("cancel", "cancelled"), ("book", "completed")]
    cancel, book = bodies
    # Each record holds the values as they were when its task ended.
    assert cancel["fields"]["date"]["value"] == "2026-11-27" and book["fields"]["date"]["value"] == "2026-11-24"
    assert set(cancel["fields"]) == {"first_name", "date"}  # the fields the cancellation asks, no more
    assert set(book["fields"]) == {"date", "time", "people", "allergies", "first_name"}
    assert book["fields"]["date"]["text"] == "tomorrow" and book["results"]["create_booking.booking_id"] == "B1"
    assert cancel["conversation_id"] == book["conversation_id"] == t.id and cancel["channel"] == "sms"
    assert [d.status for d in await deliveries(db, t.id)] == ["delivered", "delivered"]



async def test_a_person_who_books_again_later_in_the_same_conversation_has_both_bookings_delivered(
        receiver_port: int, engine: DialogueEngine) -> None:
    t = talk(engine, channel="sms")  # one phone number: one conversation, week after week
    await converse(t, [*BOOKING, "yes"])
    assert t.last.outcome == "completed"
    for line in ["hi, a table for 4 on Friday at 8pm please", "no", "Maria", "yes"]:
        await t.say(line)
    assert t.last.outcome == "completed"
    db = engine.store.db
    deliverer = OutcomeDeliverer(db, backoff_base=0.01)
    try:
        with OutcomeReceiver(receiver_port) as receiver:
            assert await deliverer.deliver_due() == 2
    finally:
        await deliverer.aclose()
    bodies = [json.loads(r.body) for r in receiver.accepted]
    assert [(b["task"], b["outcome"], b["fields"]["people"]["value"]) for b in bodies] == [
        ("book", "completed", 2), ("book", "completed", 4)]
    keys = {r.headers["Idempotency-Key"] for r in receiver.accepted}
    assert len(keys) == 2  # two records, each with its own key for the receiver


async def test_a_conversation_given_back_after_a_failed_call_calls_again_and_goes_on(
        api: FlowApi, database_url: str) -> None:
    api.mode["/availability"] = "fail:1"
    async with engine_for(spec_with(retries=0), database_url) as engine:
        t = talk(engine)
        *_, reply = await converse(t, BOOKING[:1])
        assert t.last.outcome == "escalated" and await engine.open_handoff(t.id) is not None
        await engine.release(t.id)
        reply = await t.say("hello?")
        assert reply == "Does anyone in your party have a food allergy?"
        assert [(c["name"], c["ok"]) for c in t.last.calls] == [("availability", True)]
        requests = api.to("/availability")
        assert len(requests) == 2 and len({r.headers["Idempotency-Key"] for r in requests}) == 1


async def test_after_starting_over_or_a_finished_booking_a_call_is_a_new_request(
        engine: DialogueEngine, api: FlowApi) -> None:
    t = talk(engine)
    await converse(t, BOOKING[:1])
    reply = await t.say("start over")
    assert reply == "Sure, let's start again. What day would you like to come?"
    api.available = False
    reply = await t.say("Friday at 7pm for 3")
    assert "Sorry, we're full then." in reply  # Friday's answer, not the stored one for Tuesday
    assert len(api.to("/availability")) == 2

    api.available = True
    other = talk(engine)
    *_, reply = await converse(other, [*BOOKING, "yes"])
    assert reply.startswith("Your reference is B1.")
    # The conversation ended; the person books again: a new request, asked for afresh (a finished
    # task's values never carry into the next one, where they could drive a call unasked).
    reply = await other.say("I'd also like to book a table for 4 on Saturday at 1pm")
    assert reply.endswith("Does anyone in your party have a food allergy?")
    await other.say("no")
    reply = await other.say("Maria")
    assert reply.endswith("A table for 4 on Saturday 28 November at 13:00 for Maria. Is that right?")
    reply = await other.say("yes")
    assert other.last.outcome == "completed" and reply.startswith("Your reference is B2.")
    assert len(api.bookings) == 2 and len(api.to("/availability")) == 4
