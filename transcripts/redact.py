"""Masking personal data in exports (`channel-worker export --redact`).

The detectors are the extractor's own, so an export masks what the worker itself would read
as a value: phone numbers (phonenumbers' matcher), email addresses (typed or spoken), runs of
digits (typed or spoken; a Luhn-valid run of 13 to 19 digits is a card), and people's names
(the name finder, plus every name the person gave in the conversation, so "You're booked,
Ana" is masked too once "Ana Silva" was said). ISO-8601 dates and times and money amounts are
kept: they are the worker's normalised values and timestamps, and a reviewer needs them.

Masks say what was there: [phone], [email], [card], [number], [name].
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from typing import Any

import phonenumbers

from extraction.finders import find_emails, find_money
from extraction.names import find_names
from extraction.numbers import find_digit_sequences
from extraction.rules import DEFAULT_PHONE_REGION
from extraction.validate import luhn_ok

PHONE, EMAIL, CARD, NUMBER, NAME = "[phone]", "[email]", "[card]", "[number]", "[name]"
MASKS = (PHONE, EMAIL, CARD, NUMBER, NAME)

# Kept as they are: stored timestamps and normalised dates ("2026-11-24", "19:00" needs no rule).
_ISO_TIME = re.compile(
    r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?(?!\d)"
)
# Metadata keys whose values identify the person or the line (SMS from/to, an email's sender):
# masked whole even when no detector recognises the value.
CONTACT_KEYS = frozenset({"from", "to", "sender", "recipient", "reply_to", "cc", "bcc", "caller", "called", "number"})
_NAME_FIELD = re.compile(r"name", re.I)
_NAME_WORD = re.compile(r"[^\W\d_][\w'’\-]*", re.UNICODE)


class Redactor:
    """One export's redaction. `min_digits`: shorter digit runs (a party size, a time, a PIN's
    worth of digits) are kept; longer ones are account, card or phone numbers.

    Conversation ids that carry personal data (an SMS id holds both phone numbers, an email id
    the thread's Message-ID) become pseudonyms keyed by a secret made for this export: the rows
    of one conversation stay together, but the id cannot be reversed or matched across exports."""

    def __init__(self, phone_region: str = DEFAULT_PHONE_REGION, min_digits: int = 6, key: bytes | None = None):
        self.phone_region = phone_region
        self.min_digits = min_digits
        self._key = key or secrets.token_bytes(32)

    def conversation_id(self, conversation_id: str) -> str:
        if self.text(conversation_id) == conversation_id:
            return conversation_id
        prefix = conversation_id.split(":", 1)[0] if ":" in conversation_id else ""
        prefix = prefix if prefix.isalpha() else "conversation"
        digest = hmac.new(self._key, conversation_id.encode(), hashlib.sha256).hexdigest()[:16]
        return f"{prefix}:{digest}"

    def conversation(self, person_texts: Iterable[str | None], fields: dict[str, Any] | None) -> ConversationRedactor:
        """A redactor for one conversation, knowing the names its person gave: found by the name
        finder in what they said, and the values of fields named like names (first_name...)."""
        names: set[str] = set()
        for text in person_texts:
            for reading in find_names(text or "", requested=False):
                names.update(word for word, _, _ in reading.tokens)
        for field, record in (fields or {}).items():
            value = record.get("value") if isinstance(record, dict) else record
            if _NAME_FIELD.search(field) and isinstance(value, str):
                names.update(_NAME_WORD.findall(value))
        return ConversationRedactor(self, frozenset(n for n in names if len(n) > 1))

    def text(self, text: str, names: frozenset[str] = frozenset(), find_names_in_text: bool = True) -> str:
        """`text` with every detected piece of personal data replaced by its mask."""
        if not text:
            return text
        spans = self._spans(text, names, find_names_in_text)
        out, pos = [], 0
        for start, end, mask in spans:
            out.append(text[pos:start])
            out.append(mask)
            pos = end
        out.append(text[pos:])
        return "".join(out)

    def _spans(self, text: str, names: frozenset[str], find_names_in_text: bool) -> list[tuple[int, int, str]]:
        kept = [(m.start(), m.end()) for m in _ISO_TIME.finditer(text)]
        # Only amounts with a currency: a bare number near "charged" may be a card number.
        kept += [(c.start, c.end) for c in find_money(text, requested=False) if c.value.get("currency")]
        # Detectors read a copy with the kept spans blanked, so a date never joins a digit run
        # that follows it, and the offsets still match the original text.
        scan = list(text)
        for start, end in kept:
            scan[start:end] = "_" * (end - start)
        scan_text = "".join(scan)

        found: list[tuple[int, int, str]] = []
        found += [(c.start, c.end, EMAIL) for c in find_emails(scan_text)]
        for match in phonenumbers.PhoneNumberMatcher(scan_text, self.phone_region, leniency=phonenumbers.Leniency.POSSIBLE):
            found.append((match.start, match.end, PHONE))
        for digits, start, end in find_digit_sequences(scan_text):
            if len(digits) >= self.min_digits:
                found.append((start, end, CARD if 13 <= len(digits) <= 19 and luhn_ok(digits) else NUMBER))
        if find_names_in_text:
            for reading in find_names(scan_text, requested=False):
                found.append((reading.tokens[0][1], reading.tokens[-1][2], NAME))
        if names:
            pattern = r"(?<![\w'’])(?:" + "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True)) + r")(?![\w'’])"
            found += [(m.start(), m.end(), NAME) for m in re.finditer(pattern, scan_text, re.I)]
        # Overlaps: the earliest span wins, and of two starting together the longer.
        found.sort(key=lambda s: (s[0], -(s[1] - s[0])))
        spans: list[tuple[int, int, str]] = []
        for start, end, mask in found:
            if spans and start < spans[-1][1]:
                continue
            spans.append((start, end, mask))
        return spans


class ConversationRedactor:
    """Redaction of one conversation's texts, fields and metadata."""

    def __init__(self, redactor: Redactor, names: frozenset[str]):
        self.redactor = redactor
        self.names = names

    def said(self, text: str | None) -> str | None:
        """What the person said (or anything they could have written: subjects, metadata)."""
        return None if text is None else self.redactor.text(text, self.names)

    def worker_said(self, text: str | None) -> str | None:
        """The worker's own lines: the person's data comes into them only through fields, so the
        name finder is not run (it would take the persona or the venue for a person)."""
        return None if text is None else self.redactor.text(text, self.names, find_names_in_text=False)

    def value(self, value: Any, key: str | None = None) -> Any:
        """Any stored structure (metadata, escalation, audit inputs): every string is redacted;
        strings under contact keys (from, to, sender...) are masked whole."""
        if isinstance(value, dict):
            return {k: self.value(v, str(k)) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v, key) for v in value]
        if isinstance(value, str):
            masked = self.said(value)
            if key is not None and key.lower() in CONTACT_KEYS and value and masked == value:
                return "[redacted]"
            return masked
        return value

    def fields(self, fields: dict[str, Any] | None) -> dict[str, Any]:
        """Stored field records ({"value", "text", ...}) or plain values, redacted. A value whose
        source words were masked is masked too ("Ana" from "Ana Silva"), and a field named like
        a name (first_name, guest_name...) never shows its value."""
        out: dict[str, Any] = {}
        for name, record in (fields or {}).items():
            if isinstance(record, dict) and "value" in record:
                text = record.get("text")
                masked_text = self.said(text) if isinstance(text, str) else text
                out[name] = {**record, "value": self._field_value(name, record["value"], text, masked_text),
                             **({"text": masked_text} if "text" in record else {})}
            else:
                out[name] = self._field_value(name, record, None, None)
        return out

    def _field_value(self, name: str, value: Any, text: str | None, masked_text: str | None) -> Any:
        if value is None or isinstance(value, bool):
            return value
        if _NAME_FIELD.search(name) and isinstance(value, str):
            return NAME
        if text and masked_text != text and isinstance(value, (str, int)):
            return next((m for m in MASKS if m in (masked_text or "")), "[redacted]")
        return self.value(value)
