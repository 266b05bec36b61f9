"""Where the worker keeps its state, read from the environment once."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel


class Settings(BaseModel):
    database_url: str | None = None
    var_dir: Path = Path("var")

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            database_url=os.environ.get("DATABASE_URL") or None,
            var_dir=Path(os.environ.get("CHANNEL_WORKER_VAR", "var")),
        )

    @property
    def transcripts_url(self) -> str:
        """Transcripts and conversation state share one database, so a turn commits as a whole."""
        return self.database_url or str(self.var_dir / "transcripts.sqlite")

    def describe(self) -> str:
        if self.database_url:
            return "PostgreSQL (DATABASE_URL)"
        return f"SQLite files in {self.var_dir}/"
