"""Where the worker keeps its state, read from the environment once (the database part of
worker/settings.py's WorkerSettings, here so that settings.py may import Settings)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class DatabaseSettings(BaseSettings):
    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", env_ignore_empty=True)
    database_url: SecretStr | None = Field(None, description="PostgreSQL URL for state and transcripts; unset: SQLite under CHANNEL_WORKER_VAR.")
    channel_worker_var: Path = Field(Path("var"), description="Folder of the SQLite file when DATABASE_URL is unset.")


class Settings(BaseModel):
    database_url: str | None = None
    var_dir: Path = Path("var")

    @classmethod
    def from_env(cls) -> Settings:
        """DATABASE_URL and CHANNEL_WORKER_VAR alone (worker/settings.py), so that commands that only
        need the database do not fail over another concern's bad variable."""
        read = DatabaseSettings()
        return cls(database_url=read.database_url.get_secret_value() if read.database_url else None,
                   var_dir=read.channel_worker_var)

    @property
    def transcripts_url(self) -> str:
        """Transcripts and conversation state share one database, so a turn commits as a whole."""
        return self.database_url or str(self.var_dir / "transcripts.sqlite")

    def describe(self) -> str:
        if self.database_url:
            return "PostgreSQL (DATABASE_URL)"
        return f"SQLite files in {self.var_dir}/"
