"""A spec's `${VAR}`s are checked when the worker starts, and each missing one is named with
what it breaks."""

from __future__ import annotations

from dialogue.spec_loader import load_spec
from tests.conftest import ROOT
from worker.spec_env import missing_variables


def test_every_missing_variable_is_named_with_the_actions_and_deliveries_it_breaks() -> None:
    spec = load_spec(ROOT / "examples" / "restaurant_booking.yaml")
    problems = missing_variables(spec, {})
    assert [p.split(" ")[0] for p in problems] == ["BOOKING_API_URL", "OUTCOME_WEBHOOK_SECRET"]
    assert "action availability" in problems[0] and "outcome delivery bookings" in problems[0]
    assert missing_variables(spec, {"BOOKING_API_URL": "http://b", "OUTCOME_WEBHOOK_SECRET": "s"}) == []


def test_a_spec_without_actions_needs_nothing() -> None:
    assert missing_variables(load_spec(ROOT / "tests" / "data" / "specs" / "restaurant_booking.yaml"), {}) == []
