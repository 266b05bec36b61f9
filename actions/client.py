"""Run one action: fill in its request, send it with retries, read the answer through its
declared schema, and store the result so a turn that runs again does not call twice.

Every attempt of a call carries the same `Idempotency-Key`, derived from the conversation id and
the step id, so the business's system can recognise a repeat (after a timeout whose request did
arrive, or a crash between the answer and our storing it). Once a result is stored, a re-run of
the same step returns it without any request at all.

The caller never sees an exception: every failure comes back as an `ActionError` of a named
kind, and success only ever carries values the schema declares.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
from collections.abc import Mapping
from typing import Any, Literal

import aiohttp
from pydantic import BaseModel, Field
from yarl import URL

from actions import templating
from actions.schema import SchemaViolation, named, read, to_json
from actions.spec import ActionSpec
from storage.clock import utcnow
from storage.db import Database

log = logging.getLogger(__name__)

ErrorKind = Literal[
    "timeout",          # no answer within `timeout`, on the last attempt
    "unreachable",      # no connection (refused, DNS, reset), on the last attempt
    "server_error",     # 5xx or 429 on the last attempt
    "rejected",         # another non-2xx answer (4xx): not retried, the request itself is refused
    "malformed_json",   # a 2xx answer that is not JSON
    "schema_violation", # JSON outside the declared result schema
    "too_large",        # an answer over MAX_RESPONSE_BYTES
    "configuration",    # the request could not be made: a ${VAR} not set, a URL that is not one
]
MAX_RESPONSE_BYTES = 1024 * 1024
_RETRIED = {"timeout", "unreachable", "server_error"}


class ActionError(BaseModel):
    kind: ErrorKind
    message: str
    status_code: int | None = None


class ActionOutcome(BaseModel):
    """What one call gave: `results` (named, typed) when ok, `error` when not; never both."""

    action: str
    step_id: str
    idempotency_key: str
    ok: bool
    results: dict[str, Any] = Field(default_factory=dict, description="availability.available -> True ...")
    error: ActionError | None = None
    status_code: int | None = None
    attempts: int = 0
    reused: bool = Field(False, description="True: the stored result of an earlier run, no request made.")

    def json_results(self) -> dict[str, Any]:
        """`results` with dates and times as ISO text, for a checkpoint or a JSON line."""
        return to_json(self.results)


def idempotency_key(conversation_id: str, step_id: str) -> str:
    """The same for every attempt and every re-run of one step of one conversation; says nothing
    about the conversation to the receiver (a hash, not the id)."""
    digest = hashlib.sha256(f"{conversation_id}\x1f{step_id}".encode()).hexdigest()
    return f"cw-{digest[:40]}"


class _Request(BaseModel):
    method: str
    url: str
    headers: dict[str, str]
    body: Any = None


class _Failed(Exception):
    def __init__(self, error: ActionError, attempts: int = 0):
        super().__init__(error.message)
        self.error = error
        self.attempts = attempts


class ActionClient:
    """Runs actions over one pooled HTTP client; results stored in `action_results`.

    `env` is where `${VAR}`s are read (the process environment by default).

    The client is aiohttp's: with a few hundred calls in flight (300 SMS a second, each
    conversation checking and booking), httpx's connection pool spent 72 % of the server's CPU
    matching queued requests to connections (bench/sms.py, py-spy)."""

    def __init__(self, db: Database, env: Mapping[str, str] | None = None):
        self.db = db
        self._env = env
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        # Made on first use: a session belongs to the event loop it was made in.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers={"User-Agent": "channel-worker"}, connector=aiohttp.TCPConnector(limit=100),
                timeout=aiohttp.ClientTimeout(total=None))  # each attempt is bounded by asyncio.timeout
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def __aenter__(self) -> ActionClient:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    async def run(self, action: ActionSpec, *, conversation_id: str, step_id: str,
                  values: Mapping[str, Any]) -> ActionOutcome:
        """Call `action` for one step of one conversation. `values` are the fields, extras and
        earlier results its templates name. A step that runs again on purpose (the person asks
        for another time) needs a new `step_id`, such as `book.check#2`."""
        key = idempotency_key(conversation_id, step_id)
        stored = await self._stored(action, conversation_id, step_id, key)
        if stored is not None:
            return stored
        try:
            request = self._request(action, {**values, "conversation_id": conversation_id}, key)
            status, results, attempts = await self._send(action, request)
        except _Failed as failed:
            outcome = ActionOutcome(action=action.name, step_id=step_id, idempotency_key=key, ok=False,
                                    error=failed.error, status_code=failed.error.status_code,
                                    attempts=failed.attempts)
            await self._store(conversation_id, outcome, None)
            return outcome
        except Exception as exc:  # noqa: BLE001 - never into the turn; a bug here is still an error, not a success
            log.exception("action %s failed unexpectedly", action.name)
            outcome = ActionOutcome(action=action.name, step_id=step_id, idempotency_key=key, ok=False,
                                    error=ActionError(kind="configuration", message=f"{type(exc).__name__}: {exc}"))
            await self._store(conversation_id, outcome, None)
            return outcome
        typed, response = results
        outcome = ActionOutcome(action=action.name, step_id=step_id, idempotency_key=key, ok=True, status_code=status,
                                results=named(action.name, typed, action.result) if action.result else {},
                                attempts=attempts)
        if await self._store(conversation_id, outcome, response):
            return outcome
        # Two runs of one step at once (two processes): the first result stored is the result,
        # so every run goes on with the same values.
        winner = await self._stored(action, conversation_id, step_id, key)
        if winner is not None and winner.results != outcome.results:
            return winner
        return outcome

    def _request(self, action: ActionSpec, values: Mapping[str, Any], key: str) -> _Request:
        env = os.environ if self._env is None else self._env
        try:
            url = templating.fill_text(action.url, values, env, encode=True)
            headers = {name: templating.fill_text(v, values, env) for name, v in action.headers.items()}
            body = templating.fill_body(action.body, values, env) if action.body is not None else None
            headers["Idempotency-Key"] = key
            if action.result is not None:
                headers.setdefault("Accept", "application/json")
            parsed = URL(url)
            if parsed.scheme not in ("http", "https") or not parsed.host:
                raise ValueError(f"not an http(s) URL: {url[:200]!r}")
            return _Request(method=action.method, url=url, headers=headers, body=body)
        except (templating.MissingEnvironment, ValueError, TypeError) as exc:
            raise _Failed(ActionError(kind="configuration", message=str(exc))) from None

    async def _send(self, action: ActionSpec, request: _Request) -> tuple[int, tuple[Any, Any], int]:
        """(status, (typed result, its JSON form), attempts); raises _Failed with attempts counted."""
        attempt = 0
        while True:
            attempt += 1
            try:
                # The timeout bounds the whole attempt, however slowly the answer trickles in.
                async with asyncio.timeout(action.timeout):
                    status, content = await self._exchange(request)
                error = self._status_error(status)
                if error is None:
                    return status, self._read(action, status, content), attempt
            except TimeoutError:  # aiohttp's own timeouts are TimeoutErrors too
                error = ActionError(kind="timeout", message=f"no answer within {action.timeout:g} s")
            except aiohttp.InvalidURL as exc:
                raise _Failed(ActionError(kind="configuration", message=f"not a URL: {exc}"), attempt) from None
            except (aiohttp.ClientError, OSError) as exc:
                error = ActionError(kind="unreachable", message=f"{type(exc).__name__}: {exc}"[:300])
            except _Failed as failed:
                failed.attempts = attempt
                raise
            if error.kind not in _RETRIED or attempt > action.retries:
                if attempt > 1:
                    error.message += f" (after {attempt} attempts)"
                raise _Failed(error, attempt)
            delay = action.backoff * (2 ** (attempt - 1))
            log.info("action %s: %s; attempt %s of %s in %.2f s", action.name, error.message, attempt + 1,
                     action.retries + 1, delay)
            await asyncio.sleep(delay)

    async def _exchange(self, request: _Request) -> tuple[int, bytes]:
        """Send once; the status and at most MAX_RESPONSE_BYTES of the answer."""
        # As filled in (the templates encode each value): yarl would otherwise re-quote it.
        async with self._http().request(request.method, URL(request.url, encoded=True), headers=request.headers,
                                        json=request.body, allow_redirects=False) as response:
            if not 200 <= response.status < 300:
                return response.status, b""
            chunks, size = [], 0
            async for chunk in response.content.iter_chunked(65536):
                size += len(chunk)
                if size > MAX_RESPONSE_BYTES:
                    raise _Failed(ActionError(kind="too_large", status_code=response.status,
                                              message=f"the answer is over {MAX_RESPONSE_BYTES // 1024} KiB"))
                chunks.append(chunk)
            return response.status, b"".join(chunks)

    @staticmethod
    def _status_error(code: int) -> ActionError | None:
        if 200 <= code < 300:
            return None
        kind: ErrorKind = "server_error" if code >= 500 or code == 429 else "rejected"
        return ActionError(kind=kind, message=f"the system answered {code}", status_code=code)

    @staticmethod
    def _read(action: ActionSpec, status: int, content: bytes) -> tuple[Any, Any]:
        if action.result is None:
            return {}, None
        try:
            data = json.loads(content)
        except ValueError as exc:
            raise _Failed(ActionError(kind="malformed_json", status_code=status,
                                      message=f"the answer is not JSON ({exc})")) from None
        try:
            typed = read(data, action.result)
        except SchemaViolation as exc:
            raise _Failed(ActionError(kind="schema_violation", message=str(exc), status_code=status)) from None
        return typed, to_json(typed)

    async def _stored(self, action: ActionSpec, conversation_id: str, step_id: str, key: str) -> ActionOutcome | None:
        try:
            row = await self.db.fetchone(
                "SELECT status, http_status, response, attempts FROM action_results "
                "WHERE conversation_id = ? AND step_id = ? AND status = 'ok'",
                (conversation_id, step_id), ("response",))
        except Exception:  # noqa: BLE001 - without the store, the key still keeps the call to one effect
            log.exception("action %s: reading the stored result failed; calling with the same key", action.name)
            return None
        if row is None:
            return None
        base = dict(action=action.name, step_id=step_id, idempotency_key=key, status_code=row["http_status"],
                    attempts=row["attempts"], reused=True)
        if action.result is None:
            return ActionOutcome(ok=True, **base)
        try:
            # Read again through today's schema: the stored form is JSON, the results are typed.
            typed = read(row["response"], action.result)
        except SchemaViolation as exc:
            return ActionOutcome(ok=False, error=ActionError(kind="schema_violation", message=f"stored result: {exc}"),
                                 **base)
        return ActionOutcome(ok=True, results=named(action.name, typed, action.result), **base)

    async def _store(self, conversation_id: str, outcome: ActionOutcome, response: Any) -> bool:
        """Store the outcome; an ok row is never replaced (the first result stored is the result).
        True when this outcome is the one stored (no other run's ok result was there first)."""
        now = utcnow()
        status = "ok" if outcome.ok else "error"
        error = outcome.error.model_dump() if outcome.error else None
        try:
            changed = await self.db.execute_count(
                "INSERT INTO action_results (conversation_id, step_id, action, idempotency_key, status, http_status, "
                "response, error, attempts, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, J?, J?, ?, ?, ?) "
                "ON CONFLICT (conversation_id, step_id) DO UPDATE SET status = excluded.status, "
                "http_status = excluded.http_status, response = excluded.response, error = excluded.error, "
                "attempts = action_results.attempts + excluded.attempts, updated_at = excluded.updated_at "
                "WHERE action_results.status <> 'ok'",
                (conversation_id, outcome.step_id, outcome.action, outcome.idempotency_key, status,
                 outcome.status_code, response, error, outcome.attempts, now, now),
            )
            return changed > 0
        except Exception:  # noqa: BLE001 - the call happened; a re-run repeats it under the same key
            log.exception("action %s: storing the result failed", outcome.action)
            return False


async def stored_results(db: Database, conversation_id: str) -> list[dict[str, Any]]:
    """Every stored call of a conversation, oldest first (for `chat --json` and the review UI)."""
    return await db.fetchall(
        "SELECT step_id, action, status, http_status, response, error, attempts, created_at, updated_at "
        "FROM action_results WHERE conversation_id = ? ORDER BY created_at, step_id",
        (conversation_id,), ("response", "error"))
