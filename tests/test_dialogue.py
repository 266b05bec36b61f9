"""How a worker holds a conversation: the behaviour a person on the other end sees."""

from __future__ import annotations

import pytest

from dialogue.spec import WorkerSpec
from tests.support.talk import Talk, engine_for

# MONDAY_MORNING is 2026-11-23 (a Monday); "tomorrow" is Tuesday the 24th.


async def test_greets_and_asks_for_the_first_missing_field(restaurant: WorkerSpec, tmp_path) -> None:
    async with engine_for(restaurant, str(tmp_path / "db")) as engine:
        talk = Talk(engine)
        reply = await talk.start()
        assert reply.startswith("Hi, this is Sam")
        assert "What day" in reply


async def test_takes_several_fields_in_one_turn_in_any_order(restaurant: WorkerSpec, tmp_path) -> None:
    async with engine_for(restaurant, str(tmp_path / "db")) as engine:
        talk = Talk(engine)
        await talk.start()
        reply = await talk.say("at 7pm tomorrow, a table for 4 please")
        assert talk.values() == {"time": "19:00", "date": "2026-11-24", "people": 4}
        assert "first name" in reply


async def test_uses_the_field_just_asked_for_as_context(restaurant: WorkerSpec, tmp_path) -> None:
    async with engine_for(restaurant, str(tmp_path / "db")) as engine:
        talk = Talk(engine)
        await talk.start()
        await talk.say("tomorrow")
        await talk.say("8")  # after "what time?" a bare 8 is a time
        await talk.say("8")  # after "how many people?" it is a count
        assert talk.values() == {"date": "2026-11-24", "time": "20:00", "people": 8}


async def test_full_booking_with_a_correction_during_collection(restaurant: WorkerSpec, tmp_path) -> None:
    async with engine_for(restaurant, str(tmp_path / "db")) as engine:
        talk = Talk(engine)
        await talk.start()
        for line in ["hi", "table for 4 tomorrow at 7pm"]:
            await talk.say(line)
        reply = await talk.say("no, make it 5")
        assert "changed the party size to 5" in reply
        await talk.say("Maria")
        reply = await talk.say("Lopez")
        assert "table for 5 on Tuesday 24 November at 19:00, under Maria Lopez" in reply
        reply = await talk.say("yes")
        assert talk.last.outcome == "completed" and talk.last.ended
        assert talk.values() == {"date": "2026-11-24", "time": "19:00", "people": 5,
                                 "first_name": "Maria", "last_name": "Lopez"}


async def test_corrections_at_the_confirmation(restaurant: WorkerSpec, tmp_path) -> None:
    async with engine_for(restaurant, str(tmp_path / "db")) as engine:
        talk = Talk(engine)
        await talk.start()
        await talk.say("table for 2 tomorrow at 6pm")
        await talk.say("Maria Lopez")
        reply = await talk.say("no, make it 7 pm")
        assert "changed the time to 19:00" in reply and "Is that right?" in reply
        reply = await talk.say("actually five of us")
        assert "table for 5" in reply
        reply = await talk.say("no")
        assert "What should I change?" in reply
        reply = await talk.say("8pm")
        assert "20:00" in reply
        await talk.say("yes that's right")
        assert talk.last.outcome == "completed"
        assert talk.values()["people"] == 5 and talk.values()["time"] == "20:00"


async def test_an_invalid_value_is_refused_and_reasked(restaurant: WorkerSpec, tmp_path) -> None:
    async with engine_for(restaurant, str(tmp_path / "db")) as engine:
        talk = Talk(engine)
        await talk.start()
        await talk.say("tomorrow at 8pm")
        reply = await talk.say("we are 40 people")
        assert "We take bookings for 1 to 12 people" in reply
        assert "people" not in talk.values()


async def test_reask_limit_hands_over(account_support: WorkerSpec, tmp_path) -> None:
    async with engine_for(account_support, str(tmp_path / "db")) as engine:
        talk = Talk(engine)
        await talk.start()
        # The first words are why the person called, not a failed answer: they are not counted.
        opening = await talk.say("I'm calling about my account")
        assert "account number" in opening and "Sorry" not in opening
        first = await talk.say("blah")
        second = await talk.say("dunno")
        assert "account number" in first and "account number" in second
        reply = await talk.say("what?")
        assert talk.last.outcome == "escalated"
        assert talk.last.escalation.rule == "reask_limit"
        assert "transferring you" in reply


async def test_a_call_handed_over_with_no_one_to_put_it_through_to_is_promised_a_call_back(
        account_support: WorkerSpec, tmp_path) -> None:
    async with engine_for(account_support, str(tmp_path / "db")) as engine:
        talk = Talk(engine, channel="voice")
        await talk.start()
        for line in ("I'm calling about my account", "blah", "dunno", "what?"):
            reply = await talk.say(line)
        assert talk.last.outcome == "escalated"
        # Not "follow up with you here": on the phone there is no thread to reply in.
        assert reply.startswith("A member of our team will call you back shortly."), reply


async def test_start_over_clears_everything(restaurant: WorkerSpec, tmp_path) -> None:
    async with engine_for(restaurant, str(tmp_path / "db")) as engine:
        talk = Talk(engine)
        await talk.start()
        await talk.say("table for 4 tomorrow at 7pm")
        reply = await talk.say("let's start over")
        assert "start again" in reply and "What day" in reply
        assert talk.values() == {}


async def test_goodbye_abandons_the_conversation(restaurant: WorkerSpec, tmp_path) -> None:
    async with engine_for(restaurant, str(tmp_path / "db")) as engine:
        talk = Talk(engine)
        await talk.start()
        await talk.say("tomorrow")
        reply = await talk.say("never mind, bye")
        assert reply == "Okay, goodbye."
        assert talk.last.outcome == "abandoned" and talk.last.ended


async def test_asking_for_a_human_escalates_with_the_rule(account_support: WorkerSpec, tmp_path) -> None:
    async with engine_for(account_support, str(tmp_path / "db")) as engine:
        talk = Talk(engine)
        await talk.start()
        reply = await talk.say("I want to speak to a real person")
        assert talk.last.outcome == "escalated"
        assert talk.last.escalation.rule == "asks_for_human"
        kinds = [a.kind for a in talk.last.actions]
        assert kinds == ["say", "transfer", "end"]
        assert "You asked to speak with a person." in reply
        # Once a person owns the conversation, the worker stays quiet.
        assert await talk.say("hello?") == ""


async def test_a_high_risk_reason_escalates(account_support: WorkerSpec, tmp_path) -> None:
    async with engine_for(account_support, str(tmp_path / "db")) as engine:
        talk = Talk(engine)
        await talk.start()
        await talk.say("12345678")
        await talk.say("there are suspicious payments, I think it's fraud")
        assert talk.last.escalation.rule == "high_risk_reason"
        assert talk.last.actions[1].to == "sip:fraud-desk@northwind.example"


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
async def test_a_conversation_survives_a_restart(restaurant: WorkerSpec, database_url: str) -> None:
    async with engine_for(restaurant, database_url) as engine:
        talk = Talk(engine, conversation_id="restart-1")
        await talk.start()
        await talk.say("table for 3 on friday at 8pm")
        clock = talk.clock
    # A new engine, as after a process restart: state comes back from the checkpointer.
    async with engine_for(restaurant, database_url) as engine:
        talk = Talk(engine, conversation_id="restart-1", start=clock)
        reply = await talk.say("Ana Silva")
        assert "table for 3 on Friday 27 November at 20:00, under Ana Silva" in reply
        await talk.say("yes")
        assert talk.last.outcome == "completed"
        events = await engine.store.events("restart-1")
        assert [e.direction for e in events] == ["system", "out"] + ["in", "out"] * 3


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
async def test_every_turn_is_stored_with_fields_and_outcome(restaurant: WorkerSpec, database_url: str) -> None:
    async with engine_for(restaurant, database_url) as engine:
        talk = Talk(engine, conversation_id="stored-1")
        await talk.start()
        await talk.say("table for 2 tomorrow at 7pm")
        await talk.say("Li Wei")
        await talk.say("yes")
        events = await engine.store.events("stored-1")
        user_lines = [e.text for e in events if e.direction == "in" and e.text]
        assert user_lines == ["table for 2 tomorrow at 7pm", "Li Wei", "yes"]
        last = events[-1]
        assert last.direction == "out" and last.outcome == "completed"
        assert last.fields["people"]["value"] == 2
        conv = await engine.store.conversation("stored-1")
        assert conv.outcome == "completed" and conv.turns == 3 and conv.worker == "restaurant_booking"
