"""How a turn's state is stored: as LangGraph checkpoints, whole or not at all, and safely
when several processes share one database."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from dialogue.events import Turn
from dialogue.spec import WorkerSpec
from storage.db import WriteConflict
from tests.support.fake_openai import FakeOpenAI
from tests.support.talk import MONDAY_MORNING, Talk, engine_for


async def test_the_state_is_a_langgraph_checkpoint_the_graph_itself_can_continue(restaurant: WorkerSpec, tmp_path) -> None:
    async with engine_for(restaurant, str(tmp_path / "db")) as engine:
        for conversation in ("by-engine", "by-graph"):
            talk = Talk(engine, conversation_id=conversation)
            await talk.start()
            await talk.say("table for 4 tomorrow at 7pm")
        snapshot = await engine.graph.aget_state({"configurable": {"thread_id": "by-graph"}})
        assert snapshot.next == ()
        assert snapshot.values["fields"]["people"]["value"] == 4
        assert snapshot.values["requested"] == "first_name"

        # The same next turn, once through the engine and once through LangGraph's own loop.
        at = (MONDAY_MORNING + timedelta(minutes=1)).isoformat()
        by_engine = await engine.handle(Turn(conversation_id="by-engine", channel="console", text="Maria Lopez",
                                             time=MONDAY_MORNING + timedelta(minutes=1)))
        by_graph = await engine.graph.ainvoke(
            {"incoming": {"text": "Maria Lopez", "time": at, "channel": "console"}},
            {"configurable": {"thread_id": "by-graph"}},
        )
        assert [a.model_dump() for a in by_engine.actions] == by_graph["actions"]
        assert "under Maria Lopez" in by_engine.reply

        # And the engine carries on from a checkpoint LangGraph's loop wrote.
        after_graph = await engine.handle(Turn(conversation_id="by-graph", channel="console", text="yes",
                                               time=MONDAY_MORNING + timedelta(minutes=2)))
        assert after_graph.outcome == "completed"
        history = [c async for c in engine.graph.aget_state_history({"configurable": {"thread_id": "by-engine"}})]
        assert len(history) == 3  # one checkpoint per turn, newest first, each the child of the one before
        assert [h.parent_config["configurable"]["checkpoint_id"] for h in history[:-1]] == \
            [h.config["configurable"]["checkpoint_id"] for h in history[1:]]


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
async def test_a_turn_is_stored_whole_or_not_at_all(restaurant: WorkerSpec, database_url: str) -> None:
    async with engine_for(restaurant, database_url) as engine:
        talk = Talk(engine, conversation_id="atomic")
        await talk.start()
        before = await engine.snapshot("atomic")
        audited = await engine.handoffs.audit.for_conversation("atomic")
        turn = Turn(conversation_id="atomic", channel="sms", text="table for 2 tomorrow at 8pm",
                    time=MONDAY_MORNING + timedelta(minutes=1))

        def broken_channel(_result: object) -> list:
            return [("INSERT INTO no_such_table (x) VALUES (?)", (1,))]

        with pytest.raises(Exception, match="no_such_table"):
            await engine.handle(turn, after=broken_channel)
        events = await engine.store.events("atomic")
        # What the person said is kept; nothing the failed turn decided is.
        assert [(e.direction, e.text) for e in events][-1] == ("in", "table for 2 tomorrow at 8pm")
        assert await engine.snapshot("atomic") == before
        assert await engine.handoffs.audit.for_conversation("atomic") == audited

        result = await engine.handle(turn)
        assert result.fields["people"].value == 2


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
async def test_a_stale_state_cannot_be_written_over_a_newer_one(restaurant: WorkerSpec, database_url: str) -> None:
    async with engine_for(restaurant, database_url) as engine:
        await Talk(engine, conversation_id="stale").start()
        saver, db = engine.saver, engine.store.db
        saved = saver.decode_latest(await db.batch([saver.latest_statement("stale")], json_columns=("metadata",)))
        first = saver.next_checkpoint(saved, {"turns": 1})
        second = saver.next_checkpoint(saved, {"turns": 2})
        await db.batch([saver.put_statement("stale", first, saved.checkpoint_id, saved.step + 1)], guard=0)
        with pytest.raises(WriteConflict):
            await db.batch([saver.put_statement("stale", second, saved.checkpoint_id, saved.step + 1),
                            ("UPDATE conversations SET turns = 99 WHERE id = ?", ("stale",))], guard=0)
        conversation = await engine.store.conversation("stale")
        assert conversation.turns == 0  # the rest of the losing batch was rolled back with it


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
async def test_a_turn_that_loses_the_race_is_rerun_on_the_winners_state(restaurant: WorkerSpec, database_url: str) -> None:
    # Two engines with their own connections stand for two worker processes on one database.
    async with engine_for(restaurant, database_url) as one, engine_for(restaurant, database_url) as two:
        await Talk(one, conversation_id="race").start()
        at = MONDAY_MORNING + timedelta(minutes=1)
        commit = one.store.db.batch
        raced: list[bool] = []

        async def commit_after_the_other_process(statements, json_columns=(), guard=None):  # noqa: ANN001, ANN202
            # `one` has read the state and decided its reply; `two` takes a turn before it commits.
            if guard is not None and not raced:
                raced.append(True)
                await two.handle(Turn(conversation_id="race", channel="sms", text="tomorrow at 7pm", time=at))
            return await commit(statements, json_columns, guard)

        one.store.db.batch = commit_after_the_other_process
        result = await one.handle(Turn(conversation_id="race", channel="sms", text="a table for 4 people", time=at))
        assert one.conflicts == 1
        assert {name: f.value for name, f in result.fields.items()}.keys() == {"people", "date", "time"}
        assert "name" in result.reply.lower()
        replies = [e.text for e in await one.store.events("race") if e.direction == "out"]
        assert len(replies) == 3  # the greeting and one reply to each message, none lost, none twice


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
async def test_two_processes_taking_turns_of_one_conversation_lose_nothing(
    restaurant: WorkerSpec, database_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Each turn waits on a (slow) language model between reading the state and writing the next
    # one, as a configured LLM makes it do: both processes read a conversation's state before
    # either writes, so they really race. Without the wait, SQLite turns never interleave and the
    # test would pass on an engine that never checks for a conflict.
    with FakeOpenAI() as model:
        model.delay = 0.5
        monkeypatch.setenv("LLM_BASE_URL", model.base_url)
        monkeypatch.setenv("LLM_MODEL", "slow-model")
        async with engine_for(restaurant, database_url) as one, engine_for(restaurant, database_url) as two:
            keys = [f"shared-{i}" for i in range(12)]
            for key in keys:
                await Talk(one, conversation_id=key).start()
            at = MONDAY_MORNING + timedelta(minutes=1)
            await asyncio.gather(*(
                turn for key in keys for turn in (
                    one.handle(Turn(conversation_id=key, channel="sms", text="a table for 4 people", time=at)),
                    two.handle(Turn(conversation_id=key, channel="sms", text="tomorrow at 7pm", time=at)),
                )
            ))
            # The race happened: turns found the state changed under them and were rerun on the winner's.
            assert one.conflicts + two.conflicts >= 1
            for key in keys:
                state = await two.snapshot(key)
                assert state.fields.keys() >= {"people", "date", "time"}, key
                replies = [e for e in await one.store.events(key) if e.direction == "out"]
                assert len(replies) == 3
