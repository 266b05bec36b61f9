"""Optional LLM proposer over any OpenAI-compatible chat-completions endpoint.

Configured only by the environment (`LLM_BASE_URL`, `LLM_MODEL`, `LLM_API_KEY`); without
them nothing is contacted. The model may only *propose*: each proposal names a field,
a value and a verbatim quote of the person's words. A proposal is kept only when the quote
is found in the text, the field exists, and the value passes the same typing and
constraints as the rule extractor's; otherwise it is dropped and logged. Rule readings
always win where they exist: the LLM fills gaps, it never overrides.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Sequence
from datetime import date, time
from typing import Any

import httpx
from pydantic import BaseModel, ValidationError

from extraction.base import ExtractionContext, Extracted, grounded
from extraction.fields import FieldSpec, FieldType
from extraction.rules import RuleExtractor
from extraction.validate import validate

log = logging.getLogger(__name__)

LLM_CONFIDENCE = 0.7


class LLMSettings(BaseModel):
    base_url: str
    model: str
    api_key: str | None = None
    timeout: float = 10.0


class Proposal(BaseModel):
    field: str
    value: Any
    quote: str


class Proposals(BaseModel):
    values: list[Proposal]


def response_schema(fields: Sequence[FieldSpec]) -> dict[str, Any]:
    """JSON Schema for structured output: a list of {field, value, quote}."""
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["values"],
        "properties": {
            "values": {
                "type": "array",
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["field", "value", "quote"],
                    "properties": {
                        "field": {"type": "string", "enum": [f.name for f in fields]},
                        "value": {"type": ["string", "number", "boolean"]},
                        "quote": {"type": "string", "description": "The exact words of the person that give the value."},
                    },
                },
            }
        },
    }


def _instructions(fields: Sequence[FieldSpec], context: ExtractionContext) -> str:
    lines = [
        "Extract values for these fields from the person's message. Only use what the person said.",
        "For each value give `quote`: the exact, verbatim words from the message it comes from.",
        f"The message was sent at {context.now.isoformat()}; resolve relative dates against it.",
        "Formats: date YYYY-MM-DD, time HH:MM (24h), counts as integers, money as a number, phone in E.164.",
        "Fields:",
    ]
    for f in fields:
        extra = ""
        if f.constraints.choices:
            extra = " one of: " + ", ".join(c.value for c in f.constraints.choices)
        asked = " (just asked for)" if f.name in context.requested else ""
        lines.append(f"- {f.name} ({f.type.value}){asked}: {f.description or f.spoken_label}{extra}")
    return "\n".join(lines)


def _typed(spec: FieldSpec, value: Any, rules: RuleExtractor, quote: str, context: ExtractionContext) -> Any:
    """The proposal's value in our normal form, or raise ValueError when it is not of the type."""
    t = spec.type
    if t is FieldType.date:
        return date.fromisoformat(str(value)).isoformat()
    if t is FieldType.time:
        return time.fromisoformat(str(value)).strftime("%H:%M")
    if t in (FieldType.count, FieldType.integer):
        number = float(value)
        if number != int(number):
            raise ValueError("not a whole number")
        return int(number)
    if t is FieldType.money:
        readings = rules.readings(quote, spec, context.now, requested=True)
        currency = readings[0].value.get("currency") if readings else None
        return {"amount": round(float(value), 2), "currency": currency}
    if t is FieldType.yes_no:
        if isinstance(value, bool):
            return value
        raise ValueError("not a yes/no")
    if t is FieldType.choice:
        allowed = {c.value for c in spec.constraints.choices or []}
        if value not in allowed:
            raise ValueError(f"not one of {sorted(allowed)}")
        return value
    if t is FieldType.digits:
        digits = re.sub(r"[\s\-]", "", str(value))
        if not digits.isdigit():
            raise ValueError("not digits")
        return digits
    if t is FieldType.phone:
        import phonenumbers

        number = phonenumbers.parse(str(value), rules.phone_region)
        if not phonenumbers.is_valid_number(number):
            raise ValueError("not a valid phone number")
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if t is FieldType.email:
        from email_validator import EmailNotValidError, validate_email

        try:
            return validate_email(str(value), check_deliverability=False).normalized.lower()
        except EmailNotValidError as exc:
            raise ValueError(str(exc)) from None
    if t is FieldType.duration:
        # The length is read from the person's words, not taken from the model's ISO string.
        readings = rules.readings(quote, spec, context.now, requested=True)
        if not readings:
            raise ValueError("no length of time in the quote")
        return readings[0].value
    if t is FieldType.place:
        # The gazetteer's (or the spec's) canonical name when the quote names a known place.
        readings = [r for r in rules.readings(quote, spec, context.now, requested=True) if r.confidence > 0.6]
        if readings:
            return readings[0].value
    text = str(value).strip()
    if not text:
        raise ValueError("empty")
    if spec.type in (FieldType.name, FieldType.first_name, FieldType.last_name, FieldType.full_name):
        if text.lower() not in quote.lower():
            raise ValueError("a name must be the person's own words")
    return text


class LLMExtractor:
    """Rule readings first; LLM proposals, checked, for the fields the rules left empty."""

    def __init__(self, rules: RuleExtractor, settings: LLMSettings):
        self.rules = rules
        self.phone_region = rules.phone_region
        self.settings = settings

    def _request(self, text: str, fields: Sequence[FieldSpec], context: ExtractionContext) -> dict[str, Any]:
        return {
            "model": self.settings.model,
            "temperature": 0,
            "messages": [
                {"role": "system", "content": _instructions(fields, context)},
                {"role": "user", "content": text},
            ],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "extracted_values", "strict": True, "schema": response_schema(fields)},
            },
        }

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.settings.api_key}"} if self.settings.api_key else {}

    def _gaps(self, text: str, fields: Sequence[FieldSpec], context: ExtractionContext) -> tuple[list[Extracted], list[FieldSpec]]:
        """The rules' readings, and the fields still empty (none when there is nothing to ask)."""
        found = self.rules.extract(text, fields, context)
        missing = [f for f in fields if f.name not in {e.field for e in found}]
        return found, (missing if text.strip() else [])

    def extract(self, text: str, fields: Sequence[FieldSpec], context: ExtractionContext) -> list[Extracted]:
        """For callers without an event loop (the `extract` CLI); the dialogue awaits `aextract`."""
        return asyncio.run(self.aextract(text, fields, context))

    async def aextract(self, text: str, fields: Sequence[FieldSpec], context: ExtractionContext) -> list[Extracted]:
        found, missing = self._gaps(text, fields, context)
        if not missing:
            return found
        try:
            async with httpx.AsyncClient(timeout=self.settings.timeout) as client:
                response = await client.post(f"{self.settings.base_url}/chat/completions",
                                             json=self._request(text, missing, context), headers=self._headers())
                response.raise_for_status()
                body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("LLM extractor unavailable, rules only: %s", exc)
            return found
        return self._merge(text, found, missing, body, context)

    def _merge(self, text: str, found: list[Extracted], missing: Sequence[FieldSpec], body: dict[str, Any],
               context: ExtractionContext) -> list[Extracted]:
        try:
            content = body["choices"][0]["message"]["content"]
            proposals = Proposals.model_validate(json.loads(content)).values
        except (KeyError, IndexError, TypeError, ValueError, ValidationError) as exc:
            log.warning("LLM answer is not the agreed structure, ignored: %s", exc)
            return found
        by_name = {f.name: f for f in missing}
        taken = [(e.start, e.end) for e in found]
        kept = list(found)
        for p in proposals:
            accepted = self.check(text, p, by_name, context, taken)
            if accepted is not None:
                kept.append(accepted)
                taken.append((accepted.start, accepted.end))
                by_name.pop(p.field, None)
        return grounded(text, sorted(kept, key=lambda e: e.start))

    def check(self, text: str, proposal: Proposal, fields: dict[str, FieldSpec], context: ExtractionContext,
              taken: list[tuple[int, int]]) -> Extracted | None:
        """The proposal as a grounded value, or None (logged) when any check fails."""
        spec = fields.get(proposal.field)
        if spec is None:
            log.info("LLM proposal dropped: %r is not a field still missing", proposal.field)
            return None
        quote = proposal.quote.strip()
        start = text.find(quote) if quote else -1
        if start < 0 and quote:
            start = text.lower().find(quote.lower())
        if start < 0:
            log.info("LLM proposal dropped: quote %r is not in the text", proposal.quote)
            return None
        end = start + len(quote)
        if any(start < e and s < end for s, e in taken):
            log.info("LLM proposal dropped: %r overlaps a value already taken", quote)
            return None
        try:
            value = _typed(spec, proposal.value, self.rules, quote, context)
        except (ValueError, TypeError) as exc:
            log.info("LLM proposal dropped: %s=%r is not a valid %s (%s)", spec.name, proposal.value, spec.type.value, exc)
            return None
        problem = validate(spec, value, context.now)
        if problem:
            log.info("LLM proposal dropped: %s=%r breaks a constraint (%s)", spec.name, value, problem)
            return None
        return Extracted(field=spec.name, value=value, start=start, end=end, text=text[start:end], confidence=LLM_CONFIDENCE)
