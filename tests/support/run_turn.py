"""Take one turn of a conversation in a process of its own, for the tests that kill it mid-turn:

    python -m tests.support.run_turn DATABASE_URL SPEC_PATH CONVERSATION_ID TIME DEDUPE_KEY TEXT

Prints the reply when the turn returns (a killed run prints nothing). Actions read their
${VAR}s from the environment, as a worker does."""

from __future__ import annotations

import asyncio
import sys
from datetime import datetime

from dialogue.events import Turn
from dialogue.spec_loader import load_spec
from tests.support.talk import engine_for


async def main(url: str, spec_path: str, conversation_id: str, time: str, dedupe_key: str, text: str) -> None:
    async with engine_for(load_spec(spec_path), url) as engine:
        result = await engine.handle(Turn(conversation_id=conversation_id, channel="sms", text=text,
                                          time=datetime.fromisoformat(time), dedupe_key=dedupe_key))
    print(result.reply)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:7]))
