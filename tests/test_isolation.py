"""The suite's own configuration keeps tests apart: a task one test leaves running cannot reach
the next (with one event loop for the whole session, a leaked channel loop or sender from one
test kept running, and writing, during the tests after it)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

from tests.conftest import ROOT

TWO_TESTS = textwrap.dedent(
    """\
    import asyncio

    leaked = []


    async def test_leaves_a_task_running():
        leaked.append(asyncio.create_task(asyncio.sleep(3600)))


    async def test_the_next_test_does_not_run_it():
        assert leaked, "the first test did not run"
        assert leaked[0] not in asyncio.all_tasks()
    """
)


def test_a_task_left_running_by_one_test_does_not_reach_the_next(tmp_path: Path) -> None:
    options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    asyncio_options = {k: v for k, v in options.items() if k.startswith("asyncio_")}
    ini = "[pytest]\n" + "".join(f"{k} = {v}\n" for k, v in asyncio_options.items())
    (tmp_path / "pytest.ini").write_text(ini)
    (tmp_path / "test_pair.py").write_text(TWO_TESTS)
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path / "test_pair.py")],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, ini + run.stdout[-3000:]
    assert "2 passed" in run.stdout
