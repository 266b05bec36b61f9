"""Choose the extractor: offline rules always; an LLM proposer only when one is configured.

In the composition root because it reads the worker spec and the environment; extraction/
itself knows neither."""

from __future__ import annotations

from dialogue.spec import WorkerSpec
from extraction.base import Extractor
from extraction.llm import LLMSettings, LLMExtractor
from extraction.rules import RuleExtractor


def build_extractor(spec: WorkerSpec) -> Extractor:
    rules = RuleExtractor(phone_region=spec.phone_region)
    settings = LLMSettings.from_env()
    if settings is None:
        return rules
    return LLMExtractor(rules, settings)
