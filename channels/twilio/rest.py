"""Twilio's REST client as the channels use it: Twilio's own async HTTP client, optionally
sent to another base URL (`TWILIO_API_BASE`, a Twilio-compatible server in tests)."""

from __future__ import annotations

from typing import Any

from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

from channels.twilio.settings import TwilioSettings


class _RedirectingHttpClient(AsyncTwilioHttpClient):
    def __init__(self, api_base: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.api_base = api_base.rstrip("/")

    async def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        for origin in ("https://api.twilio.com", "https://messaging.twilio.com"):
            if url.startswith(origin):
                url = self.api_base + url[len(origin):]
        return await super().request(method, url, *args, **kwargs)


def rest_client(settings: TwilioSettings, timeout: float = 10) -> Client:
    """Create inside the running loop: the async HTTP client binds to it."""
    http = (_RedirectingHttpClient(settings.api_base, timeout=timeout) if settings.api_base
            else AsyncTwilioHttpClient(timeout=timeout))
    return Client(settings.account_sid, settings.auth_token, http_client=http)


async def close_client(client: Client) -> None:
    await client.http_client.close()  # type: ignore[attr-defined]
