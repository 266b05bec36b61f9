"""Settings one way: every variable read once into worker/settings.py's models, shown by
`channel-worker config` with its source and secrets masked, and an unknown variable that looks
like ours warned about at start."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from channels.email.channel import EmailSettings
from channels.twilio.settings import TwilioSettings
from channels.voice.admission import VoiceLimits
from escalation.notify import SmtpSettings
from extraction.llm import LLMSettings
from tests.conftest import ROOT
from tests.support.server import WorkerServer
from transcripts.retention import RetentionSettings
from worker.config import Settings
from worker.settings import PREFIXES, WorkerSettings, known_variables, unknown_variable_warnings

# Every variable docs/configuration.md lists, set to something other than its default.
FULL_ENV = {
    "DATABASE_URL": "postgresql://app:hunter2@db.example:5432/worker", "CHANNEL_WORKER_VAR": "/srv/state",
    "MAX_REQUEST_BYTES": "1000", "OPERATOR_API_DOCS": "on", "FORWARDED_ALLOW_IPS": "10.0.0.1",
    "OTEL_TRACES_EXPORTER": "otlp",
    "TWILIO_AUTH_TOKEN": "tok", "TWILIO_ACCOUNT_SID": "AC1", "PUBLIC_BASE_URL": "https://w.example/",
    "TWILIO_API_BASE": "http://127.0.0.1:9", "SMS_REPLY_BUDGET_SECONDS": "4", "SMS_RECOVERY_AFTER_SECONDS": "30",
    "TWILIO_VOICE": "off",
    "VOICE_MAX_CALLS": "3", "VOICE_START_TIMEOUT_SECONDS": "2", "VOICE_STREAM_TOKEN_SECONDS": "9",
    "IMAP_HOST": "imap.example", "IMAP_USER": "u", "IMAP_PASSWORD": "p", "IMAP_TLS": "STARTTLS",
    "IMAP_FOLDER": "Support", "IMAP_PROCESSED": "move:Done", "IMAP_IDLE_SECONDS": "100", "IMAP_POLL_SECONDS": "7",
    "EMAIL_MAX_BYTES": "5000", "EMAIL_REPLIES_PER_SENDER_PER_HOUR": "3", "EMAIL_ALIASES": "a@x.example, b@x.example",
    "SMTP_HOST": "smtp.example", "SMTP_TLS": "ssl", "SMTP_USER": "su", "SMTP_PASSWORD": "sp",
    "EMAIL_FROM": "desk@x.example", "MAIL_CA_FILE": "/etc/ca.pem",
    "LLM_BASE_URL": "https://llm.example/v1/", "LLM_MODEL": "m", "LLM_API_KEY": "k", "LLM_TIMEOUT": "3",
    "RETENTION_DAYS": "30", "RETENTION_INTERVAL_SECONDS": "60",
}


def _ours(name: str) -> bool:
    return name.upper() in known_variables() or name.upper().startswith(PREFIXES)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if _ours(name):
            monkeypatch.delenv(name)
    return monkeypatch


def _subprocess_env(**extra: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not _ours(k)}, **extra}


def _config(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "worker.cli", "config", *args], capture_output=True, text=True,
                          cwd=ROOT, env=_subprocess_env(**env), timeout=120)


def test_defaults_are_the_documented_ones(clean_env: pytest.MonkeyPatch) -> None:
    env = WorkerSettings.from_env()
    assert env.config() == Settings(database_url=None, var_dir=Path("var"))
    assert env.twilio_settings() is None and env.email_settings() is None and env.llm_settings() is None
    assert env.smtp_settings() is None
    assert env.voice_limits() == VoiceLimits(max_calls=8, start_timeout_seconds=5, token_seconds=30)
    assert env.retention_settings() == RetentionSettings(days=None, interval_seconds=3600)
    assert (env.http.max_request_bytes, env.http.api_docs, env.http.otel) == (262144, False, False)
    assert env.twilio.voice_on
    defaults = {row.name: row.value for row in env.describe()}
    assert {name: defaults[name] for name in (
        "SMS_REPLY_BUDGET_SECONDS", "SMS_RECOVERY_AFTER_SECONDS", "VOICE_PAUSE_SECONDS", "VOICE_TURN_HOLD_SECONDS",
        "VOICE_DTMF_PAUSE_SECONDS", "VOICE_SILENCE_SECONDS", "VOICE_SILENCE_PROMPTS", "WHISPER_THREADS",
        "WHISPER_BEAM_SIZE", "WHISPER_CONTEXT_SECONDS", "IMAP_TLS", "IMAP_FOLDER", "IMAP_PROCESSED",
        "IMAP_IDLE_SECONDS", "IMAP_POLL_SECONDS", "EMAIL_MAX_BYTES", "EMAIL_REPLIES_PER_SENDER_PER_HOUR",
        "SMTP_TLS", "EMAIL_FROM", "LLM_TIMEOUT", "TWILIO_VOICE", "OPERATOR_API_DOCS")} == {
        "SMS_REPLY_BUDGET_SECONDS": "8.0", "SMS_RECOVERY_AFTER_SECONDS": "60.0", "VOICE_PAUSE_SECONDS": "0.3",
        "VOICE_TURN_HOLD_SECONDS": "0.3", "VOICE_DTMF_PAUSE_SECONDS": "3.0", "VOICE_SILENCE_SECONDS": "8.0",
        "VOICE_SILENCE_PROMPTS": "1", "WHISPER_THREADS": "0", "WHISPER_BEAM_SIZE": "5",
        "WHISPER_CONTEXT_SECONDS": "10.0", "IMAP_TLS": "ssl", "IMAP_FOLDER": "INBOX", "IMAP_PROCESSED": "seen",
        "IMAP_IDLE_SECONDS": "300.0", "IMAP_POLL_SECONDS": "30.0", "EMAIL_MAX_BYTES": "2000000",
        "EMAIL_REPLIES_PER_SENDER_PER_HOUR": "20", "SMTP_TLS": "starttls", "EMAIL_FROM": "channel-worker@localhost",
        "LLM_TIMEOUT": "10.0", "TWILIO_VOICE": "on", "OPERATOR_API_DOCS": "off",
    }


def test_each_package_gets_its_part_of_the_one_read(clean_env: pytest.MonkeyPatch) -> None:
    """Packages never read the environment themselves: worker/settings.py builds their settings."""
    for name, value in FULL_ENV.items():
        clean_env.setenv(name, value)
    env = WorkerSettings.from_env()
    assert env.config() == Settings(database_url=FULL_ENV["DATABASE_URL"], var_dir=Path("/srv/state"))
    assert env.twilio_settings() == TwilioSettings(account_sid="AC1", auth_token="tok", public_base_url="https://w.example",
                                                   api_base="http://127.0.0.1:9", reply_budget_seconds=4,
                                                   recovery_after_seconds=30)
    assert env.voice_limits() == VoiceLimits(max_calls=3, start_timeout_seconds=2, token_seconds=9)
    assert env.smtp_settings() == SmtpSettings(host="smtp.example", port=465, user="su", password="sp", tls="ssl",
                                               sender="desk@x.example", ca_file="/etc/ca.pem")
    assert env.llm_settings() == LLMSettings(base_url="https://llm.example/v1", model="m", api_key="k", timeout=3)
    assert env.retention_settings() == RetentionSettings(days=30, interval_seconds=60)
    email = env.email_settings()
    assert email is not None and email.imap.port == 143 and email.imap.tls == "starttls"
    assert (email.imap.folder, email.imap.processed, email.max_bytes, email.replies_per_sender_per_hour) == (
        "Support", "move:Done", 5000, 3)
    assert email.own_addresses == {"desk@x.example", "a@x.example", "b@x.example"}
    assert not env.voice_enabled()


def test_no_package_reads_the_environment_itself() -> None:
    """Only worker/ reads os.environ; every other setting is passed in. Exceptions, each for a reason:
    the speech models' locations and decoder knobs (read where the models load, in the voice
    process), the crash-test hook, and actions/ (a spec's `${ENV_VAR}` secrets are looked up by
    name where the request is made, so they never sit in a settings object)."""
    allowed = {"channels/voice/recogniser.py", "channels/voice/whisper_model.py", "channels/voice/tts.py",
               "channels/voice/stream_token.py", "storage/crash_points.py"}
    readers = []
    for path in sorted(ROOT.glob("*/**/*.py")):
        relative = path.relative_to(ROOT).as_posix()
        if relative.split("/")[0] in {"worker", "tests", "bench", ".venv", "examples", "docker", "actions"} or relative in allowed:
            continue
        if "os.environ" in path.read_text() or "getenv(" in path.read_text():
            readers.append(relative)
    assert readers == [], "read the environment outside worker/settings.py: " + ", ".join(readers)


def test_environment_overrides_defaults_and_is_reported_as_the_source(clean_env: pytest.MonkeyPatch) -> None:
    for name, value in FULL_ENV.items():
        clean_env.setenv(name, value)
    env = WorkerSettings.from_env()
    twilio = env.twilio_settings()
    assert twilio is not None and twilio.public_base_url == "https://w.example" and twilio.reply_budget_seconds == 4
    assert not env.twilio.voice_on and env.http.api_docs and env.http.otel and env.http.max_request_bytes == 1000
    email = env.email_settings()
    assert email is not None and email.imap.tls == "starttls" and email.imap.port == 143 and email.smtp.port == 465
    assert email.aliases == ["a@x.example", "b@x.example"]
    sources = {row.name: row.source for row in env.describe()}
    assert all(sources[name] == "env" for name in FULL_ENV)
    assert sources["WHISPER_BEAM_SIZE"] == "default" and sources["VOICE_SILENCE_SECONDS"] == "default"


def test_config_masks_secrets_and_names_sources() -> None:
    token, password = str(uuid.uuid4()), str(uuid.uuid4())
    result = _config("--json", TWILIO_AUTH_TOKEN=token, SMTP_PASSWORD=password, VOICE_MAX_CALLS="3",
                     DATABASE_URL=f"postgresql://app:{password}@db.example/worker")
    assert result.returncode == 0, result.stderr
    assert token not in result.stdout and password not in result.stdout
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows.keys() >= set(FULL_ENV)
    assert (rows["TWILIO_AUTH_TOKEN"]["value"], rows["TWILIO_AUTH_TOKEN"]["source"]) == ("***", "env")
    assert rows["SMTP_PASSWORD"]["value"] == "***"
    assert rows["DATABASE_URL"]["value"] == "postgresql://app:***@db.example/worker"
    assert (rows["VOICE_MAX_CALLS"]["value"], rows["VOICE_MAX_CALLS"]["source"]) == ("3", "env")
    assert (rows["VOICE_START_TIMEOUT_SECONDS"]["value"], rows["VOICE_START_TIMEOUT_SECONDS"]["source"]) == ("5.0", "default")
    assert all(row["meaning"] for row in rows.values())

    table = _config("--worker", "tests/data/specs/restaurant_booking.yaml", TWILIO_AUTH_TOKEN=token)
    assert table.returncode == 0, table.stderr
    assert token not in table.stdout and "***" in table.stdout and "TWILIO_AUTH_TOKEN" in table.stdout


def test_a_misspelt_variable_is_warned_about_with_a_suggestion() -> None:
    assert unknown_variable_warnings({"TWILIO_AUTH_TOKN": "x", "HOME": "/root", "TWILIO_AUTH_TOKEN": "y"}) == [
        "unknown environment variable TWILIO_AUTH_TOKN: did you mean TWILIO_AUTH_TOKEN?"]
    # docker/compose.yaml's own port is not ours to complain about.
    assert unknown_variable_warnings({"OPERATOR_PORT": "8081", "PATH": "/bin"}) == []

    result = _config("--json", TWILIO_AUTH_TOKN=str(uuid.uuid4()))
    assert result.returncode == 0, result.stderr
    assert "TWILIO_AUTH_TOKN: did you mean TWILIO_AUTH_TOKEN?" in result.stderr


def test_serve_warns_about_a_misspelt_variable_at_start(tmp_path: Path) -> None:
    server = WorkerServer("tests/data/specs/restaurant_booking.yaml", {"SMS_REPLY_BUDGET_SECOND": "5"}, tmp_path / "var")
    try:
        server.wait_ready()
        assert "SMS_REPLY_BUDGET_SECOND: did you mean SMS_REPLY_BUDGET_SECONDS?" in server.log.read_text()
    finally:
        server.stop()
