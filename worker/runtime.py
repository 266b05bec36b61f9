"""Composition root: a spec plus settings become a running engine with its stores."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from dialogue.engine import DialogueEngine
from dialogue.spec import WorkerSpec
from escalation.handoff import Handoffs
from escalation.notify import Notifier
from transcripts.store import TranscriptStore
from worker.config import Settings
from worker.extraction_setup import build_extractor
from worker.rollout import SpecRollout, check_candidate
from storage.db import Database
from worker.settings import WorkerSettings
from worker.supervisor import Supervisor

log = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def open_engine(spec: WorkerSpec, settings: Settings | None = None,
                      env: WorkerSettings | None = None,
                      action_env: Mapping[str, str] | None = None) -> AsyncIterator[DialogueEngine]:
    """`action_env`: where the actions' ${VAR}s are read (the process environment when None)."""
    env = env or WorkerSettings.from_env()
    settings = settings or env.config()
    store = await TranscriptStore.open(settings.transcripts_url)
    try:
        async with engine_over(spec, store, env, action_env) as engine:
            yield engine
    finally:
        await store.close()


@contextlib.asynccontextmanager
async def engine_over(spec: WorkerSpec, store: TranscriptStore, env: WorkerSettings,
                      action_env: Mapping[str, str] | None = None) -> AsyncIterator[DialogueEngine]:
    """An engine for `spec` over an open store (two specs share one store under `serve --candidate`)."""
    notifier = Notifier(store.db, env.smtp_settings())
    handoffs = Handoffs(spec, store, notifier, public_base_url=env.twilio.public_base_url)
    engine = DialogueEngine(spec, store, extractor=build_extractor(spec, env), handoffs=handoffs,
                            action_env=action_env)
    try:
        yield engine
    finally:
        if engine.actions is not None:
            await engine.actions.aclose()


@dataclass
class Runtime:
    """Everything a running worker holds, built once here and handed on: the engine (the core
    channels talk to, through `channels.seam.Conversations`), its stores, the human queue and its
    notifier, the settings, and the supervised loops. Satisfies `channels.seam.ChannelRuntime`."""

    engine: DialogueEngine
    settings: WorkerSettings
    loops: Supervisor
    delivery_interval: float = 1.0
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    # serve --candidate: the two specs' engines, each conversation on the spec it started with.
    rollout: SpecRollout | None = None

    @property
    def conversations(self) -> DialogueEngine | SpecRollout:
        return self.rollout or self.engine

    @property
    def store(self) -> TranscriptStore:
        return self.engine.store

    @property
    def db(self) -> Database:
        return self.engine.store.db

    @property
    def handoffs(self) -> Handoffs:
        return self.engine.handoffs

    @property
    def notifier(self) -> Notifier:
        return self.engine.handoffs.notifier

    def on_close(self, closer: Callable[[], Awaitable[None]]) -> None:
        self.closers.append(closer)

    async def close(self) -> None:
        """Stop the loops, then run the closers, last registered first."""
        await self.loops.stop()
        while self.closers:
            closer = self.closers.pop()
            try:
                await closer()
            except Exception:
                log.exception("closing %r failed", closer)


@contextlib.asynccontextmanager
async def open_runtime(spec: WorkerSpec, settings: Settings | None = None, env: WorkerSettings | None = None,
                       delivery_interval: float = 1.0, candidate: WorkerSpec | None = None,
                       share: float = 0.0) -> AsyncIterator[Runtime]:
    """`candidate`: a second spec run for `share` percent of new conversations (worker/rollout.py)."""
    env = env or WorkerSettings.from_env()
    if candidate is not None:
        check_candidate(spec, candidate)
    async with open_engine(spec, settings or env.config(), env=env) as engine:
        async with contextlib.AsyncExitStack() as stack:
            rollout = None
            if candidate is not None:
                other = await stack.enter_async_context(engine_over(candidate, engine.store, env))
                rollout = SpecRollout(engine, other, share)
            runtime = Runtime(engine=engine, settings=env, loops=Supervisor(), delivery_interval=delivery_interval,
                              rollout=rollout)
            try:
                yield runtime
            finally:
                await runtime.close()
