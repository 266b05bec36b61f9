"""Reply text as it should sound on the phone. The transcript keeps the written form
("19:00", "457190"); the caller hears "7 pm" and "4 5 7, 1 9 0"."""

from __future__ import annotations

import re

from dialogue.spec import WorkerSpec

_TIME = re.compile(r"\b([01]?\d|2[0-3]):([0-5]\d)\b")
_DIGITS = re.compile(r"\b\d{5,}\b")  # account and phone numbers; not years


def _time(match: re.Match[str]) -> str:
    hour, minute = int(match.group(1)), int(match.group(2))
    if (hour, minute) == (12, 0):
        return "noon"
    if (hour, minute) == (0, 0):
        return "midnight"
    half = "am" if hour < 12 else "pm"
    hour = hour % 12 or 12
    return f"{hour} {half}" if minute == 0 else f"{hour}:{minute:02d} {half}"


def _digits(match: re.Match[str]) -> str:
    # One digit at a time, in groups of three (the last group takes a fourth rather than
    # leaving one alone), so a caller can check a number as they would read it.
    digits = match.group(0)
    groups = [digits[i:i + 3] for i in range(0, len(digits), 3)]
    if len(groups) > 1 and len(groups[-1]) == 1:
        groups[-2:] = [groups[-2] + groups[-1]]
    return ", ".join(" ".join(group) for group in groups)


def speakable(text: str) -> str:
    return _DIGITS.sub(_digits, _TIME.sub(_time, text))


def fixed_lines(spec: WorkerSpec) -> list[str]:
    """The lines of a worker's script that never change (no {placeholders}), as spoken: the
    greeting, each question, the acknowledgement. Made into speech before the first call."""
    script = spec.script
    lines = [spec.channel("voice").greeting or script.greeting, script.acknowledge, script.voice_holding,
             *(f.prompt for f in spec.fields), *(f.reask or "" for f in spec.fields)]
    return [speakable(line) for line in lines if line and "{" not in line]
