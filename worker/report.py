"""The KPI figures as people read them: the review console's KPI page (`/review/kpis`) and
`channel-worker report`, which writes the same figures offline as one self-contained HTML file
(inline CSS and SVG, no link, no script) or as JSON.

The numbers come from transcripts/kpis.py (what each one counts is said there); this module only
formats them, draws the bar charts (SVG, every bar with its number written beside it and each
chart's accessible name listing them all, so they read without colour and with a screen reader),
and adds the drift alarm's labelled-accuracy window (escalation/drift.py).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from escalation.drift import DriftStatus
from escalation.rules import DriftBand
from transcripts.kpis import PERCENTILES, Figures, Kpis

BAR_WIDTH = 360
DIMENSION_TITLES = {"channel": "By channel", "worker": "By worker", "task": "By task", "spec_version": "By spec version",
                    "day": "By day"}
EMPTY_KEY = {"task": "no task", "spec_version": "not recorded"}


def pct(x: float | None) -> str:
    return f"{100 * x:.1f}%" if x is not None else "–"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def ms(value: int | None) -> str:
    return f"{value:,} ms" if value is not None else "–"


def ratio(x: float | None) -> str:
    return f"{x:.2f}" if x is not None else "–"


def bars(items: list[tuple[str, float, str]], said: list[str] | None = None) -> dict[str, Any]:
    """One horizontal bar chart: per item its label, its value (the bar's length, relative to the
    largest) and the text written beside the bar; `said`, the same as the chart's accessible name
    reads it (the text when not given)."""
    largest = max((v for _, v, _ in items), default=0) or 1
    rows = [{"label": label, "text": text, "said": said[i] if said else text,
             "width": round(BAR_WIDTH * value / largest, 1), "y": i * 28}
            for i, (label, value, text) in enumerate(items)]
    return {"rows": rows, "height": max(len(rows) * 28, 28), "bar_width": BAR_WIDTH}


def counted(items: list[tuple[str, int]], total: int | None) -> dict[str, Any]:
    """Bars of counts, each written as 'n · share of total' (read as 'n (share)')."""
    return bars([(label, n, f"{n} · {pct(n / total)}" if total else str(n)) for label, n in items],
                [f"{n} ({pct(n / total)})" if total else str(n) for _, n in items])


def _row(f: Figures, dim: str) -> dict[str, Any]:
    return {
        "key": f.key or EMPTY_KEY.get(dim, "–"), "raw_key": f.key, "conversations": f.conversations, "ended": f.ended,
        "completion": pct(f.completion_rate), "success": pct(f.success_rate), "escalation": pct(f.escalation_rate),
        "abandonment": pct(f.abandonment_rate), "handle": duration(f.handle_seconds),
        "reasks": ratio(f.reasks_per_conversation), "fallbacks": ratio(f.fallbacks_per_conversation),
        "p50": ms(f.latency(50)), "p95": ms(f.latency(95)),
    }


def view(k: Kpis, drift: DriftStatus | None = None, band: DriftBand | None = None) -> dict[str, Any]:
    """Everything the KPI template shows, formatted."""
    t = k.total
    latency = {p: t.latency(p) for p in PERCENTILES}
    outcomes = [(o or "open", n) for o, n in k.by_outcome.items()]
    confidence = [(f"{i / 10:.1f}–{(i + 1) / 10:.1f}", n) for i, n in enumerate(k.confidence)]
    accuracy = [(field, ok / n if n else 0.0, f"{ok} of {n} · {pct(ok / n if n else None)}")
                for field, (ok, n) in k.accuracy_by_field.items()]
    days = k.by.get("day", [])
    return {
        "headline": [
            ("Conversations", f"{t.conversations:,}", None),
            ("Ended", f"{t.ended:,}", None),
            ("Completion", pct(t.completion_rate), f"{t.completed} completed"),
            ("Success (confirmed)", pct(t.success_rate), f"{t.success} confirmed and done"),
            ("Escalation rate", pct(t.escalation_rate), f"{t.escalated} handed over"),
            ("Abandonment", pct(t.abandonment_rate), f"{t.abandoned} left"),
            ("Mean handle time", duration(t.handle_seconds), "ended conversations"),
            ("Re-asks", ratio(t.reasks_per_conversation), f"{t.reasks} in all, per conversation"),
            ("Fallbacks", ratio(t.fallbacks_per_conversation), f"{t.fallbacks} in all, per conversation"),
            ("Labelled accuracy", pct(k.accuracy), f"{k.labelled_right} of {k.labelled} values" if k.labelled else None),
            ("Voice latency p50", ms(latency[50]), f"{t.voice_turns} spoken turns" if t.voice_turns else None),
            ("Voice latency p95", ms(latency[95]), None),
        ],
        "charts": [
            ("outcomes", "Outcomes", "Conversations by outcome", counted(outcomes, t.conversations), None),
            ("rules", "Escalations by rule (share of ended conversations)", "Escalations by rule",
             counted(list(k.by_rule.items()), t.ended), "No escalation."),
            ("reasks", "Re-asks per field (share of all re-asks)", "Re-asks per field",
             counted(list(k.reasks_by_field.items()), t.reasks), "No field was asked again."),
            ("confidence", "Lowest confidence per conversation", "Conversations by their lowest value confidence",
             counted(confidence, sum(k.confidence)), None),
            ("accuracy", "Labelled accuracy per field", "Share of labelled values marked right, per field",
             bars(accuracy), "No value labelled yet."),
            ("latency", "Voice reply latency", "Voice reply latency percentiles, from the caller's last word to the "
             "worker's first audio", bars([(f"p{p}", latency[p] or 0, ms(latency[p])) for p in PERCENTILES])
             if t.voice_turns else bars([]), "No call with per-turn timings."),
            ("days", "Conversations per day", "Conversations started per day",
             counted([(d.key, d.conversations) for d in days], None), "No conversation."),
        ],
        "tables": [(dim, DIMENSION_TITLES[dim], [_row(f, dim) for f in k.by.get(dim, [])])
                   for dim in ("channel", "worker", "task", "spec_version", "day")],
        "drift": _drift(drift, band),
    }


def _drift(drift: DriftStatus | None, band: DriftBand | None) -> dict[str, Any] | None:
    if drift is None:
        return None
    threshold = band.min_labelled_accuracy if band else None
    return {"worker": drift.worker, "labels": drift.labels, "accuracy": pct(drift.labelled_accuracy), "window": band.label_window if band else 50,
            "threshold": pct(threshold) if threshold is not None else None, "alarms": drift.alarms}


def period_text(k: Kpis) -> str:
    since = k.since.date().isoformat() if k.since else "the first conversation"
    until = f"before {k.until.date().isoformat()}" if k.until else "now"
    return f"{'Worker ' + k.worker + ', c' if k.worker else 'C'}onversations started from {since} to {until}"


def render_html(k: Kpis, drift: DriftStatus | None = None, band: DriftBand | None = None) -> str:
    """The report as one HTML file: the KPI page's figures, charts and tables, with the console's
    stylesheet inline and no link, script or image to fetch."""
    from worker.review.render import _ENV, STATIC

    css = (STATIC / "review.css").read_text(encoding="utf-8")
    return _ENV.get_template("report.html").render(
        v=view(k, drift, band), css=css, period=period_text(k), links=False,
        made=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))


def render_json(k: Kpis, drift: DriftStatus | None = None) -> str:
    data = k.as_json()
    if drift is not None:
        data["drift"] = {"labels": drift.labels, "labelled_accuracy": drift.labelled_accuracy, "alarms": drift.alarms}
    return json.dumps(data, indent=2) + "\n"


def write(text: str, output: Path | None) -> None:
    if output is None:
        import sys

        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")


async def build(url: str, since: datetime | None, until: datetime | None, worker: str | None,
                band: DriftBand | None = None) -> tuple[Kpis, DriftStatus | None]:
    """The figures from the database at `url`; the drift window too when one worker is asked for."""
    from escalation.drift import drift_status
    from transcripts.kpis import kpis
    from transcripts.store import TranscriptStore

    store = await TranscriptStore.open(url)
    try:
        k = await kpis(store, since, until, worker)
        drift = await drift_status(store, worker, band) if worker else None
        return k, drift
    finally:
        await store.close()


def worker_and_band(worker: str | None) -> tuple[str | None, DriftBand | None]:
    """`--worker` is a worker's name, or its spec file (then its drift band sets the threshold)."""
    if worker and worker.endswith((".yaml", ".yml")) and Path(worker).is_file():
        from dialogue.spec_loader import load_spec

        spec = load_spec(Path(worker))
        return spec.name, spec.escalation.drift
    return worker, None
