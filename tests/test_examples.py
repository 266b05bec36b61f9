"""The bundled examples, end to end: the real CLI in a console conversation, against the real
booking system and bank stub (examples/booking_api.py) running as its own process. What the
worker did is checked where the business would see it: in that system's bookings, its log of
card freezes, and the signed outcome records it received."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import EXAMPLES, ROOT, SPECS
from tests.support.server import WorkerServer

NOW = "2026-11-23T09:00:00+00:00"  # a Monday morning; "tomorrow" is Tuesday 24 November
SECRET = "example-webhook-secret"
RESTAURANT = "examples/restaurant_booking.yaml"
BANK = "examples/account_support.yaml"


class BookingApi:
    """`python -m examples.booking_api` on a free port, as the quick start runs it."""

    def __init__(self) -> None:
        env = {**os.environ, "OUTCOME_WEBHOOK_SECRET": SECRET}
        self.process = subprocess.Popen([sys.executable, "-m", "examples.booking_api", "--port", "0", "--quiet"],
                                        cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        first = self.process.stdout.readline()  # "booking API listening on http://127.0.0.1:PORT"
        assert "listening on" in first, first
        self.url = first.rsplit(" ", 1)[1].strip()

    def get(self, path: str) -> Any:
        return httpx.get(self.url + path, timeout=5).json()

    def post(self, path: str, body: dict[str, Any], key: str | None = None) -> httpx.Response:
        return httpx.post(self.url + path, json=body, headers={"Idempotency-Key": key} if key else {}, timeout=5)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


@pytest.fixture
def api() -> Iterator[BookingApi]:
    server = BookingApi()
    try:
        yield server
    finally:
        server.stop()


def env_for(api: BookingApi, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    return {**env, "CHANNEL_WORKER_VAR": str(tmp_path / "var"), "BOOKING_API_URL": api.url,
            "BANK_API_URL": api.url + "/bank", "OUTCOME_WEBHOOK_SECRET": SECRET, **extra}


def cli(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "worker.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          env=env, input=stdin, timeout=180)


def chat(api: BookingApi, tmp_path: Path, worker: str, lines: list[str], **extra: str) -> dict[str, Any]:
    script = tmp_path / "script.txt"
    script.write_text("\n".join(lines) + "\n")
    done = cli(env_for(api, tmp_path, **extra), "chat", "--worker", worker, "--script", str(script), "--now", NOW,
               "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def replies(report: dict[str, Any]) -> list[str]:
    return [t["text"] for t in report["turns"] if t["role"] == "worker"]


def reply_to(report: dict[str, Any], said: str) -> str:
    """The worker's answer to the person's line `said`."""
    turns = report["turns"]
    at = next(i for i, t in enumerate(turns) if t["role"] == "user" and t["text"] == said)
    return turns[at + 1]["text"]


def booked(api: BookingApi) -> list[dict[str, Any]]:
    return [b for b in api.get("/bookings") if b["status"] == "booked"]


# --- the restaurant


def test_a_free_table_is_checked_booked_once_and_its_record_delivered(api: BookingApi, tmp_path: Path) -> None:
    report = chat(api, tmp_path, RESTAURANT, ["table for 4 tomorrow at 7pm", "Ana Silva", "yes"])
    assert report["outcome"] == "completed" and report["task"] == "book"
    assert replies(report)[0].endswith("Which day is the table for?")  # start_task: the day at once
    assert [(c["name"], c["status"]) for c in report["calls"]] == [("availability", "ok"), ("create_booking", "ok")]
    assert report["calls"][0]["result"]["available"] is True
    [booking] = booked(api)
    assert {k: booking[k] for k in ("date", "time", "people", "name")} == {
        "date": "2026-11-24", "time": "19:00", "people": 4, "name": "Ana Silva"}
    assert report["calls"][1]["result"] == {"booking_id": booking["booking_id"]}
    # The signed record reached the business (chat sends it once the conversation ends).
    [record] = api.get("/hooks/outcomes")
    assert (record["task"], record["outcome"], record["conversation_id"]) == ("book", "completed", report["conversation_id"])
    assert record["results"]["create_booking.booking_id"] == booking["booking_id"]
    assert record["fields"]["people"]["value"] == 4


def test_a_full_time_offers_the_nearest_free_times_and_books_the_one_chosen(api: BookingApi, tmp_path: Path) -> None:
    report = chat(api, tmp_path, RESTAURANT, ["table for 2 tomorrow at 8pm", "9pm then", "Bob Jones", "yes"])
    offer = reply_to(report, "table for 2 tomorrow at 8pm")
    assert "fully booked at 20:00" in offer and "19:00, 19:30 or 20:30" in offer
    assert report["outcome"] == "completed"
    checks = [c for c in report["calls"] if c["name"] == "availability"]
    assert [c["result"]["available"] for c in checks] == [False, True]  # asked again for the new time
    [booking] = booked(api)
    assert (booking["time"], booking["people"], booking["name"]) == ("21:00", 2, "Bob Jones")


def test_a_question_while_other_times_are_offered_asks_the_offer_again(api: BookingApi, tmp_path: Path) -> None:
    report = chat(api, tmp_path, RESTAURANT, ["table for 2 tomorrow at 8pm", "is there parking?"])
    again = reply_to(report, "is there parking?")
    # The pending read-back is the step's own line (the offer), not the booking's read-back with no name.
    assert "free parking" in again and again.endswith("19:00, 19:30 or 20:30. Which would suit you?"), again


def test_a_cancellation_from_the_first_words_does_not_go_back_to_an_unbegun_booking(api: BookingApi, tmp_path: Path) -> None:
    api.post("/bookings", {"date": "2026-11-24", "time": "19:00", "people": 4, "name": "Ana Silva"})
    report = chat(api, tmp_path, RESTAURANT, ["I want to cancel my booking", "Ana", "tomorrow", "yes"])
    done = reply_to(report, "yes")
    assert done == "Done, Ana. Your booking on Tuesday 24 November is cancelled." and report["outcome"] == "cancelled"


def test_saying_what_is_already_under_way_goes_on_with_it(api: BookingApi, tmp_path: Path) -> None:
    report = chat(api, tmp_path, RESTAURANT, ["I'd like to book a table"])
    assert reply_to(report, "I'd like to book a table") == "Sure. Which day is the table for?"


def test_a_booking_is_found_by_name_and_date_and_moved(api: BookingApi, tmp_path: Path) -> None:
    api.post("/bookings", {"date": "2026-11-24", "time": "19:00", "people": 4, "name": "Ana Silva"})
    report = chat(api, tmp_path, RESTAURANT, ["I need to change my booking", "Ana, tomorrow", "9pm", "yes"])
    assert "I have your table for 4 at 19:00" in reply_to(report, "Ana, tomorrow")
    assert "now at 21:00" in reply_to(report, "yes")
    [booking] = booked(api)
    assert (booking["date"], booking["time"]) == ("2026-11-24", "21:00")
    assert [(r["task"], r["outcome"]) for r in api.get("/hooks/outcomes")] == [("change", "changed")]


def test_a_booking_is_found_by_name_and_date_and_cancelled(api: BookingApi, tmp_path: Path) -> None:
    api.post("/bookings", {"date": "2026-11-24", "time": "19:00", "people": 4, "name": "Ana Silva"})
    api.post("/bookings", {"date": "2026-11-25", "time": "19:00", "people": 2, "name": "Ana Silva"})
    report = chat(api, tmp_path, RESTAURANT, ["I want to cancel my booking", "Ana", "tomorrow", "yes"])
    assert "Your booking on Tuesday 24 November is cancelled" in reply_to(report, "yes")
    assert [(b["date"], b["status"]) for b in api.get("/bookings")] == [("2026-11-24", "cancelled"), ("2026-11-25", "booked")]
    assert [(r["task"], r["outcome"]) for r in api.get("/hooks/outcomes")] == [("cancel", "cancelled")]


def test_a_question_mid_booking_is_answered_from_the_spec_and_the_booking_goes_on(api: BookingApi, tmp_path: Path) -> None:
    report = chat(api, tmp_path, RESTAURANT, ["friday at 7 for 2", "is there parking?", "Maria Lopez", "yes"])
    answer = reply_to(report, "is there parking?")
    assert answer == ("Yes, there's free parking behind the restaurant, and a public car park on Mill Street. "
                      "Can I have your first name?")
    assert report["outcome"] == "completed"
    [booking] = booked(api)
    assert (booking["date"], booking["time"], booking["name"]) == ("2026-11-27", "19:00", "Maria Lopez")


# --- the bank


def test_a_lost_card_is_frozen_with_a_call(api: BookingApi, tmp_path: Path) -> None:
    report = chat(api, tmp_path, BANK, ["I lost my card", "12345678"])
    assert report["outcome"] == "card_frozen" and report["task"] == "lost_card"
    assert "frozen your card ending 5678" in reply_to(report, "12345678")
    [freeze] = api.get("/bank/log")
    assert (freeze["kind"], freeze["account_number"]) == ("freeze", "12345678")
    assert [(r["task"], r["outcome"]) for r in api.get("/bank/hooks/outcomes")] == [("lost_card", "card_frozen")]


def test_a_stolen_card_with_payments_not_recognised_is_frozen_then_handed_over(api: BookingApi, tmp_path: Path) -> None:
    report = chat(api, tmp_path, BANK, ["my card was stolen", "87654321", "yes"])
    assert "Do you see any payments on the card that you don't recognise?" in reply_to(report, "87654321")
    assert report["outcome"] == "escalated"
    assert report["escalation"]["reason"] == "The card was stolen and there are payments the customer does not recognise."
    assert [e["account_number"] for e in api.get("/bank/log")] == ["87654321"]  # frozen before the handover


# --- the commands around them


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_passes_spec_check(example: Path) -> None:
    done = cli(dict(os.environ), "spec", "check", str(example.relative_to(ROOT)))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("ok ")


def test_extract_says_which_task_a_line_starts_when_the_spec_has_tasks(tmp_path: Path) -> None:
    lines = "\n".join(json.dumps({"text": t}) for t in ["my card was stolen", "what is the meaning of life"]) + "\n"
    rich = cli(dict(os.environ), "extract", "--worker", BANK, "--jsonl", stdin=lines)
    assert rich.returncode == 0, rich.stderr
    stolen, nothing = [json.loads(line) for line in rich.stdout.splitlines()]
    assert stolen["task"]["name"] == "lost_card" and 0 < stolen["task"]["confidence"] <= 1
    assert stolen["fields"]["card_situation"]["value"] == "stolen"
    assert nothing["task"] is None
    flat = cli(dict(os.environ), "extract", "--worker", str(SPECS / "account_support.yaml"), "--jsonl", stdin=lines)
    assert all("task" not in json.loads(line) for line in flat.stdout.splitlines())


def test_serve_delivers_the_records_chat_could_not_and_status_shows_them(api: BookingApi, tmp_path: Path) -> None:
    # The conversation ends while the signing secret is missing: its record waits in the outbox.
    unset = env_for(api, tmp_path)
    unset.pop("OUTCOME_WEBHOOK_SECRET")
    script = tmp_path / "script.txt"
    script.write_text("I lost my card\n12345678\n")
    done = cli(unset, "chat", "--worker", BANK, "--script", str(script), "--now", NOW)
    assert done.returncode == 0, done.stderr
    assert "not delivered yet" in done.stderr
    waiting = json.loads(cli(unset, "status", "--worker", BANK).stdout)["deliveries"]
    assert (waiting["pending"], waiting["delivered"]) == (1, 0)
    assert "OUTCOME_WEBHOOK_SECRET" in waiting["latest_failures"][0]["last_error"]
    assert api.get("/bank/hooks/outcomes") == []

    def shown() -> dict[str, Any]:
        return json.loads(cli(env_for(api, tmp_path), "status", "--worker", BANK).stdout)["deliveries"]

    server = WorkerServer(BANK, {k: v for k, v in env_for(api, tmp_path).items() if k != "CHANNEL_WORKER_VAR"},
                          tmp_path / "var")
    try:
        server.wait_ready()
        deadline = time.monotonic() + 90
        # Until serve has marked it delivered (after the receiver's 2xx), as status reports it.
        while (now := shown())["delivered"] == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        server.stop()
    assert (now["pending"], now["delivered"], now["latest_failures"]) == (0, 1, [])
    [record] = api.get("/bank/hooks/outcomes")
    assert (record["task"], record["outcome"]) == ("lost_card", "card_frozen")


def test_the_worked_example_in_the_docs_checks_clean_and_says_what_the_docs_show(api: BookingApi, tmp_path: Path) -> None:
    docs = (ROOT / "docs" / "spec.md").read_text().split("### A worked example", 1)[1]
    spec_text = docs.split("```yaml\n", 1)[1].split("```", 1)[0]
    shown = docs.split("```text\n", 1)[1].split("```", 1)[0].splitlines()
    spec = tmp_path / "luigi.yaml"
    spec.write_text(spec_text)
    checked = cli(dict(os.environ), "spec", "check", str(spec))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    said = [line.removeprefix("you: ") for line in shown if line.startswith("you: ")]
    report = chat(api, tmp_path, str(spec), said)
    assert [("you: " if t["role"] == "user" else "Sam: ") + t["text"] for t in report["turns"]] == shown


# --- the booking system itself


def test_the_booking_api_books_once_per_idempotency_key_and_checks_signatures(api: BookingApi) -> None:
    body = {"date": "2026-11-24", "time": "19:00", "people": 2, "name": "Ana Silva"}
    first, again = api.post("/bookings", body, key="k-1"), api.post("/bookings", body, key="k-1")
    assert first.status_code == again.status_code == 201 and first.json() == again.json()
    assert len(booked(api)) == 1
    assert api.post("/bookings", body, key="k-2").json()["booking_id"] != first.json()["booking_id"]
    assert api.get("/availability?date=2026-11-24&time=20:00&people=2") == {
        "available": False, "times": ["19:00", "19:30", "20:30"]}
    unsigned = api.post("/hooks/outcomes", {"outcome": "completed"})
    assert unsigned.status_code == 401 and api.get("/hooks/outcomes") == []


def test_the_example_booking_system_frees_seats_on_cancel_and_moves_them_on_change() -> None:
    from examples.booking_api import SEATS, Store

    store = Store(full=())
    party = max(1, SEATS // 2)
    first = store.book({"date": "2026-11-24", "time": "19:00", "people": party, "name": "Ana Silva"})[1]
    store.book({"date": "2026-11-24", "time": "19:00", "people": SEATS - party, "name": "Tom Baker"})
    assert store.availability({"date": "2026-11-24", "time": "19:00", "people": "1"})["available"] is False
    # Moving a booking takes its seats along; a cancelled booking holds none.
    assert store.change({"date": "2026-11-24", "name": "Ana", "time": "19:30"})["changed"] is True
    assert store.availability({"date": "2026-11-24", "time": "19:00", "people": str(party)})["available"] is True
    assert store.availability({"date": "2026-11-24", "time": "19:30", "people": str(SEATS - party + 1)})["available"] is False
    assert store.cancel({"date": "2026-11-24", "name": "Ana"}) == {"found": True, "booking_id": first["booking_id"]}
    assert store.availability({"date": "2026-11-24", "time": "19:30", "people": str(SEATS)})["available"] is True
