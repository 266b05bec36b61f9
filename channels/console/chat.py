"""The console channel: a conversation in the terminal, or from a script of user lines.

Every line the person types becomes a `Turn`; the worker's `Say` actions are printed.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel

from dialogue.engine import DialogueEngine
from dialogue.events import Turn, TurnResult
from storage.clock import utcnow


class ChatTurn(BaseModel):
    role: str  # "user" | "worker"
    text: str
    time: datetime


class ChatReport(BaseModel):
    """The `--json` output of `channel-worker chat`."""

    conversation_id: str
    outcome: str | None
    fields: dict[str, dict[str, Any]]
    escalation: dict[str, str] | None
    turns: list[ChatTurn]


def new_conversation_id() -> str:
    return f"console-{uuid.uuid4().hex[:12]}"


class Clock:
    """Stamps turns with the real time, or with a fixed start plus a second per turn (tests)."""

    def __init__(self, start: datetime | None):
        self._start, self._n = start, 0

    def __call__(self) -> datetime:
        if self._start is None:
            return utcnow()
        self._n += 1
        return self._start + timedelta(seconds=self._n)


async def run_chat(
    engine: DialogueEngine,
    lines: Iterable[str] | None,
    conversation_id: str | None = None,
    now: datetime | None = None,
    on_worker: Callable[[str], None] | None = None,
    on_user: Callable[[str], None] | None = None,
    read_line: Callable[[], str] | None = None,
) -> ChatReport:
    """Hold one conversation. `lines` scripts the person; otherwise `read_line` asks for each
    line (in a thread, so the event loop never blocks on the terminal)."""
    clock = Clock(now)
    conv_id = conversation_id or new_conversation_id()
    transcript: list[ChatTurn] = []

    def show(result: TurnResult, at: datetime) -> None:
        if result.reply:
            transcript.append(ChatTurn(role="worker", text=result.reply, time=at))
            if on_worker:
                on_worker(result.reply)

    existing = await engine.snapshot(conv_id)
    result = existing
    if existing is None or existing.phase == "new":
        at = clock()
        result = await engine.handle(Turn(conversation_id=conv_id, channel="console", text=None, time=at))
        show(result, at)
    script = iter(lines) if lines is not None else None
    while result is None or not (result.ended or result.phase == "done"):
        if script is not None:
            text = next(script, None)
            if text is None:
                break
            if on_user:
                on_user(text)
        else:
            assert read_line is not None
            try:
                text = await asyncio.to_thread(read_line)
            except (EOFError, KeyboardInterrupt):
                break
        text = text.strip()
        if not text:
            continue
        at = clock()
        transcript.append(ChatTurn(role="user", text=text, time=at))
        result = await engine.handle(Turn(conversation_id=conv_id, channel="console", text=text, time=at))
        show(result, clock() if now else utcnow())
    final = await engine.snapshot(conv_id)
    assert final is not None
    return ChatReport(
        conversation_id=conv_id,
        outcome=final.outcome,
        fields={
            k: {"value": v.value, "text": v.text, "turn": v.turn, "confidence": v.confidence}
            for k, v in final.fields.items()
        },
        escalation={"rule": final.escalation.rule, "reason": final.escalation.reason} if final.escalation else None,
        turns=transcript,
    )
