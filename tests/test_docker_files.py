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


def test_compose_publishes_only_the_webhook_proxy_and_the_operator_port_on_loopback() -> None:
    services = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())["services"]
    published = {name: service.get("ports", []) for name, service in services.items() if service.get("ports")}
    assert set(published) == {"proxy", "worker"}, "only the proxy and the worker's operator port are published"
    assert published["proxy"] == ["${PUBLIC_PORT:-8080}:8080"]
    # Every other published port is bound to the host's loopback: nobody else reaches the queue.
    assert all(port.startswith("127.0.0.1:") for port in published["worker"]), published["worker"]
    assert "ports" not in services["postgres"]


def test_the_public_proxy_forwards_twilios_webhooks_and_refuses_every_other_path() -> None:
    conf = (ROOT / "docker" / "nginx.conf").read_text()
    forwarded = set(re.findall(r"^\s*location = (\S+)", conf, re.MULTILINE))
    assert forwarded == {"/twilio/sms", "/twilio/sms/status", "/twilio/voice", "/twilio/media"}
    assert re.search(r"location / \{ return 404; \}", conf)
    assert not re.search(r"^\s*location (?!= |/ \{)", conf, re.MULTILINE), "no prefix or regex location may widen the door"
