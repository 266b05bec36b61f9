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
from storage.db import Database, Statement, WriteConflict

Role = Literal["viewer", "reviewer", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "reviewer", "admin")

# Names end up in the queue (claimed_by), the audit trail and pages people read: short, plain,
# no markup. The same rule holds for user names, token names and `queue claim --by`.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


class OperatorError(Exception):
    """An operator or token that cannot be created or removed; the message says why."""


class LastAdmin(OperatorError):
    """The change would leave no admin: nobody could manage users from the review console."""


# A change may take the admin role from its user only while another admin remains. With the
# admins' rows locked first (PostgreSQL; SQLite writers are serial), two admins demoting each
# other at once cannot both pass.
_KEEPS_AN_ADMIN = "(role <> 'admin' OR (SELECT COUNT(*) FROM operators a WHERE a.role = 'admin') > 1)"
# A user's review console sessions (escalation/review_sessions.py) end with every change to the user.
_END_SESSIONS = "DELETE FROM review_sessions WHERE operator = ?"


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

    async def create_user(self, name: str, role: Role, password_hash: str, also: list[Statement] | None = None) -> None:
        """A new user (never replacing one), with `also` (an audit row) in the same transaction.
        Sessions left under the name (a user removed before this rule) end, not revive."""
        check_name(name, "user name")
        if role not in ROLES:
            raise OperatorError(f"role {role!r} is not one of {', '.join(ROLES)}")
        now = utcnow()
        try:
            await self.db.batch([
                ("INSERT INTO operators (name, role, password_hash, created_at, updated_at) VALUES (?, ?, ?, ?, ?) "
                 "ON CONFLICT (name) DO NOTHING", (name, role, password_hash, now, now)),
                (_END_SESSIONS, (name,)), *(also or [])], guard=0)
        except WriteConflict:
            raise OperatorError(f"user {name} exists") from None

    async def password_hash(self, name: str) -> tuple[str, Role] | None:
        row = await self.db.fetchone("SELECT role, password_hash FROM operators WHERE name = ?", (name,))
        return (row["password_hash"], row["role"]) if row else None

    async def users(self) -> list[OperatorAccount]:
        rows = await self.db.fetchall("SELECT name, role, created_at FROM operators ORDER BY name")
        return [OperatorAccount(**r) for r in rows]

    async def remove_user(self, name: str, keep_an_admin: bool = False, also: list[Statement] | None = None) -> None:
        """Remove a user and end their review console sessions (a user added later under the same
        name must not inherit them). `keep_an_admin`: refuse to remove the last admin. `also`:
        statements (an audit row) committed in the same transaction."""
        condition = f" AND {_KEEPS_AN_ADMIN}" if keep_an_admin else ""
        await self._change(name, [("DELETE FROM operators WHERE name = ?" + condition, (name,))], also,
                           f"{name} is the last admin; make another user admin first")

    async def change_user(self, name: str, role: Role | None = None, password_hash: str | None = None,
                          keep_an_admin: bool = True, also: list[Statement] | None = None) -> None:
        """A new role and/or password for an existing user; their review console sessions end (as
        `users add --replace` does). `keep_an_admin`: refuse to demote the last admin."""
        if role is not None and role not in ROLES:
            raise OperatorError(f"role {role!r} is not one of {', '.join(ROLES)}")
        sets: list[str] = ["updated_at = ?"]
        params: list[object] = [utcnow()]
        if role is not None:
            sets.append("role = ?")
            params.append(role)
        if password_hash is not None:
            sets.append("password_hash = ?")
            params.append(password_hash)
        condition = ""
        if role is not None and role != "admin" and keep_an_admin:
            condition = f" AND {_KEEPS_AN_ADMIN}"
        update = (f"UPDATE operators SET {', '.join(sets)} WHERE name = ?{condition}", [*params, name])
        await self._change(name, [update], also, f"{name} is the last admin; make another user admin first")

    async def _change(self, name: str, statements: list[Statement], also: list[Statement] | None, last_admin: str) -> None:
        lock: list[Statement] = (
            [("SELECT name FROM operators WHERE role = 'admin' FOR UPDATE", ())] if self.db.dialect == "postgres" else [])
        try:
            await self.db.batch([*lock, *statements, (_END_SESSIONS, (name,)), *(also or [])], guard=len(lock))
        except WriteConflict:
            if await self.password_hash(name) is None:
                raise OperatorError(f"no user {name}") from None
            raise LastAdmin(last_admin) from None

    async def admins(self) -> int:
        row = await self.db.fetchone("SELECT COUNT(*) AS n FROM operators WHERE role = 'admin'")
        return int(row["n"]) if row else 0

    async def add_token(self, token_id: str, name: str, role: Role, secret_hash: str,
                        also: list[Statement] | None = None) -> None:
        """`also`: statements (an audit row) committed in the same transaction."""
        check_name(name, "token name")
        if role not in ROLES:
            raise OperatorError(f"role {role!r} is not one of {', '.join(ROLES)}")
        try:
            await self.db.batch([
                ("INSERT INTO api_tokens (id, name, role, secret_hash, created_at) VALUES (?, ?, ?, ?, ?) "
                 "ON CONFLICT (name) DO NOTHING", (token_id, name, role, secret_hash, utcnow())),
                *(also or [])], guard=0)
        except WriteConflict:
            raise OperatorError(f"a token named {name} exists; revoke it first") from None

    async def token(self, token_id: str) -> tuple[str, str, Role] | None:
        """(name, secret hash, role) of the token with this public id."""
        row = await self.db.fetchone("SELECT name, role, secret_hash FROM api_tokens WHERE id = ?", (token_id,))
        return (row["name"], row["secret_hash"], row["role"]) if row else None

    async def tokens(self) -> list[ApiToken]:
        rows = await self.db.fetchall("SELECT id, name, role, created_at FROM api_tokens ORDER BY name")
        return [ApiToken(**r) for r in rows]

    async def revoke_token(self, name: str, also: list[Statement] | None = None) -> None:
        # Deleted, not flagged: a revoked token must never authenticate again, and nothing needs it.
        try:
            await self.db.batch([("DELETE FROM api_tokens WHERE name = ?", (name,)), *(also or [])], guard=0)
        except WriteConflict:
            raise OperatorError(f"no token named {name}") from None
