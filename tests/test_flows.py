"""A worker with tasks, as a person meets it: each kind of step, branches, a field asked only
when it applies, moving between tasks and coming back, questions answered on the way, and what
it says to what it cannot help with. The restaurant's booking system is a real HTTP server on
loopback (tests/support/flow_api.py); the spec is tests/data/specs/flows_restaurant.yaml."""

from __future__ import annotations

import uuid
from pathlib import Path
from collections.abc import AsyncIterator, Iterator

import pytest

from actions.deliveries import deliveries
from dialogue.engine import DialogueEngine
from dialogue.spec import WorkerSpec
from dialogue.spec_loader import load_spec
from tests.conftest import ROOT, TEST_DATA
from tests.support.flow_api import INTERNAL_NOTE, FlowApi
from tests.support.talk import Talk, engine_for

# The conversations start on Monday 2026-11-23 (tests/support/talk.py): "tomorrow" is Tuesday the 24th.


@pytest.fixture(scope="module")
def spec() -> WorkerSpec:
    return load_spec(TEST_DATA / "specs" / "flows_restaurant.yaml")


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[FlowApi]:
    with FlowApi() as server:
        monkeypatch.setenv("FLOW_API", server.origin)
        monkeypatch.setenv("OUTCOME_URL", "http://127.0.0.1:9/outcomes")  # delivered in test_flow_actions.py
        monkeypatch.setenv("OUTCOME_SECRET", "not-used-here")
        yield server


@pytest.fixture
async def engine(spec: WorkerSpec, api: FlowApi, database_url: str) -> AsyncIterator[DialogueEngine]:
    """On SQLite and on PostgreSQL: the task, its step pointer and its stack live in the checkpoint."""
    async with engine_for(spec, database_url) as e:
        yield e


def talk(engine: DialogueEngine) -> Talk:
    return Talk(engine, conversation_id=f"flow-{uuid.uuid4().hex}")


async def test_a_booking_runs_every_step_in_order(engine: DialogueEngine, api: FlowApi) -> None:
    t = talk(engine)
    assert await t.start() == "Hi, this is Sam at Trattoria Luigi. How can I help you today?"
    # ask (three fields in one turn), call, if (else: available), then the next ask.
    reply = await t.say("I'd like to book a table for 2 tomorrow at 8pm")
    assert t.last.task == "book" and [c["name"] for c in t.last.calls] == ["availability"]
    assert reply.endswith("Does anyone in your party have a food allergy?")
    # allergy_details is asked only when allergies is yes; a group of 2 takes the else branch.
    reply = await t.say("no")
    assert reply == "Got it. Lovely. Can I have your name?"
    reply = await t.say("Maria")
    assert reply == "Got it. A table for 2 on Tuesday 24 November at 20:00 for Maria. Is that right?"
    assert t.last.phase == "confirming" and api.to("/bookings") == []
    # confirm, call, outcome, a line quoting a result, end with the task's own closing (not the script's).
    reply = await t.say("yes")
    assert reply == "Your reference is B1. You're booked, Maria!"
    assert t.last.outcome == "completed" and t.last.ended
    assert [(c["name"], c["ok"]) for c in t.last.calls] == [("create_booking", True)]
    assert "allergy_details" not in t.values() and len(api.bookings) == 1


async def test_an_if_takes_its_then_branch_when_its_condition_holds(engine: DialogueEngine, api: FlowApi) -> None:
    api.available = False
    t = talk(engine)
    await t.start()
    reply = await t.say("a table for 2 tomorrow at 8pm please")
    assert "Sorry, we're full then. We could do 18:00 or 21:30; please call again." in reply
    assert t.last.outcome == "full" and t.last.ended  # the branch's outcome step, then its end
    assert "allergy" not in reply and api.to("/bookings") == []


async def test_a_field_under_a_condition_is_asked_when_it_holds_and_branches_nest(engine: DialogueEngine) -> None:
    t = talk(engine)
    await t.start()
    await t.say("table for 8 tomorrow at 7pm")
    reply = await t.say("yes")
    assert reply == "Got it. Which allergies should the kitchen know about?"
    reply = await t.say("nuts and shellfish")
    assert reply == ("Got it. For a large group with allergies, the chef will call you the day before. "
                     "Can I have your name?")
    assert t.values()["allergy_details"]

    other = talk(engine)
    await other.start()
    await other.say("table for 8 tomorrow at 7pm")
    reply = await other.say("no")
    assert reply == "Got it. For a large group we set the long table. Can I have your name?"


async def test_goto_starts_another_task(engine: DialogueEngine) -> None:
    t = talk(engine)
    await t.start()
    reply = await t.say("we are celebrating a birthday")
    assert reply == "Sure. Happy birthday! We'll bring a candle. What day would you like to come?"
    assert t.last.task == "book"


async def test_handoff_puts_the_conversation_in_the_queue_with_its_reason(engine: DialogueEngine) -> None:
    t = talk(engine)
    await t.start()
    reply = await t.say("can I hire the private room for an event")
    assert reply.startswith("Sure. Our events manager looks after the private room. I'm passing you to a colleague")
    assert t.last.outcome == "escalated" and t.last.escalation.reason == "Wants the private room"
    handoff = await engine.open_handoff(t.id)
    assert handoff is not None and handoff.reason == "Wants the private room"
    assert handoff.rule == "private_room.handoff"
    # The packet names the job, and lists only what that job still needs: nothing of a booking's.
    assert handoff.packet["task"] == "private_room" and "Still missing" not in handoff.packet["summary"]


async def test_a_task_ends_with_its_own_closing_and_outcome(engine: DialogueEngine, api: FlowApi) -> None:
    t = talk(engine)
    await t.start()
    reply = await t.say("I need to cancel my booking for Friday")
    assert t.last.task == "cancel" and reply == "Got it. Can I have your name?"
    reply = await t.say("Maria")
    assert reply == "Got it. Done, Maria, your booking for Friday is cancelled."
    assert t.last.outcome == "cancelled" and t.last.ended
    assert [r.json() for r in api.to("/cancellations")] == [{"date": "2026-11-27", "name": "Maria"}]


async def test_a_switch_keeps_shared_fields_and_returns_to_the_first_task(engine: DialogueEngine, api: FlowApi) -> None:
    t = talk(engine)
    await t.start()
    await t.say("I'd like to book a table for 2 tomorrow")
    assert t.last.requested == "time"
    # The switch gives the date of the booking to cancel in the same breath.
    reply = await t.say("actually, I need to cancel my booking for Friday instead")
    assert t.last.task == "cancel" and reply == "Sure. Can I have your name?"
    reply = await t.say("Maria")
    assert reply == ("Got it. Done, Maria, your booking for Friday is cancelled. "
                     "Now, back to your booking. What time would suit you?")
    assert t.last.task == "book" and t.values()["date"] == "2026-11-24"  # the booking's own date again
    await t.say("8pm")
    reply = await t.say("no")
    # The name given for the cancellation is the booking's name too: not asked again.
    assert reply == "Got it. Lovely. A table for 2 on Tuesday 24 November at 20:00 for Maria. Is that right?"
    await t.say("yes")
    assert t.last.outcome == "completed" and len(api.bookings) == 1


async def test_a_question_mid_task_is_answered_and_the_pending_question_asked_again(engine: DialogueEngine) -> None:
    t = talk(engine)
    await t.start()
    await t.say("table for 2 tomorrow at 8pm")
    reply = await t.say("is there parking?")
    assert reply == "Yes, there is free parking behind the restaurant. Does anyone in your party have a food allergy?"
    assert t.last.requested == "allergies"
    await t.say("no")
    await t.say("Maria")
    reply = await t.say("what are your opening hours?")
    assert reply == ("We're open every day from noon to eleven. "
                     "A table for 2 on Tuesday 24 November at 20:00 for Maria. Is that right?")
    assert t.last.phase == "confirming"


async def test_out_of_scope_says_the_fallback_and_an_escalation_rule_can_act_on_it(engine: DialogueEngine) -> None:
    t = talk(engine)
    await t.start()
    reply = await t.say("what's the weather like in Paris tomorrow")
    assert reply == "Sorry, I can only help with tables here. How can I help you today?"
    assert t.last.task is None
    assert [(a.kind, a.rule) for a in t.last.actions if a.kind == "notify"] == [("notify", "off_topic")]
    await t.say("table for 2 tomorrow at 8pm")
    reply = await t.say("can you recommend a good plumber")
    assert reply == "Sorry, I can only help with tables here. Does anyone in your party have a food allergy?"
    assert t.last.task == "book" and t.last.requested == "allergies"


async def test_no_undeclared_response_value_is_said_or_kept(engine: DialogueEngine, api: FlowApi) -> None:
    t = talk(engine)
    replies = [await t.start()]
    for line in ["table for 2 tomorrow at 8pm", "no", "Maria", "yes"]:
        replies.append(await t.say(line))
    state = await engine.graph.aget_state({"configurable": {"thread_id": t.id}})
    assert INTERNAL_NOTE not in " ".join(replies) and INTERNAL_NOTE not in str(state.values)
    assert set(state.values["results"]) == {"availability.available", "availability.times", "create_booking.booking_id"}


async def test_a_question_where_free_text_was_asked_is_answered_not_stored(engine: DialogueEngine) -> None:
    t = talk(engine)
    await t.start()
    await t.say("table for 8 tomorrow at 7pm")
    await t.say("yes")  # allergies: then the free-text details are asked
    reply = await t.say("is there parking?")
    assert reply == ("Yes, there is free parking behind the restaurant. "
                     "Which allergies should the kitchen know about?")
    assert "allergy_details" not in t.values() and t.last.requested == "allergy_details"
    await t.say("nuts, and what about shellfish")  # a free-text answer may hold a question's words
    assert t.values()["allergy_details"] == "nuts, and what about shellfish"


async def test_questions_and_switches_are_not_counted_as_failed_answers(engine: DialogueEngine) -> None:
    t = talk(engine)
    await t.start()
    await t.say("table for 2 tomorrow at 8pm")
    for question in ["is there parking?", "what are your opening hours?", "where can I park?", "are you open on Sunday?"]:
        reply = await t.say(question)
        assert reply.endswith("Does anyone in your party have a food allergy?") and t.last.outcome is None
    reply = await t.say("no")
    assert reply == "Got it. Lovely. Can I have your name?"


async def test_a_task_that_reaches_its_outcome_and_goes_to_another_keeps_its_own_record(
        engine: DialogueEngine) -> None:
    t = talk(engine)
    await t.start()
    reply = await t.say("I'd like to buy a gift voucher")
    assert t.last.task == "gift_voucher" and reply.endswith("Can I have your name?")
    reply = await t.say("Maria")
    assert reply == ("Got it. A voucher is on its way, Maria. While we're at it, let's find you a table. "
                     "What day would you like to come?")
    for line in ["tomorrow at 8pm for 2", "no"]:
        await t.say(line)
    reply = await t.say("yes")
    assert t.last.outcome == "completed" and reply.startswith("Your reference is B1.")
    queued = await deliveries(engine.store.db, t.id)
    assert [(d.task, d.outcome) for d in queued] == [("gift_voucher", "completed"), ("book", "completed")]


async def test_going_back_to_a_task_left_earlier_takes_it_up_where_it_stopped_and_books_once(
        engine: DialogueEngine, api: FlowApi) -> None:
    t = talk(engine)
    await t.start()
    await t.say("I'd like to book a table for 2 tomorrow")
    await t.say("actually, I need to cancel my booking for Friday instead")
    reply = await t.say("actually I'd like to finish my table reservation first")
    assert t.last.task == "book" and reply == "Sure. What time would suit you?"
    assert t.values()["date"] == "2026-11-24"  # the booking's date, not the cancellation's
    for line in ["8pm", "no", "Maria"]:
        reply = await t.say(line)
    assert reply.endswith("A table for 2 on Tuesday 24 November at 20:00 for Maria. Is that right?")
    reply = await t.say("yes")
    assert reply == ("Your reference is B1. You're booked, Maria! Now, back to your cancellation. "
                     "Done, Maria, your booking for Friday is cancelled.")
    assert t.last.outcome == "cancelled" and t.last.ended
    assert len(api.bookings) == 1 and len(api.to("/bookings")) == 1
    assert [r.json()["date"] for r in api.to("/cancellations")] == ["2026-11-27"]
    queued = await deliveries(engine.store.db, t.id)
    assert [(d.task, d.outcome) for d in queued] == [("book", "completed"), ("cancel", "cancelled")]


async def test_a_first_turn_of_values_only_starts_the_one_task_that_asks_them(engine: DialogueEngine) -> None:
    t = talk(engine)
    await t.start()
    reply = await t.say("tomorrow at 8pm for 4")  # no task phrase, but only `book` asks for a time
    assert t.last.task == "book" and reply == "Got it. Does anyone in your party have a food allergy?"
    other = talk(engine)
    await other.start()
    reply = await other.say("are you open on Sunday?")  # a date both book and cancel ask: a question
    assert reply == "We're open every day from noon to eleven. How can I help you today?"
    assert other.last.task is None


async def test_a_goto_to_a_task_left_earlier_takes_it_up_and_it_is_not_resumed_again(
        engine: DialogueEngine, api: FlowApi) -> None:
    t = talk(engine)
    await t.start()
    await t.say("I'd like to book a table for 2 tomorrow")
    reply = await t.say("I'd also like to buy a gift voucher")
    assert t.last.task == "gift_voucher" and reply == "Sure. Can I have your name?"
    reply = await t.say("Maria")
    # The voucher's goto takes the booking up where it was left: its time is the next question.
    assert reply == ("Got it. A voucher is on its way, Maria. While we're at it, let's find you a table. "
                     "What time would suit you?")
    for line in ["8pm", "no"]:
        reply = await t.say(line)
    assert reply.endswith("A table for 2 on Tuesday 24 November at 20:00 for Maria. Is that right?")
    reply = await t.say("yes")
    assert reply == "Your reference is B1. You're booked, Maria!" and t.last.ended
    assert len(api.to("/bookings")) == 1 and len(api.to("/availability")) == 1


async def test_a_first_message_with_a_refused_value_is_answered_with_the_refusal_and_its_reason(
        tmp_path: Path) -> None:
    # By SMS the person writes first, before any task is chosen: the value their first words
    # give is checked as within a task, and its refusal is not lost behind the next question.
    spec = load_spec(ROOT / "examples" / "restaurant_booking.yaml")
    async with engine_for(spec, str(tmp_path / "db")) as engine:
        t = Talk(engine, channel="sms")
        reply = await t.say("a table for 100 tomorrow at 7pm")
        assert "That's more than" in reply and reply.endswith("How many of you?")
        assert "people" not in t.values() and t.last.requested == "people"
        reply = await t.say("4")
        assert t.values()["people"] == 4
