"""Signed is not well-formed: what a hostile or broken sender puts in an SMS webhook never
becomes a 500, invalid TwiML, or a process holding hundreds of megabytes."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree

import httpx
import pytest

from tests.conftest import ROOT
from tests.support.fake_twilio import FakeTwilio
from tests.support.server import WorkerServer
from tests.test_sms import ACCOUNT, TOKEN, WORKER_NUMBER, Phone, db_rows, reply_of


@pytest.fixture(scope="module")
def fake_twilio() -> Iterator[FakeTwilio]:
    with FakeTwilio() as server:
        yield server


def _server(var: Path, fake_twilio: FakeTwilio, **env: str) -> WorkerServer:
    return WorkerServer("tests/data/specs/restaurant_booking.yaml", {
        "TWILIO_ACCOUNT_SID": ACCOUNT, "TWILIO_AUTH_TOKEN": TOKEN, "TWILIO_API_BASE": fake_twilio.base_url, **env,
    }, var)


@pytest.fixture(scope="module")
def postgres_sms_server(tmp_path_factory: pytest.TempPathFactory, fake_twilio: FakeTwilio,
                        postgres_server) -> Iterator[tuple[WorkerServer, str]]:  # noqa: ANN001
    url = postgres_server.create_database("hostile_sms")
    server = _server(tmp_path_factory.mktemp("pg-sms") / "var", fake_twilio, DATABASE_URL=url)
    try:
        server.wait_ready()
        yield server, url
    finally:
        server.stop()


@pytest.fixture(scope="module")
def sqlite_sms_server(tmp_path_factory: pytest.TempPathFactory, fake_twilio: FakeTwilio) -> Iterator[WorkerServer]:
    server = _server(tmp_path_factory.mktemp("sqlite-sms") / "var", fake_twilio, MAX_REQUEST_BYTES="65536")
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def test_a_nul_in_a_signed_body_and_from_is_answered_and_stored_without_it_on_postgresql(
    postgres_sms_server: tuple[WorkerServer, str],
) -> None:
    import psycopg

    server, url = postgres_sms_server
    phone = Phone(server)
    clean_number = phone.number
    phone.number = clean_number[:4] + "\x00" + clean_number[4:]
    reply = phone.text("a table for 2\x00 tomorrow at 8pm")
    assert reply is not None and "first name" in reply
    with psycopg.connect(url) as conn:
        [(body, sender)] = conn.execute("SELECT body, from_number FROM sms_messages WHERE direction = 'in'").fetchall()
        [(text,)] = conn.execute("SELECT text FROM events WHERE direction = 'in'").fetchall()
    assert (body, sender, text) == ("a table for 2 tomorrow at 8pm", clean_number, "a table for 2 tomorrow at 8pm")


def test_control_characters_never_reach_the_twiml(sqlite_sms_server: WorkerServer) -> None:
    phone = Phone(sqlite_sms_server)
    phone.text("a table for 2 tomorrow at 8pm")
    # The first name is echoed back in the next question: with a form feed and an escape in it.
    response = phone.post("/twilio/sms", phone.params("Ma\x0cria\x1b[31m"))
    assert response.status_code == 200
    root = ElementTree.fromstring(response.text)  # a parser refuses XML with those characters
    reply = reply_of(response)
    assert reply is not None
    assert not any(ord(c) < 32 and c not in "\t\n\r" for c in response.text)
    assert root.tag == "Response"


def test_a_body_over_the_limit_is_refused_before_it_is_read(sqlite_sms_server: WorkerServer) -> None:
    # Announced as 100 MB: refused at once, without sending (or the server reading) the bytes.
    with socket.create_connection(("127.0.0.1", sqlite_sms_server.port), timeout=10) as conn:
        conn.sendall(b"POST /twilio/sms HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                     b"Content-Length: 104857600\r\n\r\n")
        assert conn.recv(200).startswith(b"HTTP/1.1 413")


def test_a_chunked_body_over_the_limit_is_refused(sqlite_sms_server: WorkerServer) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(64):
            yield b"Body=" + b"x" * 4096

    response = httpx.post(sqlite_sms_server.base_url + "/twilio/sms", content=chunks(),
                          headers={"Content-Type": "application/x-www-form-urlencoded"}, timeout=30)
    assert response.status_code == 413


def test_a_body_under_the_limit_is_still_answered(sqlite_sms_server: WorkerServer) -> None:
    phone = Phone(sqlite_sms_server)
    reply = phone.text("a table for 2 tomorrow at 8pm. " + "Please. " * 100)
    assert reply is not None
    key = f"sms:{phone.number}:{WORKER_NUMBER}"
    assert db_rows(sqlite_sms_server, "SELECT COUNT(*) FROM events WHERE conversation_id = ? AND direction = 'in'",
                   (key,)) == [(1,)]


def test_a_long_adversarial_message_is_answered_and_the_server_stays_responsive(sqlite_sms_server: WorkerServer) -> None:
    # Ten thousand characters of what the finders find hardest ("$5 $5 ...", a 10,000-digit
    # number): answered (only the first part is read for values), never a 500.
    for body in ("$5 " * 3333, "7" * 9999, "four five " * 999):
        phone = Phone(sqlite_sms_server)
        response = phone.post("/twilio/sms", phone.params(body))
        assert response.status_code == 200, response.text
        assert reply_of(response) is not None


def test_a_turn_that_fails_once_is_answered_later_through_the_outbox(tmp_path: Path, fake_twilio: FakeTwilio) -> None:
    server = _server(tmp_path / "var", fake_twilio, SMS_RECOVERY_AFTER_SECONDS="2")
    try:
        server.wait_ready()
        phone = Phone(server)
        params = phone.params("a table for 2 tomorrow at 8pm")
        database = server.var / "transcripts.sqlite"
        with sqlite3.connect(database) as conn:  # the turn fails: its state cannot be read
            conn.execute("ALTER TABLE checkpoints RENAME TO checkpoints_away")
        try:
            response = phone.post("/twilio/sms", params)
            assert response.status_code == 200 and reply_of(response) is None
        finally:
            with sqlite3.connect(database) as conn:
                conn.execute("ALTER TABLE checkpoints_away RENAME TO checkpoints")
        deadline = time.monotonic() + 30
        while not [m for m in fake_twilio.sent if m.get("To") == phone.number] and time.monotonic() < deadline:
            time.sleep(0.2)
        [sent] = [m for m in fake_twilio.sent if m.get("To") == phone.number]
        assert "name" in sent["Body"].lower()  # the worker's next question, once
        [(state, via)] = db_rows(server, "SELECT state, reply_via FROM sms_messages WHERE sid = ?", (params["MessageSid"],))
        assert (state, via) == ("answered", "outbox")
    finally:
        server.stop()


def test_a_message_whose_turn_always_fails_is_given_up_after_three_tries_and_shown_in_status(
    sqlite_sms_server: WorkerServer,
) -> None:
    phone = Phone(sqlite_sms_server)
    params = phone.params("a table for 2 tomorrow at 8pm")
    database = sqlite_sms_server.var / "transcripts.sqlite"
    with sqlite3.connect(database) as conn:  # every turn now fails: its state cannot be read
        conn.execute("ALTER TABLE checkpoints RENAME TO checkpoints_away")
    try:
        codes = [phone.post("/twilio/sms", params).status_code for _ in range(3)]
        # Never a 500 (Twilio would count it an error and try the Fallback URL): each try is
        # recorded as failed, and the third gives the message up, nothing said.
        assert codes == [200, 200, 200]
        assert reply_of(phone.post("/twilio/sms", params)) is None  # a fourth delivery: still nothing
    finally:
        with sqlite3.connect(database) as conn:
            conn.execute("ALTER TABLE checkpoints_away RENAME TO checkpoints")
    [(state, attempts, failure)] = db_rows(sqlite_sms_server, "SELECT state, attempts, failure FROM sms_messages WHERE sid = ?",
                                           (params["MessageSid"],))
    assert (state, attempts) == ("gave_up", 3) and "checkpoints" in failure
    status = subprocess.run([sys.executable, "-m", "worker.cli", "status", "--worker", "tests/data/specs/restaurant_booking.yaml"],
                            cwd=ROOT, env={**os.environ, "CHANNEL_WORKER_VAR": str(sqlite_sms_server.var)},
                            capture_output=True, text=True, timeout=120)
    report = json.loads(status.stdout)
    assert report["sms"]["gave_up"] >= 1
    assert any(f["sid"] == params["MessageSid"] and "checkpoints" in f["failure"] for f in report["sms"]["latest_failures"])
    # The person's next message is answered as usual.
    assert phone.text("a table for 2 tomorrow at 8pm") is not None
