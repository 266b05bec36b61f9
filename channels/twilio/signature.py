"""Twilio's request signature, checked the same way for every webhook (SMS, voice)."""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl

from fastapi import Request
from twilio.request_validator import RequestValidator

from channels.twilio.settings import TwilioSettings

log = logging.getLogger(__name__)


async def signed_params(request: Request, settings: TwilioSettings, validator: RequestValidator) -> dict[str, str] | None:
    """The form parameters of a request Twilio signed, or None if it is unsigned or forged.
    The URL checked is the public one Twilio called (PUBLIC_BASE_URL), so proxies and tunnels work."""
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        # What Twilio sends; the stdlib parser is several times faster than the multipart one.
        params = dict(parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True))
    else:
        form = await request.form()
        params = {k: str(v) for k, v in form.items()}
    url = settings.public_url(request.url.path, request.url.query) if settings.public_base_url else str(request.url)
    signature = request.headers.get("X-Twilio-Signature", "")
    if not signature or not validator.validate(url, params, signature):
        log.warning("rejected %s: missing or invalid X-Twilio-Signature", request.url.path)
        return None
    return params
