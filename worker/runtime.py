"""Composition root: a spec plus settings become a running engine with its stores."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from dialogue.engine import DialogueEngine
from dialogue.spec import WorkerSpec
from escalation.handoff import Handoffs
from escalation.notify import Notifier
from transcripts.store import TranscriptStore
from worker.config import Settings
from worker.extraction_setup import build_extractor
from worker.settings import WorkerSettings


@contextlib.asynccontextmanager
async def open_engine(spec: WorkerSpec, settings: Settings | None = None,
                      env: WorkerSettings | None = None) -> AsyncIterator[DialogueEngine]:
    env = env or WorkerSettings.from_env()
    settings = settings or env.config()
    store = await TranscriptStore.open(settings.transcripts_url)
    try:
        notifier = Notifier(store.db, env.smtp_settings())
        handoffs = Handoffs(spec, store, notifier)
        yield DialogueEngine(spec, store, extractor=build_extractor(spec, env), handoffs=handoffs)
    finally:
        await store.close()
