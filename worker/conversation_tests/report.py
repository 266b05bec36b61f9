"""What a test run prints (PASS/FAIL per case; for a failure, expected against got and the whole
transcript) and the JUnit XML CI systems read."""

from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree as ET

from worker.conversation_tests.runner import CaseResult


def failure_text(result: CaseResult) -> str:
    """A failed case, readably: each step's expected/got, then the transcript with step numbers."""
    out: list[str] = []
    if result.error:
        out.append(f"  error: {result.error.rstrip()}")
    for step in result.steps:
        if not step.mismatches:
            continue
        out.append(f"  step {step.number} (person: {step.user!r}):")
        for m in step.mismatches:
            out.append(f"    {m.what}:")
            out.append(f"      - expected: {m.expected}")
            out.append(f"      + got:      {m.got}")
    if result.transcript:
        out.append("  transcript:")
        number = 0
        failed = {s.number for s in result.steps if s.mismatches}
        for line in result.transcript:
            if line.role == "person":
                number += 1
                mark = "!" if number in failed else " "
                out.append(f"   {mark}{number:>3} person: {line.text}")
                if line.heard is not None:
                    out.append(f"        heard:  {line.heard or '(nothing)'}")
            else:
                out.append(f"        worker: {line.text}")
    return "\n".join(out)


def summary_line(result: CaseResult) -> str:
    status = "PASS" if result.passed else "FAIL"
    return f"{status} {result.file} :: {result.name} [{result.channel}] ({result.seconds * 1000:.0f} ms)"


def heard_text(result: CaseResult) -> str:
    """A voice case's lines that were heard otherwise than written: said X, heard Y."""
    return "\n".join(f"  step {s.number}: said {s.user!r}, heard {s.heard!r}" for s in result.steps
                     if s.heard is not None)


def totals(results: list[CaseResult]) -> str:
    failed = sum(not r.passed for r in results)
    return f"{len(results) - failed} passed, {failed} failed, {len(results)} cases"


def write_junit(results: list[CaseResult], path: Path) -> None:
    """One <testsuite> per file, one <testcase> per case (classname: the file, name: the case
    and its channel); a failure's message is its first mismatch, its text the whole report."""
    suites = ET.Element("testsuites", name="channel-worker test", tests=str(len(results)),
                        failures=str(sum(not r.passed for r in results)),
                        time=f"{sum(r.seconds for r in results):.3f}")
    by_file: dict[str, list[CaseResult]] = {}
    for r in results:
        by_file.setdefault(r.file, []).append(r)
    for file, cases in by_file.items():
        suite = ET.SubElement(suites, "testsuite", name=file, tests=str(len(cases)),
                              failures=str(sum(not c.passed for c in cases)), errors="0",
                              time=f"{sum(c.seconds for c in cases):.3f}")
        for c in cases:
            case = ET.SubElement(suite, "testcase", classname=file, name=f"{c.name} [{c.channel}]",
                                 time=f"{c.seconds:.3f}")
            if not c.passed:
                first = next((f"step {s.number}: {m.what}: expected {m.expected}, got {m.got}"
                              for s in c.steps for m in s.mismatches), (c.error or "failed").splitlines()[0])
                failure = ET.SubElement(case, "failure", message=first, type="ConversationTestFailure")
                failure.text = failure_text(c)
    tree = ET.ElementTree(suites)
    ET.indent(tree)
    tree.write(path, encoding="utf-8", xml_declaration=True)
