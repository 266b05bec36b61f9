"""Composition root: a spec plus settings become a running engine with its stores."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from dialogue.engine import DialogueEngine
from dialogue.spec import WorkerSpec
from escalation.handoff import Handoffs
from escalation.notify import Notifier, SmtpSettings
from transcripts.store import TranscriptStore
from worker.config import Settings
from worker.extraction_setup import build_extractor


@contextlib.asynccontextmanager
async def open_engine(spec: WorkerSpec, settings: Settings | None = None) -> AsyncIterator[DialogueEngine]:
    settings = settings or Settings.from_env()
    store = await TranscriptStore.open(settings.transcripts_url)
    try:
        notifier = Notifier(store.db, SmtpSettings.from_env())
        handoffs = Handoffs(spec, store, notifier)
        yield DialogueEngine(spec, store, extractor=build_extractor(spec), handoffs=handoffs)
    finally:
        await store.close()
