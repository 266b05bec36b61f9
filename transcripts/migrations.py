"""Schema migrations for the worker's tables, numbered and applied once each.

Add a migration by appending to MIGRATIONS; never edit one that has shipped.
Times are UTC ISO-8601 text in SQLite and TIMESTAMPTZ in PostgreSQL.
"""

from __future__ import annotations

from dataclasses import dataclass

from transcripts.db import Database


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sqlite: tuple[str, ...]
    postgres: tuple[str, ...]


MIGRATIONS: list[Migration] = [
    Migration(
        1,
        "conversations and events",
        sqlite=(
            """CREATE TABLE conversations (
                id TEXT PRIMARY KEY,
                worker TEXT NOT NULL,
                channel TEXT NOT NULL,
                started_at TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                outcome TEXT,
                escalation TEXT,
                fields TEXT NOT NULL DEFAULT '{}',
                turns INTEGER NOT NULL DEFAULT 0
            )""",
            """CREATE TABLE events (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                conversation_id TEXT NOT NULL REFERENCES conversations(id),
                channel TEXT NOT NULL,
                direction TEXT NOT NULL CHECK (direction IN ('in', 'out', 'system')),
                text TEXT,
                time TEXT NOT NULL,
                fields TEXT NOT NULL DEFAULT '{}',
                outcome TEXT,
                escalation TEXT,
                actions TEXT NOT NULL DEFAULT '[]',
                metadata TEXT NOT NULL DEFAULT '{}'
            )""",
            "CREATE INDEX events_by_conversation ON events (conversation_id, id)",
            "CREATE INDEX conversations_by_update ON conversations (updated_at)",
        ),
        postgres=(
            """CREATE TABLE conversations (
                id TEXT PRIMARY KEY,
                worker TEXT NOT NULL,
                channel TEXT NOT NULL,
                started_at TIMESTAMPTZ NOT NULL,
                updated_at TIMESTAMPTZ NOT NULL,
                outcome TEXT,
                escalation JSONB,
                fields JSONB NOT NULL DEFAULT '{}',
                turns INTEGER NOT NULL DEFAULT 0
            )""",
            """CREATE TABLE events (
                id BIGSERIAL PRIMARY KEY,
                conversation_id TEXT NOT NULL REFERENCES conversations(id),
                channel TEXT NOT NULL,
                direction TEXT NOT NULL CHECK (direction IN ('in', 'out', 'system')),
                text TEXT,
                time TIMESTAMPTZ NOT NULL,
                fields JSONB NOT NULL DEFAULT '{}',
                outcome TEXT,
                escalation JSONB,
                actions JSONB NOT NULL DEFAULT '[]',
                metadata JSONB NOT NULL DEFAULT '{}'
            )""",
            "CREATE INDEX events_by_conversation ON events (conversation_id, id)",
            "CREATE INDEX conversations_by_update ON conversations (updated_at)",
        ),
    ),
]

_LEDGER = {
    "sqlite": "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)",
    "postgres": "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
}


async def migrate(db: Database) -> list[int]:
    """Apply every migration not yet applied; returns the versions applied now."""
    # Several workers may start at once; one migrates, the others wait on the lock.
    async with db.advisory_lock(727201):
        await db.execute(_LEDGER[db.dialect])
        done = {r["version"] for r in await db.fetchall("SELECT version FROM schema_migrations")}
        applied = []
        for m in MIGRATIONS:
            if m.version in done:
                continue
            statements = m.sqlite if db.dialect == "sqlite" else m.postgres
            ledger = f"INSERT INTO schema_migrations (version, name) VALUES ({m.version}, '{m.name}')"
            await db.execute_script([*statements, ledger])
            applied.append(m.version)
        return applied
