"""Who may use the operator routes: password hashes, API tokens, a failure limiter, and the
FastAPI dependencies that refuse everyone else.

Operators send HTTP Basic (a user made by `channel-worker users add`) or `Authorization: Bearer`
(a token made by `channel-worker tokens create`). Passwords are hashed with scrypt (salt and
parameters stored with the hash, so they can be raised later without breaking old hashes);
tokens carry 256 random bits, so a SHA-256 of the secret is enough and costs nothing per request.
Every comparison is constant-time, and an unknown user name costs the same scrypt run as a
known one, so timing does not tell which names exist. Failures are counted per client address
and per user name; past the limit the answer is 429 with Retry-After, right password or not.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import logging
import math
import re
import secrets
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from typing import Literal

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBasic, HTTPBasicCredentials, HTTPBearer
from pydantic import BaseModel

from escalation.operators import OperatorStore, Role, role_allows, valid_name

log = logging.getLogger(__name__)

REALM = "channel-worker"
# scrypt: 32 MiB and about 0.1 s per hash on a small server. Stored with each hash.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
_MAX_SCRYPT_N = 2**20  # a stored hash asking for more is refused, not run (it would take the process down)
MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024  # longer is refused before hashing: nobody types that, an attacker might send it
TOKEN_PREFIX = "cwk"
_TOKEN_ID = re.compile(r"^[0-9a-f]{16}$")


# --- passwords ---------------------------------------------------------------------------------

def hash_password(password: str, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """`scrypt$n=..,r=..,p=..$salt$hash` (base64): everything needed to check it later."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, n, r, p)
    return f"scrypt$n={n},r={r},p={p}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    """Whether `password` matches `encoded`; False for a malformed or unsupported hash."""
    try:
        scheme, params, salt_b64, digest_b64 = encoded.split("$")
        values = dict(item.split("=") for item in params.split(","))
        n, r, p = int(values["n"]), int(values["r"]), int(values["p"])
        salt, expected = base64.b64decode(salt_b64), base64.b64decode(digest_b64)
    except (ValueError, KeyError):
        return False
    if scheme != "scrypt" or not (2 <= n <= _MAX_SCRYPT_N and 1 <= r <= 32 and 1 <= p <= 16) or not expected:
        return False
    return hmac.compare_digest(_scrypt(password, salt, n, r, p, len(expected)), expected)


def check_new_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValueError(f"the password must have at most {MAX_PASSWORD_LENGTH} characters")
    return password


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, length: int = 32) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=length,
                          maxmem=256 * r * n * p + 2**20)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@functools.cache
def _dummy_hash() -> str:
    """Checked instead of a real hash for unknown user names: the same work, the same time."""
    return hash_password(secrets.token_urlsafe(16))


# --- API tokens --------------------------------------------------------------------------------

class NewToken(BaseModel):
    id: str
    token: str  # shown once; only secret_hash is stored
    secret_hash: str


def new_token() -> NewToken:
    """`cwk_<id>_<secret>`: the id finds the row, the secret is compared to its stored hash."""
    token_id, secret = uuid.uuid4().hex[:16], secrets.token_urlsafe(32)
    return NewToken(id=token_id, token=f"{TOKEN_PREFIX}_{token_id}_{secret}", secret_hash=_token_hash(secret))


def _token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


_DUMMY_TOKEN_HASH = _token_hash("not a token")


# --- failure limiter ---------------------------------------------------------------------------

class LimitReached(Exception):
    """Refused before any check: the key is locked out, or the limiter has no room for a new key.
    `busy`: locked only by checks still running, which may yet succeed (`acquire` waits for them)."""

    def __init__(self, retry_after: float, busy: bool = False):
        super().__init__(f"retry after {retry_after:.3f} s")
        self.retry_after = retry_after
        self.busy = busy


class Attempt:
    """One check, counted as a failure from the moment it starts; `done(True)` takes it back."""

    def __init__(self, limiter: FailureLimiter, keys: list[str], stamp: float):
        self._limiter, self._keys, self._stamp = limiter, keys, stamp

    def done(self, success: bool) -> None:
        keys, self._keys = self._keys, []  # settled once
        self._limiter._settle(keys, self._stamp, success)


class FailureLimiter:
    """At most `max_failures` failed attempts per key (a client address, a user name) within
    `window` seconds. In memory, per process: with `serve --workers N` each process counts its own.

    An attempt counts from when its check starts, not from when the check has failed: a burst of
    concurrent guesses gets `max_failures` checks, not one each. A caller finding the limit taken
    only by checks still running waits for them (they may succeed and be forgiven) instead of
    being refused. Memory is bounded by `max_keys`; a locked key is never dropped to make room
    (that would unlock it), so when every key is locked, attempts that need a new key are refused
    until the first lock ends."""

    def __init__(self, max_failures: int = 10, window: float = 60.0, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = 10_000):
        self.max_failures = max_failures
        self.window = window
        self.clock = clock
        self.max_keys = max_keys
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()  # least recently active first
        self._running: dict[str, int] = {}  # checks not yet settled, per key
        self._full_until = 0.0  # no room for a new key before this (every key was locked)
        self._settled: asyncio.Event | None = None  # set when a running check settles

    def retry_after(self, key: str) -> float | None:
        """Seconds until `key` may try again, or None if it may try now."""
        times = self._recent(key)
        if times is None or len(times) < self.max_failures:
            return None
        return max(times[-self.max_failures] + self.window - self.clock(), 0.001)

    async def acquire(self, keys: list[str]) -> Attempt:
        """`reserve`, waiting while the limit is taken only by checks still running."""
        while True:
            try:
                return self.reserve(keys)
            except LimitReached as limited:
                if not limited.busy:
                    raise
            if self._settled is None:
                self._settled = asyncio.Event()
            await self._settled.wait()

    def reserve(self, keys: list[str]) -> Attempt:
        """Count an attempt against every key now; raise LimitReached if any key is at its limit
        or there is no room for a key not yet counted."""
        keys = list(dict.fromkeys(keys))
        waits, busy = [], True
        for key in keys:
            wait = self.retry_after(key)
            if wait is not None:
                waits.append(wait)
                busy = busy and len(self._failures[key]) - self._running.get(key, 0) < self.max_failures
        if waits:
            raise LimitReached(max(waits), busy=busy)
        new = sum(1 for key in keys if key not in self._failures)
        if new and len(self._failures) + new > self.max_keys and not self._make_room(new):
            raise LimitReached(max(self._full_until - self.clock(), 0.001))
        stamp = self.clock()
        for key in keys:
            times = self._failures.get(key)
            if times is None:
                times = self._failures[key] = deque()
            else:
                self._failures.move_to_end(key)
            times.append(stamp)
            self._running[key] = self._running.get(key, 0) + 1
        return Attempt(self, keys, stamp)

    def failed(self, key: str) -> None:
        """Record one failed attempt (nothing is recorded for a key already at its limit)."""
        try:
            self.reserve([key]).done(False)
        except LimitReached:
            pass

    def _settle(self, keys: list[str], stamp: float, success: bool) -> None:
        for key in keys:
            running = self._running.pop(key, 0) - 1
            if running > 0:
                self._running[key] = running
            times = self._failures.get(key)
            if success and times is not None and stamp in times:
                times.remove(stamp)
                if not times:
                    del self._failures[key]
        self._full_until = 0.0  # a key may have become free: look again when room is needed
        if self._settled is not None:
            self._settled.set()
            self._settled = None

    def _make_room(self, needed: int) -> bool:
        """Drop expired keys, then the least recently active ones that are neither locked nor
        being checked, down to 90% of max_keys (one sweep pays for many new keys). False if
        what is left leaves no room."""
        now = self.clock()
        if now < self._full_until:
            return False
        target = max(self.max_keys - max(self.max_keys // 10, needed), 0)
        free, lock_ends = [], []
        for key, times in list(self._failures.items()):
            while times and times[0] <= now - self.window:
                times.popleft()
            if not times:
                del self._failures[key]
            elif len(times) >= self.max_failures:
                lock_ends.append(times[-self.max_failures] + self.window)
            elif not self._running.get(key):
                free.append(key)
        for key in free[:max(len(self._failures) - target, 0)]:
            del self._failures[key]
        if len(self._failures) + needed <= self.max_keys:
            return True
        # Until a lock ends (or a running check settles, which resets this), do not sweep again.
        self._full_until = min(lock_ends, default=now)
        return False

    def _recent(self, key: str) -> deque[float] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        horizon = self.clock() - self.window
        while times and times[0] <= horizon:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times


# --- FastAPI dependencies ----------------------------------------------------------------------

class Operator(BaseModel):
    """Who is calling: a user (HTTP Basic) or an API token (Bearer)."""

    name: str
    role: Role
    via: Literal["password", "token"]

    @property
    def audit_name(self) -> str:
        """The name recorded in the queue and the audit trail; tokens are marked as such."""
        return self.name if self.via == "password" else f"token:{self.name}"


_basic = HTTPBasic(realm=REALM, auto_error=False, description="An operator made by `channel-worker users add`.")
_bearer = HTTPBearer(auto_error=False, description="A token made by `channel-worker tokens create`.")
_CHALLENGE = {"WWW-Authenticate": f'Basic realm="{REALM}", charset="UTF-8"'}


class OperatorAuth:
    """`authenticate` and `require_role(role)` as FastAPI dependencies over one operator store."""

    def __init__(self, store: Callable[[], OperatorStore], limiter: FailureLimiter | None = None):
        self.store = store
        self.limiter = limiter or FailureLimiter()
        self.authenticate = self._build_authenticate()

    def require_role(self, role: Role) -> Callable[..., Awaitable[Operator]]:
        async def has_role(operator: Operator = Depends(self.authenticate)) -> Operator:
            if not role_allows(operator.role, role):
                raise HTTPException(403, f"this needs the {role} role; {operator.audit_name} is {operator.role}")
            return operator

        return has_role

    def _build_authenticate(self) -> Callable[..., Awaitable[Operator]]:
        # One function object, so FastAPI runs it once per request however many routes and
        # role checks depend on it.
        async def authenticate(
            request: Request,
            basic: HTTPBasicCredentials | None = Depends(_basic),
            bearer: HTTPAuthorizationCredentials | None = Depends(_bearer),
        ) -> Operator:
            if basic is None and bearer is None:
                raise HTTPException(401, "operator credentials required", headers=_CHALLENGE)
            keys = [f"addr:{request.client.host if request.client else 'unknown'}"]
            if basic is not None and valid_name(basic.username):
                keys.append(f"user:{basic.username}")
            # Counted before the check is awaited, so guesses sent at once cannot all get past
            # the limit while the first ones are still being hashed; forgiven on success. An
            # error in the check counts as a failure.
            try:
                attempt = await self.limiter.acquire(keys)
            except LimitReached as limited:
                raise HTTPException(429, "too many failed attempts; try again later",
                                    headers={"Retry-After": str(math.ceil(limited.retry_after))}) from None
            operator = None
            try:
                operator = await (self._by_password(basic) if basic is not None else self._by_token(bearer.credentials))
            finally:
                attempt.done(operator is not None)
            if operator is None:
                log.warning("operator authentication failed (%s) from %s", f"user {basic.username[:64]!r}" if basic else "token", keys[0][5:])
                raise HTTPException(401, "wrong credentials", headers=_CHALLENGE if basic is not None else
                                    {"WWW-Authenticate": f'Bearer realm="{REALM}", error="invalid_token"'})
            return operator

        return authenticate

    async def check_password(self, client_host: str, username: str, password: str) -> Operator | None:
        """The operator these credentials name, or None: the same constant-cost check as HTTP
        Basic, counted by the same limiter (the review console's login form uses it). Raises
        LimitReached while the address or the name is locked."""
        keys = [f"addr:{client_host}"] + ([f"user:{username}"] if valid_name(username) else [])
        attempt = await self.limiter.acquire(keys)
        operator = None
        try:
            operator = await self._by_password(HTTPBasicCredentials(username=username, password=password))
        finally:
            attempt.done(operator is not None)
        return operator

    async def _by_password(self, basic: HTTPBasicCredentials) -> Operator | None:
        if not valid_name(basic.username) or len(basic.password) > MAX_PASSWORD_LENGTH:
            return None  # no such user can exist: nothing to time
        found = await self.store().password_hash(basic.username)
        encoded = found[0] if found else _dummy_hash()
        # scrypt takes a tenth of a second of CPU: off the event loop.
        matches = await asyncio.to_thread(verify_password, basic.password, encoded)
        if not (matches and found):
            return None
        return Operator(name=basic.username, role=found[1], via="password")

    async def _by_token(self, token: str) -> Operator | None:
        prefix, _, rest = token.partition("_")
        token_id, _, secret = rest.partition("_")
        if prefix != TOKEN_PREFIX or not _TOKEN_ID.fullmatch(token_id) or not secret:
            return None
        found = await self.store().token(token_id)
        matches = hmac.compare_digest(_token_hash(secret), found[1] if found else _DUMMY_TOKEN_HASH)
        if not (matches and found):
            return None
        return Operator(name=found[0], role=found[2], via="token")
