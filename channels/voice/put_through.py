"""Putting a call through to a person once the handoff line has been heard: the live call is
updated (Calls API) to dial the rule's number, and the attempt is recorded in the transcript
with the handoff it belongs to. A refused transfer is apologised for."""

from __future__ import annotations

import asyncio

from channels.seam import Conversations
from channels.voice.transfer import CallControl
from dialogue.events import Transfer

TRANSFER_GRACE_SECONDS = 0.5  # Twilio plays what it has buffered before the handoff line ends


async def put_through(conversations: Conversations, calls: CallControl, conversation_id: str, call_sid: str,
                      transfer: Transfer, *, caller_id: str | None, no_answer: str, refused: str) -> str | None:
    """Returns the apology to say when Twilio refused the transfer, else None."""
    assert transfer.to
    await asyncio.sleep(TRANSFER_GRACE_SECONDS)
    handoff = await conversations.open_handoff(conversation_id)
    outcome = await calls.transfer(call_sid, transfer.to, caller_id=caller_id, no_answer=no_answer)
    apology = None if outcome.ok else refused
    await conversations.record(conversation_id, "voice", "transfer", said=apology,
                               metadata={"rule": transfer.rule, "handoff_id": handoff.id if handoff else None,
                                         **outcome.model_dump()})
    return apology
