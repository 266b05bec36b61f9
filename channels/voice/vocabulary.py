"""What a caller is likely to say next: the phrases that answer the question just asked.

A short answer ("Lopez", "half past seven", "four", "yes") is too little audio for Whisper
tiny.en to hear on its own: it writes the nearest common words ("Low pin", "Half my face",
"Or"). Told which phrases would answer the question, the recogniser can score those phrases
against the audio (channels/voice/constrained.py) and take one when the audio supports it as
well as its own free transcription. This module only says which phrases those are, per kind
of field:

- names: given names and surnames from Faker's person providers (PyPI `faker`, MIT; many
  locales, Latin script or romanised, accents folded as Whisper writes them), plus the
  spec's own words never;
- times, party sizes, dates, yes/no: the ways people say them on the phone ("seven thirty",
  "half past eight", "a table for four", "Friday the twelfth", "yes please");
- choice fields: each choice and its synonyms from the spec.

At the confirmation the engine asks no field, so a line that is a yes/no question ("Is that
right?") is heard as one: yes/no phrases are expected.
"""

from __future__ import annotations

import functools
import importlib
import math
import re
import unicodedata
from dataclasses import dataclass

from extraction.fields import FieldSpec, FieldType

HOURS = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve"]
TEENS = ["thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty"]
ORDINALS = ["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth",
            "eleventh", "twelfth", "thirteenth", "fourteenth", "fifteenth", "sixteenth", "seventeenth",
            "eighteenth", "nineteenth", "twentieth", "twenty-first", "twenty-second", "twenty-third",
            "twenty-fourth", "twenty-fifth", "twenty-sixth", "twenty-seventh", "twenty-eighth",
            "twenty-ninth", "thirtieth", "thirty-first"]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
YES = ["Yes", "Yeah", "Yep", "Yup", "Sure", "Correct", "That's right", "That's correct", "Yes please",
       "Yes, that's right", "Yes, that's correct", "Yes, thank you", "Yeah, that's right", "Absolutely",
       "Perfect", "Okay", "OK", "Sounds good", "Right", "Exactly"]
NO = ["No", "Nope", "No thanks", "No, thank you", "No, that's wrong", "That's wrong", "Not quite",
      "No, that's not right", "Wrong", "Incorrect"]
# Faker locales whose names are written in Latin script (or come romanised), several origins.
NAME_LOCALES = ["en_US", "en_GB", "en_IE", "en_NZ", "en_IN", "en_NG", "en_PK", "en_KE", "es_ES", "es_MX",
                "es_CO", "pt_BR", "pt_PT", "it_IT", "fr_FR", "de_DE", "nl_NL", "pl_PL", "cs_CZ", "tr_TR",
                "vi_VN", "yo_NG", "ig_NG", "ha_NG", "sw", "zu_ZA", "id_ID", "fil_PH", "ja_JP", "zh_CN",
                "sv_SE", "no_NO", "da_DK", "fi_FI", "ro_RO", "hu_HU", "hr_HR", "ga_IE"]
_YES_NO_QUESTION = re.compile(
    r"(?:^|[.!?]\s+)(?:is|are|was|were|do|does|did|can|could|shall|should|will|would|have|has|may|am)\b[^.!?]*\?\s*$",
    re.I)


@dataclass(frozen=True)
class Expectation:
    """What the recogniser listens for: a kind of answer (a FieldType value, or 'yes_no'),
    the question just said, and the phrases that would answer it."""

    kind: str
    question: str
    phrases: tuple[str, ...]
    priors: tuple[float, ...] | None = None  # log-weights, one per phrase: common names first


def _folded(name: str) -> str | None:
    """A name as Whisper writes it: accents folded ("Nguyễn" -> "Nguyen"); None when it is
    not in Latin script or holds more than letters, apostrophes, hyphens and one space."""
    plain = "".join(c for c in unicodedata.normalize("NFKD", name) if not unicodedata.combining(c))
    plain = plain.replace("ı", "i").replace("ł", "l").replace("Ł", "L").replace("đ", "d").replace("Đ", "D")
    if not re.fullmatch(r"[A-Z][A-Za-z'\-]+(?: [A-Z][A-Za-z'\-]+)?", plain):
        return None
    return plain


def names(part: str) -> tuple[str, ...]:
    """Given names (`part="first"`) or surnames ("last") of many origins, from Faker."""
    return tuple(_names(part))


def name_priors(part: str) -> tuple[float, ...]:
    """Per name of `names(part)`, the log of the number of locales that list it: a name
    common in many countries ("Maria", "Martin") is a likelier answer than a rare one."""
    return tuple(math.log(n) for n in _names(part).values())


@functools.lru_cache(maxsize=2)
def _names(part: str) -> dict[str, int]:
    found: dict[str, int] = {}
    for locale in NAME_LOCALES:
        try:
            provider = importlib.import_module(f"faker.providers.person.{locale}").Provider
        except ImportError:
            continue
        attributes = ([f"{part}_romanized_names"] if hasattr(provider, f"{part}_romanized_names")
                      else [f"{part}_names_male", f"{part}_names_female", f"{part}_names_nonbinary",
                            f"{part}_names_unisex", f"{part}_names"])
        seen: set[str] = set()
        for attribute in attributes:
            for name in getattr(provider, attribute, ()) or ():
                folded = _folded(str(name))
                if folded and folded != "Doe":  # vi_VN's and pl_PL's placeholder
                    seen.add(folded)
        for name in seen:
            found[name] = found.get(name, 0) + 1
    return found


@functools.lru_cache(maxsize=1)
def time_phrases() -> tuple[str, ...]:
    out: list[str] = ["noon", "midday", "lunchtime"]
    for n, hour in enumerate(HOURS, start=1):
        for h in (hour, str(n)):
            out += [h, f"{h} o'clock", f"{h} pm", f"{h} p.m.", f"{h} am", f"{h} a.m.", f"{h} in the evening",
                    f"half past {h}", f"quarter past {h}", f"quarter to {h}", f"{h} thirty", f"{h} fifteen",
                    f"{h} forty-five", f"{h} forty five", f"{h} thirty pm", f"{h} fifteen pm", f"{h} forty-five pm",
                    f"half {h}", f"around {h}", f"at {h}", f"about {h}", f"{h}ish"]
        out += [f"{n}:{m:02d}" for m in (0, 15, 30, 45)] + [f"{n}.{m:02d}" for m in (15, 30, 45)]
        out += [f"{n}:{m:02d} pm" for m in (0, 15, 30, 45)] + [f"{n}{m:02d}" for m in (15, 30, 45)]
        out += [f"{n} {m}" for m in (15, 30, 45)]
    for hour in range(11, 24):
        out += [f"{hour}:{m:02d}" for m in (0, 15, 30, 45)] + [f"{hour} hundred"]
    return tuple(dict.fromkeys(out))


@functools.lru_cache(maxsize=1)
def count_phrases() -> tuple[str, ...]:
    out: list[str] = ["just me", "just one", "only me", "me", "one person", "a couple", "two of us", "the two of us"]
    for n, word in enumerate(HOURS + TEENS, start=1):
        for w in (word, str(n)):
            out += [w, f"{w} people", f"{w} of us", f"for {w}", f"a table for {w}", f"{w} persons", f"{w} guests",
                    f"there are {w} of us", f"there will be {w}", f"we are {w}", f"we're {w}", f"{w} please",
                    f"{w} adults", f"table for {w}", f"{w} of us please"]
    return tuple(dict.fromkeys(out))


@functools.lru_cache(maxsize=1)
def date_phrases() -> tuple[str, ...]:
    out: list[str] = ["today", "tonight", "tomorrow", "tomorrow night", "tomorrow evening", "the day after tomorrow",
                      "this weekend", "next week"]
    numbers = [f"{d}{'st' if d % 10 == 1 and d != 11 else 'nd' if d % 10 == 2 and d != 12 else 'rd' if d % 10 == 3 and d != 13 else 'th'}"
               for d in range(1, 32)]
    for day in WEEKDAYS:
        out += [day, f"on {day}", f"this {day}", f"next {day}", f"{day} night", f"{day} evening", f"this coming {day}"]
        for d in range(31):
            out += [f"{day} the {ORDINALS[d]}", f"{day} the {numbers[d]}", f"{day} {numbers[d]}"]
    for month in MONTHS:
        for d in range(31):
            out += [f"the {ORDINALS[d]} of {month}", f"the {numbers[d]} of {month}", f"{month} {numbers[d]}",
                    f"{month} the {ORDINALS[d]}", f"{month} {d + 1}", f"{d + 1} {month}", f"{numbers[d]} {month}",
                    f"{month} {ORDINALS[d]}", f"{ORDINALS[d]} of {month}", f"{numbers[d]} of {month}"]
    out += [f"the {o}" for o in ORDINALS] + [f"the {n}" for n in numbers]
    return tuple(dict.fromkeys(out))


def yes_no_phrases() -> tuple[str, ...]:
    return tuple(YES + NO)


def is_yes_no_question(line: str | None) -> bool:
    """Whether a worker's line ends in a yes/no question ("... under Maria Lopez. Is that right?")."""
    return bool(line and _YES_NO_QUESTION.search(line.strip()))


def _capitalised(phrases: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Each phrase as Whisper would start a transcript with it, and as written."""
    return tuple(dict.fromkeys(p[0].upper() + p[1:] for p in phrases))


def expectation(field: FieldSpec | None, question: str | None, confirming: bool = False) -> Expectation | None:
    """What to listen for after `question`, asked for `field` (None: no field asked). None
    when nothing narrower than free speech is expected. `confirming`: the worker has just read
    the values back (the dialogue's phase says so), however its spec words the line."""
    said = (question or "").strip()
    kind = field.type if field is not None else None
    if kind in (FieldType.first_name,):
        return Expectation(kind.value, said, names("first"), name_priors("first"))
    if kind in (FieldType.last_name,):
        return Expectation(kind.value, said, names("last"), name_priors("last"))
    if kind in (FieldType.name, FieldType.full_name):
        return Expectation(kind.value, said, names("first") + names("last"), name_priors("first") + name_priors("last"))
    if kind is FieldType.time:
        return Expectation(kind.value, said, _capitalised(time_phrases()))
    if kind in (FieldType.count, FieldType.integer):
        return Expectation(kind.value, said, _capitalised(count_phrases()))
    if kind is FieldType.date:
        return Expectation(kind.value, said, _capitalised(date_phrases()))
    if kind is FieldType.yes_no or (field is None and (confirming or is_yes_no_question(said))):
        return Expectation("yes_no", said, yes_no_phrases())
    if kind is FieldType.choice and field is not None and field.constraints.choices:
        words = [w for c in field.constraints.choices for w in (c.value, *c.synonyms)]
        return Expectation(kind.value, said, _capitalised(words))
    return None
