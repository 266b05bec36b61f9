"""Twilio configuration for the SMS and voice channels, under Twilio's own variable names
(the reply budget and recovery delay are the SMS channel's)."""

from __future__ import annotations


from pydantic import BaseModel


class TwilioSettings(BaseModel):
    account_sid: str
    auth_token: str
    public_base_url: str = ""
    api_base: str | None = None  # a Twilio-compatible server instead of api.twilio.com (tests)
    reply_budget_seconds: float = 8.0
    recovery_after_seconds: float = 60.0

    def public_url(self, path: str, query: str = "") -> str:
        """The URL Twilio called, which its signature covers (not the one seen behind a proxy)."""
        return f"{self.public_base_url}{path}" + (f"?{query}" if query else "")

    @property
    def status_callback_url(self) -> str | None:
        return self.public_url("/twilio/sms/status") if self.public_base_url else None
