"""Every environment variable the worker reads, in one place: one pydantic-settings model per
concern, gathered in `WorkerSettings`, read once at start and passed in.

The packages keep their own typed settings (TwilioSettings, EmailSettings, ...) because channels
and the core must not import worker/; the builders here make those objects from the one read.
Defaults and variable names are the ones docs/configuration.md lists. Field names are the
variable names in lower case (pydantic-settings matches them case-insensitively).
"""

from __future__ import annotations

from pathlib import Path

import difflib
import os
import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from channels.email.channel import EmailSettings
from channels.email.imap import ImapSettings
from channels.twilio.settings import TwilioSettings
from channels.voice.admission import VoiceLimits
from channels.voice.tuning import VoiceTuning
from escalation.notify import SmtpSettings
from extraction.llm import LLMSettings
from transcripts.retention import RetentionSettings
from worker.body_limit import DEFAULT_MAX_REQUEST_BYTES
from worker.config import DatabaseSettings, Settings

# Empty counts as unset, as the old `os.environ.get(...) or default` reads mostly did.
_CONFIG = SettingsConfigDict(case_sensitive=False, extra="ignore", env_ignore_empty=True)
_OFF = ("off", "0", "false", "no")

# Variables starting with these are taken to be meant for us: an unknown one is a typo.
PREFIXES = ("TWILIO_", "SMS_", "VOICE_", "WHISPER_", "IMAP_", "SMTP_", "EMAIL_", "LLM_", "RETENTION_",
            "OPERATOR_", "CHANNEL_WORKER_", "REVIEW_")
# Ours in name only: docker/compose.yaml's own ports, never read by the worker.
NOT_OURS = {"OPERATOR_PORT"}


class HttpSettings(BaseSettings):
    model_config = _CONFIG
    max_request_bytes: int = Field(DEFAULT_MAX_REQUEST_BYTES, description="Request bodies over this many bytes are refused with 413.")
    operator_api_docs: str = Field("off", description="on: serve /docs, /redoc and /openapi.json to operators.")
    forwarded_allow_ips: str = Field("", description="Proxies whose X-Forwarded-* headers are believed (comma-separated; * trusts all).")
    otel_exporter_otlp_endpoint: str | None = Field(None, description="With OTEL_TRACES_EXPORTER: keeps FastAPI's OpenTelemetry on.")
    otel_traces_exporter: str | None = Field(None, description="With OTEL_EXPORTER_OTLP_ENDPOINT: keeps FastAPI's OpenTelemetry on.")

    review_enabled: str = Field("on", description="off (or false, 0, no): no review console under /review.")
    review_session_hours: float = Field(12.0, gt=0, description="A review console login lasts this long (logout ends it sooner).")

    @property
    def review_on(self) -> bool:
        return self.review_enabled.strip().lower() not in _OFF

    @property
    def api_docs(self) -> bool:
        return self.operator_api_docs.strip().lower() in ("on", "1", "true", "yes")

    @property
    def otel(self) -> bool:
        return bool(self.otel_exporter_otlp_endpoint or self.otel_traces_exporter)


class TwilioEnv(BaseSettings):
    model_config = _CONFIG
    twilio_auth_token: SecretStr | None = Field(None, description="Twilio credentials; SMS and voice are on when set.")
    twilio_account_sid: str = Field("", description="Twilio account, for REST calls (SMS outbox, call transfer).")
    public_base_url: str = Field("", description="The URL Twilio calls; signatures, stream URL and handoff links use it.")
    twilio_api_base: str | None = Field(None, description="Tests only: a Twilio-compatible REST server.")
    sms_reply_budget_seconds: float = Field(8.0, description="A slower turn is answered later through the REST API.")
    sms_recovery_after_seconds: float = Field(60.0, description="A message unanswered this long is answered then.")
    twilio_voice: str = Field("on", description="off: no voice channel, speech models not loaded.")

    @property
    def voice_on(self) -> bool:
        return self.twilio_voice.lower() not in _OFF


class VoiceEnv(BaseSettings):
    model_config = _CONFIG
    voice_max_calls: int = Field(8, description="Calls in progress across all processes; more hear a busy line.")
    voice_start_timeout_seconds: float = Field(5.0, description="A media socket without `start` by then is closed.")
    voice_stream_token_seconds: float = Field(30.0, description="Validity of the single-use stream token.")
    voice_stream_secret: SecretStr | None = Field(None, description="Key for the stream token's HMAC; unset: derived from TWILIO_AUTH_TOKEN.")
    voice_speech_start_seconds: float = Field(0.1, description="This much speech starts the caller's turn.")
    voice_speech_min_volume: float = Field(0.4, description="The quietest speech that starts a turn (0-1).")
    voice_pause_seconds: float = Field(0.3, description="A pause this long starts recognition.")
    voice_turn_hold_seconds: float = Field(0.3, description="The caller's turn ends after this much more quiet.")
    voice_dtmf_pause_seconds: float = Field(3.0, description="Key presses end at # or after this pause.")
    voice_silence_seconds: float = Field(8.0, description="Re-prompt after this much silence (the spec wins).")
    voice_silence_prompts: int = Field(1, description="Re-prompts before a polite goodbye and hang-up.")
    voice_unheard_seconds: float = Field(2.5, description="Speech that gave no words is asked again after this much quiet.")
    voice_holding_after_seconds: float = Field(1.0, description="A slower turn (an action) gets the holding line first.")
    voice_recordings_dir: str | None = Field(None, description="Record both sides of each call to <CallSid>.wav here.")
    whisper_model: str | None = Field(None, description="Folder of another CTranslate2 Whisper model; unset: bundled tiny.en.")
    whisper_threads: int = Field(0, description="Threads for recognition; 0 = min(4, CPU cores).")
    whisper_beam_size: int = Field(5, description="Beam size for transcription.")
    whisper_context_seconds: float = Field(10.0, description="Utterances padded to this many seconds; 0: full window.")
    piper_voice: str | None = Field(None, description="Another Piper voice (.onnx); unset: the bundled joe voice.")


class EmailEnv(BaseSettings):
    model_config = _CONFIG
    imap_host: str | None = Field(None, description="Inbox server; email is on with IMAP_HOST and SMTP_HOST.")
    imap_port: int | None = Field(None, description="Unset: 993 with ssl, else 143.")
    imap_user: str = Field("", description="IMAP login.")
    imap_password: SecretStr = Field(SecretStr(""), description="IMAP password.")
    imap_tls: str = Field("ssl", description="ssl, starttls or none (loopback tests only).")
    imap_folder: str = Field("INBOX", description="The folder to watch.")
    imap_processed: str = Field("seen", description="seen, or move:<folder>.")
    imap_idle_seconds: float = Field(300.0, description="IDLE is renewed this often.")
    imap_poll_seconds: float = Field(30.0, description="Servers without IDLE are polled this often.")
    email_max_bytes: int = Field(2_000_000, description="Larger mail gets a 'too large' reply and is recorded failed.")
    email_replies_per_sender_per_hour: int = Field(20, description="Beyond this a sender gets no more automatic replies.")
    email_aliases: str = Field("", description="Other addresses of the worker, comma-separated; never answered.")
    smtp_host: str | None = Field(None, description="Relay for replies and team notification emails.")
    smtp_tls: str = Field("starttls", description="ssl, starttls or none.")
    smtp_port: int | None = Field(None, description="Unset: 465 (ssl), 587 (starttls), 25 (none).")
    smtp_user: str | None = Field(None, description="SMTP login, if the relay needs one.")
    smtp_password: SecretStr | None = Field(None, description="SMTP password.")
    email_from: str = Field("channel-worker@localhost", description="The worker's address: sender of replies and notifications.")
    mail_ca_file: str | None = Field(None, description="CA file for self-signed IMAP and SMTP servers; unset: system CAs.")


class LlmEnv(BaseSettings):
    model_config = _CONFIG
    llm_base_url: str | None = Field(None, description="OpenAI-compatible endpoint; with LLM_MODEL the LLM proposer is on.")
    llm_model: str | None = Field(None, description="Model name.")
    llm_api_key: SecretStr | None = Field(None, description="Bearer token, if set.")
    llm_timeout: float = Field(10.0, description="Seconds per request.")


class RetentionEnv(BaseSettings):
    model_config = _CONFIG
    retention_days: str = Field("", description="Delete conversations idle this many days; unset/0/off: keep all.")
    retention_interval_seconds: float = Field(3600.0, description="How often serve purges when RETENTION_DAYS is set.")


class InternalEnv(BaseSettings):
    model_config = _CONFIG
    channel_worker_spec: str | None = Field(None, description="Set by serve --workers N for its processes; not for you.")
    channel_worker_candidate: str | None = Field(None, description="Set by serve --workers N --candidate for its "
                                                 "processes; not for you.")
    channel_worker_candidate_share: float = Field(0.0, ge=0, le=100, description="Set by serve --workers N --share "
                                                  "for its processes; not for you.")
    channel_worker_crash_at: str | None = Field(None, description="Kill tests only: crash points and probabilities.")


class SettingRow(BaseModel):
    """One line of `channel-worker config`."""

    concern: str
    name: str
    value: str | None
    source: str  # "env" or "default"
    secret: bool
    meaning: str


def _mask(value: Any, secret: bool) -> str | None:
    if value is None:
        return None
    if isinstance(value, SecretStr):
        raw = value.get_secret_value()
        if not raw:
            return ""
        # A database URL's host and name help; only its password is hidden.
        masked = re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", raw)
        return masked if masked != raw else "***"
    return "***" if secret else str(value)


class WorkerSettings(BaseModel):
    """The whole environment, read once (`from_env`), then handed to whoever needs a part."""

    database: DatabaseSettings
    http: HttpSettings
    twilio: TwilioEnv
    voice: VoiceEnv
    email: EmailEnv
    llm: LlmEnv
    retention: RetentionEnv
    internal: InternalEnv

    @classmethod
    def from_env(cls) -> WorkerSettings:
        """Read the process environment: once, at start."""
        return cls(**{name: field.annotation() for name, field in cls.model_fields.items()})  # type: ignore[misc,operator]

    # --- the packages' own typed settings, built from this one read ---

    def config(self) -> Settings:
        url = self.database.database_url
        return Settings(database_url=url.get_secret_value() if url else None, var_dir=self.database.channel_worker_var)

    def twilio_settings(self) -> TwilioSettings | None:
        t = self.twilio
        if t.twilio_auth_token is None or not t.twilio_auth_token.get_secret_value():
            return None
        return TwilioSettings(account_sid=t.twilio_account_sid, auth_token=t.twilio_auth_token.get_secret_value(),
                              public_base_url=t.public_base_url.rstrip("/"), api_base=t.twilio_api_base or None,
                              reply_budget_seconds=t.sms_reply_budget_seconds,
                              recovery_after_seconds=t.sms_recovery_after_seconds)

    def voice_limits(self) -> VoiceLimits:
        v = self.voice
        return VoiceLimits(max_calls=v.voice_max_calls, start_timeout_seconds=v.voice_start_timeout_seconds,
                           token_seconds=v.voice_stream_token_seconds,
                           stream_secret=v.voice_stream_secret.get_secret_value() if v.voice_stream_secret else None)

    def voice_enabled(self) -> bool:
        return self.twilio.voice_on

    def voice_tuning(self) -> VoiceTuning:
        v = self.voice
        return VoiceTuning(speech_start_seconds=v.voice_speech_start_seconds, speech_min_volume=v.voice_speech_min_volume, pause_seconds=v.voice_pause_seconds, turn_hold_seconds=v.voice_turn_hold_seconds,
                           dtmf_pause_seconds=v.voice_dtmf_pause_seconds, silence_seconds=v.voice_silence_seconds,
                           unheard_seconds=v.voice_unheard_seconds,
                           silence_prompts=v.voice_silence_prompts, holding_after_seconds=v.voice_holding_after_seconds,
                           recordings_dir=Path(v.voice_recordings_dir) if v.voice_recordings_dir else None)

    def imap_settings(self) -> ImapSettings | None:
        e = self.email
        if not e.imap_host:
            return None
        tls = e.imap_tls.lower()
        return ImapSettings(host=e.imap_host, port=e.imap_port or (993 if tls == "ssl" else 143), user=e.imap_user,
                            password=e.imap_password.get_secret_value(), tls=tls,  # type: ignore[arg-type]
                            folder=e.imap_folder, ca_file=e.mail_ca_file or None, processed=e.imap_processed,
                            idle_seconds=e.imap_idle_seconds, poll_seconds=e.imap_poll_seconds)

    def smtp_settings(self) -> SmtpSettings | None:
        e = self.email
        if not e.smtp_host:
            return None
        tls = e.smtp_tls.lower()
        port = e.smtp_port or {"ssl": 465, "starttls": 587, "none": 25}.get(tls, 587)
        password = e.smtp_password.get_secret_value() if e.smtp_password else None
        return SmtpSettings(host=e.smtp_host, port=port, user=e.smtp_user or None, password=password or None,
                            tls=tls, sender=e.email_from, ca_file=e.mail_ca_file or None)  # type: ignore[arg-type]

    def email_settings(self) -> EmailSettings | None:
        imap, smtp = self.imap_settings(), self.smtp_settings()
        if imap is None or smtp is None:
            return None
        e = self.email
        return EmailSettings(imap, smtp, max_bytes=e.email_max_bytes,
                             replies_per_sender_per_hour=e.email_replies_per_sender_per_hour,
                             aliases=e.email_aliases.split(","))

    def llm_settings(self) -> LLMSettings | None:
        m = self.llm
        if not m.llm_base_url or not m.llm_model:
            return None
        key = m.llm_api_key.get_secret_value() if m.llm_api_key else None
        return LLMSettings(base_url=m.llm_base_url.rstrip("/"), model=m.llm_model, api_key=key or None,
                           timeout=m.llm_timeout)

    def retention_settings(self) -> RetentionSettings:
        return RetentionSettings(days=RetentionSettings.parse_days(self.retention.retention_days),
                                 interval_seconds=self.retention.retention_interval_seconds)

    # --- what `channel-worker config` shows ---

    def describe(self) -> list[SettingRow]:
        rows = []
        for concern in type(self).model_fields:
            part: BaseSettings = getattr(self, concern)
            for name, field in type(part).model_fields.items():
                value = getattr(part, name)
                secret = "SecretStr" in str(field.annotation)
                rows.append(SettingRow(concern=concern, name=name.upper(), value=_mask(value, secret),
                                       source="env" if name in part.model_fields_set else "default",
                                       secret=secret, meaning=field.description or ""))
        return rows


def known_variables() -> set[str]:
    names = {name.upper() for concern in WorkerSettings.model_fields.values()
             for name in concern.annotation.model_fields}  # type: ignore[union-attr]
    return names | NOT_OURS


def unknown_variables(environ: Mapping[str, str] | None = None) -> list[tuple[str, str | None]]:
    """Variables that look like ours (a known prefix) but name no setting, with the closest known
    name, if any: a misspelt TWILIO_AUTH_TOKN would otherwise be ignored without a word."""
    environ = os.environ if environ is None else environ
    known = known_variables()
    found = []
    for name in sorted(environ):
        upper = name.upper()
        if upper.startswith(PREFIXES) and upper not in known:
            close = difflib.get_close_matches(upper, sorted(known), n=1, cutoff=0.6)
            found.append((name, close[0] if close else None))
    return found


def unknown_variable_warnings(environ: Mapping[str, str] | None = None) -> list[str]:
    return [f"unknown environment variable {name}" + (f": did you mean {guess}?" if guess else " (ignored)")
            for name, guess in unknown_variables(environ)]
