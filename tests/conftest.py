from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from dialogue.spec import WorkerSpec
from dialogue.spec_loader import load_spec
from tests.support.postgres import PostgresServer, start_postgres

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
TEST_DATA = ROOT / "tests" / "data"
# The flat specs (no tasks) the suite was written against; examples/ holds the rich ones.
SPECS = TEST_DATA / "specs"

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")


def shipped_data(*parts: str) -> Path:
    """A file or folder shipped in tests/data. Missing data fails the test instead of skipping
    it: the accuracy tests guard the headline figures, and a skipped guard guards nothing."""
    path = TEST_DATA.joinpath(*parts)
    if not path.exists():
        pytest.fail(f"test data missing: {path} (it ships with the repository; see tests/data/README.md)", pytrace=False)
    return path


@pytest.fixture(scope="session")
def restaurant() -> WorkerSpec:
    return load_spec(SPECS / "restaurant_booking.yaml")


@pytest.fixture(scope="session")
def account_support() -> WorkerSpec:
    return load_spec(SPECS / "account_support.yaml")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL for the whole session. Never skipped: CI installs it."""
    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A fresh, empty database on the session's server for each test."""
    return postgres_server.create_database(f"t_{uuid.uuid4().hex[:10]}")


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Run a test once on the SQLite default and once on PostgreSQL."""
    if request.param == "sqlite":
        return str(tmp_path / "worker.sqlite")
    return request.getfixturevalue("postgres_url")
