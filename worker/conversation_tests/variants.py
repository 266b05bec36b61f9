"""`--vary N`: N variants of each of the person's lines, each run as its own case (the other lines
as written), to find the forms the worker does not understand.

A line's variants, for the kinds the worker collects:
- a value said another way: the value the step expects (`expect: fields:`), found in the line by
  its span or by one of its common forms, or else a time, count, date or amount the line plainly
  holds, replaced by another common form of the same value ("8pm" / "8 pm" / "eight in the
  evening" / "20:00"; "4" / "four" / "four people"; "tomorrow" / "Tuesday" / "24 November";
  "$42.50" / "42 dollars 50"; "Maria" / "maria" / "it's Maria");
- a typing slip (SMS and email): one letter of a word that is not a value swapped for a
  neighbouring key, or dropped;
- speech as a recogniser writes it (voice): lowercase, without punctuation.

Variants are deterministic: the same case, line and N give the same variants (seeded by the case's
name and the line's position). A step's expected span that was the replaced words becomes the
new words; every other expectation stays as written."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from dialogue.spec import WorkerSpec
from extraction.fields import FieldType
from worker.conversation_tests.model import Case, FieldExpectation, Step

_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
         "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"]
_ORDINAL = {1: "st", 2: "nd", 3: "rd", 21: "st", 22: "nd", 23: "rd", 31: "st"}
_KEYS = ["qwertyuiop", "asdfghjkl", "zxcvbnm"]

_TIME = re.compile(r"\b(\d{1,2})(?::(\d{2}))?\s*(am|pm|a\.m\.|p\.m\.)(?![A-Za-z])|\b(\d{1,2}):(\d{2})\b", re.I)
_AMOUNT = re.compile(r"\$\s?(\d+)(?:\.(\d{2}))?\b")
_COUNT = re.compile(r"\b(?:for|of|party of|table for)\s+(\d{1,2})\b|^(\d{1,2})\b(?!:)", re.I)
_RELATIVE = re.compile(r"\b(today|tomorrow|yesterday)\b", re.I)


def words(n: int) -> str:
    """A whole number from 0 to 999 in English words ("forty-two")."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else "-" + _ONES[n % 10])
    rest = n % 100
    return f"{_ONES[n // 100]} hundred" + (f" and {words(rest)}" if rest else "")


@dataclass(frozen=True)
class Variant:
    step: int  # 0-based index of the line varied
    kind: str  # time, date, count, amount, name, digits, slip, speech
    text: str  # the line as varied
    was: str | None = None  # the words replaced (a value's form), if any
    now: str | None = None  # the words put in their place


@dataclass(frozen=True)
class _Found:
    kind: str
    span: str
    forms: list[str]


def time_forms(value: str) -> list[str]:
    hour, minute = (int(p) for p in value.split(":")[:2])
    h12 = hour % 12 or 12
    half = "pm" if hour >= 12 else "am"
    clock = f"{h12}" if minute == 0 else f"{h12}:{minute:02d}"
    forms = [f"{clock}{half}", f"{clock} {half}", f"{clock} {half[0]}.m.", f"{hour:02d}:{minute:02d}"]
    part = "in the morning" if hour < 12 else "in the afternoon" if hour < 17 else "in the evening"
    said = words(h12) if minute == 0 else f"{words(h12)} {words(minute) if minute >= 10 else 'oh ' + words(minute)}"
    forms.append(f"{said} {part}")
    if minute == 30:
        forms.append(f"half past {words(h12)}")
    elif minute == 15:
        forms.append(f"quarter past {words(h12)}")
    elif minute == 45:
        forms.append(f"quarter to {words(h12 % 12 + 1)}")
    elif minute == 0:
        forms.append(f"{words(h12)} o'clock")
    return forms


def count_forms(value: int) -> list[str]:
    if not 0 <= value < 1000:
        return [str(value)]
    return [str(value), words(value), f"{words(value)} people", f"{value} of us"]


def date_forms(value: str, now: datetime) -> list[str]:
    day = date.fromisoformat(value)
    today = now.date()
    forms = []
    relative = {today: "today", today + timedelta(days=1): "tomorrow", today - timedelta(days=1): "yesterday"}
    if day in relative:
        forms.append(relative[day])
    if 0 < (day - today).days < 7:  # a weekday names the next one: only for days ahead
        forms.append(day.strftime("%A"))
    suffix = _ORDINAL.get(day.day, "th")
    forms += [f"{day.day} {_MONTHS[day.month - 1]}", f"{_MONTHS[day.month - 1]} {day.day}", f"the {day.day}{suffix}"]
    return forms


def amount_forms(value: float) -> list[str]:
    whole, cents = int(value), round((value - int(value)) * 100)
    if cents:
        return [f"${whole}.{cents:02d}", f"{whole}.{cents:02d}", f"{whole} dollars {cents}",
                f"{words(whole)} dollars and {words(cents)} cents" if whole < 1000 else f"{whole} dollars {cents} cents"]
    return [f"${whole}", f"{whole} dollars", f"{words(whole)} dollars" if whole < 1000 else f"{whole} bucks"]


def name_forms(value: str) -> list[str]:
    return [value, value.lower(), f"it's {value}", f"{value}, thanks"]


_WHOLE_LINE_ONLY = ("it's ", ", thanks")  # name forms that are a whole answer, not words inside a sentence


def digits_forms(value: str) -> list[str]:
    half = len(value) // 2
    return [value, f"{value[:half]} {value[half:]}", " ".join(value)]


def _locate(line: str, forms: list[str]) -> str | None:
    """The first of `forms` the line holds as whole words (ignoring case)."""
    for form in sorted(forms, key=len, reverse=True):
        m = re.search(rf"(?<![\w$]){re.escape(form)}(?![\w])", line, re.I)
        if m:
            return m.group(0)
    return None


def _expected(spec: WorkerSpec, case: Case, step: Step) -> list[_Found]:
    """Values the step expects, found in its line."""
    found: list[_Found] = []
    types = {f.name: f.type for f in spec.fields}
    for name, wanted in ((step.expect.fields or {}) if step.expect else {}).items():
        value, span = (wanted.value, wanted.span) if isinstance(wanted, FieldExpectation) else (wanted, None)
        kind = types.get(name)
        if value is None or kind is None:
            continue
        forms = _forms(kind, value, case.now)
        if not forms:
            continue
        at = span if span and span in step.user else _locate(step.user, forms)
        if at:
            found.append(_Found(_kind(kind), at, forms))
    return found


def _kind(kind: FieldType) -> str:
    if kind in (FieldType.count, FieldType.integer):
        return "count"
    if kind in (FieldType.name, FieldType.first_name, FieldType.last_name, FieldType.full_name):
        return "name"
    return {FieldType.money: "amount"}.get(kind, kind.value)


def _forms(kind: FieldType, value: object, now: datetime) -> list[str]:
    try:
        if kind is FieldType.time:
            return time_forms(str(value))
        if kind in (FieldType.count, FieldType.integer):
            return count_forms(int(str(value)))
        if kind is FieldType.date:
            return date_forms(str(value), now)
        if kind is FieldType.money:
            return amount_forms(float(str(value).lstrip("$")))
        if kind in (FieldType.name, FieldType.first_name, FieldType.last_name, FieldType.full_name):
            return name_forms(str(value))
        if kind is FieldType.digits:
            return digits_forms(str(value))
    except (ValueError, TypeError):
        return []
    return []


def _plain(spec: WorkerSpec, case: Case, line: str) -> list[_Found]:
    """Values of the kinds the worker collects that the line plainly holds, without an expectation."""
    kinds = {f.type for f in spec.fields}
    found: list[_Found] = []
    if FieldType.time in kinds:
        for m in _TIME.finditer(line):
            if m.group(1):
                hour = int(m.group(1)) % 12 + (12 if m.group(3).lower().startswith("p") else 0)
                minute = int(m.group(2) or 0)
            else:
                hour, minute = int(m.group(4)), int(m.group(5))
            if hour < 24 and minute < 60:
                found.append(_Found("time", m.group(0), time_forms(f"{hour:02d}:{minute:02d}")))
    if kinds & {FieldType.count, FieldType.integer}:
        for m in _COUNT.finditer(line):
            number = m.group(1) or m.group(2)
            if not any(number in f.span for f in found):
                found.append(_Found("count", number, count_forms(int(number))))
    if FieldType.date in kinds:
        for m in _RELATIVE.finditer(line):
            shift = {"today": 0, "tomorrow": 1, "yesterday": -1}[m.group(1).lower()]
            day = (case.now.date() + timedelta(days=shift)).isoformat()
            found.append(_Found("date", m.group(0), date_forms(day, case.now)))
    if FieldType.money in kinds:
        for m in _AMOUNT.finditer(line):
            found.append(_Found("amount", m.group(0), amount_forms(float(f"{m.group(1)}.{m.group(2) or '00'}"))))
    return found


def _slips(line: str, protected: list[str], rng: random.Random) -> list[Variant]:
    """One adjacent-key substitution and one dropped letter, each in a word that is no value."""
    taken = {w.lower() for p in protected for w in re.findall(r"[A-Za-z]+", p)}
    # Lowercase words only: a capitalised one may be a name or a place the case needs as written.
    candidates = [m for m in re.finditer(r"(?<![\w'])[a-z]{4,}(?![\w'])", line) if m.group(0) not in taken]
    if not candidates:
        return []
    out: list[Variant] = []
    word = rng.choice(candidates)
    text = word.group(0)
    at = rng.randrange(1, len(text))
    row = next((r for r in _KEYS if text[at].lower() in r), None)
    if row is not None:
        i = row.index(text[at].lower())
        near = [row[j] for j in (i - 1, i + 1) if 0 <= j < len(row)]
        typo = text[:at] + rng.choice(near) + text[at + 1:]
        out.append(Variant(0, "slip", line[:word.start()] + typo + line[word.end():], text, typo))
    word = rng.choice(candidates)
    text = word.group(0)
    at = rng.randrange(1, len(text))
    dropped = text[:at] + text[at + 1:]
    out.append(Variant(0, "slip", line[:word.start()] + dropped + line[word.end():], text, dropped))
    return out


def speech_form(line: str) -> str:
    """The line as a speech recogniser writes it: lowercase, no punctuation."""
    return " ".join(re.sub(r"[^\w\s'$:]", " ", line.lower()).split())


def line_variants(spec: WorkerSpec, case: Case, index: int, n: int, seed: int = 0) -> list[Variant]:
    """Up to `n` variants of the case's line `index`, chosen deterministically."""
    step = case.steps[index]
    line = step.user
    rng = random.Random(f"{seed}:{case.name}:{index}")
    values = _expected(spec, case, step)
    spans = [v.span for v in values]
    values += [v for v in _plain(spec, case, line) if not any(v.span in s or s in v.span for s in spans)]
    candidates: list[Variant] = []
    whole = line.strip().rstrip(".!")
    for value in values:
        for form in value.forms:
            if form == value.span:
                continue
            if value.span != whole:
                if value.kind == "name" and any(p in form for p in _WHOLE_LINE_ONLY):
                    continue
                if value.kind == "date" and form.lower() not in ("today", "tomorrow", "yesterday"):
                    form = f"on {form}"  # "a table for 4 on 24 November", not "for 4 24 November"
            text = line.replace(value.span, form, 1)
            if case.channel == "voice":
                text = speech_form(text)
            candidates.append(Variant(index, value.kind, text, value.span, form))
    if case.channel in ("sms", "email"):
        candidates += [Variant(index, v.kind, v.text, v.was, v.now)
                       for v in _slips(line, [v.span for v in values], rng)]
    if case.channel == "voice" and speech_form(line) != line:
        candidates.append(Variant(index, "speech", speech_form(line)))
    unique: dict[str, Variant] = {}
    for variant in candidates:
        if variant.text != line:
            unique.setdefault(variant.text, variant)
    chosen = list(unique.values())
    rng.shuffle(chosen)
    return chosen[:n]


def case_variants(spec: WorkerSpec, case: Case, n: int, seed: int = 0) -> list[tuple[Variant, Case]]:
    """Each variant of each line, with the case as run with it."""
    out: list[tuple[Variant, Case]] = []
    for index in range(len(case.steps)):
        for variant in line_variants(spec, case, index, n, seed):
            out.append((variant, varied(case, variant)))
    return out


def varied(case: Case, variant: Variant) -> Case:
    steps = list(case.steps)
    step = steps[variant.step]
    expect = step.expect
    if expect is not None and expect.fields and variant.was is not None and variant.now is not None:
        fields = {name: (FieldExpectation(value=w.value, span=variant.now)
                         if isinstance(w, FieldExpectation) and w.span == variant.was else w)
                  for name, w in expect.fields.items()}
        expect = expect.model_copy(update={"fields": fields})
    steps[variant.step] = step.model_copy(update={"user": variant.text, "expect": expect})
    return case.model_copy(update={"steps": steps, "name": f"{case.name} ~ step {variant.step + 1} ({variant.kind})"})
