"""The worker spec: who the worker is, what it says, what it collects, when it hands over.

A spec is a YAML file validated by these models (`channel-worker spec schema` prints
their JSON Schema). Reply lines are templates over the collected fields: `{people}`,
`{date:%A %d %B}`; a placeholder names a field or extra with an optional format spec and
nothing else (see `dialogue.template`).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from actions.spec import ActionSpec, OutcomeDeliverySpec
from escalation.rules import ActionKind, EscalationSettings, condition_fields
from dialogue import template
from dialogue.flow_check import flow_problems
from dialogue.flows import ConfirmStep, EndStep, IfStep, KnowledgeEntry, Routing, SayStep, Task
from dialogue.render import sample_value
from extraction.fields import IDENTIFIER, FieldSpec, role_conflicts

BUILTIN_OUTCOMES = ("completed", "escalated", "abandoned")
TEMPLATE_EXTRAS = {"worker", "error", "prompt", "summary", "field", "reason", "value", "limit", "task"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Script(_Strict):
    """Every line the worker may say that is not a field prompt."""

    greeting: str
    confirmation: str = Field(description="Read back the collected fields and ask for a yes or no.")
    closing: str = Field(description="Said when the person confirmed; the conversation ends.")
    fallback: str = Field(
        "Sorry, I didn't catch that. {prompt}", description="Said when nothing in the turn was understood."
    )
    reask: str = Field("Sorry, I still need that. {prompt}", description="Default re-ask line for every field.")
    invalid: str = Field("{error} {prompt}", description="Default line for a value that breaks a constraint.")
    acknowledge: str = Field("Got it.", description="Said before the next question when a value was taken.")
    changed: str = Field(
        "No problem, I've changed the {field} to {value}.", description="Said when a value was corrected."
    )
    correction_prompt: str = Field(
        "No problem. What should I change?", description="Said when the person says no to the confirmation."
    )
    start_over: str = Field("Sure, let's start again.", description="Said when the person asks to start over.")
    goodbye: str = Field("Okay, goodbye.", description="Said when the person leaves before the end.")
    handoff: str = Field(
        "I'm passing you to a colleague who can help. {reason}", description="Said when a rule hands over."
    )
    follow_up: str = Field(
        "A member of our team will follow up with you here shortly. {reason}",
        description="Handoff line on SMS and email, where a person replies later instead of taking a call.",
    )
    voice_call_back: str = Field(
        "A member of our team will call you back shortly. {reason}",
        description="Voice: the handoff line when there is no one to put the call through to (a person calls back).",
    )
    reask_limit: str = Field(
        "I'm sorry, I'm having trouble with this.", description="Said when a field was re-asked too often."
    )
    help: str = Field("", description="Answer to HELP (SMS) or 'what can you do'.")
    # Workers with tasks (dialogue/flows.py).
    task_prompt: str = Field("How can I help you today?",
                             description="Tasks: asked when the person has not said yet what they want.")
    out_of_scope: str = Field("Sorry, I can't help with that here.",
                              description="Tasks: said when a turn matches no task, no question and no pending answer.")
    switch: str = Field("Sure.", description="Tasks: said when the person moves to another task.")
    resume: str = Field("Now, back to your {task}.", description="Tasks: said when going back to a task the person left.")
    # What the channels themselves say, outside the dialogue: compliance answers, notices about
    # what could not be read, and the voice lines around a call. The defaults are today's text.
    sms_opted_out: str = Field(
        "You have been unsubscribed and will get no more messages. Reply START to resubscribe.",
        description="SMS: answer to STOP (and its synonyms) from a number that was subscribed.",
    )
    sms_resubscribed: str = Field(
        "You are resubscribed to {worker}. Reply HELP for help, STOP to stop.",
        description="SMS: answer to START from an opted-out number; {worker} is the persona up to its first comma.",
    )
    sms_help_unset: str = Field(
        "This is {worker}.", description="SMS: answer to HELP when script.help is empty; {worker} is the persona."
    )
    sms_help_footer: str = Field(
        "Reply STOP to unsubscribe.", description="SMS: appended to every answer to HELP (carriers require it)."
    )
    sms_empty: str = Field("Sorry, that message was empty.", description="SMS: answer to a message with no text.")
    sms_media: str = Field(
        "Thanks! I can only read text messages, so I couldn't open what you attached.",
        description="SMS: said before the reply (or alone) when a message came with pictures or files.",
    )
    email_too_large: str = Field(
        "Thank you for your message. It is larger than I can read ({limit} MB at most), so I couldn't take it in. "
        "Could you send your request again as a short text message, without attachments?",
        description="Email: answer to a message over EMAIL_MAX_BYTES; {limit} is that size in MB.",
    )
    email_no_text: str = Field(
        "Thank you for your message. I couldn't find any text in it; could you write your request in the email itself?",
        description="Email: answer to a message with no new text in it.",
    )
    voice_busy: str = Field(
        "Sorry, all our lines are busy right now. Please call again in a few minutes. Goodbye.",
        description="Voice: said before hanging up on a call beyond VOICE_MAX_CALLS.",
    )
    voice_still_there: str = Field(
        "Are you still there? {prompt}",
        description="Voice: said after a silence; {prompt} is the last thing the worker said.",
    )
    voice_not_heard: str = Field(
        "Sorry, I didn't catch that. {prompt}",
        description="Voice: said when the caller spoke but no words could be made out; {prompt} is the last thing "
                    "the worker said.",
    )
    voice_silence_goodbye: str = Field(
        "I can't hear anything, so I'll let you go. Please call again any time. Goodbye.",
        description="Voice: said before hanging up when the caller stayed silent through every re-prompt.",
    )
    voice_transfer_failed: str = Field(
        "I'm sorry, I couldn't put you through. We have your details and will call you back.",
        description="Voice: said when putting the call through to a person was refused.",
    )
    voice_no_answer: str = Field(
        "I'm sorry, nobody could take your call just now. We have your details and will call you back.",
        description="Voice: said when the person the call was put through to does not answer.",
    )
    voice_holding: str = Field(
        "One moment, please.",
        description="Voice: said when a turn takes longer than VOICE_HOLDING_AFTER_SECONDS (a slow action), "
                    "so the caller is not left in silence.",
    )
    examples: list[str] = Field(default_factory=list, description="Example lines in the worker's voice.")


class Outcome(_Strict):
    name: str = Field(pattern=IDENTIFIER)
    description: str = ""


class ChannelSettings(_Strict):
    enabled: bool = True
    greeting: str | None = Field(None, description="Replaces the script greeting on this channel.")
    max_segments: int | None = Field(None, ge=1, le=10, description="SMS: most segments per reply.")
    silence_timeout_seconds: float | None = Field(None, gt=0, description="Voice: re-prompt after this silence.")


class Channels(_Strict):
    console: ChannelSettings = Field(default_factory=ChannelSettings)
    sms: ChannelSettings = Field(default_factory=ChannelSettings)
    email: ChannelSettings = Field(default_factory=ChannelSettings)
    voice: ChannelSettings = Field(default_factory=ChannelSettings)


class WorkerSpec(_Strict):
    """A whole worker: persona, script, fields, outcomes, escalation and channels."""

    name: str = Field(pattern=IDENTIFIER)
    version: str | None = Field(None, max_length=100, description="Your label for this version of the spec "
                                "(\"2026-11-23\", \"v4\"); stored on every conversation it starts, with the "
                                "spec's content hash.")
    persona: str = Field(description="Who the worker is, e.g. 'Sam, the host at Luigi's'.")
    tone: str = Field("friendly and brief", description="How it speaks.")
    goal: str = Field(description="What a completed conversation achieves.")
    timezone: str = Field("UTC", description="IANA zone used to read relative dates and times.")
    phone_region: str = Field("US", pattern=r"^[A-Z]{2}$", description="Country for phone numbers said without +code.")
    script: Script
    fields: list[FieldSpec] = Field(default_factory=list, description="Fields every task may share (a spec "
                                     "without tasks: the fields it collects, at least one).")
    tasks: list[Task] = Field(default_factory=list, description="The jobs this worker does (dialogue/flows.py); "
                              "none: one job that asks every required field.")
    knowledge: list[KnowledgeEntry] = Field(default_factory=list, description="Questions answered with the spec's own text.")
    routing: Routing = Field(default_factory=Routing)
    actions: list[ActionSpec] = Field(default_factory=list, description="Requests to the business's systems, used by `call` steps.")
    on_outcome: list[OutcomeDeliverySpec] = Field(default_factory=list,
                                                  description="Where each finished conversation's record is POSTed.")
    outcomes: list[Outcome] = Field(default_factory=lambda: [Outcome(name=n) for n in BUILTIN_OUTCOMES])
    escalation: EscalationSettings = Field(default_factory=EscalationSettings)
    allowed_actions: list[ActionKind] = Field(
        default_factory=lambda: list(ActionKind),
        description="Actions this worker may take; anything else is refused.",
    )
    channels: Channels = Field(default_factory=Channels)

    @model_validator(mode="before")
    @classmethod
    def _task_fields_join(cls, data: Any) -> Any:
        """A task's own fields join the worker's list (one namespace: the extractor, templates
        and packets see every field); the task remembers which are its own by asking them."""
        if isinstance(data, dict) and isinstance(data.get("tasks"), list):
            joined = list(data.get("fields") or [])
            for task in data["tasks"]:
                if isinstance(task, dict) and isinstance(task.get("fields"), list):
                    joined += task["fields"]
            data = {**data, "fields": joined}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> WorkerSpec:
        if not self.fields and not self.tasks:
            raise ValueError("fields: a worker without tasks needs at least one field")
        names = [f.name for f in self.fields]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"field names must be unique; repeated: {', '.join(duplicates)}")
        outcome_names = {o.name for o in self.outcomes}
        missing = [o for o in BUILTIN_OUTCOMES if o not in outcome_names]
        if missing:
            raise ValueError(f"outcomes must include {', '.join(missing)}")
        try:
            from zoneinfo import ZoneInfo

            ZoneInfo(self.timezone)
        except Exception as exc:  # zoneinfo raises several kinds for a bad key
            raise ValueError(f"timezone {self.timezone!r} is not a known IANA zone") from exc
        for i, rule in enumerate(self.escalation.rules):
            for ref in condition_fields(rule.when):
                if ref not in names:
                    raise ValueError(f"escalation.rules.{i} ({rule.id}) refers to unknown field {ref!r}")
            if rule.action not in self.allowed_actions:
                raise ValueError(
                    f"escalation.rules.{i} ({rule.id}) uses action {rule.action.value!r}, "
                    f"which allowed_actions does not authorize"
                )
        conflicts = role_conflicts(self.fields)
        if conflicts:
            raise ValueError("\n".join(f"fields: {c}; give them different roles (start/end, origin/destination)"
                                       for c in conflicts))
        ids = [r.id for r in self.escalation.rules]
        if len(ids) != len(set(ids)):
            raise ValueError("escalation rule ids must be unique")
        self._check_templates(set(names))
        found = flow_problems(self)
        if found:
            raise ValueError("\n".join(found))
        return self

    def content_hash(self) -> str:
        """sha256 of the canonical spec: the validated model as JSON with sorted keys and no
        whitespace. Formatting, comments, key order and written-out defaults do not change it;
        any change of value does (the `version:` label included)."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def task(self, name: str | None) -> Task | None:
        return next((t for t in self.tasks if t.name == name), None)

    def result_names(self) -> dict[str, Any]:
        """Every named result of every action (`availability.available` -> its schema)."""
        out: dict[str, Any] = {}
        for action in self.actions:
            out.update(action.result_names())
        return out

    def action(self, name: str) -> ActionSpec:
        return next(a for a in self.actions if a.name == name)

    def template_lines(self) -> list[tuple[str, str]]:
        """Every line that is rendered as a template, with its field path in the spec."""
        lines: list[tuple[str, str]] = [
            (f"script.{k}", v) for k, v in self.script.model_dump().items() if isinstance(v, str)
        ]
        for i, f in enumerate(self.fields):
            for attr in ("prompt", "reask", "invalid", "confirm_as"):
                value = getattr(f, attr)
                if value:
                    lines.append((f"fields.{i}.{attr}", value))
        for i, rule in enumerate(self.escalation.rules):
            if rule.say:
                lines.append((f"escalation.rules.{i}.say", rule.say))
        for i, task in enumerate(self.tasks):
            for attr in ("confirmation", "closing"):
                if getattr(task, attr):
                    lines.append((f"tasks.{i}.{attr}", getattr(task, attr)))
            lines += [(f"tasks.{i}.steps.{path}", text) for path, text in _step_lines(task.steps)]
        for i, entry in enumerate(self.knowledge):
            lines.append((f"knowledge.{i}.answer", entry.answer))
        for i, action in enumerate(self.actions):
            if action.on_error.say:
                lines.append((f"actions.{i}.on_error.say", action.on_error.say))
        for channel in Channels.model_fields:
            greeting = getattr(self.channels, channel).greeting
            if greeting:
                lines.append((f"channels.{channel}.greeting", greeting))
        return lines

    def _check_templates(self, field_names: set[str]) -> None:
        """Refuse any template line that could reach past a value or fail to render.

        All problems go into one ValueError, one per line, each starting with its path, so
        the loader can report every one of them at its own line."""
        fields = {f.name: f for f in self.fields}
        results = self.result_names()
        found: list[str] = []
        for where, text in self.template_lines():
            found += [f"{where}: {problem}" for problem in template.problems(text)]
            for ph in template.placeholders(text):
                if "." in ph.name:
                    if ph.name not in results:
                        found.append(f"{where}: {ph.text}: attribute and index access (. and [ ]) are not allowed; "
                                     f"a dotted name can only be an action's result, such as {{availability.times}}")
                    continue
                if ph.name not in field_names and ph.name not in TEMPLATE_EXTRAS:
                    found.append(f"{where}: template uses {{{ph.name}}}, which is not a field of this worker")
                    continue
                if ph.spec:
                    reading_back = where.endswith(".confirm_as")
                    sample = _sample(fields.get(ph.name), reading_back)
                    try:
                        format(sample, ph.spec)
                    except (ValueError, TypeError, OverflowError) as exc:
                        kind = "text" if isinstance(sample, str) else fields[ph.name].type.value
                        found.append(f"{where}: {ph.text}: the format {ph.spec!r} does not apply to {kind} ({exc})")
        if found:
            raise ValueError("\n".join(found))

    def field(self, name: str) -> FieldSpec:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    def channel(self, name: str) -> ChannelSettings:
        return getattr(self.channels, name, ChannelSettings())


def _step_lines(steps: list[Any], prefix: str = "") -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for i, step in enumerate(steps):
        path = f"{prefix}{i}"
        if isinstance(step, SayStep):
            out.append((f"{path}.say", step.say))
        elif isinstance(step, (ConfirmStep, EndStep)):
            text = step.confirm if isinstance(step, ConfirmStep) else step.end
            if isinstance(text, str):
                out.append((f"{path}.{'confirm' if isinstance(step, ConfirmStep) else 'end'}", text))
        elif isinstance(step, IfStep):
            out += _step_lines(step.then, f"{path}.then.") + _step_lines(step.else_, f"{path}.else.")
    return out


def _sample(field: FieldSpec | None, reading_back: bool) -> Any:
    """A value like the one a placeholder formats: extras are text, and a field with its own
    `confirm_as` is already text everywhere but in that `confirm_as` line."""
    if field is None or (field.confirm_as and not reading_back):
        return "text"
    return sample_value(field.type)
