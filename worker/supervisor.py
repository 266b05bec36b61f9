"""Keep the worker's long-running loops (the email inbox, the SMS and notification outboxes)
running: each is a named coroutine factory, run again after it crashes, with exponential
backoff capped at `cap` seconds. A loop that is down is visible: `/healthz` reads `unhealthy()`
and answers 503 with its name until the loop runs again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone

from pydantic import BaseModel

log = logging.getLogger(__name__)

Factory = Callable[[], Awaitable[None]]


class TaskHealth(BaseModel):
    name: str
    running: bool = False
    restarts: int = 0
    last_error: str | None = None
    down_since: datetime | None = None


class Supervisor:
    def __init__(self, base: float = 1.0, cap: float = 30.0):
        self.base, self.cap = base, cap
        self.health: dict[str, TaskHealth] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def start(self, name: str, factory: Factory) -> asyncio.Task[None]:
        """Run `factory()` under `name` until `stop()`; a crash or an unexpected return restarts it."""
        if name in self._tasks:
            raise ValueError(f"a task named {name!r} is supervised already")
        self.health[name] = TaskHealth(name=name)
        task = asyncio.create_task(self._keep_running(name, factory), name=f"supervised:{name}")
        self._tasks[name] = task
        return task

    def unhealthy(self) -> list[str]:
        return sorted(name for name, h in self.health.items() if not h.running)

    async def _keep_running(self, name: str, factory: Factory) -> None:
        health = self.health[name]
        delay = self.base
        loop = asyncio.get_running_loop()
        this = asyncio.current_task()
        assert this is not None
        while True:
            health.running, health.down_since = True, None
            started = loop.time()
            failure: Exception | None = None
            try:
                await factory()
                error = "returned"
            except asyncio.CancelledError:
                health.running = False
                raise
            except Exception as exc:  # anything: the point is that the channel comes back
                failure, error = exc, f"{type(exc).__name__}: {exc}"[:500]
            health.running, health.down_since, health.last_error = False, datetime.now(timezone.utc), error
            if this.cancelling():
                # Cancelled while the task was finishing anyway: a library's wait_for (Python
                # 3.11's included) can swallow the CancelledError. Stopping is still what was asked.
                raise asyncio.CancelledError
            # A task that ran well for a while before failing starts again after the short delay.
            if loop.time() - started > self.cap:
                delay = self.base
            log.error("supervised task %s stopped (%s); restarting it in %.1f s", name, error, delay, exc_info=failure)
            await asyncio.sleep(delay)
            health.restarts += 1
            delay = min(self.cap, delay * 2)

    async def stop(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        for task in self._tasks.values():
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
