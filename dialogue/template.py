"""Reply templates: what a template may contain, and filling one in without ever reaching
into a live object.

A template is text with placeholders. A placeholder names a field or an extra, optionally
with a format spec: `{people}`, `{date:%A %d %B}`, `{amount:,.2f}`. Nothing else: no
attribute or index access (`{date.year}`, `{x[0]}`), no conversions (`{x!r}`), no nested
placeholders in a format spec. `str.format` would follow `{date.__class__...}` all the way
to a module's globals (and the environment), so we never hand a template to it: we parse
the template ourselves and format each plain value with `format(value, spec)`.

`problems()` is the strict reading used by `spec check`; `fill()` is the lenient one used
at run time, which drops whatever the checker would have refused and logs it, so a bad
template costs a word, never a turn.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import date, datetime, time
from functools import lru_cache
from typing import Any, Mapping

log = logging.getLogger(__name__)

_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
# A name, or an action's result (`availability.times`: two plain names, neither starting with _).
# The dotted form is only ever a key looked up whole in the context, never an attribute.
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[A-Za-z][A-Za-z0-9_]*\.[A-Za-z][A-Za-z0-9_]*")
_NUMBER = re.compile(r"\d+")
# Widths and precisions above this only serve to make a reply huge (`{people:>999999999}`).
MAX_FORMAT_NUMBER = 100
_HINT = "a placeholder names a field with an optional format, such as {people} or {date:%A %d %B}"


class SafeValue:
    """Base for our own value types whose `__format__` is safe to call from a template."""


_SAFE_TYPES = (str, int, float, date, time, datetime, SafeValue)


@dataclass(frozen=True)
class Placeholder:
    name: str
    spec: str
    text: str  # as written, for messages


Piece = str | Placeholder


def _placeholder(body: str) -> Placeholder | str | tuple[Placeholder, str]:
    """The placeholder `{body}`, or why it is not allowed; a format that is not allowed still
    leaves the value to be said plainly, with the reason."""
    text = "{" + body + "}"
    name, colon, spec = body.partition(":")
    if "!" in name:
        return f"{text}: conversions such as !r are not allowed; {_HINT}"
    if not name:
        return f"{text}: use named placeholders such as {{people}}, not {{}}"
    if name.isdigit():
        return f"use named placeholders such as {{people}}, not {text}"
    if not _NAME.fullmatch(name):
        if "." in name or "[" in name:
            return f"{text}: attribute and index access (. and [ ]) are not allowed; {_HINT}"
        return f"{text}: {name!r} is not a name; {_HINT}"
    too_big = [n for n in _NUMBER.findall(spec) if int(n) > MAX_FORMAT_NUMBER]
    if too_big:
        return Placeholder(name, "", text), f"{text}: format numbers above {MAX_FORMAT_NUMBER} are not allowed (found {too_big[0]})"
    return Placeholder(name, spec if colon else "", text)


@lru_cache(maxsize=1024)
def _scan(template: str) -> tuple[tuple[Piece, ...], tuple[str, ...]]:
    pieces: list[Piece] = []
    problems: list[str] = []
    pos = 0
    for m in _TOKEN.finditer(template):
        if m.start() > pos:
            pieces.append(template[pos : m.start()])
        pos = m.end()
        token = m.group(0)
        if token in ("{{", "}}"):
            pieces.append(token[0])
        elif m.group(1) is not None:
            found = _placeholder(m.group(1))
            if isinstance(found, tuple):
                pieces.append(found[0])
                problems.append(found[1])
            elif isinstance(found, Placeholder):
                pieces.append(found)
            else:
                problems.append(found)
        else:
            problems.append(f"template is malformed: a single {token!r} (write {token * 2!r} for the character itself)")
    if pos < len(template):
        pieces.append(template[pos:])
    return tuple(pieces), tuple(problems)


def problems(template: str) -> list[str]:
    """Everything in `template` that is not allowed, in words for the spec author."""
    return list(_scan(template)[1])


def placeholders(template: str) -> list[Placeholder]:
    return [p for p in _scan(template)[0] if isinstance(p, Placeholder)]


def literal_text(template: str) -> str:
    """The template with every placeholder left out: the last resort when filling fails."""
    return "".join(p for p in _scan(template)[0] if isinstance(p, str))


def format_value(value: Any, spec: str) -> str:
    """`value` formatted by `spec`, for plain values only; a spec that does not apply is dropped."""
    if value is None:
        return ""
    if not isinstance(value, _SAFE_TYPES):
        # Not ours to format: an object's own __format__/__str__ could be anything.
        value = str(value)
    try:
        return format(value, spec)
    except (ValueError, TypeError, OverflowError):
        return format(value, "") if isinstance(value, SafeValue) else str(value)


def fill(template: str, context: Mapping[str, Any]) -> str:
    """`template` with its placeholders replaced by the formatted values of `context`.

    A name missing from `context` becomes nothing; anything `problems()` would refuse is
    left out and logged, so filling never raises and never touches an attribute."""
    pieces, found = _scan(template)
    if found:
        log.warning("template %r has problems, left out when filling it: %s", template, "; ".join(found))
    out: list[str] = []
    for piece in pieces:
        if isinstance(piece, str):
            out.append(piece)
        else:
            out.append(format_value(context.get(piece.name), piece.spec))
    return "".join(out)
