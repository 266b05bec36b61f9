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


def app_from_env() -> FastAPI:
    env = WorkerSettings.from_env()
    return create_app(load_spec(Path(env.internal.channel_worker_spec or os.environ[SPEC_ENV])), env.config(), env=env)
