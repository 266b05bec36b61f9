"""Per-type finders: each returns candidate values with spans and a confidence.

`requested` tells a finder that the worker just asked for a value of its type, which
licenses weaker readings (a bare "13" is a count after "how many?", 1 pm after
"what time?"). Without it, a finder only reports values with clear markers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import phonenumbers

from extraction.fields import Choice, FieldSpec
from extraction.numbers import find_digit_sequences, find_numbers


@dataclass(frozen=True)
class Candidate:
    value: Any
    start: int
    end: int
    confidence: float
    shared: bool = False  # "in an hour", "tonight": one phrase that gives both a date and a time


# ---- digits, phone, email, money, choice, yes/no, text --------------------------------------

def find_digits(text: str, spec: FieldSpec, requested: bool) -> list[Candidate]:
    c = spec.constraints
    out = []
    for digits, start, end in find_digit_sequences(text):
        fits = (c.min_length is None or len(digits) >= c.min_length) and (c.max_length is None or len(digits) <= c.max_length)
        if requested:
            out.append(Candidate(digits, start, end, 0.9 if fits else 0.6))
        elif fits and len(digits) >= 4:
            out.append(Candidate(digits, start, end, 0.75))
    return out


def find_phones(text: str, region: str, requested: bool) -> list[Candidate]:
    out = []
    for match in phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.POSSIBLE):
        e164 = phonenumbers.format_number(match.number, phonenumbers.PhoneNumberFormat.E164)
        conf = 0.95 if phonenumbers.is_valid_number(match.number) else 0.6
        out.append(Candidate(e164, match.start, match.end, conf))
    if not out:
        for digits, start, end in find_digit_sequences(text):
            if 7 <= len(digits) <= 15:
                prefix = "+" if text[max(0, start - 1) : start] == "+" else ""
                try:
                    number = phonenumbers.parse(prefix + digits, region)
                except phonenumbers.NumberParseException:
                    continue
                if phonenumbers.is_possible_number(number):
                    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
                    valid = phonenumbers.is_valid_number(number)
                    out.append(Candidate(e164, start - len(prefix), end, 0.85 if valid else 0.5))
    return out


_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}")
_SPOKEN_EMAIL = re.compile(
    r"(?P<user>[a-z0-9]+(?:\s+(?:dot|underscore|dash|hyphen)\s+[a-z0-9]+)*)\s+at\s+"
    r"(?P<domain>[a-z0-9]+(?:\s+dot\s+[a-z0-9]+)+)",
    re.I,
)


def _valid_email(address: str) -> str | None:
    """The normalised address, or None; email-validator knows the syntax rules we don't want to hand-write."""
    from email_validator import EmailNotValidError, validate_email

    try:
        return validate_email(address, check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        return None


def find_emails(text: str) -> list[Candidate]:
    out = []
    for m in _EMAIL.finditer(text):
        raw = m.group(0).rstrip(".")
        address = _valid_email(raw)
        if address:
            out.append(Candidate(address, m.start(), m.start() + len(raw), 0.95))
    if not out:
        words = {"dot": ".", "underscore": "_", "dash": "-", "hyphen": "-"}
        for m in _SPOKEN_EMAIL.finditer(text):
            user = "".join(words.get(w.lower(), w) for w in m.group("user").split())
            domain = "".join(words.get(w.lower(), w) for w in m.group("domain").split())
            address = _valid_email(f"{user}@{domain}")
            if address:
                out.append(Candidate(address, m.start(), m.end(), 0.8))
    return out


_CURRENCY = {"$": "USD", "£": "GBP", "€": "EUR", "dollar": "USD", "buck": "USD", "pound": "GBP", "quid": "GBP",
             "euro": "EUR", "usd": "USD", "gbp": "GBP", "eur": "EUR", "cent": "USD", "pence": "GBP", "p": "GBP"}
_SCALE = {"k": 1e3, "thousand": 1e3, "grand": 1e3, "m": 1e6, "mil": 1e6, "million": 1e6, "hundred": 100}
_AMOUNT = r"(?P<n>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)"
_MONEY_PATTERNS = [
    # "$340 on": the space after the amount is no part of it
    re.compile(rf"(?P<sym>[$£€])\s?{_AMOUNT}(?:\s*(?P<k>k|thousand|grand|m|mil|million))?\b", re.I),
    re.compile(rf"\b{_AMOUNT}\s*(?P<k>k|thousand|grand|m|mil|million)?\s*(?P<sym>[$£€])", re.I),
    re.compile(rf"\b(?P<code>usd|gbp|eur)\s?{_AMOUNT}\b", re.I),
    re.compile(rf"\b{_AMOUNT}\s*(?P<k>k|thousand|grand|m|mil|million)?\s*(?P<code>usd|gbp|eur)\b", re.I),
]
_MONEY_WORDS = re.compile(
    r"\b(?:amount|spend|spent|spending|pay|paid|payment|transfer|transferring|refund|cost|costs|charge|charged|fee|"
    r"price|balance|owe|withdraw|withdrew|deposit|deposited|send|sent|loan|limit|bill|worth)\b", re.I
)


def find_money(text: str, requested: bool) -> list[Candidate]:
    out: list[Candidate] = []

    def add(amount: float, currency: str | None, start: int, end: int, conf: float) -> None:
        if not any(c.start < end and start < c.end for c in out):
            out.append(Candidate({"amount": round(amount, 2), "currency": currency}, start, end, conf))

    for pattern in _MONEY_PATTERNS:
        for m in pattern.finditer(text):
            g = m.groupdict()
            amount = float(g["n"].replace(",", ""))
            scale = _SCALE.get((g.get("k") or "").lower(), 1)
            currency = _CURRENCY[(g.get("sym") or g.get("code") or "").lower()]
            add(amount * scale, currency, m.start(), m.end(), 0.95)
    for n in find_numbers(text):
        if any(c.start <= n.start < c.end for c in out):
            continue
        after = text[n.end :]
        scale_m = re.match(r"^\s*(k|thousand|grand|hundred|million|mil)\b", after, re.I)
        amount, end = float(n.value), n.end
        if scale_m and not (n.spoken and scale_m.group(1).lower() in ("hundred", "thousand")):
            amount *= _SCALE[scale_m.group(1).lower()]
            end += scale_m.end()
        unit = re.match(r"^\s*(dollars?|bucks?|pounds?|quid|euros?|cents?|pence)\b", text[end:], re.I)
        if unit:
            word = unit.group(1).lower().rstrip("s")
            cur = _CURRENCY["cent" if word == "cent" else word if word != "pence" else "pence"]
            value = amount / 100 if word in ("cent", "pence") else amount
            add(value, cur, n.start, end + unit.end(), 0.9)
        elif n.ordinal or re.match(r"^\s*(?:%|percent|people|persons?|adults?|kids?|days?|weeks?|months?|years?|times|nights?|hours?|minutes?|am\b|pm\b|a\.m|p\.m|:\d)", after, re.I):
            continue
        elif requested:
            add(amount, None, n.start, end, 0.7)
        elif _MONEY_WORDS.search(text) and (amount >= 10 or "." in text[n.start:end]) and not re.search(r"[/:]\n?$", text[max(0, n.start - 2): n.start]):
            add(amount, None, n.start, end, 0.6)
    return out


def find_choice(text: str, choices: list[Choice], requested: bool) -> list[Candidate]:
    out = []
    for choice in choices:
        for word in [choice.value, choice.value.replace("_", " "), *choice.synonyms]:
            m = re.search(rf"\b{re.escape(word)}\b", text, re.I)
            if m:
                exact = word.lower() in (choice.value.lower(), choice.value.replace("_", " ").lower())
                out.append(Candidate(choice.value, m.start(), m.end(), 0.95 if exact else 0.85 if requested else 0.75))
                break
    return out


def find_free_text(text: str) -> list[Candidate]:
    stripped = text.strip()
    if not stripped:
        return []
    start = text.index(stripped)
    return [Candidate(stripped, start, start + len(stripped), 0.7)]


def find_yes_no(text: str) -> list[Candidate]:
    from extraction.intents import NO, YES

    for pattern, value in ((YES, True), (NO, False)):
        m = pattern.search(text)
        if m:
            word = m.group(0).strip()
            start = text.index(word, m.start())
            return [Candidate(value, start, start + len(word), 0.9)]
    return []


_NONE = re.compile(r"\b(?:none|nobody|no\s+one|nil)\b", re.I)


def find_integers(text: str, requested: bool) -> list[Candidate]:
    found = [Candidate(n.value, n.start, n.end, 0.85) for n in find_numbers(text) if requested and not n.ordinal]
    if requested and not found and len(text.split()) <= 4 and (m := _NONE.search(text)):
        found.append(Candidate(0, m.start(), m.end(), 0.7))  # "none" answers "how many?" with 0
    return found
