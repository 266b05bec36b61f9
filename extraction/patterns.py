"""Spec `pattern` constraints, run by RE2: time linear in the input, whatever the pattern.

Python's `re` backtracks: `^(a+)+$` on 29 letters and a `!` took 8.8 s of the event loop,
doubling with every letter. RE2 has no backtracking, so it leaves out the two features that
need it (lookaround and backreferences) and refuses such a pattern; `spec check` says so.
Its `\\d`, `\\w`, `\\s` and `\\b` are ASCII; `\\pL` (any letter) and `\\p{Greek}` are Unicode.
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache

import re2

log = logging.getLogger(__name__)

# Compiled programs are bounded too: a pattern such as `(x{1000}){1000}` is refused, not built.
_MAX_MEM = 1 << 20
# How RE2 words its refusal of lookaround and of a backreference such as \1.
_BACKTRACKING_FEATURE = re.compile(r"invalid perl operator: \(\?<?[=!]|invalid escape sequence: \\[1-9]")


def _options() -> re2.Options:
    options = re2.Options()
    options.max_mem = _MAX_MEM
    options.log_errors = False  # the error comes back to us as an exception, with its reason
    return options


class PatternError(ValueError):
    pass


@lru_cache(maxsize=256)
def compile_pattern(pattern: str) -> re2._Regexp:
    """The RE2 program for `pattern`, or PatternError saying why it cannot be used."""
    try:
        return re2.compile(pattern, _options())
    except re2.error as exc:
        reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        if _BACKTRACKING_FEATURE.search(reason):
            raise PatternError(
                f"pattern uses lookaround or a backreference ({reason}); patterns run on a linear-time "
                f"engine (RE2) that leaves these out because they can take exponential time"
            ) from None
        raise PatternError(f"pattern is not a valid regular expression: {reason}") from None


def fullmatch(pattern: str, value: str) -> bool:
    """Whether all of `value` matches `pattern`. A pattern RE2 refuses (a spec that was never
    checked) matches nothing: the value is refused and the field asked again, never a hang."""
    try:
        program = compile_pattern(pattern)
    except PatternError as exc:
        log.error("field pattern %r cannot be used, so no value matches it: %s", pattern, exc)
        return False
    return program.fullmatch(value) is not None
