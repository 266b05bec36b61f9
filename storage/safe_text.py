"""Text from people made safe to store and to put in XML.

PostgreSQL refuses NUL in text and `\\u0000` in JSONB (a signed SMS with a NUL was a 500 on
every retry); XML 1.0 has no way to carry most C0 control characters, so TwiML holding one is
invalid. People never mean these characters: they are removed, not escaped.
"""

from __future__ import annotations

import json
import re
from typing import Any

# C0 controls but tab, newline and carriage return; DEL; C1 controls; the XML non-characters
# U+FFFE/U+FFFF; lone surrogates (a decoder's "surrogateescape" leftovers).
_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffe\uffff\ud800-\udfff]")


def clean_text(text: str) -> str:
    """`text` without control characters, non-characters or lone surrogates."""
    return _UNSAFE.sub("", text) if _UNSAFE.search(text) else text


def clean_value(value: Any) -> Any:
    """`clean_text` applied to every string inside a JSON-like value (keys too)."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_value(k): clean_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_value(v) for v in value]
    return value


def storable_json(value: Any) -> str:
    """JSON text PostgreSQL's JSONB accepts: no NUL escapes."""
    text = json.dumps(value)
    # The cheap check first: the walk is only paid for the rare value that needs it.
    return json.dumps(clean_value(value)) if "\\u0000" in text else text
