"""Twilio configuration for the SMS and voice channels, under Twilio's own variable names
(the reply budget and recovery delay are the SMS channel's)."""

from __future__ import annotations

import os

from pydantic import BaseModel


class TwilioSettings(BaseModel):
    account_sid: str
    auth_token: str
    public_base_url: str = ""
    api_base: str | None = None  # a Twilio-compatible server instead of api.twilio.com (tests)
    reply_budget_seconds: float = 8.0
    recovery_after_seconds: float = 60.0

    @classmethod
    def from_env(cls) -> TwilioSettings | None:
        token = os.environ.get("TWILIO_AUTH_TOKEN")
        if not token:
            return None
        return cls(
            account_sid=os.environ.get("TWILIO_ACCOUNT_SID", ""),
            auth_token=token,
            public_base_url=os.environ.get("PUBLIC_BASE_URL", "").rstrip("/"),
            api_base=os.environ.get("TWILIO_API_BASE") or None,
            reply_budget_seconds=float(os.environ.get("SMS_REPLY_BUDGET_SECONDS", "8")),
            recovery_after_seconds=float(os.environ.get("SMS_RECOVERY_AFTER_SECONDS", "60")),
        )

    def public_url(self, path: str, query: str = "") -> str:
        """The URL Twilio called, which its signature covers (not the one seen behind a proxy)."""
        return f"{self.public_base_url}{path}" + (f"?{query}" if query else "")

    @property
    def status_callback_url(self) -> str | None:
        return self.public_url("/twilio/sms/status") if self.public_base_url else None
