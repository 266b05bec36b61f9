"""The optional LLM proposer: it may fill gaps, never invent. Tested against a local server
speaking OpenAI's chat-completions wire format."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timezone

import pytest

from dialogue.spec_loader import parse_spec
from extraction.base import ExtractionContext
from extraction.llm import LLMExtractor, LLMSettings
from extraction.rules import RuleExtractor
from tests.conftest import ROOT
from tests.support.fake_openai import FakeOpenAI
from tests.support.talk import Talk, engine_for
from worker.extraction_setup import build_extractor

SPEC = parse_spec("""
name: dinner
persona: Sam
goal: Book dinner.
script: {greeting: Hi., confirmation: "{people} people, {diet}?", closing: Done.}
fields:
  - {name: people, type: count, prompt: "How many?", constraints: {min: 1, max: 12}}
  - {name: diet, type: text, prompt: "Any dietary needs?", description: dietary requirements}
  - {name: visit, type: date, prompt: "Which day?", required: false}
""")
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)
TEXT = "two of us, and my partner is vegetarian"


def llm(server: FakeOpenAI) -> LLMExtractor:
    return LLMExtractor(RuleExtractor(), LLMSettings(base_url=server.base_url, model="test-model", api_key="sk-test"))


def test_a_grounded_proposal_fills_a_field_the_rules_missed() -> None:
    with FakeOpenAI() as server:
        server.proposals = [{"field": "diet", "value": "vegetarian", "quote": "vegetarian"}]
        found = llm(server).extract(TEXT, SPEC.fields, ExtractionContext(now=NOW))
    by_field = {e.field: e for e in found}
    assert by_field["people"].value == 2  # from the rules
    diet = by_field["diet"]
    assert (diet.value, TEXT[diet.start : diet.end]) == ("vegetarian", "vegetarian")


def test_a_hallucinated_quote_is_rejected() -> None:
    with FakeOpenAI() as server:
        server.proposals = [
            {"field": "diet", "value": "gluten free", "quote": "I can't eat gluten"},
            {"field": "visit", "value": "2026-11-27", "quote": "on Friday"},
        ]
        found = llm(server).extract(TEXT, SPEC.fields, ExtractionContext(now=NOW))
    assert {e.field for e in found} == {"people"}


def test_a_value_that_breaks_the_type_or_constraints_is_rejected() -> None:
    with FakeOpenAI() as server:
        server.proposals = [
            {"field": "visit", "value": "next week sometime", "quote": "my partner"},
            {"field": "unknown_field", "value": "x", "quote": "two"},
        ]
        found = llm(server).extract("my partner and I", SPEC.fields, ExtractionContext(now=NOW))
        server.proposals = [{"field": "people", "value": 40, "quote": "everyone"}]
        too_many = llm(server).extract("everyone from the office", SPEC.fields, ExtractionContext(now=NOW))
    # "my partner and I" is a party of two to the rules; both LLM proposals are dropped.
    assert [(e.field, e.value) for e in found] == [("people", 2)]
    assert too_many == []


def test_the_request_uses_structured_output_and_the_key() -> None:
    with FakeOpenAI() as server:
        server.proposals = []
        llm(server).extract(TEXT, SPEC.fields, ExtractionContext(requested=["diet"], now=NOW))
        request, headers = server.requests[0], server.headers[0]
    assert request["model"] == "test-model"
    schema = request["response_format"]["json_schema"]["schema"]
    assert request["response_format"]["type"] == "json_schema"
    # Only the fields the rules left empty are asked for.
    assert schema["properties"]["values"]["items"]["properties"]["field"]["enum"] == ["diet", "visit"]
    assert "diet (text) (just asked for)" in request["messages"][0]["content"]
    assert headers["Authorization"] == "Bearer sk-test"


def test_an_unavailable_endpoint_leaves_the_rules_working() -> None:
    with FakeOpenAI() as server:
        server.status = 503
        found = llm(server).extract(TEXT, SPEC.fields, ExtractionContext(now=NOW))
    assert {e.field for e in found} == {"people"}


def test_without_configuration_nothing_is_contacted(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LLM_BASE_URL", "LLM_MODEL", "LLM_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    with FakeOpenAI() as server:
        # The server is where a client library would look by itself (OpenAI's own variables) and
        # where a half-finished configuration points (a URL and a key, no model): still not asked.
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        monkeypatch.setenv("LLM_BASE_URL", server.base_url)
        monkeypatch.setenv("LLM_API_KEY", "sk-test")
        extractor = build_extractor(SPEC)
        extractor.extract(TEXT, SPEC.fields, ExtractionContext(now=NOW))
        assert isinstance(extractor, RuleExtractor)
        assert server.requests == []
        # The same server is asked once the configuration is complete: it would have seen a request.
        monkeypatch.setenv("LLM_MODEL", "test-model")
        build_extractor(SPEC).extract(TEXT, SPEC.fields, ExtractionContext(now=NOW))
        assert len(server.requests) == 1


async def test_the_dialogue_uses_the_llm_through_the_async_path(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeOpenAI() as server:
        monkeypatch.setenv("LLM_BASE_URL", server.base_url)
        monkeypatch.setenv("LLM_MODEL", "test-model")
        server.proposals = [{"field": "diet", "value": "vegetarian", "quote": "vegetarian"}]
        async with engine_for(SPEC, str(tmp_path / "db")) as engine:
            talk = Talk(engine)
            await talk.start()
            reply = await talk.say(TEXT)
        assert talk.values() == {"people": 2, "diet": "vegetarian"}
        assert "2 people, vegetarian?" in reply
        assert talk.last.fields["diet"].text == "vegetarian"


def test_the_cli_uses_the_configured_endpoint() -> None:
    with FakeOpenAI() as server:
        server.proposals = [{"field": "first_name", "value": "Zed", "quote": "Zed"}]
        env = {**os.environ, "LLM_BASE_URL": server.base_url, "LLM_MODEL": "m"}
        result = subprocess.run(
            [sys.executable, "-m", "worker.cli", "extract", "--worker", "tests/data/specs/restaurant_booking.yaml",
             "--text", "put it down for zed please"],
            capture_output=True, text=True, cwd=ROOT, env=env, timeout=120,
        )
    fields = json.loads(result.stdout)["fields"]
    assert fields["first_name"]["value"] == "Zed" and fields["first_name"]["text"] == "zed"
    assert len(server.requests) == 1
