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

class FailureLimiter:
    """At most `max_failures` failed attempts per key (a client address, a user name) within
    `window` seconds. In memory, per process: with `serve --workers N` each process counts its own."""

    def __init__(self, max_failures: int = 10, window: float = 60.0, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = 10_000):
        self.max_failures = max_failures
        self.window = window
        self.clock = clock
        self.max_keys = max_keys  # bounded memory whatever names and addresses an attacker sends
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, key: str) -> float | None:
        """Seconds until `key` may try again, or None if it may try now."""
        times = self._recent(key)
        if times is None or len(times) < self.max_failures:
            return None
        return max(times[-self.max_failures] + self.window - self.clock(), 0.001)

    def failed(self, key: str) -> None:
        times = self._recent(key)
        if times is None:
            times = self._failures[key] = deque(maxlen=self.max_failures)
            while len(self._failures) > self.max_keys:
                self._failures.popitem(last=False)
        else:
            self._failures.move_to_end(key)
        times.append(self.clock())

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
            waits = [w for w in map(self.limiter.retry_after, keys) if w is not None]
            if waits:
                raise HTTPException(429, "too many failed attempts; try again later",
                                    headers={"Retry-After": str(math.ceil(max(waits)))})
            operator = await (self._by_password(basic) if basic is not None else self._by_token(bearer.credentials))
            if operator is None:
                for key in keys:
                    self.limiter.failed(key)
                log.warning("operator authentication failed (%s) from %s", f"user {basic.username[:64]!r}" if basic else "token", keys[0][5:])
                raise HTTPException(401, "wrong credentials", headers=_CHALLENGE if basic is not None else
                                    {"WWW-Authenticate": f'Bearer realm="{REALM}", error="invalid_token"'})
            return operator

        return authenticate

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
