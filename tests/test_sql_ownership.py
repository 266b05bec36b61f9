"""Every SQL statement lives in the package that owns its table.

A table belongs to the package whose store reads and writes it; another package asks that store
(a method), never runs its own SQL on the table, so a column can change in one place. Migrations
are the exception by design: one numbered ledger for every table in storage/migrations.py.

The scan reads every string constant in our packages (f-strings too) and finds the tables named
after FROM, JOIN, INTO or UPDATE.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from storage.migrations import MIGRATIONS

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("worker", "channels", "dialogue", "actions", "escalation", "extraction", "transcripts", "storage")

# Table -> the package (or sub-package) that owns it.
OWNER: dict[str, str] = {
    "conversations": "transcripts",
    "events": "transcripts",
    "retention_purged": "transcripts",
    "retention_purging": "transcripts",
    "checkpoints": "storage",
    "checkpoint_writes": "storage",
    "schema_migrations": "storage",
    "handoffs": "escalation",
    "notifications": "escalation",
    "audit": "escalation",
    "operators": "escalation",
    "api_tokens": "escalation",
    "sms_messages": "channels.sms",
    "sms_outbox": "channels.sms",
    "sms_optouts": "channels.sms",
    "email_messages": "channels.email",
    "email_outbox": "channels.email",
    "email_cursor": "channels.email",
    "voice_calls": "channels.voice",
    "action_results": "actions",
    "outcome_deliveries": "actions",
    "review_sessions": "escalation",
    "field_labels": "transcripts",
}

# Known and named: module -> tables it may still touch against ownership.
# - retention purges a conversation with every row of it in one transaction, table by table;
#   transcripts/ sits below the owners' packages and cannot call their stores.
# - the JSON export carries the conversation's audit trail; the audit reader is in escalation/,
#   above transcripts/.
EXCEPTIONS: dict[str, set[str]] = {
    "transcripts.retention": set(OWNER) - {"conversations", "events", "retention_purged", "retention_purging"},
    "transcripts.export": {"audit"},
    "storage.migrations": set(OWNER),
}

_TABLE = re.compile(r"\b(?:FROM|JOIN|INTO|UPDATE)\s+([a-z_]+)\b")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def tables_named(source: str) -> set[str]:
    """Tables of ours named in the SQL of a module's string constants (an f-string's literal
    parts are read joined, so `f"SELECT * FROM handoffs{where}"` counts)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.JoinedStr):
            text = "".join(v.value if isinstance(v, ast.Constant) and isinstance(v.value, str) else " "
                           for v in node.values)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
        else:
            continue
        found |= {t for t in _TABLE.findall(text) if t in OWNER}
    return found


def owns(module: str, table: str) -> bool:
    owner = OWNER[table]
    return module == owner or module.startswith(owner + ".")


def trespasses() -> list[str]:
    problems = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            module = module_name(path)
            for table in sorted(tables_named(path.read_text(encoding="utf-8"))):
                if not owns(module, table) and table not in EXCEPTIONS.get(module, set()):
                    problems.append(f"{module} runs SQL on {table}, which belongs to {OWNER[table]}")
    return problems


def test_the_scan_finds_tables_in_plain_and_formatted_sql() -> None:
    source = (
        'a = "SELECT outcome FROM conversations WHERE id = ?"\n'
        'b = f"SELECT * FROM handoffs{where} ORDER BY id"\n'
        'c = "UPDATE sms_outbox SET state = ?"\n'
        'd = "the audit table refuses UPDATE and DELETE"\n'
    )
    assert tables_named(source) == {"conversations", "handoffs", "sms_outbox"}


def test_every_table_has_an_owner() -> None:
    created = {m for migration in MIGRATIONS for sql in migration.sqlite
               for m in re.findall(r"CREATE TABLE (?:IF NOT EXISTS )?([a-z_]+)", sql)}
    # SQLite cannot change a constraint in place: a table is rebuilt under another name, then renamed.
    rebuilt = {m for migration in MIGRATIONS for sql in migration.sqlite
               for m in re.findall(r"ALTER TABLE ([a-z_]+) RENAME TO", sql)}
    assert created - rebuilt - set(OWNER) == set(), "tables with no owner in OWNER"


def test_no_package_runs_sql_on_another_packages_tables() -> None:
    problems = trespasses()
    assert not problems, "SQL outside the package that owns its table:\n  " + "\n  ".join(problems)
