"""The drift alarm: a rolling escalation rate and mean field confidence per worker, and the
labelled accuracy of its latest reviewed values (review console labels), checked against the
band the spec sets. Out of band, a warning is logged, written to the audit trail
and shown on /metrics, so a change in callers or a broken extractor is seen early."""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel

from escalation.rules import DriftBand
from transcripts.kpis import recent_label_accuracy
from transcripts.store import ConversationRecord, TranscriptStore

log = logging.getLogger(__name__)


class DriftStatus(BaseModel):
    worker: str
    window: int
    conversations: int
    escalation_rate: float | None
    mean_confidence: float | None
    # Of the last `label_window` stored values reviewers labelled (latest label per value).
    labels: int = 0
    labelled_accuracy: float | None = None
    alarms: list[str]


async def drift_status(store: TranscriptStore, worker: str, band: DriftBand | None) -> DriftStatus:
    window = band.window if band else 50
    rows = await store.recent_ended(worker, window)
    rate, mean = _rate(rows, "escalated"), _mean_confidence(rows)
    alarms: list[str] = []
    # Too few conversations say nothing yet; wait for a fifth of the window.
    if band and rows and len(rows) >= max(5, window // 5):
        if band.max_escalation_rate is not None and rate is not None and rate > band.max_escalation_rate:
            alarms.append(f"escalation rate {rate:.2f} is above {band.max_escalation_rate:.2f}")
        if band.min_escalation_rate is not None and rate is not None and rate < band.min_escalation_rate:
            alarms.append(f"escalation rate {rate:.2f} is below {band.min_escalation_rate:.2f}")
        if band.min_mean_confidence is not None and mean is not None and mean < band.min_mean_confidence:
            alarms.append(f"mean field confidence {mean:.2f} is below {band.min_mean_confidence:.2f}")
    labelled = await recent_label_accuracy(store, worker, band.label_window if band else 50)
    # As with conversations: too few labels say nothing yet.
    if (band and band.min_labelled_accuracy is not None and labelled.accuracy is not None
            and labelled.labels >= max(5, band.label_window // 5) and labelled.accuracy < band.min_labelled_accuracy):
        alarms.append(f"labelled accuracy {labelled.accuracy:.2f} is below {band.min_labelled_accuracy:.2f} "
                      f"(last {labelled.labels} labelled values)")
    return DriftStatus(worker=worker, window=window, conversations=len(rows), escalation_rate=rate,
                       mean_confidence=mean, labels=labelled.labels, labelled_accuracy=labelled.accuracy, alarms=alarms)


def _rate(ended: list[ConversationRecord], outcome: str) -> float | None:
    """Share of the ended conversations with this outcome (None: none ended)."""
    return sum(r.outcome == outcome for r in ended) / len(ended) if ended else None


def _mean_confidence(ended: list[ConversationRecord]) -> float | None:
    """Mean confidence of every field the ended conversations hold."""
    confidences = [f["confidence"] for r in ended for f in (r.fields or {}).values()
                   if isinstance(f, dict) and "confidence" in f]
    return sum(confidences) / len(confidences) if confidences else None


class VersionFigures(BaseModel):
    """One spec version's figures: how many conversations started on it, and of those that ended,
    the share completed and escalated and the mean field confidence (as the drift alarm counts)."""

    spec_version: str | None
    spec_hash: str | None
    conversations: int
    ended: int
    completion_rate: float | None
    escalation_rate: float | None
    mean_confidence: float | None


def by_spec_version(conversations: list[ConversationRecord]) -> list[VersionFigures]:
    """Figures per spec version (label and content hash), in the order the versions first
    started a conversation; conversations from before versions were recorded are one group
    with both null."""
    groups: dict[tuple[str | None, str | None], list[ConversationRecord]] = {}
    for c in conversations:
        groups.setdefault((c.spec_version, c.spec_hash), []).append(c)
    figures = []
    for (version, digest), rows in groups.items():
        ended = [r for r in rows if r.outcome is not None]
        figures.append(VersionFigures(
            spec_version=version, spec_hash=digest, conversations=len(rows), ended=len(ended),
            completion_rate=_rate(ended, "completed"), escalation_rate=_rate(ended, "escalated"),
            mean_confidence=_mean_confidence(ended)))
    return figures


def prometheus(status: DriftStatus, extra: dict[str, Any] | None = None) -> str:
    """The figures in Prometheus' text format for /metrics."""
    w = status.worker
    lines = [
        "# HELP channel_worker_escalation_rate Share of the last ended conversations that were handed over.",
        "# TYPE channel_worker_escalation_rate gauge",
        f'channel_worker_escalation_rate{{worker="{w}"}} {status.escalation_rate if status.escalation_rate is not None else "NaN"}',
        "# HELP channel_worker_mean_field_confidence Mean confidence of fields in the last ended conversations.",
        "# TYPE channel_worker_mean_field_confidence gauge",
        f'channel_worker_mean_field_confidence{{worker="{w}"}} {status.mean_confidence if status.mean_confidence is not None else "NaN"}',
        "# HELP channel_worker_drift_alarm 1 when a rolling figure is outside the spec's band.",
        "# TYPE channel_worker_drift_alarm gauge",
        f'channel_worker_drift_alarm{{worker="{w}"}} {1 if status.alarms else 0}',
        "# HELP channel_worker_labelled_accuracy Share of the last labelled values that reviewers marked right.",
        "# TYPE channel_worker_labelled_accuracy gauge",
        f'channel_worker_labelled_accuracy{{worker="{w}"}} {status.labelled_accuracy if status.labelled_accuracy is not None else "NaN"}',
    ]
    for name, value in (extra or {}).items():
        lines += [f"# TYPE channel_worker_{name} gauge", f'channel_worker_{name}{{worker="{w}"}} {value}']
    return "\n".join(lines) + "\n"
