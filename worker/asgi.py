"""The ASGI app as uvicorn's worker processes build it: `serve --workers N` starts N
processes that each import this and read the worker spec path from the environment."""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI

from dialogue.spec_loader import load_spec
from worker.app import create_app
from worker.settings import WorkerSettings

SPEC_ENV = "CHANNEL_WORKER_SPEC"
CANDIDATE_ENV = "CHANNEL_WORKER_CANDIDATE"  # serve --candidate: the candidate spec's path
SHARE_ENV = "CHANNEL_WORKER_CANDIDATE_SHARE"  # ...and its share of new conversations (percent)


def app_from_env() -> FastAPI:
    env = WorkerSettings.from_env()
    candidate = env.internal.channel_worker_candidate
    return create_app(load_spec(Path(env.internal.channel_worker_spec or os.environ[SPEC_ENV])), env.config(), env=env,
                      candidate=load_spec(Path(candidate)) if candidate else None,
                      share=env.internal.channel_worker_candidate_share)
