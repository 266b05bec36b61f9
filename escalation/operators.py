"""The people (and programs) allowed to work the human queue: operator accounts and API tokens.

Only hashes are stored: a password hash with its own salt and parameters (worker/operator_auth.py
makes and checks them) and the SHA-256 of an API token's secret. Roles are ordered: a viewer
sees the queue list and figures, a reviewer also reads packets and conversations and moves
handoffs, an admin may do everything.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel

from storage.clock import utcnow
from storage.db import Database

Role = Literal["viewer", "reviewer", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "reviewer", "admin")

# Names end up in the queue (claimed_by), the audit trail and pages people read: short, plain,
# no markup. The same rule holds for user names, token names and `queue claim --by`.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


class OperatorError(Exception):
    """An operator or token that cannot be created or removed; the message says why."""


def valid_name(name: str) -> bool:
    return bool(NAME_PATTERN.fullmatch(name))


def valid_operator_id(identity: str) -> bool:
    """A name as the queue and the audit trail record it: a user's name, or `token:NAME`."""
    return valid_name(identity.removeprefix("token:"))


def check_name(name: str, what: str = "name") -> str:
    if not valid_name(name):
        raise OperatorError(f"{what} {name[:80]!r} is not allowed: 1-64 letters, digits or . _ @ -, starting with a letter or digit")
    return name


def role_allows(role: str, needed: Role) -> bool:
    """Whether `role` includes everything `needed` may do."""
    return role in ROLES and ROLES.index(role) >= ROLES.index(needed)  # type: ignore[arg-type]


class OperatorAccount(BaseModel):
    name: str
    role: Role
    created_at: str


class ApiToken(BaseModel):
    id: str  # public: the part of the token used to find it; the secret is only hashed
    name: str
    role: Role
    created_at: str


class OperatorStore:
    """The `operators` and `api_tokens` tables (migration 7)."""

    def __init__(self, db: Database):
        self.db = db

    async def add_user(self, name: str, role: Role, password_hash: str, replace: bool = False) -> None:
        check_name(name, "user name")
        if role not in ROLES:
            raise OperatorError(f"role {role!r} is not one of {', '.join(ROLES)}")
        now = utcnow()
        if replace:
            changed = await self.db.execute_count(
                "UPDATE operators SET role = ?, password_hash = ?, updated_at = ? WHERE name = ?",
                (role, password_hash, now, name),
            )
            if changed:
                return
        inserted = await self.db.execute_count(
            "INSERT INTO operators (name, role, password_hash, created_at, updated_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (name) DO NOTHING",
            (name, role, password_hash, now, now),
        )
        if not inserted:
            raise OperatorError(f"user {name} exists; use --replace to set a new password or role")

    async def password_hash(self, name: str) -> tuple[str, Role] | None:
        row = await self.db.fetchone("SELECT role, password_hash FROM operators WHERE name = ?", (name,))
        return (row["password_hash"], row["role"]) if row else None

    async def users(self) -> list[OperatorAccount]:
        rows = await self.db.fetchall("SELECT name, role, created_at FROM operators ORDER BY name")
        return [OperatorAccount(**r) for r in rows]

    async def remove_user(self, name: str) -> None:
        if not await self.db.execute_count("DELETE FROM operators WHERE name = ?", (name,)):
            raise OperatorError(f"no user {name}")

    async def add_token(self, token_id: str, name: str, role: Role, secret_hash: str) -> None:
        check_name(name, "token name")
        if role not in ROLES:
            raise OperatorError(f"role {role!r} is not one of {', '.join(ROLES)}")
        inserted = await self.db.execute_count(
            "INSERT INTO api_tokens (id, name, role, secret_hash, created_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (name) DO NOTHING",
            (token_id, name, role, secret_hash, utcnow()),
        )
        if not inserted:
            raise OperatorError(f"a token named {name} exists; revoke it first")

    async def token(self, token_id: str) -> tuple[str, str, Role] | None:
        """(name, secret hash, role) of the token with this public id."""
        row = await self.db.fetchone("SELECT name, role, secret_hash FROM api_tokens WHERE id = ?", (token_id,))
        return (row["name"], row["secret_hash"], row["role"]) if row else None

    async def tokens(self) -> list[ApiToken]:
        rows = await self.db.fetchall("SELECT id, name, role, created_at FROM api_tokens ORDER BY name")
        return [ApiToken(**r) for r in rows]

    async def revoke_token(self, name: str) -> None:
        # Deleted, not flagged: a revoked token must never authenticate again, and nothing needs it.
        if not await self.db.execute_count("DELETE FROM api_tokens WHERE name = ?", (name,)):
            raise OperatorError(f"no token named {name}")
