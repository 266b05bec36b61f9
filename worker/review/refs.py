"""Opaque conversation references for viewers.

An SMS conversation's id holds both phone numbers and an email's the thread's Message-ID, so a
viewer's links cannot carry it. A reference is the id encrypted under the session's `ref_key`
(never sent to the browser; escalation/review_sessions.py), deterministically, in the SIV manner:
iv = HMAC-SHA256(key, "iv" + id)[:16], the id XORed with an HMAC-SHA256 keystream over
(iv, counter), and the iv checked again after decryption, so a forged or altered reference is
refused. The same id gives the same reference within a session (links stay stable), different
ids never share a keystream, and the reference is worthless after logout.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

PREFIX = "r."
_IV = 16


def _stream(key: bytes, iv: bytes, length: int) -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < length:
        out += hmac.new(key, b"ks" + iv + counter.to_bytes(4, "big"), hashlib.sha256).digest()
        counter += 1
    return bytes(out[:length])


def seal(key_hex: str, conversation_id: str) -> str:
    key = bytes.fromhex(key_hex)
    plain = conversation_id.encode()
    iv = hmac.new(key, b"iv" + plain, hashlib.sha256).digest()[:_IV]
    body = bytes(a ^ b for a, b in zip(plain, _stream(key, iv, len(plain))))
    return PREFIX + base64.urlsafe_b64encode(iv + body).decode().rstrip("=")


def open_ref(key_hex: str, ref: str) -> str | None:
    """The conversation id of a reference made by `seal` with this key; None if it was not."""
    if not ref.startswith(PREFIX) or len(ref) > 2000:
        return None
    try:
        part = ref[len(PREFIX):]
        raw = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
        key = bytes.fromhex(key_hex)
    except ValueError:
        return None
    iv, body = raw[:_IV], raw[_IV:]
    if len(iv) < _IV:
        return None
    plain = bytes(a ^ b for a, b in zip(body, _stream(key, iv, len(body))))
    if not hmac.compare_digest(iv, hmac.new(key, b"iv" + plain, hashlib.sha256).digest()[:_IV]):
        return None
    try:
        return plain.decode()
    except UnicodeDecodeError:
        return None
