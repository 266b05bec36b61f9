"""The `channel-worker extract` wire format: one request in, one JSON object out."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import IO, Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field, ValidationError, field_validator

from dialogue.spec import WorkerSpec
from extraction.base import ExtractionContext, Extractor
from extraction.routing import TaskRouter


class ExtractRequest(BaseModel):
    text: str
    requested: list[str] = Field(default_factory=list)
    now: datetime | None = None

    @field_validator("requested", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value or []


def run_one(extractor: Extractor, spec: WorkerSpec, request: ExtractRequest,
            router: TaskRouter | None = None) -> dict[str, Any]:
    """`router`: the spec's task router (a spec with tasks); the result then says which task the
    text starts, `"task": {"name", "confidence"}`, or `"task": null` when it matches none."""
    now = request.now or datetime.now(timezone.utc)
    if now.tzinfo is None:
        now = now.replace(tzinfo=ZoneInfo(spec.timezone))
    context = ExtractionContext(requested=[r for r in request.requested if r in {f.name for f in spec.fields}],
                                now=now.astimezone(ZoneInfo(spec.timezone)))
    found = extractor.extract(request.text, spec.fields, context)
    result: dict[str, Any] = {
        "fields": {
            e.field: {"value": e.value, "start": e.start, "end": e.end, "text": e.text, "confidence": e.confidence}
            for e in found
        }
    }
    if router is not None:
        routed = router.route(request.text)
        result["task"] = None if routed.task is None else {"name": routed.task, "confidence": round(routed.confidence, 3)}
    return result


def run_jsonl(extractor: Extractor, spec: WorkerSpec, source: IO[str], sink: IO[str], errors: Any,
              router: TaskRouter | None = None) -> int:
    """One output line per input line, in order; a bad line gets `{"error": ...}` and is counted."""
    failures = 0
    for number, line in enumerate(source, start=1):
        if not line.strip():
            continue
        try:
            request = ExtractRequest.model_validate_json(line)
            result: dict[str, Any] = run_one(extractor, spec, request, router)
        except (ValidationError, ValueError) as exc:
            failures += 1
            message = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
            errors.print(f"[red]error[/red] line {number}: {message}", highlight=False)
            result = {"error": f"line {number}: {message}"}
        sink.write(json.dumps(result, ensure_ascii=False) + "\n")
    return failures
