"""`channel-worker test`: load every file (all problems before anything runs), run the cases,
print the results and, on request, JUnit XML and coverage. Returns the exit code: 0 all passed,
1 a case failed, 2 a file is invalid."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import TextIO

from dialogue.spec_loader import SpecError
from worker.conversation_tests.coverage import Coverage, coverage
from worker.conversation_tests.loader import LoadedFile, load_test_file
from worker.conversation_tests.model import test_file_json_schema
from worker.conversation_tests.report import failure_text, summary_line, totals, write_junit
from worker.conversation_tests.runner import CaseResult, run_files

ALL_PASSED, SOME_FAILED, INVALID = 0, 1, 2


def print_schema(out: TextIO = sys.stdout) -> int:
    out.write(json.dumps(test_file_json_schema(), indent=2) + "\n")
    return ALL_PASSED


def run(files: list[Path], worker: Path | None = None, junit: Path | None = None, show_coverage: bool = False,
        jobs: int = 4, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    if not files:
        err.write("error: name at least one test file (or --schema)\n")
        return INVALID
    loaded: list[LoadedFile] = []
    problems: list[str] = []
    for path in files:
        try:
            loaded.append(load_test_file(path, worker))
        except SpecError as exc:
            problems += [f"error {p}" for p in exc.problems]
    if problems:
        err.write("\n".join(problems) + "\n")
        return INVALID
    results = asyncio.run(run_files(loaded, jobs=jobs))
    for result in results:
        out.write(summary_line(result) + "\n")
        if not result.passed:
            out.write(failure_text(result) + "\n")
    out.write(totals(results) + "\n")
    if junit is not None:
        write_junit(results, junit)
    if show_coverage:
        out.write(coverage_text(loaded, results))
    return ALL_PASSED if all(r.passed for r in results) else SOME_FAILED


def coverage_text(loaded: list[LoadedFile], results: list[CaseResult]) -> str:
    """Per worker spec, what no case of the files naming it exercised."""
    lines: list[str] = []
    specs: dict[Path, LoadedFile] = {}
    for f in loaded:
        specs.setdefault(f.spec_path.resolve(), f)
    for spec_path, first in specs.items():
        files = {str(f.path) for f in loaded if f.spec_path.resolve() == spec_path}
        seen = [r.seen for r in results if r.file in files]
        found = coverage(first.spec, seen)
        lines.append(f"coverage of {first.spec_path}:")
        if found.empty():
            lines.append("  every task, step, branch, field, rule, knowledge entry and script line was exercised")
        for kind in Coverage.model_fields:
            missing = getattr(found, kind)
            if missing:
                lines.append(f"  {kind.replace('_', ' ')} not exercised ({len(missing)}):")
                lines += [f"    {m}" for m in missing]
    return "\n".join(lines) + "\n"
