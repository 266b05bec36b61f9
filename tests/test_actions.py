"""Actions: a spec that cannot leak a secret or name what does not exist, and a call to the
business's system (a real HTTP server on loopback) that comes back typed or as a named error,
never as an exception and never as a silent success, and that has its effect once however often
its turn runs."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from actions.client import ActionClient, idempotency_key, stored_results
from actions.spec import ActionSpec, ActionSpecError
from storage.db import Database
from storage.migrations import migrate
from tests.support.business_api import BookingApi

AVAILABILITY_RESULT = {
    "type": "object",
    "required": ["available"],
    "properties": {
        "available": {"type": "boolean"},
        "times": {"type": "array", "items": {"type": "string", "format": "time"}},
    },
}
FIELDS = {"date", "time", "people", "first_name"}
ROOT = Path(__file__).resolve().parent.parent


def availability(url: str, **overrides: Any) -> ActionSpec:
    return ActionSpec.model_validate({
        "name": "availability", "method": "GET", "url": url, "result": AVAILABILITY_RESULT,
        "timeout": 2, "retries": 2, "backoff": 0, **overrides,
    })


def booking(url: str, **overrides: Any) -> ActionSpec:
    return ActionSpec.model_validate({
        "name": "booking", "method": "POST", "url": url,
        "headers": {"Authorization": "Bearer ${BOOKING_TOKEN}"},
        "body": {"party": {"size": "{people}", "name": "{first_name}"}, "when": "{date} {time}"},
        "result": {"type": "object", "required": ["booking_id"], "properties": {"booking_id": {"type": "string"}}},
        "timeout": 2, "retries": 2, "backoff": 0, **overrides,
    })


VALUES = {"date": "2026-12-04", "time": "19:30", "people": 4, "first_name": "Maria"}
ENV = {"BOOKING_TOKEN": "t0k3n"}


@pytest.fixture
def api() -> Iterator[BookingApi]:
    with BookingApi() as server:
        yield server


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = await Database.open(database_url)
    await migrate(database)
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
async def client(db: Database) -> AsyncIterator[ActionClient]:
    async with ActionClient(db, env=ENV) as c:
        yield c


def conversation() -> str:
    return f"test-{uuid.uuid4().hex}"


# --- what a spec author may write ------------------------------------------------------------

def test_a_secret_written_inline_in_a_header_is_refused_naming_the_header() -> None:
    with pytest.raises(ValidationError, match=r"headers\.Authorization: a secret written inline"):
        booking("https://api.example.com/bookings", headers={"Authorization": "Bearer sk_live_51Habc"})
    with pytest.raises(ValidationError, match=r"headers\.X-Api-Key: a secret written inline"):
        booking("https://api.example.com/bookings", headers={"X-Api-Key": "abc123"})
    # The same headers with the secret in the environment are fine.
    booking("https://api.example.com/bookings", headers={"X-Api-Key": "${API_KEY}"})


def test_a_secret_written_inline_in_the_url_or_body_is_refused_naming_the_place() -> None:
    with pytest.raises(ValidationError, match=r"url: query parameter 'api_key' is a secret written inline"):
        availability("https://api.example.com/availability?date={date}&api_key=abc123")
    with pytest.raises(ValidationError, match=r"url: has a password written inline"):
        availability("https://sam:hunter2@api.example.com/availability")
    with pytest.raises(ValidationError, match=r"body\.auth\.password: a secret written inline"):
        booking("https://api.example.com/bookings", body={"auth": {"password": "hunter2"}})
    # Names that only look alike are not secrets.
    booking("https://api.example.com/bookings", body={"token_type": "bearer", "keyword": "window seat"})


def test_a_call_that_could_hold_the_turn_for_minutes_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"timeout, retries, backoff: .* up to 300 s; at most 120 s"):
        availability("https://api.example.com/a", timeout=30, retries=9, backoff=0)
    assert availability("https://api.example.com/a", timeout=2, retries=2, backoff=0.5).worst_case_seconds() == 7.5


def test_a_template_naming_an_unknown_field_or_result_is_refused_with_its_path() -> None:
    action = booking("https://api.example.com/bookings",
                     body={"party": {"size": "{party_size}"}, "slot": "{availability.slot_id}"})
    assert action.problems(FIELDS, where="actions.1") == [
        "actions.1.body.party.size: {party_size} is not a field this action can use",
        "actions.1.body.slot: {availability.slot_id} is not a result this action can use",
    ]
    with pytest.raises(ActionSpecError, match=r"actions\.1\.body\.party\.size"):
        action.check(FIELDS, where="actions.1")
    # Known to the worker: no problem.
    assert action.problems(FIELDS | {"party_size"}, results={"availability.slot_id"}) == []


def test_a_bad_result_schema_is_refused_naming_the_property() -> None:
    bad = {"type": "object", "properties": {"times": {"type": "array"}}}
    with pytest.raises(ValidationError) as caught:
        availability("https://api.example.com/a", result=bad)
    assert "result.properties.times" in str(caught.value) and "an array needs `items`" in str(caught.value)
    with pytest.raises(ValidationError, match=r"`required` names 'open', not in `properties`"):
        availability("https://api.example.com/a", result={**AVAILABILITY_RESULT, "required": ["open"]})
    with pytest.raises(ValidationError, match=r"`enum` values must be of type string"):
        availability("https://api.example.com/a", result={
            "type": "object", "properties": {"area": {"type": "string", "enum": ["inside", 2]}}})
    with pytest.raises(ValidationError, match=r"result: must be an object"):
        availability("https://api.example.com/a", result={"type": "array", "items": {"type": "string"}})


def test_named_results_and_environment_variables_are_listed_for_spec_check() -> None:
    action = availability("${BOOKING_API}/availability?date={date}", headers={"Authorization": "Bearer ${TOKEN}"})
    assert set(action.result_names()) == {"availability.available", "availability.times"}
    assert action.env_names() == ["BOOKING_API", "TOKEN"]


def test_a_condition_that_a_result_cannot_satisfy_is_named_for_spec_check() -> None:
    action = availability("https://api.example.com/a", result={
        "type": "object", "properties": {
            "available": {"type": "boolean"}, "seats": {"type": "integer"},
            "area": {"type": "string", "enum": ["inside", "terrace"]},
            "times": {"type": "array", "items": {"type": "string"}}}})
    names = action.result_names()
    assert names["availability.times"].usage_problem("availability.times", "gt", 3) == (
        "availability.times is an array; `gt` does not apply to it (use present)")
    assert names["availability.available"].usage_problem("availability.available", "equals", "yes") == (
        "availability.available is a boolean; 'yes' is not one")
    assert names["availability.area"].usage_problem("availability.area", "in", ["inside", "garden"]) == (
        "availability.area is one of ['inside', 'terrace']; 'garden' never matches")
    assert names["availability.seats"].usage_problem("availability.seats", "gte", 2) is None
    assert names["availability.available"].usage_problem("availability.available", "equals", True) is None


# --- calling the business's system ------------------------------------------------------------

async def test_a_call_returns_named_typed_results_and_only_what_the_schema_declares(
        api: BookingApi, client: ActionClient) -> None:
    outcome = await client.run(availability(f"{api.origin}/availability?date={{date}}&people={{people}}"),
                               conversation_id=conversation(), step_id="book.check", values=VALUES)
    assert outcome.ok and outcome.error is None
    assert outcome.results == {"availability.available": True, "availability.times": [time(19), time(20, 30)]}
    assert "internal_note" not in str(outcome.results)  # undeclared: never said, never tested
    assert api.requests[0].path == "/availability?date=2026-12-04&people=4"


async def test_the_body_keeps_value_types_and_secrets_come_from_the_environment(
        api: BookingApi, client: ActionClient) -> None:
    outcome = await client.run(booking(f"{api.origin}/bookings"), conversation_id=conversation(),
                               step_id="book.create", values=VALUES)
    assert outcome.ok, outcome.error
    sent = api.requests[0]
    assert sent.json() == {"party": {"size": 4, "name": "Maria"}, "when": "2026-12-04 19:30"}
    assert sent.headers["Authorization"] == "Bearer t0k3n"
    assert outcome.results == {"booking.booking_id": "B1"}


async def test_a_timeout_after_every_retry_is_a_timeout_error(api: BookingApi, client: ActionClient) -> None:
    outcome = await client.run(availability(f"{api.origin}/slow", timeout=0.2, retries=1),
                               conversation_id=conversation(), step_id="s1", values=VALUES)
    assert not outcome.ok and outcome.results == {}
    assert outcome.error is not None and outcome.error.kind == "timeout"
    assert outcome.attempts == 2 and len(api.requests) == 2


async def test_an_answer_that_trickles_in_past_the_timeout_is_a_timeout(api: BookingApi, client: ActionClient) -> None:
    outcome = await client.run(availability(f"{api.origin}/drip", timeout=0.5, retries=0),
                               conversation_id=conversation(), step_id="s1", values=VALUES)
    assert not outcome.ok and outcome.error.kind == "timeout"


async def test_an_answer_too_large_to_read_is_an_error(api: BookingApi, client: ActionClient) -> None:
    outcome = await client.run(availability(f"{api.origin}/huge"), conversation_id=conversation(),
                               step_id="s1", values=VALUES)
    assert not outcome.ok and outcome.error.kind == "too_large" and len(api.requests) == 1


async def test_a_5xx_then_success_is_a_success_and_every_attempt_carries_the_same_key(
        api: BookingApi, client: ActionClient) -> None:
    api.fail_first["/bookings"] = 2
    cid = conversation()
    outcome = await client.run(booking(f"{api.origin}/bookings"), conversation_id=cid, step_id="book.create",
                               values=VALUES)
    assert outcome.ok and outcome.attempts == 3 and outcome.results == {"booking.booking_id": "B1"}
    keys = {r.headers["Idempotency-Key"] for r in api.requests}
    assert keys == {idempotency_key(cid, "book.create")}
    assert len(api.bookings) == 1


async def test_a_5xx_on_every_attempt_is_a_server_error(api: BookingApi, client: ActionClient) -> None:
    api.fail_first["/availability"] = 10
    outcome = await client.run(availability(f"{api.origin}/availability"), conversation_id=conversation(),
                               step_id="s1", values=VALUES)
    assert not outcome.ok and outcome.error.kind == "server_error" and outcome.error.status_code == 503
    assert len(api.requests) == 3  # the first attempt and two retries


async def test_a_refusal_is_not_retried(api: BookingApi, client: ActionClient) -> None:
    outcome = await client.run(availability(f"{api.origin}/refuse"), conversation_id=conversation(),
                               step_id="s1", values=VALUES)
    assert not outcome.ok and outcome.error.kind == "rejected" and outcome.error.status_code == 422
    assert len(api.requests) == 1


async def test_malformed_json_is_an_error_not_a_success(api: BookingApi, client: ActionClient) -> None:
    outcome = await client.run(availability(f"{api.origin}/malformed"), conversation_id=conversation(),
                               step_id="s1", values=VALUES)
    assert not outcome.ok and outcome.error.kind == "malformed_json" and outcome.results == {}


async def test_a_response_outside_the_schema_is_an_error_naming_the_value(
        api: BookingApi, client: ActionClient) -> None:
    outcome = await client.run(availability(f"{api.origin}/wrong-type"), conversation_id=conversation(),
                               step_id="s1", values=VALUES)
    assert not outcome.ok and outcome.error.kind == "schema_violation"
    assert "response.available: expected boolean" in outcome.error.message


async def test_a_missing_environment_variable_is_a_configuration_error_and_nothing_is_sent(
        api: BookingApi, db: Database) -> None:
    async with ActionClient(db, env={}) as client:
        outcome = await client.run(booking(f"{api.origin}/bookings"), conversation_id=conversation(),
                                   step_id="s1", values=VALUES)
    assert not outcome.ok and outcome.error.kind == "configuration" and "BOOKING_TOKEN" in outcome.error.message
    assert api.requests == []


async def test_an_unreachable_system_is_an_error(db: Database) -> None:
    from tests.support.receivers import free_port

    async with ActionClient(db, env=ENV) as client:
        outcome = await client.run(availability(f"http://127.0.0.1:{free_port()}/availability", retries=1),
                                   conversation_id=conversation(), step_id="s1", values=VALUES)
    assert not outcome.ok and outcome.error.kind == "unreachable" and outcome.attempts == 2


# --- once, however often the turn runs --------------------------------------------------------

async def test_a_step_that_runs_again_reuses_its_stored_result_without_a_second_request(
        api: BookingApi, db: Database) -> None:
    cid = conversation()
    action = booking(f"{api.origin}/bookings")
    async with ActionClient(db, env=ENV) as first:
        done = await first.run(action, conversation_id=cid, step_id="book.create", values=VALUES)
    # The turn is rolled back (a write conflict, a crash) and runs again, in another process.
    async with ActionClient(db, env=ENV) as again:
        rerun = await again.run(action, conversation_id=cid, step_id="book.create", values=VALUES)
    assert done.ok and rerun.ok and rerun.reused and not done.reused
    assert rerun.results == done.results == {"booking.booking_id": "B1"}
    assert len(api.requests) == 1 and len(api.bookings) == 1
    # Another step of the conversation is another call, with another key.
    async with ActionClient(db, env=ENV) as third:
        other = await third.run(action, conversation_id=cid, step_id="book.create#2", values=VALUES)
    assert other.ok and not other.reused and other.results == {"booking.booking_id": "B2"}
    assert [r["step_id"] for r in await stored_results(db, cid)] == ["book.create", "book.create#2"]


async def test_typed_results_come_back_typed_when_reused(api: BookingApi, db: Database) -> None:
    cid = conversation()
    action = availability(f"{api.origin}/availability")
    async with ActionClient(db, env=ENV) as client:
        first = await client.run(action, conversation_id=cid, step_id="check", values=VALUES)
        again = await client.run(action, conversation_id=cid, step_id="check", values=VALUES)
    assert again.reused and again.results == first.results
    assert again.results["availability.times"] == [time(19), time(20, 30)]


async def test_a_failed_call_is_not_reused_and_its_retry_carries_the_same_key(
        api: BookingApi, client: ActionClient) -> None:
    """The first run's request may have arrived (a timeout, a lost answer): the re-run sends the
    same Idempotency-Key, so the system books once."""
    cid = conversation()
    action = booking(f"{api.origin}/bookings", retries=0)
    api.fail_first["/bookings"] = 1
    failed = await client.run(action, conversation_id=cid, step_id="book.create", values=VALUES)
    assert not failed.ok and failed.error.kind == "server_error"
    rerun = await client.run(action, conversation_id=cid, step_id="book.create", values=VALUES)
    assert rerun.ok and not rerun.reused and rerun.results == {"booking.booking_id": "B1"}
    assert {r.headers["Idempotency-Key"] for r in api.requests} == {idempotency_key(cid, "book.create")}
    assert len(api.bookings) == 1
    stored = await stored_results(client.db, cid)
    assert [(r["status"], r["attempts"]) for r in stored] == [("ok", 2)]


async def test_two_runs_of_one_step_at_once_agree_on_one_result(api: BookingApi, db: Database) -> None:
    """Two processes run the same turn at the same moment: both may send (with one key, so one
    booking), and both go on with the result stored first."""
    cid = conversation()
    action = booking(f"{api.origin}/bookings")
    async with ActionClient(db, env=ENV) as one, ActionClient(db, env=ENV) as two:
        a, b = await asyncio.gather(*(c.run(action, conversation_id=cid, step_id="book.create", values=VALUES)
                                      for c in (one, two)))
    assert a.ok and b.ok and a.results == b.results == {"booking.booking_id": "B1"}
    assert len(api.bookings) == 1


async def test_a_call_killed_before_its_answer_books_once_when_its_turn_runs_again(
        api: BookingApi, db: Database, database_url: str) -> None:
    """The process dies after the system made the booking and before the answer was stored (the
    worst moment); the turn runs again elsewhere and asks again under the same key."""
    cid = conversation()
    action = booking(f"{api.origin}/bookings", timeout=30, retries=0)
    api.hold_answers = True
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.support.run_action", database_url, action.model_dump_json(exclude_none=True),
         cid, "book.create", json.dumps(VALUES)],
        cwd=ROOT, env={**os.environ, **ENV}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert await asyncio.to_thread(api.booked.wait, 60), "the call never reached the booking system"
        child.kill()
        _, stderr = await asyncio.to_thread(child.communicate, timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode < 0, stderr.decode()[-2000:]  # killed, not finished
    assert await stored_results(db, cid) == []  # it died before storing anything
    api.hold_answers = False

    async with ActionClient(db, env=ENV) as again:
        rerun = await again.run(action, conversation_id=cid, step_id="book.create", values=VALUES)
    assert rerun.ok and rerun.results == {"booking.booking_id": "B1"}
    assert len(api.requests) == 2 and len(api.bookings) == 1
    assert {r.headers["Idempotency-Key"] for r in api.requests} == {idempotency_key(cid, "book.create")}
