"""LLM proposals for places and lengths of time pass the same readers as the rules' values."""

from __future__ import annotations

from datetime import datetime, timezone

from dialogue.spec_loader import parse_spec
from extraction.base import ExtractionContext
from extraction.llm import LLMExtractor, LLMSettings
from extraction.rules import RuleExtractor
from tests.support.fake_openai import FakeOpenAI

SPEC = parse_spec("""
name: trip
persona: Sam
goal: Book a trip.
script: {greeting: Hi., confirmation: "{city} for {stay}?", closing: Done.}
fields:
  - {name: city, type: place, prompt: "Where to?"}
  - {name: stay, type: duration, prompt: "For how long?"}
""")
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)


def propose(proposals: list[dict], text: str) -> dict[str, object]:
    with FakeOpenAI() as server:
        server.proposals = proposals
        llm = LLMExtractor(RuleExtractor(), LLMSettings(base_url=server.base_url, model="test-model"))
        return {e.field: e.value for e in llm.extract(text, SPEC.fields, ExtractionContext(now=NOW))}


def test_a_proposed_place_takes_its_canonical_name_from_the_quote() -> None:
    text = "honestly nyc, whenever"
    assert RuleExtractor().extract(text, SPEC.fields, ExtractionContext(now=NOW)) == []  # unasked, small letters
    assert propose([{"field": "city", "value": "NYC", "quote": "nyc"}], text) == {"city": "New York City"}


def test_a_proposed_place_the_gazetteer_does_not_know_is_kept_as_said() -> None:
    assert propose([{"field": "city", "value": "Tinyville", "quote": "tinyville"}], "off to tinyville") == {"city": "Tinyville"}


def test_a_proposed_length_with_no_length_in_its_quote_is_dropped() -> None:
    assert propose([{"field": "stay", "value": "P3D", "quote": "somewhere"}], "somewhere nice") == {}
