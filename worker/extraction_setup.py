"""Choose the extractor: offline rules always; an LLM proposer only when one is configured.

In the composition root because it reads the worker spec and the environment; extraction/
itself knows neither."""

from __future__ import annotations

from dialogue.spec import WorkerSpec
from extraction import name_lists, places
from extraction.base import Extractor
from extraction.fields import NAME_TYPES, FieldType
from extraction.llm import LLMExtractor
from extraction.rules import RuleExtractor
from worker.settings import WorkerSettings


def build_extractor(spec: WorkerSpec, env: WorkerSettings | None = None) -> Extractor:
    # Lists loaded once per process, at start: the first turn that needs them would otherwise
    # hold the event loop for about a second.
    kinds = {f.type for f in spec.fields}
    if FieldType.place in kinds:
        places.gazetteer()
    if kinds & NAME_TYPES:
        name_lists.preload()
    rules = RuleExtractor(phone_region=spec.phone_region)
    settings = (env or WorkerSettings.from_env()).llm_settings()
    if settings is None:
        return rules
    return LLMExtractor(rules, settings)
