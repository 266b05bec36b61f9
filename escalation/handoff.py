"""Carry out what a turn decided about people: the handoff packet on the human queue, team
notifications, and the audit trail of every rule and action. Called by the engine after
each turn; channels do the channel-specific part (a live transfer on voice)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any, Protocol

from escalation.audit import AuditEntry, AuditTrail
from escalation.drift import DriftStatus, drift_status
from escalation.notify import Notifier
from escalation.queue import Handoff, HumanQueue
from escalation.rules import EscalationSettings
from extraction.fields import FieldSpec
from storage.db import Statement
from transcripts.store import TranscriptStore

log = logging.getLogger(__name__)
DRIFT_CHECK_SECONDS = 5.0


class HandoffSpec(Protocol):
    """What handoffs read of the worker spec. `dialogue.spec.WorkerSpec` fits it; a protocol
    rather than that class, because escalation sits below the dialogue and never imports it."""

    @property
    def name(self) -> str: ...
    @property
    def persona(self) -> str: ...
    @property
    def escalation(self) -> EscalationSettings: ...
    @property
    def fields(self) -> Sequence[FieldSpec]: ...


class Handoffs:
    def __init__(self, spec: HandoffSpec, store: TranscriptStore, notifier: Notifier, public_base_url: str = ""):
        self.spec = spec
        self.public_base_url = public_base_url.rstrip("/")  # handoff links in packets point here
        self.store = store
        self.queue = HumanQueue(store.db)
        self.audit = AuditTrail(store.db)
        self.notifier = notifier
        self._drift_checked = float("-inf")

    def audit_statements(self, conversation_id: str, channel: str, state: dict[str, Any]) -> list[Statement]:
        """The audit rows of a turn (every rule that held, every action taken or refused), to
        commit in the turn's own transaction."""
        worker = self.spec.name
        inputs = {
            "intents": state.get("intents", []),
            "fields": {k: {"value": v["value"], "confidence": v["confidence"]} for k, v in (state.get("fields") or {}).items()},
            "turns": state.get("turns", 0),
            "reasks": state.get("reasks", {}),
            "channel": channel,
        }
        fired = state.get("fired") or []
        winner = fired[0] if fired else None
        entries: list[AuditEntry] = []
        for rule in fired:
            entries.append(AuditEntry(
                conversation_id=conversation_id, worker=worker, kind="rule_fired", rule=rule, inputs=inputs,
                detail="acted on" if rule == winner else f"fired after {winner}; the first rule in order wins",
            ))
        for action in state.get("actions") or []:
            entries.append(AuditEntry(
                conversation_id=conversation_id, worker=worker, kind="action_taken", rule=action.get("rule"),
                action=action["kind"], inputs={"action": action},
            ))
        for refused in state.get("refused") or []:
            log.warning("conversation %s: refused action %s (not in allowed_actions)", conversation_id, refused.get("kind"))
            entries.append(AuditEntry(
                conversation_id=conversation_id, worker=worker, kind="action_refused", rule=refused.get("rule"),
                action=refused.get("kind"), inputs={"action": refused}, detail="not authorised by allowed_actions",
            ))
        return AuditTrail.statements(entries)

    async def after_turn(self, conversation_id: str, channel: str, state: dict[str, Any]) -> None:
        """Hand over when a rule said so; now and then, check the escalation rate for drift.
        Runs after the turn is stored, so the packet's transcript ends with what the person was told."""
        actions = {a["kind"]: a for a in state.get("actions") or []}
        if "transfer" in actions or "notify" in actions:
            action = actions.get("transfer") or actions["notify"]
            await self._hand_over(conversation_id, channel, action, state, queue=("transfer" in actions))
        if "end" in actions and time.monotonic() - self._drift_checked >= DRIFT_CHECK_SECONDS:
            # A rolling figure over many conversations: checking it every few seconds is enough.
            self._drift_checked = time.monotonic()
            await self.check_drift(conversation_id)

    async def check_drift(self, conversation_id: str) -> DriftStatus:
        status = await drift_status(self.store, self.spec.name, self.spec.escalation.drift)
        for alarm in status.alarms:
            log.warning("drift alarm for worker %s: %s (last %s conversations)", self.spec.name, alarm, status.conversations)
            await self.audit.record(AuditEntry(
                conversation_id=conversation_id, worker=self.spec.name, kind="drift", detail=alarm,
                inputs={"escalation_rate": status.escalation_rate, "mean_confidence": status.mean_confidence,
                        "conversations": status.conversations},
            ))
        return status

    async def _hand_over(self, conversation_id: str, channel: str, action: dict[str, Any], state: dict[str, Any],
                         queue: bool) -> None:
        packet = await self.packet(conversation_id, channel, action, state)
        handoff_id = None
        if queue:
            handoff_id = await self.queue.open(conversation_id, self.spec.name, channel, action["rule"], action["reason"], packet)
            packet["handoff_id"] = handoff_id
            await self.audit.record(AuditEntry(
                conversation_id=conversation_id, worker=self.spec.name, kind="handoff", rule=action["rule"],
                action=action["kind"], inputs={"handoff_id": handoff_id}, detail=action["reason"],
            ))
        rule = next((r for r in self.spec.escalation.rules if r.id == action["rule"]), None)
        targets = (rule.notify if rule and rule.notify else None) or self.spec.escalation.notify
        for address in targets.email:
            await self.notifier.enqueue(conversation_id, handoff_id, "email", address, packet)
        if targets.webhook:
            await self.notifier.enqueue(conversation_id, handoff_id, "webhook", targets.webhook, packet)

    def _needed(self, task_name: str | None) -> list[str]:
        """The required fields the conversation is still meant to collect: the active task's (a
        lost-card call is not missing a booking's party size), or the flat spec's."""
        if not self.spec.tasks:
            return [f.name for f in self.spec.fields if f.required]
        task = self.spec.task(task_name)
        if task is None:
            return []  # no job chosen yet: nothing is missing
        required = {f.name for f in self.spec.fields if f.required}
        return [name for name in task.asked_fields() if name in required]

    async def packet(self, conversation_id: str, channel: str, action: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
        """Everything the person taking over needs, in one JSON-ready object."""
        fields = {
            k: {"value": v["value"], "text": v["text"], "confidence": v["confidence"], "turn": v["turn"]}
            for k, v in (state.get("fields") or {}).items()
        }
        events = await self.store.events(conversation_id)
        transcript = [
            {"role": "user" if e.direction == "in" else "worker", "text": e.text, "time": str(e.time)}
            for e in events if e.text
        ]
        collected = ", ".join(f"{k}={v['value']}" for k, v in fields.items()) or "nothing yet"
        missing = [name for name in self._needed(state.get("task")) if name not in fields]
        summary = (
            f"{self.spec.persona} handed over after {_turns(state.get('turns', 0))}: {action['reason']} "
            f"Collected: {collected}." + (f" Still missing: {', '.join(missing)}." if missing else "")
        )
        base = self.public_base_url
        return {
            "conversation_id": conversation_id,
            "worker": self.spec.name,
            "channel": channel,
            "task": state.get("task"),
            "rule": action["rule"],
            "reason": action["reason"],
            "action": action["kind"],
            "to": action.get("to"),
            "fields": fields,
            "summary": summary,
            "transcript": transcript,
            # Without a public URL, the command that finds it (`queue show` takes the handoff id, which
            # `queue list` prints beside the conversation id).
            "link": f"{base}/queue/conversations/{conversation_id}" if base else f"channel-worker queue list --worker <spec> (conversation {conversation_id})",
        }


    # `by` is who did it: the authenticated operator over HTTP, the local user on the command line.
    async def claim(self, handoff_id: int, by: str, actor: str | None = None) -> Handoff:
        """`by` takes the handoff; `actor`, when another identity made the move (the local
        account behind `queue claim --by NAME`), is who the audit row records."""
        handoff = await self.queue.claim(handoff_id, by)
        await self._audit_queue(handoff, "claim", f"claimed by {by}", actor or by)
        return handoff

    async def resolve(self, handoff_id: int, note: str | None = None, by: str | None = None) -> Handoff:
        handoff = await self.queue.resolve(handoff_id, note)
        await self._audit_queue(handoff, "resolve", note, by)
        return handoff

    async def release(self, handoff_id: int, engine: Any, note: str | None = None, by: str | None = None) -> Handoff:
        """Back to the worker: the queue entry is released and the dialogue answers again."""
        handoff = await self.queue.release(handoff_id, note)
        await engine.release(handoff.conversation_id)
        await self._audit_queue(handoff, "release", note, by)
        return handoff

    async def _audit_queue(self, handoff: Handoff, action: str, detail: str | None, by: str | None) -> None:
        await self.audit.record(AuditEntry(
            conversation_id=handoff.conversation_id, worker=handoff.worker, kind="queue", rule=handoff.rule,
            action=action, inputs={"handoff_id": handoff.id, "status": handoff.status, "by": by}, detail=detail,
        ))


def _turns(n: int) -> str:
    return "1 turn" if n == 1 else f"{n} turns"
