"""Run one action in a process of its own, for the tests that kill it mid-call:

    python -m tests.support.run_action DATABASE_URL ACTION_JSON CONVERSATION_ID STEP_ID VALUES_JSON

Prints the outcome as JSON when the call returns (a killed run prints nothing)."""

from __future__ import annotations

import asyncio
import json
import sys

from actions.client import ActionClient
from actions.spec import ActionSpec
from storage.db import Database
from storage.migrations import migrate


async def main(url: str, action: str, conversation_id: str, step_id: str, values: str) -> None:
    db = await Database.open(url)
    try:
        await migrate(db)
        async with ActionClient(db) as client:
            outcome = await client.run(ActionSpec.model_validate_json(action), conversation_id=conversation_id,
                                       step_id=step_id, values=json.loads(values))
        print(outcome.model_dump_json())
    finally:
        await db.close()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:6]))
