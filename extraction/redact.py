"""Masking personal data in exports (`channel-worker export --redact`).

The detectors are mostly the extractor's own, so an export masks what the worker itself would
read as a value: phone numbers (phonenumbers' matcher), runs of digits (typed or spoken; a
Luhn-valid run of 13 to 19 digits is a card; IBANs), email addresses, and people's names
(the name finder, plus every name the person gave in the conversation, so "You're booked,
Ana" is masked too once "Ana Silva" was said). ISO-8601 dates and times and money amounts are
kept: they are the worker's normalised values and timestamps, and a reviewer needs them.

Email addresses have a finder of their own, wider than the extractor's (which reads one address
for a field and so stops at the first form it finds): every typed address, with Unicode local
parts and internationalised domains, read on an NFKC copy so full-width forms count, and every
spoken or obfuscated one ("zoe at example dot com", "zoe [at] example [dot] com").

Digits are masked by whole tokens only: a digit run inside a longer alphanumeric token (a Twilio
MessageSid, a hex id) is not personal data and the token is kept whole, except an IBAN.

Masks say what was there: [phone], [email], [card], [number], [name].
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import unicodedata
from collections.abc import Iterable
from typing import Any

import phonenumbers

from extraction.finders import find_money
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
_UUID = re.compile(r"(?<![^\W_])[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}(?![^\W_])")
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
        kept += [(m.start(), m.end()) for m in _UUID.finditer(text)]
        # Only amounts with a currency: a bare number near "charged" may be a card number.
        kept += [(c.start, c.end) for c in find_money(text, requested=False) if c.value.get("currency")]
        # Detectors read a copy with the kept spans blanked, so a date never joins a digit run
        # that follows it, and the offsets still match the original text.
        scan = list(text)
        for start, end in kept:
            scan[start:end] = "_" * (end - start)
        scan_text = "".join(scan)

        found: list[tuple[int, int, str]] = []
        found += [(start, end, EMAIL) for start, end in find_email_spans(scan_text)]
        found += [(start, end, NUMBER) for start, end in _iban_spans(scan_text)]
        # Phones and digit runs are looked for with tokens mixing letters and digits blanked, so
        # they are only ever found as whole tokens (never "SMd913ce44ee[phone]...").
        digit_text = _MIXED_TOKEN.sub(lambda m: "_" * len(m.group(0)) if _is_mixed(m.group(0)) else m.group(0),
                                      scan_text)
        for match in phonenumbers.PhoneNumberMatcher(digit_text, self.phone_region, leniency=phonenumbers.Leniency.POSSIBLE):
            found.append((match.start, match.end, PHONE))
        for digits, start, end in _digit_runs(digit_text, self.min_digits):
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


# --- Digit runs and IBANs --------------------------------------------------------------------

_MIXED_TOKEN = re.compile(r"[^\W_]+")
# Between two numbers of a list: "4111... and 4111...", "45721198, 45721199".
_LIST_SEPARATOR = re.compile(r"\s*,\s*(?:and\s+)?|\s+and\s+", re.I)


_EXTENSION = re.compile(r"\d+(?:x|ext)\d{1,6}", re.I)


def _is_mixed(token: str) -> bool:
    """A token of letters and digits, such as an id; not a phone number with its extension."""
    return any(c.isdigit() for c in token) and any(c.isalpha() for c in token) and not _EXTENSION.fullmatch(token)


def _digit_runs(text: str, min_digits: int) -> list[tuple[str, int, int]]:
    """The extractor's digit runs, with a run cut where it joins two numbers that are each long
    enough to be masked on their own: the extractor reads "4111... and 4111..." as one number
    (a spoken number may have an "and" in it), which would mask the list as one [number]."""
    runs: list[tuple[str, int, int]] = []
    for digits, start, end in find_digit_sequences(text):
        pieces: list[tuple[str, int, int]] = []
        pos = start
        for sep in [*_LIST_SEPARATOR.finditer(text, start, end), None]:
            piece_end = sep.start() if sep else end
            piece = find_digit_sequences(text[pos:piece_end])
            if len(piece) != 1:  # the separator cut a spoken word or a filler; keep the run whole
                pieces = []
                break
            pieces.append((piece[0][0], pos + piece[0][1], pos + piece[0][2]))
            pos = sep.end() if sep else end
        if len(pieces) < 2:
            runs.append((digits, start, end))
            continue
        current = pieces[0]
        for piece in pieces[1:]:
            if len(current[0]) >= min_digits and len(piece[0]) >= min_digits:
                runs.append(current)
                current = piece
            else:
                current = (current[0] + piece[0], current[1], piece[2])
        runs.append(current)
    return runs


_IBAN_START = re.compile(r"(?<![^\W_])(?=[A-Za-z]{2}\d{2}(?: ?[A-Za-z0-9]){11,30})")
_IBAN_BODY = re.compile(r"[A-Za-z]{2}\d{2}(?: ?[A-Za-z0-9]){11,30}")


def _iban_ok(iban: str) -> bool:
    rearranged = iban[4:] + iban[:4]
    return 15 <= len(iban) <= 34 and int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def _iban_spans(text: str) -> list[tuple[int, int]]:
    """IBANs, typed whole or in groups of four: the ISO 7064 check, not the shape, decides, so
    an id that happens to start with two letters and two digits is kept."""
    spans: list[tuple[int, int]] = []
    for start_match in _IBAN_START.finditer(text):
        start = start_match.start()
        if spans and start < spans[-1][1]:
            continue
        body = _IBAN_BODY.match(text, start)
        if body is None:  # cannot happen: the start was found by looking ahead for this body
            continue
        # The body may run on into the next words ("... 32 thanks"): try the longest ending at a token's end.
        for end in range(body.end(), start, -1):
            if (end < len(text) and text[end].isalnum()) or not text[end - 1].isalnum():
                continue
            if _iban_ok(text[start:end].replace(" ", "").upper()):
                spans.append((start, end))
                break
    return spans


# --- Email addresses -------------------------------------------------------------------------

# Python's \w has no combining marks; after NFKC the few left (Devanagari vowel signs...) are
# replaced by this letter in the copy the patterns read.
_MARK_STAND_IN = "\u02b0"
# A local part starts where no local-part character precedes it (one attempt per run, not one per
# character); its leading dots and quotes are trimmed off after the match.
_LOCAL = r"(?<![\w.%+\-'’])[\w.%+\-'’]+"
_LABEL = r"[^\W_](?:[\w\-]*[^\W_])?"
_TYPED_EMAIL = re.compile(rf"{_LOCAL}@(?:{_LABEL}[.。])+(?:[^\W\d_]{{2,}}|xn--[a-z0-9\-]*[a-z0-9])", re.I)
_WORD = r"[^\W_]+"
_USER = rf"{_WORD}(?:\s+(?:dot|underscore|dash|hyphen|period)\s+{_WORD}|[._\-]{_WORD})*"
_SPOKEN_EMAIL = re.compile(
    # The user part starts at the start of its run (not after a dot or "dot "): one attempt per
    # run instead of one per word keeps long "a dot a dot ..." texts linear.
    r"(?<![\w.\-])(?<!dot\s)(?<!period\s)(?<!underscore\s)(?<!dash\s)(?<!hyphen\s)"
    rf"(?P<user>{_USER})(?:"
    rf"\s+at\s+(?P<spoken>{_WORD}(?:\s+(?:dot|period)\s+{_WORD})+)"
    rf"|\s*(?:[\[(]\s*at\s*[\])]|@)\s*(?P<obfuscated>{_WORD}(?:(?:\s*[\[(]\s*dot\s*[\])]\s*|\s+dot\s+|[.。]){_WORD})+)"
    r")",
    re.I,
)
_TLD_SPLIT = re.compile(r"\s*[\[(]\s*dot\s*[\])]\s*|\s+(?:dot|period)\s+|[.。]", re.I)
# A spoken address must end in a real-looking top-level domain, or "see you at eight dot thirty"
# would be one: any two letters (country codes), or one of the common generic ones.
_SPOKEN_TLDS = frozenset({
    "com", "org", "net", "edu", "gov", "mil", "int", "info", "biz", "name", "pro", "mobi", "app", "dev", "io", "ai",
    "email", "mail", "online", "site", "xyz", "tech", "store", "shop", "cloud", "me", "tv", "co",
})


def _normalised(text: str) -> tuple[str, list[int], list[int]]:
    """An NFKC copy of `text` for the patterns to read, and for each of its characters the span
    of the original characters it came from. Each base character is normalised with its
    combining marks (so "e" + U+0301 becomes "é"); format characters (zero-width space, soft
    hyphen) are dropped, since they hide nothing from a reader."""
    out: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    i = 0
    while i < len(text):
        j = i + 1
        while j < len(text) and unicodedata.category(text[j]).startswith("M"):
            j += 1
        for char in unicodedata.normalize("NFKC", text[i:j]):
            category = unicodedata.category(char)
            if category == "Cf":
                continue
            out.append(_MARK_STAND_IN if category.startswith("M") else char)
            starts.append(i)
            ends.append(j)
        i = j
    return "".join(out), starts, ends


def find_email_spans(text: str) -> list[tuple[int, int]]:
    """Spans (in `text`) of every email address, typed or spoken, ASCII or not."""
    normal, starts, ends = _normalised(text)
    found: list[tuple[int, int]] = []
    for m in _TYPED_EMAIL.finditer(normal):
        local = m.group(0).split("@", 1)[0]
        start = m.start() + len(local) - len(local.lstrip(".'’"))
        if start < m.start() + len(local):
            found.append((start, m.end()))
    for m in _SPOKEN_EMAIL.finditer(normal):
        domain = m.group("spoken") or m.group("obfuscated")
        tld = _TLD_SPLIT.split(domain)[-1]
        if not tld.isalpha() or len(tld) < 2 or (m.group("spoken") and len(tld) > 2 and tld.lower() not in _SPOKEN_TLDS):
            continue
        if not any(start < m.end() and m.start() < end for start, end in found):
            found.append((m.start(), m.end()))
    return sorted((starts[start], ends[end - 1]) for start, end in found)
