"""The spec side of roles and durations: two fields of one type need different roles, and a
stay's length reads back in words, not as an ISO code."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from dialogue.render import render
from dialogue.spec import WorkerSpec

BASE = {"name": "hotel", "persona": "Ana", "goal": "Book a room",
        "script": {"greeting": "Hi.", "confirmation": "{nights} from {check_in:%d %B}. Right?", "closing": "Bye."}}


def test_two_date_fields_with_the_same_role_are_refused() -> None:
    fields = [{"name": "check_in", "type": "date", "role": "start", "prompt": "Arriving?"},
              {"name": "check_out", "type": "date", "role": "start", "prompt": "Leaving?"}]
    with pytest.raises(ValidationError, match="both date fields with role 'start'"):
        WorkerSpec.model_validate({**BASE, "fields": fields})


def test_a_duration_reads_back_in_words() -> None:
    spec = WorkerSpec.model_validate({**BASE, "fields": [
        {"name": "check_in", "type": "date", "prompt": "Arriving?"},
        {"name": "nights", "type": "duration", "prompt": "How long?"}]})
    said = render(spec.script.confirmation, spec.fields, {"nights": {"value": "P3D"}, "check_in": {"value": "2026-12-04"}})
    assert said == "3 days from 04 December. Right?"
