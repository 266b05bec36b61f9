"""Choose the extractor: offline rules always; an LLM proposer only when one is configured.

In the composition root because it reads the worker spec and the environment; extraction/
itself knows neither."""

from __future__ import annotations

from dialogue.spec import WorkerSpec
from extraction.base import Extractor
from extraction.llm import LLMExtractor
from extraction.rules import RuleExtractor
from worker.settings import WorkerSettings


def build_extractor(spec: WorkerSpec, env: WorkerSettings | None = None) -> Extractor:
    rules = RuleExtractor(phone_region=spec.phone_region)
    settings = (env or WorkerSettings.from_env()).llm_settings()
    if settings is None:
        return rules
    return LLMExtractor(rules, settings)
