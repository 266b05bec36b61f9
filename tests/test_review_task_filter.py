"""The task a conversation is in, stored on its row (migration 19) as turns are stored, backfilled
for rows from before from their checkpoints, and the review list's `task` filter, on SQLite and
PostgreSQL; with the KPI marks kept beside it (confirmed read-back, re-asks, fallbacks)."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from dialogue.spec import WorkerSpec
from dialogue.spec_loader import load_spec
from tests.conftest import ROOT
from tests.support.review_seed import PASSWORD, seed, store_url
from tests.support.talk import Talk, engine_for
from transcripts.kpis import backfill
from transcripts.review_queries import ReviewFilter, list_conversations
from transcripts.store import TranscriptStore
from worker.review import create_review_app

COLUMNS = "task, tasks, confirmed, reasks, reasked, fallbacks"
SWITCHED = "console-switch-1"


async def _rows(store: TranscriptStore) -> dict[str, dict]:
    rows = await store.db.fetchall(f"SELECT id, {COLUMNS} FROM conversations ORDER BY id")
    return {r["id"]: {k: r[k] for k in COLUMNS.split(", ")} for r in rows}


async def _talk_through_tasks(url: str) -> None:
    """A person who starts a dispute and then says they moved house: two tasks in one conversation."""
    bank = load_spec(ROOT / "examples/account_support.yaml")
    async with engine_for(bank, url) as engine:
        talk = Talk(engine, SWITCHED)
        await talk.start()
        await talk.say("I want to dispute a charge")
        await talk.say("actually I've moved house and I need to change my address")


async def test_the_task_is_kept_as_turns_are_stored_and_the_list_filters_by_any_task_touched(database_url: str) -> None:
    await seed(database_url)
    await _talk_through_tasks(database_url)
    store = await TranscriptStore.open(store_url(database_url))
    try:
        rows = await _rows(store)
        assert rows[SWITCHED]["task"] == "change_address" and rows[SWITCHED]["tasks"] == " dispute change_address "
        assert rows["console-booking-1"]["task"] == "book" and rows["console-booking-1"]["tasks"] == " book "
        assert rows["sms:+15551230001:+15550000000"]["task"] == "lost_card"
        assert rows["console-bye-1"]["task"] is None and rows["console-bye-1"]["tasks"] == ""

        async def ids(**f: object) -> list[str]:
            return sorted(r.id for r in (await list_conversations(store, ReviewFilter(**f))).rows)

        assert await ids(task="dispute") == [SWITCHED]  # left for another task: still found by the one it was in
        assert await ids(task="change_address") == [SWITCHED]
        assert await ids(task="lost_card") == ["email:<a1b2c3@mail.example>", "sms:+15551230001:+15550000000",
                                               "sms:+15551230002:+15550000000"]
        assert await ids(task="lost_card", channel="email") == ["email:<a1b2c3@mail.example>"]
        assert await ids(task="lost") == [] and await ids(task="lost_car_") == []  # whole names, `_` taken literally
    finally:
        await store.close()


async def test_rows_from_before_migration_19_are_backfilled_from_their_checkpoints(database_url: str) -> None:
    await seed(database_url)
    await _talk_through_tasks(database_url)
    store = await TranscriptStore.open(store_url(database_url))
    try:
        live = await _rows(store)
        # As a database migrated from 18 has them: the new columns empty.
        await store.db.execute("UPDATE conversations SET task = NULL, tasks = NULL, confirmed = 0, reasks = 0, "
                               "reasked = '', fallbacks = 0")
        assert await backfill(store, batch=2) == len(live)
        assert await _rows(store) == live
        assert await backfill(store) == 0  # nothing left: opening the store again costs one index lookup
    finally:
        await store.close()


async def test_confirmations_reasks_and_fallbacks_are_counted_on_the_row(restaurant: WorkerSpec,
                                                                         account_support: WorkerSpec,
                                                                         database_url: str) -> None:
    async with engine_for(restaurant, database_url) as engine:
        talk = Talk(engine, "confirmed-1")
        await talk.start()
        await talk.say("table for 2 tomorrow at 6pm")
        await talk.say("Maria Lopez")
        await talk.say("no, make it 7 pm")  # a change at the read-back is not a yes
        await talk.say("yes that's right")
        assert talk.last.outcome == "completed"
        refused = Talk(engine, "refused-1")
        await refused.start()
        await refused.say("tomorrow at 8pm")
        await refused.say("we are 40 people")  # refused: people asked again
        store = engine.store
        await store.db.execute("SELECT 1")
    async with engine_for(account_support, database_url) as engine:
        lost = Talk(engine, "reasks-1")
        await lost.start()
        await lost.say("I'm calling about my account")  # the first words: why they called, not a re-ask
        await lost.say("blah")
        await lost.say("dunno")
        await lost.say("what?")
        assert lost.last.outcome == "escalated"
        rows = await _rows(engine.store)
    assert (rows["confirmed-1"]["confirmed"], rows["confirmed-1"]["reasks"]) == (1, 0)
    assert (rows["refused-1"]["confirmed"], rows["refused-1"]["reasks"], rows["refused-1"]["reasked"]) == (0, 1, " people")
    assert rows["reasks-1"]["confirmed"] == 0 and rows["reasks-1"]["reasks"] == 3
    assert rows["reasks-1"]["reasked"] == " account_number account_number account_number"
    assert rows["reasks-1"]["fallbacks"] >= 1
    assert rows["confirmed-1"]["task"] is None  # a worker without tasks


def test_the_filter_form_offers_the_tasks_and_keeps_the_choice(tmp_path) -> None:
    import asyncio

    url = str(tmp_path / "worker.sqlite")
    asyncio.run(seed(url))
    with TestClient(create_review_app(store_url(url), "account_support")) as client:
        token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/review/login").text).group(1)
        client.post("/review/login", data={"username": "vic", "password": PASSWORD, "csrf_token": token})
        page = client.get("/review/conversations?task=book")
        assert page.status_code == 200
        assert '<select id="task" name="task"' in page.text and "<option selected>book</option>" in page.text
        assert "<option >lost_card</option>" in page.text or "<option>lost_card</option>" in page.text
        assert page.text.count('<tr>') - 1 == 1 and "restaurant_booking" in page.text


async def test_a_yes_to_a_flow_tasks_read_back_is_a_confirmation(database_url: str, monkeypatch) -> None:  # noqa: ANN001
    """A worker with tasks (tests/data/specs/flows_restaurant.yaml against its stand-in API): the
    yes at the confirm step is counted, and the booking task is the row's task; a no is not."""
    from tests.conftest import TEST_DATA
    from tests.support.flow_api import FlowApi

    spec = load_spec(TEST_DATA / "specs" / "flows_restaurant.yaml")
    with FlowApi() as api:
        monkeypatch.setenv("FLOW_API", api.origin)
        monkeypatch.setenv("OUTCOME_URL", "http://127.0.0.1:9/outcomes")
        monkeypatch.setenv("OUTCOME_SECRET", "not-used-here")
        async with engine_for(spec, database_url) as engine:
            yes = Talk(engine, "flow-yes")
            await yes.start()
            for line in ("I'd like to book a table for 2 tomorrow at 8pm", "no", "Maria", "yes"):
                await yes.say(line)
            assert yes.last.outcome == "completed"
            no = Talk(engine, "flow-no")
            await no.start()
            for line in ("I'd like to book a table for 2 tomorrow at 8pm", "no", "Maria", "no"):
                await no.say(line)
            rows = await _rows(engine.store)
    assert (rows["flow-yes"]["task"], rows["flow-yes"]["tasks"], rows["flow-yes"]["confirmed"]) == ("book", " book ", 1)
    assert (rows["flow-no"]["task"], rows["flow-no"]["confirmed"]) == ("book", 0)
