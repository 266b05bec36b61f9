"""The stream token: what lets a Media Stream start a call.

The call webhook (`POST /twilio/voice`, signed by Twilio) issues one token per call and puts it
in the TwiML `<Stream><Parameter name="token">`; Twilio hands it back in the `start` message's
`customParameters`. The token names the CallSid it was issued for, the caller's and the
service's numbers from the signed webhook, a nonce and an expiry, and carries an HMAC-SHA256
over all of that with a server secret, so any worker process can check it without asking the
process that issued it. Single use is not the token's job: the admissions table records it
(channels/voice/admission.py).

Twilio limits a parameter's name and value together to 500 characters; a token is about 250.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid

from pydantic import BaseModel, ValidationError

PARAMETER = "token"  # the <Parameter> name the token travels under
_VERSION = "v1"


class StreamGrant(BaseModel):
    """What a valid token says: this call, between these numbers, may start one stream."""

    call_sid: str
    caller: str  # the signed webhook's From
    service: str  # the signed webhook's To
    nonce: str
    expires_at: int  # Unix seconds


class StreamTokenError(Exception):
    """The token is missing, malformed, forged, expired or for another call; the message says which."""


def stream_secret(auth_token: str, override: str | None = None) -> bytes:
    """The key tokens are signed with. VOICE_STREAM_SECRET if set; otherwise derived from the
    Twilio auth token, which every worker process already shares (and never used raw, so a
    token's MAC says nothing about the auth token)."""
    if override:
        return override.encode("utf-8")
    return hmac.new(auth_token.encode("utf-8"), b"channel-worker voice stream token v1", hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, body: str) -> str:
    return _b64(hmac.new(secret, f"{_VERSION}.{body}".encode("ascii"), hashlib.sha256).digest())


def issue(call_sid: str, caller: str, service: str, secret: bytes, now: float, ttl_seconds: float,
          nonce: str | None = None) -> tuple[str, StreamGrant]:
    """A token for one call, valid for `ttl_seconds` from `now` (Unix seconds), and what it grants."""
    grant = StreamGrant(call_sid=call_sid, caller=caller, service=service,
                        nonce=nonce or uuid.uuid4().hex, expires_at=int(now + ttl_seconds))
    body = _b64(json.dumps(grant.model_dump(), separators=(",", ":")).encode("utf-8"))
    return f"{_VERSION}.{body}.{_mac(secret, body)}", grant


def verify(token: str, secret: bytes, call_sid: str, now: float) -> StreamGrant:
    """The grant of a genuine, unexpired token issued for `call_sid`; raises StreamTokenError otherwise."""
    if not token:
        raise StreamTokenError("no stream token")
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != _VERSION:
        raise StreamTokenError("malformed stream token")
    _, body, mac = parts
    # Compared in constant time, and before anything in the body is read.
    if not hmac.compare_digest(mac, _mac(secret, body)):
        raise StreamTokenError("forged stream token (bad signature)")
    try:
        grant = StreamGrant.model_validate_json(_unb64(body))
    except (ValidationError, ValueError) as exc:
        raise StreamTokenError("malformed stream token") from exc
    if now >= grant.expires_at:
        raise StreamTokenError("expired stream token")
    if not hmac.compare_digest(grant.call_sid, call_sid):
        raise StreamTokenError("stream token issued for another call")
    return grant
