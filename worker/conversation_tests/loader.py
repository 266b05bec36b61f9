"""Read conversation test files: the format's problems and the names the worker does not have,
each reported at its file and line (with the worker spec loader's own YAML-to-line mapping)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dialogue.spec import WorkerSpec
from dialogue.spec_loader import SpecError, SpecProblem, load_spec, parse_model, read_limited
from worker.conversation_tests.model import TestFile

NOT_A_MAPPING = "a test file is a mapping with `worker:` and `cases:`"


@dataclass(frozen=True)
class LoadedFile:
    path: Path
    spec_path: Path
    spec: WorkerSpec
    tests: TestFile


def load_test_file(path: Path, worker: Path | None = None) -> LoadedFile:
    """The file's cases and its worker (`worker` overrides the file's `worker:`); raises
    SpecError with every problem at its line."""
    file = str(path)
    text = read_limited(path)
    shape = parse_model(text, file, TestFile, NOT_A_MAPPING)
    if worker is None:
        if shape.worker is None:
            raise SpecError([SpecProblem(file, 1, "worker", "no worker: write `worker: spec.yaml` (relative to this "
                                                            "file) or pass --worker")])
        worker = path.parent / shape.worker
    spec = load_spec(worker)
    tests = parse_model(text, file, TestFile, NOT_A_MAPPING, context={"spec": spec})
    return LoadedFile(path=path, spec_path=worker, spec=spec, tests=tests)
