"""Schema migrations for the worker's tables, numbered and applied once each.

Add a migration by appending to MIGRATIONS; never edit one that has shipped.
Times are UTC ISO-8601 text in SQLite and TIMESTAMPTZ in PostgreSQL.
"""

from __future__ import annotations

from dataclasses import dataclass

from storage.db import Database


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

_APPEND_ONLY_SQLITE = (
    "CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END",
    "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END",
)
_APPEND_ONLY_POSTGRES = (
    """CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN RAISE EXCEPTION 'audit is append-only'; END $$""",
    "CREATE TRIGGER audit_no_change BEFORE UPDATE OR DELETE ON audit FOR EACH ROW EXECUTE FUNCTION audit_append_only()",
)

MIGRATIONS.append(
    Migration(
        2,
        "human queue, notification outbox, audit trail",
        sqlite=(
            """CREATE TABLE handoffs (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                conversation_id TEXT NOT NULL REFERENCES conversations(id),
                worker TEXT NOT NULL,
                channel TEXT NOT NULL,
                rule TEXT NOT NULL,
                reason TEXT NOT NULL,
                packet TEXT NOT NULL,
                status TEXT NOT NULL CHECK (status IN ('open', 'claimed', 'resolved', 'released')),
                claimed_by TEXT,
                note TEXT,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL
            )""",
            "CREATE INDEX handoffs_by_status ON handoffs (status, created_at)",
            """CREATE TABLE notifications (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                handoff_id INTEGER REFERENCES handoffs(id),
                conversation_id TEXT NOT NULL,
                kind TEXT NOT NULL CHECK (kind IN ('email', 'webhook')),
                target TEXT NOT NULL,
                payload TEXT NOT NULL,
                status TEXT NOT NULL CHECK (status IN ('pending', 'delivered')),
                attempts INTEGER NOT NULL DEFAULT 0,
                next_attempt_at TEXT NOT NULL,
                last_error TEXT,
                delivered_at TEXT,
                created_at TEXT NOT NULL
            )""",
            "CREATE INDEX notifications_due ON notifications (status, next_attempt_at)",
            """CREATE TABLE audit (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                time TEXT NOT NULL,
                conversation_id TEXT NOT NULL,
                worker TEXT NOT NULL,
                kind TEXT NOT NULL,
                rule TEXT,
                action TEXT,
                inputs TEXT NOT NULL DEFAULT '{}',
                detail TEXT
            )""",
            "CREATE INDEX audit_by_conversation ON audit (conversation_id, id)",
            *_APPEND_ONLY_SQLITE,
        ),
        postgres=(
            """CREATE TABLE handoffs (
                id BIGSERIAL PRIMARY KEY,
                conversation_id TEXT NOT NULL REFERENCES conversations(id),
                worker TEXT NOT NULL,
                channel TEXT NOT NULL,
                rule TEXT NOT NULL,
                reason TEXT NOT NULL,
                packet JSONB NOT NULL,
                status TEXT NOT NULL CHECK (status IN ('open', 'claimed', 'resolved', 'released')),
                claimed_by TEXT,
                note TEXT,
                created_at TIMESTAMPTZ NOT NULL,
                updated_at TIMESTAMPTZ NOT NULL
            )""",
            "CREATE INDEX handoffs_by_status ON handoffs (status, created_at)",
            """CREATE TABLE notifications (
                id BIGSERIAL PRIMARY KEY,
                handoff_id BIGINT REFERENCES handoffs(id),
                conversation_id TEXT NOT NULL,
                kind TEXT NOT NULL CHECK (kind IN ('email', 'webhook')),
                target TEXT NOT NULL,
                payload JSONB NOT NULL,
                status TEXT NOT NULL CHECK (status IN ('pending', 'delivered')),
                attempts INTEGER NOT NULL DEFAULT 0,
                next_attempt_at TIMESTAMPTZ NOT NULL,
                last_error TEXT,
                delivered_at TIMESTAMPTZ,
                created_at TIMESTAMPTZ NOT NULL
            )""",
            "CREATE INDEX notifications_due ON notifications (status, next_attempt_at)",
            """CREATE TABLE audit (
                id BIGSERIAL PRIMARY KEY,
                time TIMESTAMPTZ NOT NULL,
                conversation_id TEXT NOT NULL,
                worker TEXT NOT NULL,
                kind TEXT NOT NULL,
                rule TEXT,
                action TEXT,
                inputs JSONB NOT NULL DEFAULT '{}',
                detail TEXT
            )""",
            "CREATE INDEX audit_by_conversation ON audit (conversation_id, id)",
            *_APPEND_ONLY_POSTGRES,
        ),
    )
)

MIGRATIONS.append(
    Migration(
        3,
        "sms messages, outbox and opt-outs",
        sqlite=(
            """CREATE TABLE sms_messages (
                sid TEXT PRIMARY KEY,
                conversation_id TEXT NOT NULL,
                direction TEXT NOT NULL CHECK (direction IN ('in', 'out')),
                from_number TEXT NOT NULL,
                to_number TEXT NOT NULL,
                body TEXT,
                media TEXT NOT NULL DEFAULT '[]',
                state TEXT NOT NULL,
                status TEXT,
                error_code TEXT,
                reply TEXT,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL
            )""",
            "CREATE INDEX sms_messages_by_conversation ON sms_messages (conversation_id, created_at)",
            """CREATE TABLE sms_outbox (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                conversation_id TEXT NOT NULL,
                to_number TEXT NOT NULL,
                from_number TEXT NOT NULL,
                body TEXT NOT NULL,
                dedupe_key TEXT UNIQUE,
                state TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'failed', 'suppressed')),
                attempts INTEGER NOT NULL DEFAULT 0,
                next_attempt_at TEXT NOT NULL,
                last_error TEXT,
                message_sid TEXT,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL
            )""",
            "CREATE INDEX sms_outbox_due ON sms_outbox (state, next_attempt_at)",
            """CREATE TABLE sms_optouts (
                number TEXT NOT NULL,
                service_number TEXT NOT NULL,
                opted_out_at TEXT NOT NULL,
                PRIMARY KEY (number, service_number)
            )""",
        ),
        postgres=(
            """CREATE TABLE sms_messages (
                sid TEXT PRIMARY KEY,
                conversation_id TEXT NOT NULL,
                direction TEXT NOT NULL CHECK (direction IN ('in', 'out')),
                from_number TEXT NOT NULL,
                to_number TEXT NOT NULL,
                body TEXT,
                media JSONB NOT NULL DEFAULT '[]',
                state TEXT NOT NULL,
                status TEXT,
                error_code TEXT,
                reply TEXT,
                created_at TIMESTAMPTZ NOT NULL,
                updated_at TIMESTAMPTZ NOT NULL
            )""",
            "CREATE INDEX sms_messages_by_conversation ON sms_messages (conversation_id, created_at)",
            """CREATE TABLE sms_outbox (
                id BIGSERIAL PRIMARY KEY,
                conversation_id TEXT NOT NULL,
                to_number TEXT NOT NULL,
                from_number TEXT NOT NULL,
                body TEXT NOT NULL,
                dedupe_key TEXT UNIQUE,
                state TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'failed', 'suppressed')),
                attempts INTEGER NOT NULL DEFAULT 0,
                next_attempt_at TIMESTAMPTZ NOT NULL,
                last_error TEXT,
                message_sid TEXT,
                created_at TIMESTAMPTZ NOT NULL,
                updated_at TIMESTAMPTZ NOT NULL
            )""",
            "CREATE INDEX sms_outbox_due ON sms_outbox (state, next_attempt_at)",
            """CREATE TABLE sms_optouts (
                number TEXT NOT NULL,
                service_number TEXT NOT NULL,
                opted_out_at TIMESTAMPTZ NOT NULL,
                PRIMARY KEY (number, service_number)
            )""",
        ),
    )
)

MIGRATIONS.append(
    Migration(
        4,
        "email messages, outbox and inbox cursor",
        sqlite=(
            """CREATE TABLE email_messages (
                key TEXT PRIMARY KEY,
                message_id TEXT NOT NULL UNIQUE,
                conversation_id TEXT NOT NULL,
                sender TEXT NOT NULL,
                subject TEXT,
                state TEXT NOT NULL,
                detail TEXT,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL
            )""",
            "CREATE INDEX email_messages_by_state ON email_messages (state, updated_at)",
            """CREATE TABLE email_outbox (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                inbound_key TEXT NOT NULL UNIQUE,
                message_id TEXT NOT NULL,
                recipient TEXT NOT NULL,
                raw TEXT NOT NULL,
                state TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'failed')),
                attempts INTEGER NOT NULL DEFAULT 0,
                next_attempt_at TEXT NOT NULL,
                last_error TEXT,
                sent_at TEXT,
                created_at TEXT NOT NULL
            )""",
            "CREATE INDEX email_outbox_due ON email_outbox (state, next_attempt_at)",
            "CREATE INDEX email_outbox_by_recipient ON email_outbox (recipient, created_at)",
            """CREATE TABLE email_cursor (
                folder TEXT PRIMARY KEY,
                uidvalidity TEXT NOT NULL,
                last_uid INTEGER NOT NULL
            )""",
        ),
        postgres=(
            """CREATE TABLE email_messages (
                key TEXT PRIMARY KEY,
                message_id TEXT NOT NULL UNIQUE,
                conversation_id TEXT NOT NULL,
                sender TEXT NOT NULL,
                subject TEXT,
                state TEXT NOT NULL,
                detail TEXT,
                created_at TIMESTAMPTZ NOT NULL,
                updated_at TIMESTAMPTZ NOT NULL
            )""",
            "CREATE INDEX email_messages_by_state ON email_messages (state, updated_at)",
            """CREATE TABLE email_outbox (
                id BIGSERIAL PRIMARY KEY,
                inbound_key TEXT NOT NULL UNIQUE,
                message_id TEXT NOT NULL,
                recipient TEXT NOT NULL,
                raw TEXT NOT NULL,
                state TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'failed')),
                attempts INTEGER NOT NULL DEFAULT 0,
                next_attempt_at TIMESTAMPTZ NOT NULL,
                last_error TEXT,
                sent_at TIMESTAMPTZ,
                created_at TIMESTAMPTZ NOT NULL
            )""",
            "CREATE INDEX email_outbox_due ON email_outbox (state, next_attempt_at)",
            "CREATE INDEX email_outbox_by_recipient ON email_outbox (recipient, created_at)",
            """CREATE TABLE email_cursor (
                folder TEXT PRIMARY KEY,
                uidvalidity TEXT NOT NULL,
                last_uid BIGINT NOT NULL
            )""",
        ),
    )
)

MIGRATIONS.append(
    Migration(
        5,
        "conversation state (LangGraph checkpoints) beside the transcript",
        # The state lives in the transcript database so a turn's new state, its reply and the
        # channel's bookkeeping commit in one transaction. The unique parent index is the
        # optimistic lock: two processes that run a turn from the same checkpoint cannot both
        # commit; the loser reruns its turn from the winner's state.
        sqlite=(
            """CREATE TABLE checkpoints (
                thread_id TEXT NOT NULL,
                checkpoint_ns TEXT NOT NULL DEFAULT '',
                checkpoint_id TEXT NOT NULL,
                parent_checkpoint_id TEXT,
                type TEXT,
                checkpoint BLOB,
                metadata TEXT,
                PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id)
            )""",
            "CREATE UNIQUE INDEX checkpoints_one_child ON checkpoints (thread_id, checkpoint_ns, COALESCE(parent_checkpoint_id, ''))",
            """CREATE TABLE checkpoint_writes (
                thread_id TEXT NOT NULL,
                checkpoint_ns TEXT NOT NULL DEFAULT '',
                checkpoint_id TEXT NOT NULL,
                task_id TEXT NOT NULL,
                task_path TEXT NOT NULL DEFAULT '',
                idx INTEGER NOT NULL,
                channel TEXT NOT NULL,
                type TEXT,
                value BLOB,
                PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id, task_id, idx)
            )""",
        ),
        postgres=(
            """CREATE TABLE checkpoints (
                thread_id TEXT NOT NULL,
                checkpoint_ns TEXT NOT NULL DEFAULT '',
                checkpoint_id TEXT NOT NULL,
                parent_checkpoint_id TEXT,
                type TEXT,
                checkpoint BYTEA,
                metadata JSONB,
                PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id)
            )""",
            "CREATE UNIQUE INDEX checkpoints_one_child ON checkpoints (thread_id, checkpoint_ns, COALESCE(parent_checkpoint_id, ''))",
            """CREATE TABLE checkpoint_writes (
                thread_id TEXT NOT NULL,
                checkpoint_ns TEXT NOT NULL DEFAULT '',
                checkpoint_id TEXT NOT NULL,
                task_id TEXT NOT NULL,
                task_path TEXT NOT NULL DEFAULT '',
                idx INTEGER NOT NULL,
                channel TEXT NOT NULL,
                type TEXT,
                value BYTEA,
                PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id, task_id, idx)
            )""",
        ),
    )
)

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

MIGRATIONS.append(
    Migration(
        6,
        "exactly-once: an inbound message recorded once per conversation; how an SMS reply left, its attempts",
        # dedupe_key is the channel's own id for what the person sent (an SMS MessageSid): a
        # redelivery or a crash recovery that runs the turn again records the message once.
        # NULLs never collide, so events without a key are unaffected.
        sqlite=(
            "ALTER TABLE events ADD COLUMN dedupe_key TEXT",
            "CREATE UNIQUE INDEX events_dedupe ON events (conversation_id, dedupe_key)",
            "ALTER TABLE sms_messages ADD COLUMN reply_via TEXT",
            # How many deliveries tried to answer it, and why the last one that failed did.
            "ALTER TABLE sms_messages ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE sms_messages ADD COLUMN failure TEXT",
        ),
        postgres=(
            "ALTER TABLE events ADD COLUMN dedupe_key TEXT",
            "CREATE UNIQUE INDEX events_dedupe ON events (conversation_id, dedupe_key)",
            "ALTER TABLE sms_messages ADD COLUMN reply_via TEXT",
            # How many deliveries tried to answer it, and why the last one that failed did.
            "ALTER TABLE sms_messages ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE sms_messages ADD COLUMN failure TEXT",
        ),
    )
)

MIGRATIONS.append(
    Migration(
        7,
        "operators and API tokens for the operator routes",
        # Only hashes: a password hash carries its own salt and parameters (worker/operator_auth.py);
        # a token is found by its public id and checked against the SHA-256 of its secret.
        sqlite=(
            """CREATE TABLE operators (
                name TEXT PRIMARY KEY,
                role TEXT NOT NULL CHECK (role IN ('viewer', 'reviewer', 'admin')),
                password_hash TEXT NOT NULL,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL
            )""",
            """CREATE TABLE api_tokens (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL UNIQUE,
                role TEXT NOT NULL CHECK (role IN ('viewer', 'reviewer', 'admin')),
                secret_hash TEXT NOT NULL,
                created_at TEXT NOT NULL
            )""",
        ),
        postgres=(
            """CREATE TABLE operators (
                name TEXT PRIMARY KEY,
                role TEXT NOT NULL CHECK (role IN ('viewer', 'reviewer', 'admin')),
                password_hash TEXT NOT NULL,
                created_at TIMESTAMPTZ NOT NULL,
                updated_at TIMESTAMPTZ NOT NULL
            )""",
            """CREATE TABLE api_tokens (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL UNIQUE,
                role TEXT NOT NULL CHECK (role IN ('viewer', 'reviewer', 'admin')),
                secret_hash TEXT NOT NULL,
                created_at TIMESTAMPTZ NOT NULL
            )""",
        ),
    )
)

MIGRATIONS.append(
    Migration(
        9,
        "voice calls admitted to a media stream",
        # One row per CallSid: the signed call webhook announces it (the stream token's nonce),
        # its one stream claims it (announced -> live, a guarded update: single use across
        # processes), and it ends. Calls in progress are counted from here for VOICE_MAX_CALLS.
        sqlite=(
            """CREATE TABLE voice_calls (
                call_sid TEXT PRIMARY KEY,
                nonce TEXT NOT NULL,
                state TEXT NOT NULL CHECK (state IN ('announced', 'live', 'ended')),
                announced_at TEXT NOT NULL,
                started_at TEXT,
                seen_at TEXT,
                ended_at TEXT
            )""",
            "CREATE INDEX voice_calls_open ON voice_calls (state) WHERE state <> 'ended'",
        ),
        postgres=(
            """CREATE TABLE voice_calls (
                call_sid TEXT PRIMARY KEY,
                nonce TEXT NOT NULL,
                state TEXT NOT NULL CHECK (state IN ('announced', 'live', 'ended')),
                announced_at TIMESTAMPTZ NOT NULL,
                started_at TIMESTAMPTZ,
                seen_at TIMESTAMPTZ,
                ended_at TIMESTAMPTZ
            )""",
            "CREATE INDEX voice_calls_open ON voice_calls (state) WHERE state <> 'ended'",
        ),
    )
)

_PURGE_COUNTS = """
                conversations INTEGER NOT NULL DEFAULT 0,
                user_turns INTEGER NOT NULL DEFAULT 0,
                events INTEGER NOT NULL DEFAULT 0,
                handoffs INTEGER NOT NULL DEFAULT 0,
                audit_entries INTEGER NOT NULL DEFAULT 0,"""
_PURGING = """CREATE TABLE retention_purging (
                conversation_id TEXT PRIMARY KEY,
                events INTEGER NOT NULL DEFAULT 0,
                checkpoints INTEGER NOT NULL DEFAULT 0,
                checkpoint_writes INTEGER NOT NULL DEFAULT 0,
                handoffs INTEGER NOT NULL DEFAULT 0,
                notifications INTEGER NOT NULL DEFAULT 0,
                audit INTEGER NOT NULL DEFAULT 0,
                sms_messages INTEGER NOT NULL DEFAULT 0,
                sms_outbox INTEGER NOT NULL DEFAULT 0,
                email_messages INTEGER NOT NULL DEFAULT 0,
                email_outbox INTEGER NOT NULL DEFAULT 0
            )"""
_PURGE_INDEXES = (
    # The purge finds a conversation's rows by its id in every table.
    "CREATE INDEX handoffs_by_conversation ON handoffs (conversation_id)",
    "CREATE INDEX notifications_by_conversation ON notifications (conversation_id)",
    "CREATE INDEX sms_outbox_by_conversation ON sms_outbox (conversation_id)",
    "CREATE INDEX email_messages_by_conversation ON email_messages (conversation_id)",
)

MIGRATIONS.append(
    Migration(
        10,
        "retention: purged conversations kept as counts; the audit of a purged conversation may go with it",
        # retention_purged keeps, per day (the conversation's start, UTC), worker, channel and
        # outcome ('' while none), what was purged, so totals and KPIs still add up afterwards.
        # retention_purging is the purge's working set: rows exist only inside a purge
        # transaction (inserted and deleted in it), and the audit trail stays append-only except
        # for the rows of a conversation listed there (transcripts/retention.py).
        sqlite=(
            f"""CREATE TABLE retention_purged (
                day TEXT NOT NULL,
                worker TEXT NOT NULL,
                channel TEXT NOT NULL,
                outcome TEXT NOT NULL DEFAULT '',{_PURGE_COUNTS}
                last_purged_at TEXT NOT NULL,
                PRIMARY KEY (day, worker, channel, outcome)
            )""",
            _PURGING,
            *_PURGE_INDEXES,
            "DROP TRIGGER audit_no_delete",
            """CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
               WHEN NOT EXISTS (SELECT 1 FROM retention_purging p WHERE p.conversation_id = OLD.conversation_id)
               BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END""",
        ),
        postgres=(
            f"""CREATE TABLE retention_purged (
                day DATE NOT NULL,
                worker TEXT NOT NULL,
                channel TEXT NOT NULL,
                outcome TEXT NOT NULL DEFAULT '',{_PURGE_COUNTS}
                last_purged_at TIMESTAMPTZ NOT NULL,
                PRIMARY KEY (day, worker, channel, outcome)
            )""",
            _PURGING,
            *_PURGE_INDEXES,
            """CREATE OR REPLACE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN
                 IF TG_OP = 'DELETE' AND EXISTS (
                     SELECT 1 FROM retention_purging p WHERE p.conversation_id = OLD.conversation_id) THEN
                   RETURN OLD;
                 END IF;
                 RAISE EXCEPTION 'audit is append-only';
               END $$""",
        ),
    )
)

MIGRATIONS.append(
    Migration(
        11,
        "actions: the stored result of each action call, one per conversation and step",
        # A call's result is stored the moment it arrives, in its own transaction, so a turn that
        # runs again (write conflict, crash, retry) reuses it instead of calling twice. Only an
        # 'ok' row is reused; an 'error' row records the latest failure and is overwritten by the
        # next attempt, which carries the same Idempotency-Key (actions/client.py).
        sqlite=(
            """CREATE TABLE action_results (
                conversation_id TEXT NOT NULL,
                step_id TEXT NOT NULL,
                action TEXT NOT NULL,
                idempotency_key TEXT NOT NULL,
                status TEXT NOT NULL CHECK (status IN ('ok', 'error')),
                http_status INTEGER,
                response TEXT,
                error TEXT,
                attempts INTEGER NOT NULL DEFAULT 0,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                PRIMARY KEY (conversation_id, step_id)
            )""",
            # A purged conversation takes its stored results with it (transcripts/retention.py).
            "ALTER TABLE retention_purging ADD COLUMN action_results INTEGER NOT NULL DEFAULT 0",
        ),
        postgres=(
            """CREATE TABLE action_results (
                conversation_id TEXT NOT NULL,
                step_id TEXT NOT NULL,
                action TEXT NOT NULL,
                idempotency_key TEXT NOT NULL,
                status TEXT NOT NULL CHECK (status IN ('ok', 'error')),
                http_status INTEGER,
                response JSONB,
                error JSONB,
                attempts INTEGER NOT NULL DEFAULT 0,
                created_at TIMESTAMPTZ NOT NULL,
                updated_at TIMESTAMPTZ NOT NULL,
                PRIMARY KEY (conversation_id, step_id)
            )""",
            "ALTER TABLE retention_purging ADD COLUMN action_results INTEGER NOT NULL DEFAULT 0",
        ),
    )
)

MIGRATIONS.append(
    Migration(
        12,
        "outcome deliveries: the finished record POSTed to the business, through an outbox",
        # One row per conversation, task, outcome and delivery (the UNIQUE key is what makes it
        # exactly once: a turn that runs again inserts nothing). The body is kept as the exact
        # text sent and signed; the URL, headers and secret are kept as ${VAR} templates, so no
        # secret is ever stored (actions/deliveries.py).
        sqlite=(
            """CREATE TABLE outcome_deliveries (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                conversation_id TEXT NOT NULL,
                task TEXT NOT NULL DEFAULT '',
                outcome TEXT NOT NULL,
                target TEXT NOT NULL,
                url TEXT NOT NULL,
                secret TEXT NOT NULL,
                headers TEXT NOT NULL DEFAULT '{}',
                timeout REAL NOT NULL,
                body TEXT NOT NULL,
                status TEXT NOT NULL CHECK (status IN ('pending', 'delivered')),
                attempts INTEGER NOT NULL DEFAULT 0,
                next_attempt_at TEXT NOT NULL,
                last_error TEXT,
                created_at TEXT NOT NULL,
                delivered_at TEXT,
                UNIQUE (conversation_id, task, outcome, target)
            )""",
            "CREATE INDEX outcome_deliveries_due ON outcome_deliveries (status, next_attempt_at)",
            "CREATE INDEX outcome_deliveries_by_conversation ON outcome_deliveries (conversation_id)",
            "ALTER TABLE retention_purging ADD COLUMN outcome_deliveries INTEGER NOT NULL DEFAULT 0",
        ),
        postgres=(
            """CREATE TABLE outcome_deliveries (
                id BIGSERIAL PRIMARY KEY,
                conversation_id TEXT NOT NULL,
                task TEXT NOT NULL DEFAULT '',
                outcome TEXT NOT NULL,
                target TEXT NOT NULL,
                url TEXT NOT NULL,
                secret TEXT NOT NULL,
                headers JSONB NOT NULL DEFAULT '{}',
                timeout DOUBLE PRECISION NOT NULL,
                body TEXT NOT NULL,
                status TEXT NOT NULL CHECK (status IN ('pending', 'delivered')),
                attempts INTEGER NOT NULL DEFAULT 0,
                next_attempt_at TIMESTAMPTZ NOT NULL,
                last_error TEXT,
                created_at TIMESTAMPTZ NOT NULL,
                delivered_at TIMESTAMPTZ,
                UNIQUE (conversation_id, task, outcome, target)
            )""",
            "CREATE INDEX outcome_deliveries_due ON outcome_deliveries (status, next_attempt_at)",
            "CREATE INDEX outcome_deliveries_by_conversation ON outcome_deliveries (conversation_id)",
            "ALTER TABLE retention_purging ADD COLUMN outcome_deliveries INTEGER NOT NULL DEFAULT 0",
        ),
    )
)

MIGRATIONS.append(
    Migration(
        13,
        "outcome deliveries: one per outcome reached, so a second booking in one conversation is delivered",
        # The key gains the turn the outcome was reached in: a person who books again later in the
        # same conversation (the same phone number next week) had the second record dropped as a
        # repeat of the first. A turn that runs again has the same number, so it still inserts
        # nothing. Rows from before keep turn 0 (and their Idempotency-Key, actions/deliveries.py).
        sqlite=(
            """CREATE TABLE outcome_deliveries_by_turn (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                conversation_id TEXT NOT NULL,
                task TEXT NOT NULL DEFAULT '',
                outcome TEXT NOT NULL,
                target TEXT NOT NULL,
                turn INTEGER NOT NULL DEFAULT 0,
                url TEXT NOT NULL,
                secret TEXT NOT NULL,
                headers TEXT NOT NULL DEFAULT '{}',
                timeout REAL NOT NULL,
                body TEXT NOT NULL,
                status TEXT NOT NULL CHECK (status IN ('pending', 'delivered')),
                attempts INTEGER NOT NULL DEFAULT 0,
                next_attempt_at TEXT NOT NULL,
                last_error TEXT,
                created_at TEXT NOT NULL,
                delivered_at TEXT,
                UNIQUE (conversation_id, task, outcome, target, turn)
            )""",
            "INSERT INTO outcome_deliveries_by_turn (id, conversation_id, task, outcome, target, turn, url, secret, "
            "headers, timeout, body, status, attempts, next_attempt_at, last_error, created_at, delivered_at) "
            "SELECT id, conversation_id, task, outcome, target, 0, url, secret, headers, timeout, body, status, "
            "attempts, next_attempt_at, last_error, created_at, delivered_at FROM outcome_deliveries",
            "DROP TABLE outcome_deliveries",
            "ALTER TABLE outcome_deliveries_by_turn RENAME TO outcome_deliveries",
            "CREATE INDEX outcome_deliveries_due ON outcome_deliveries (status, next_attempt_at)",
            "CREATE INDEX outcome_deliveries_by_conversation ON outcome_deliveries (conversation_id)",
        ),
        postgres=(
            "ALTER TABLE outcome_deliveries ADD COLUMN turn INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE outcome_deliveries DROP CONSTRAINT outcome_deliveries_conversation_id_task_outcome_target_key",
            "ALTER TABLE outcome_deliveries ADD CONSTRAINT outcome_deliveries_once "
            "UNIQUE (conversation_id, task, outcome, target, turn)",
        ),
    )
)

MIGRATIONS.append(
    Migration(
        14,
        "conversations: the version of the worker spec that ran each one (its `version:` and content hash)",
        # Set once, when the conversation's row is first written, and never changed after: a
        # conversation keeps the spec it started with (serve --candidate routes by it). Rows from
        # before stay NULL (unknown). The index serves the per-version KPIs and export filter.
        sqlite=(
            "ALTER TABLE conversations ADD COLUMN spec_version TEXT",
            "ALTER TABLE conversations ADD COLUMN spec_hash TEXT",
            "CREATE INDEX conversations_by_spec ON conversations (worker, spec_hash)",
        ),
        postgres=(
            "ALTER TABLE conversations ADD COLUMN spec_version TEXT",
            "ALTER TABLE conversations ADD COLUMN spec_hash TEXT",
            "CREATE INDEX conversations_by_spec ON conversations (worker, spec_hash)",
        ),
    )
)

MIGRATIONS.append(
    Migration(
        15,
        "review console: sessions, append-only field labels, the lowest confidence per conversation, list indexes",
        # review_sessions (escalation/review_sessions.py): server-side browser sessions, stored as the
        # SHA-256 of the cookie, so logout and removing an operator end them at once.
        # field_labels (transcripts/labels.py): a reviewer's verdict on a stored value, appended,
        # never changed; the latest per conversation and field is the one that counts.
        # conversations.min_confidence: the lowest confidence of any value the conversation holds
        # (kept by the summary update), so "low confidence" is an indexed filter, not a JSON scan.
        # The indexes serve the console's list: newest first, alone or within a filter.
        sqlite=(
            """CREATE TABLE review_sessions (
                token_hash TEXT PRIMARY KEY,
                operator TEXT NOT NULL,
                csrf_token TEXT NOT NULL,
                created_at TEXT NOT NULL,
                expires_at TEXT NOT NULL
            )""",
            "CREATE INDEX review_sessions_by_operator ON review_sessions (operator)",
            """CREATE TABLE field_labels (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                conversation_id TEXT NOT NULL,
                field TEXT NOT NULL,
                turn INTEGER,
                stored_value TEXT,
                verdict TEXT NOT NULL CHECK (verdict IN ('right', 'wrong')),
                correct_value TEXT,
                span_start INTEGER,
                span_end INTEGER,
                labelled_by TEXT NOT NULL,
                labelled_at TEXT NOT NULL
            )""",
            "CREATE INDEX field_labels_by_conversation ON field_labels (conversation_id, field, id)",
            "CREATE TRIGGER field_labels_no_update BEFORE UPDATE ON field_labels "
            "BEGIN SELECT RAISE(ABORT, 'field_labels is append-only'); END",
            "ALTER TABLE conversations ADD COLUMN min_confidence REAL",
            "CREATE INDEX conversations_by_start ON conversations (started_at, id)",
            "CREATE INDEX conversations_by_outcome ON conversations (outcome, started_at)",
            "CREATE INDEX conversations_by_channel ON conversations (channel, started_at)",
            "CREATE INDEX conversations_by_confidence ON conversations (min_confidence)",
        ),
        postgres=(
            """CREATE TABLE review_sessions (
                token_hash TEXT PRIMARY KEY,
                operator TEXT NOT NULL,
                csrf_token TEXT NOT NULL,
                created_at TIMESTAMPTZ NOT NULL,
                expires_at TIMESTAMPTZ NOT NULL
            )""",
            "CREATE INDEX review_sessions_by_operator ON review_sessions (operator)",
            """CREATE TABLE field_labels (
                id BIGSERIAL PRIMARY KEY,
                conversation_id TEXT NOT NULL,
                field TEXT NOT NULL,
                turn INTEGER,
                stored_value JSONB,
                verdict TEXT NOT NULL CHECK (verdict IN ('right', 'wrong')),
                correct_value TEXT,
                span_start INTEGER,
                span_end INTEGER,
                labelled_by TEXT NOT NULL,
                labelled_at TIMESTAMPTZ NOT NULL
            )""",
            "CREATE INDEX field_labels_by_conversation ON field_labels (conversation_id, field, id)",
            """CREATE FUNCTION field_labels_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN RAISE EXCEPTION 'field_labels is append-only'; END $$""",
            "CREATE TRIGGER field_labels_no_update BEFORE UPDATE ON field_labels "
            "FOR EACH ROW EXECUTE FUNCTION field_labels_append_only()",
            "ALTER TABLE conversations ADD COLUMN min_confidence DOUBLE PRECISION",
            "CREATE INDEX conversations_by_start ON conversations (started_at, id)",
            "CREATE INDEX conversations_by_outcome ON conversations (outcome, started_at)",
            "CREATE INDEX conversations_by_channel ON conversations (channel, started_at)",
            "CREATE INDEX conversations_by_confidence ON conversations (min_confidence)",
        ),
    )
)

MIGRATIONS.append(
    Migration(
        16,
        "review console: a secret per session for the opaque conversation references viewers are given",
        # Viewers must not see an SMS conversation's id (both phone numbers) even in a link; their
        # links carry the id encrypted under this key, which never leaves the server
        # (worker/review/refs.py). Sessions from before have none and are asked to log in again.
        sqlite=("ALTER TABLE review_sessions ADD COLUMN ref_key TEXT",),
        postgres=("ALTER TABLE review_sessions ADD COLUMN ref_key TEXT",),
    )
)

MIGRATIONS.append(
    Migration(
        17,
        "retention: the review labels of a purged conversation go with it (counted in the purge working set)",
        sqlite=("ALTER TABLE retention_purging ADD COLUMN field_labels INTEGER NOT NULL DEFAULT 0",),
        postgres=("ALTER TABLE retention_purging ADD COLUMN field_labels INTEGER NOT NULL DEFAULT 0",),
    )
)

MIGRATIONS.append(
    Migration(
        18,
        "review console: a full-text index of what was said, for word searches over many conversations",
        # SQLite: an FTS5 index over events.text (external content: the text is not stored twice),
        # kept in step by triggers, so a purge that deletes events takes their entries too.
        # PostgreSQL: a GIN index over the words of events.text ('simple': no stemming, any language).
        sqlite=(
            "CREATE VIRTUAL TABLE events_fts USING fts5(text, content='events', content_rowid='id')",
            "INSERT INTO events_fts (events_fts) VALUES ('rebuild')",
            "CREATE TRIGGER events_fts_insert AFTER INSERT ON events WHEN new.text IS NOT NULL "
            "BEGIN INSERT INTO events_fts (rowid, text) VALUES (new.id, new.text); END",
            "CREATE TRIGGER events_fts_delete AFTER DELETE ON events WHEN old.text IS NOT NULL "
            "BEGIN INSERT INTO events_fts (events_fts, rowid, text) VALUES ('delete', old.id, old.text); END",
        ),
        postgres=(
            "CREATE INDEX events_words ON events USING gin (to_tsvector('simple', COALESCE(text, '')))",
        ),
    )
)

# The voice reply latency of each spoken turn in a 'call ended' event's metadata.turns, in ms:
# from the caller's last word to the worker's first audio (the VAD pause, the hold in which
# recognition runs, the dialogue, the first audio of the reply), as transcripts/kpis.py computes it.
_LATENCY_SQLITE = (
    "CAST(COALESCE(json_extract(t.value, '$.vad_wait_ms'), 0) + COALESCE(json_extract(t.value, '$.hold_ms'), 0) "
    "+ COALESCE(json_extract(t.value, '$.dialogue_ms'), 0) + json_extract(t.value, '$.tts_first_audio_ms') AS INTEGER)")
_LATENCY_POSTGRES = (
    "ROUND(COALESCE((t->>'vad_wait_ms')::numeric, 0) + COALESCE((t->>'hold_ms')::numeric, 0) "
    "+ COALESCE((t->>'dialogue_ms')::numeric, 0) + (t->>'tts_first_audio_ms')::numeric)::integer")

MIGRATIONS.append(
    Migration(
        19,
        "conversations: the task it is in and every task it was in, confirmations, re-asks, fallbacks, voice latencies",
        # Kept by the summary update as each turn is stored (transcripts/store.py, from the marks
        # dialogue/engine.py puts in the reply's metadata; transcripts/kpis.py says what each is):
        # task: the task after the latest turn (NULL: a worker without tasks, or none started);
        # tasks: every task the conversation was in, each between spaces (' book cancel '), so
        # the review list's task filter is a LIKE; NULL only on rows from before this migration,
        # which transcripts/kpis.py backfills from their checkpoints when the store opens.
        # confirmed: 1 once the person said yes to a read-back; reasks / reasked: re-asks of a
        # field, counted and named (' date date time'); fallbacks: replies that did not
        # understand; voice_latency: a JSON list of per-turn reply latencies in ms, from the
        # 'call ended' event (backfilled here from the events that hold one).
        # The KPI indexes cover what the KPI page reads (transcripts/kpis.py), so it reads no row.
        sqlite=(
            "ALTER TABLE conversations ADD COLUMN task TEXT",
            "ALTER TABLE conversations ADD COLUMN tasks TEXT",
            "ALTER TABLE conversations ADD COLUMN confirmed INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE conversations ADD COLUMN reasks INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE conversations ADD COLUMN reasked TEXT NOT NULL DEFAULT ''",
            "ALTER TABLE conversations ADD COLUMN fallbacks INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE conversations ADD COLUMN voice_latency TEXT",
            "UPDATE conversations SET voice_latency = (SELECT json_group_array(" + _LATENCY_SQLITE + ") "
            "FROM events e, json_each(e.metadata, '$.turns') t WHERE e.conversation_id = conversations.id "
            "AND json_extract(e.metadata, '$.event') = 'call ended' AND json_extract(t.value, '$.input') = 'speech' "
            "AND json_extract(t.value, '$.tts_first_audio_ms') IS NOT NULL) WHERE channel = 'voice'",
            "CREATE INDEX conversations_by_task ON conversations (task, started_at)",
            "CREATE INDEX conversations_unmarked ON conversations (id) WHERE tasks IS NULL",
            # Grouped by day (an expression index: the KPI query groups in this order, reading the
            # index in order with no sort), and partial ones for the rows a KPI reads alone.
            "CREATE INDEX conversations_kpis ON conversations (substr(started_at, 1, 10), channel, worker, task, "
            "spec_version, spec_hash, outcome, confirmed, reasks, fallbacks, started_at, updated_at)",
            "CREATE INDEX conversations_voice ON conversations (started_at, worker, channel, task, spec_version, "
            "spec_hash, voice_latency) WHERE voice_latency IS NOT NULL",
            "CREATE INDEX conversations_reasked ON conversations (reasked, started_at, worker) WHERE reasks > 0",
            "CREATE INDEX conversations_rules ON conversations (json_extract(escalation, '$.rule'), started_at, worker) "
            "WHERE escalation IS NOT NULL",
        ),
        postgres=(
            "ALTER TABLE conversations ADD COLUMN task TEXT",
            "ALTER TABLE conversations ADD COLUMN tasks TEXT",
            "ALTER TABLE conversations ADD COLUMN confirmed INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE conversations ADD COLUMN reasks INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE conversations ADD COLUMN reasked TEXT NOT NULL DEFAULT ''",
            "ALTER TABLE conversations ADD COLUMN fallbacks INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE conversations ADD COLUMN voice_latency TEXT",
            "UPDATE conversations c SET voice_latency = (SELECT COALESCE(json_agg(" + _LATENCY_POSTGRES + ")::text, '[]') "
            "FROM events e, jsonb_array_elements(CASE WHEN jsonb_typeof(e.metadata->'turns') = 'array' "
            "THEN e.metadata->'turns' ELSE '[]'::jsonb END) t WHERE e.conversation_id = c.id "
            "AND e.metadata->>'event' = 'call ended' AND t->>'input' = 'speech' "
            "AND t->>'tts_first_audio_ms' IS NOT NULL) WHERE c.channel = 'voice'",
            "CREATE INDEX conversations_by_task ON conversations (task, started_at)",
            "CREATE INDEX conversations_unmarked ON conversations (id) WHERE tasks IS NULL",
            # The KPI query groups 100,000 rows by day, channel, worker, task, version and outcome:
            # without these statistics PostgreSQL expects a group per row and sorts them all on disk
            # (expression statistics: PostgreSQL 14 or later).
            "CREATE STATISTICS conversations_kpi_groups (ndistinct) ON ((started_at AT TIME ZONE 'UTC')::date), "
            "channel, worker, task, outcome FROM conversations",
            "CREATE INDEX conversations_voice ON conversations (started_at, worker, channel, task, spec_version, "
            "spec_hash, voice_latency) WHERE voice_latency IS NOT NULL",
            "CREATE INDEX conversations_reasked ON conversations (reasked, started_at, worker) WHERE reasks > 0",
            "CREATE INDEX conversations_rules ON conversations ((escalation->>'rule'), started_at, worker) "
            "WHERE escalation IS NOT NULL",
        ),
    )
)


MIGRATIONS.append(
    Migration(
        20,
        "review console: labels of values the worker missed (field_labels.kind)",
        # kind 'stored': a verdict on a value the worker stored (migration 15's labels);
        # kind 'missed': a value the person gave that the worker did not store, with the right value
        # and its span in the person's turn (verdict 'wrong', no stored value). Still append-only.
        sqlite=("ALTER TABLE field_labels ADD COLUMN kind TEXT NOT NULL DEFAULT 'stored' "
                "CHECK (kind IN ('stored', 'missed'))",),
        postgres=("ALTER TABLE field_labels ADD COLUMN kind TEXT NOT NULL DEFAULT 'stored' "
                  "CHECK (kind IN ('stored', 'missed'))",),
    )
)
