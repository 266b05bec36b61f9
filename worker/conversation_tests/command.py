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
from worker.conversation_tests.model import Case, test_file_json_schema
from worker.conversation_tests.report import failure_text, heard_text, summary_line, totals, write_junit
from worker.conversation_tests.runner import CaseResult, run_batches
from worker.conversation_tests.variants import Variant, case_variants

ALL_PASSED, SOME_FAILED, INVALID = 0, 1, 2


def print_schema(out: TextIO = sys.stdout) -> int:
    out.write(json.dumps(test_file_json_schema(), indent=2) + "\n")
    return ALL_PASSED


def run(files: list[Path], worker: Path | None = None, junit: Path | None = None, show_coverage: bool = False,
        jobs: int = 4, out: TextIO = sys.stdout, err: TextIO = sys.stderr, vary: int = 0) -> int:
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
    cases = [(f, c) for f in loaded for c in f.tests.cases]
    varied = [(f, c, v, vc) for f, c in cases for v, vc in case_variants(f.spec, c, vary)] if vary > 0 else []
    results, variant_results = asyncio.run(run_batches([cases, [(f, vc) for f, _, _, vc in varied]], jobs=jobs))
    for result in results:
        out.write(summary_line(result) + "\n")
        if not result.passed:
            out.write(failure_text(result) + "\n")
        elif result.channel == "voice" and heard_text(result):
            out.write(heard_text(result) + "\n")
    out.write(totals(results) + "\n")
    if vary > 0:
        out.write(variants_text([(c, v, r) for (_, c, v, _), r in zip(varied, variant_results)], vary))
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


def variants_text(runs: list[tuple[Case, Variant, CaseResult]], vary: int) -> str:
    """--vary: how many variants passed, and each that failed with its text and first mismatch."""
    failed = [(c, v, r) for c, v, r in runs if not r.passed]
    lines = [f"variants (--vary {vary}): {len(runs) - len(failed)} of {len(runs)} passed"
             + (f", {len(failed)} failed:" if failed else "")]
    for case, variant, result in failed:
        lines.append(f"FAIL {result.file} :: {case.name} [{case.channel}] step {variant.step + 1} ({variant.kind}): "
                     f"{variant.text!r}")
        first = next(((s.number, m) for s in result.steps for m in s.mismatches), None)
        if first is not None:
            number, m = first
            lines.append(f"    step {number}: {m.what}: expected {m.expected}, got {m.got}")
        elif result.error:
            lines.append(f"    error: {result.error.splitlines()[0]}")
        heard = [s for s in result.steps if s.heard is not None and s.number == variant.step + 1]
        if heard:
            lines.append(f"    said {heard[0].user!r}, heard {heard[0].heard!r}")
    return "\n".join(lines) + "\n"
