"""Run `channel-worker serve` as a real process on loopback and wait until /healthz answers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.receivers import free_port

ROOT = Path(__file__).resolve().parent.parent.parent


class WorkerServer:
    def __init__(self, worker: str, env: dict[str, str], var: Path, args: tuple[str, ...] = ()):
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        full_env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL",) and not k.startswith(("TWILIO_", "LLM_"))}
        # Voice loads speech models; tests of other channels leave it off unless they ask for it.
        # Unbuffered, so the log holds everything up to the moment the test stops the server.
        full_env.update({"PYTHONUNBUFFERED": "1", "CHANNEL_WORKER_VAR": str(var), "PUBLIC_BASE_URL": self.base_url, "TWILIO_VOICE": "off", **env})
        self.log = var.parent / f"server-{self.port}.log"
        self.var = var
        var.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log, "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "worker.cli", "serve", "--worker", worker, "--port", str(self.port), "--log-level", "warning", *args],
            cwd=ROOT, env=full_env, stdout=self._log, stderr=subprocess.STDOUT,
            # Its own process group: a crash point (storage/crash_points.py) kills the server's
            # group, never the test run.
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()}")
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"server not ready: {self.log.read_text()}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self._log.close()
