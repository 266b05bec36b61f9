"""Conversations for the review console's tests, made by driving the real engine (as a channel
would), and its operators: rita (reviewer), vic (viewer), ada (admin)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from dialogue.events import Turn
from dialogue.spec_loader import load_spec
from escalation.operators import OperatorStore
from tests.conftest import ROOT
from tests.support.talk import Talk, engine_for, settings_for
from worker.operator_auth import hash_password

PASSWORD = "correct horse battery staple"
OPERATORS = {"rita": "reviewer", "vic": "viewer", "ada": "admin"}
SMS_LOST = "sms:+15551230001:+15550000000"
SMS_HUMAN = "sms:+15551230002:+15550000000"
EMAIL = "email:<a1b2c3@mail.example>"
BOOKING = "console-booking-1"


def store_url(url: str) -> str:
    """The database the engine of `talk.engine_for(spec, url)` writes (a SQLite url is a folder hint)."""
    return settings_for(url).transcripts_url


async def seed(url: str) -> None:
    # Times near now, so the audit rows (stamped when written) fall among the turns they belong to.
    start = datetime.now(timezone.utc) - timedelta(minutes=2)
    bank = load_spec(ROOT / "examples/account_support.yaml")
    async with engine_for(bank, url) as engine:
        lost = Talk(engine, SMS_LOST, channel="sms", start=start)
        await lost.start()
        for line in ("I lost my card", "my account number is 45721198", "thanks, I am Ana Silva"):
            await lost.say(line)
        human = Talk(engine, SMS_HUMAN, channel="sms", start=start + timedelta(seconds=10))
        await human.start()
        await human.say("someone stole my card and there are payments I did not make")
        await human.say("I want to talk to a real person")
        when = start + timedelta(seconds=20)
        meta = {"from": "zoe.khan@example.org", "subject": "Lost card"}
        await engine.handle(Turn(conversation_id=EMAIL, channel="email", text=None, time=when, metadata=meta))
        await engine.handle(Turn(
            conversation_id=EMAIL, channel="email", time=when + timedelta(seconds=5), metadata=meta,
            text="Hello, I lost my card yesterday. My account number is 45721199.\n\n"
                 "On Mon, 23 Nov 2026 at 09:00, Northwind Bank wrote:\n> How can we help?\n> Regards"))
        bye = Talk(engine, "console-bye-1", channel="console", start=start + timedelta(seconds=25))
        await bye.start()
        await bye.say("hello")
        await bye.say("bye")
        for name, role in OPERATORS.items():
            await OperatorStore(engine.store.db).add_user(name, role, hash_password(PASSWORD))  # type: ignore[arg-type]
    restaurant = load_spec(ROOT / "examples/restaurant_booking.yaml")
    async with engine_for(restaurant, url) as engine:
        booking = Talk(engine, BOOKING, channel="console", start=start + timedelta(seconds=35))
        await booking.start()
        await booking.say("a table for 4 on Friday at 8pm please")
        await booking.say("Maria Lopez")
        await booking.say("bye")
