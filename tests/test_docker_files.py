"""Docker cannot build here, so what the image needs is checked from its files: every package
the wheel ships is copied into the image (storage/ and actions/ were once left out, and the
image would not have started), and the compose file's services start what exists."""

from __future__ import annotations

import re
import tomllib

import yaml

from tests.conftest import ROOT


def test_the_image_copies_every_package_the_wheel_ships() -> None:
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    copied = set(re.findall(r"^COPY (\w+) \./\1$", (ROOT / "docker" / "Dockerfile").read_text(), re.MULTILINE))
    assert set(packages) <= copied, f"not copied into the image: {sorted(set(packages) - copied)}"


def test_compose_runs_the_example_with_its_booking_system() -> None:
    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
    worker = compose["services"]["worker"]
    spec = worker["command"][worker["command"].index("--worker") + 1]
    assert (ROOT / spec).is_file()
    assert "${BOOKING_API_URL}" in (ROOT / spec).read_text() and "BOOKING_API_URL" in worker["environment"]
    api = compose["services"]["booking-api"]
    assert api["entrypoint"][:3] == ["python", "-m", "examples.booking_api"] and (ROOT / "examples" / "booking_api.py").is_file()
