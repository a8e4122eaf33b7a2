"""Evidence for one incident: every section gathered, shaped into the JSON the store keeps.

The IO edge of the evidence package. ``EvidenceGatherer.gather`` reads the breakdown and
impact from the metrics source, log patterns and changes from the log source, renders the
chart from the frame the detector judged, and lists the other findings raised meanwhile. A
source that fails leaves its section with ``missing`` saying why; nothing raises, nothing
else is skipped. Every number keeps the query and window that produced it (``queries``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bot.config.models import EvidenceConfig, LogFields
from bot.evidence.breakdown import AUTHORIZATIONS, CAPTURES, Breakdown, RatioQueries
from bot.evidence.breakdown import gather_breakdown as read_breakdown
from bot.evidence.changes import ChangeEvidence, gather_changes
from bot.evidence.chart import chart_finding
from bot.evidence.impact import Impact, TicketSize, estimate_impact
from bot.evidence.logs import LogEvidence, gather_logs
from bot.incidents.grouping import Incident, iso, related
from bot.sources.base import LogSource, MetricsSource
from detectors.base import Finding, QueryRef
from detectors.signals import Frame

log = logging.getLogger(__name__)

# The failure ratio each detector judges, for the breakdown and the impact.
RATIOS: dict[str, RatioQueries] = {"decline_spike": AUTHORIZATIONS, "capture_failures": CAPTURES}
# The labels each ratio's metrics carry (None: any configured in ``breakdown_by``).
RATIO_LABELS: dict[str, tuple[str, ...] | None] = {
    "decline_spike": None,
    "capture_failures": ("psp",),
}

# The detector's signals to chart: (numerator, denominator) for a ratio, (signal, None) else.
CHARTS: dict[str, tuple[str, str | None]] = {
    "decline_spike": ("failures", "attempts"),
    "capture_failures": ("failures", "attempts"),
    "traffic_drop": ("attempts", None),
    "webhook_lag": ("lag_p95", None),
    "refund_sla": ("pending_over_sla", None),
}


def query_dict(q: QueryRef) -> dict[str, Any]:
    out: dict[str, Any] = {"source": q.source, "query": q.query}
    if q.start is not None:
        out["start"] = iso(q.start)
    if q.end is not None:
        out["end"] = iso(q.end)
    if q.step is not None:
        out["step_seconds"] = q.step.total_seconds()
    return out


def _num(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def lead_finding(inc: Incident) -> Finding:
    """The finding that names the incident: its first detector's on its own slice, latest."""
    for f in (*inc.active.values(), *inc.members.values()):
        if f.detector == inc.detector and f.dimensions == inc.dimensions:
            return f
    return next(iter(inc.active.values() or inc.members.values()))


def incident_window(
    inc: Incident, at: datetime, min_window: timedelta
) -> tuple[datetime, datetime]:
    """From the onset (else the opening) to ``at``, at least ``min_window`` long."""
    start = inc.onset or inc.opened_at
    return min(start, at - min_window), at


def breakdown_section(b: Breakdown) -> dict[str, Any]:
    return {
        "lines": b.lines(),
        "failures": _num(b.failures),
        "attempts": _num(b.attempts),
        "baseline_rate": _num(b.baseline_rate),
        "baseline": b.baseline_text(b.baseline_kind),
        "excess": _num(b.excess),
        "dimensions": [
            {
                "dimension": d.dimension,
                "missing": d.missing,
                "top": [
                    {
                        "value": c.value,
                        "text": c.describe(),
                        "rate": _num(c.rate),
                        "baseline_rate": _num(c.baseline_rate),
                        "failures": _num(c.failures),
                        "attempts": _num(c.attempts),
                        "share_of_excess": _num(c.share),
                        "significant": c.significant,
                        "queries": [query_dict(q) for q in c.queries],
                    }
                    for c in d.top(3)
                ],
            }
            for d in b.breakdowns
        ],
        "missing": list(b.missing),
        "queries": [query_dict(q) for q in b.queries],
    }


def impact_section(i: Impact) -> dict[str, Any]:
    return {
        "lines": i.lines(),
        "failed": _num(i.failed),
        "attempts": _num(i.attempts),
        "excess": _num(i.excess),
        "per_minute": _num(i.per_minute),
        "amount_so_far": _num(i.amount_so_far),
        "amount_per_minute": _num(i.amount_per_minute),
        "currency": i.ticket.currency if i.ticket else None,
        "window_seconds": i.duration.total_seconds(),
        "queries": [query_dict(q) for q in i.queries],
    }


def logs_section(ev: LogEvidence) -> dict[str, Any]:
    return {
        "patterns": [
            {
                "template": p.template,
                "error_code": p.error_code,
                "count_now": p.count_now,
                "count_before": p.count_before,
                "new": p.new,
                "example": p.example,
                "sampled": p.sampled,
            }
            for p in ev.patterns
        ],
        "error_codes": [
            {"code": c.code, "count_now": c.count_now, "count_before": c.count_before}
            for c in ev.rising_codes
        ],
        "window": [iso(ev.start), iso(ev.end)],
        "before": [iso(ev.before_start), iso(ev.before_end)],
        "total_now": ev.total_now,
        "total_before": ev.total_before,
        "ignored_dimensions": list(ev.ignored_dimensions),
        "missing": ev.missing,
        "queries": [query_dict(q) for q in ev.queries],
    }


def changes_section(ev: ChangeEvidence) -> dict[str, Any]:
    return {
        "items": [
            {
                "at": iso(c.at),
                "service": c.service,
                "kind": c.kind,
                "version": c.version,
                "author": c.author,
                "description": c.description,
                "minutes_before_onset": round(c.seconds_before_onset / 60, 1),
                "mentions": list(c.mentions),
            }
            for c in ev.changes[:10]
        ],
        "total": ev.total,
        "onset": iso(ev.onset),
        "missing": ev.missing,
        "queries": [query_dict(ev.query)] if ev.query else [],
    }


def concurrent_section(
    inc: Incident, active: Sequence[Finding], start: datetime
) -> list[dict[str, Any]]:
    """Other findings raised in the incident window that are not part of it."""
    own = {(f.detector, tuple(sorted(f.dimensions.items()))) for f in inc.members.values()}
    out = []
    for f in active:
        if (f.detector, tuple(sorted(f.dimensions.items()))) in own or f.at < start:
            continue
        out.append(
            {
                "detector": f.detector,
                "dimensions": dict(f.dimensions),
                "title": f.title,
                "at": iso(f.at),
                "related": related(inc.dimensions, f.dimensions),
            }
        )
    return sorted(out, key=lambda d: (not d["related"], d["at"]))


def finding_section(f: Finding) -> dict[str, Any]:
    return {
        "detector": f.detector,
        "dimensions": dict(f.dimensions),
        "title": f.title,
        "observed": _num(f.observed),
        "expected": _num(f.expected),
        "band": [_num(f.band[0]), _num(f.band[1])],
        "unit": f.unit,
        "at": iso(f.at),
        "onset": iso(f.onset) if f.onset else None,
        "queries": [query_dict(q) for q in f.queries],
    }


@dataclass(frozen=True)
class Gathered:
    evidence: dict[str, Any]
    chart: bytes | None


@dataclass
class EvidenceGatherer:
    """Gathers evidence from the sources it is given (``logs`` None: no log source)."""

    metrics: MetricsSource
    logs: LogSource | None
    config: EvidenceConfig
    logs_index: str = "payments-logs-*"
    changes_index: str = "changes-*"
    log_fields: LogFields | None = None
    ticket: TicketSize | None = None

    def gather(
        self,
        inc: Incident,
        at: datetime,
        frames: Mapping[str, Frame] | None = None,
        active: Sequence[Finding] = (),
    ) -> Gathered:
        start, end = incident_window(inc, at, self.config.min_window)
        lead = lead_finding(inc)
        onset = inc.onset or inc.opened_at
        ev: dict[str, Any] = {
            "gathered_at": iso(at),
            "window": [iso(start), iso(end)],
            "onset": {
                "at": iso(onset),
                "how": "change point on the detector's signal" if inc.onset else "first alert",
                "detected_at": iso(inc.opened_at),
            },
            "findings": [finding_section(f) for f in inc.active.values()]
            or [finding_section(lead)],
        }
        ratio = RATIOS.get(inc.detector)
        if ratio is not None and not inc.data_problem:
            b = self._breakdown(ratio, inc.dimensions, start, end, RATIO_LABELS.get(inc.detector))
            ev["breakdown"] = breakdown_section(b)
            ev["impact"] = impact_section(
                estimate_impact(
                    b.failures,
                    b.attempts,
                    b.baseline_rate,
                    end - start,
                    self.ticket,
                    queries=b.queries,
                )
            )
        if self.logs is None:
            ev["logs"] = {"missing": "no log source configured"}
            ev["changes"] = {"missing": "no log source configured"}
        else:
            ev["logs"] = logs_section(
                gather_logs(
                    self.logs,
                    self.logs_index,
                    self.log_fields or LogFields(),
                    inc.dimensions,
                    start,
                    end,
                    max_messages=self.config.log_max_messages,
                )
            )
            ev["changes"] = changes_section(
                gather_changes(
                    self.logs,
                    self.changes_index,
                    onset,
                    self.config.changes_lookback,
                    self.config.changes_after,
                    dimensions=inc.dimensions,
                )
            )
        ev["concurrent"] = concurrent_section(inc, active, start)
        chart = self._chart(inc.detector, lead, (frames or {}).get(inc.detector))
        ev["chart"] = {"rendered": chart is not None}
        if chart is None:
            ev["chart"]["missing"] = "no chart for this detector's signal"
        return Gathered(ev, chart)

    def _breakdown(
        self,
        ratio: RatioQueries,
        dims: Mapping[str, str],
        start: datetime,
        end: datetime,
        labels: tuple[str, ...] | None,
    ) -> Breakdown:
        by = [d for d in self.config.breakdown_by if d not in dims]
        return read_breakdown(
            self.metrics,
            ratio,
            dims,
            start,
            end,
            by=[d for d in by if labels is None or d in labels],
            baseline_offset=self.config.baseline_offset,
        )

    def _chart(self, detector: str, lead: Finding, frame: Frame | None) -> bytes | None:
        spec = CHARTS.get(detector)
        if spec is None or frame is None or spec[0] not in frame.data:
            return None
        if not 0 <= frame.index(lead.at) < frame.n:
            return None
        try:
            return chart_finding(frame, lead, spec[0], spec[1], span=self.config.chart_span)
        except (ValueError, KeyError) as exc:  # a chart is never worth losing the evidence
            log.warning("chart for %s could not be drawn: %s", detector, exc)
            return None


def save_chart(directory: Path, incident_id: str, version: int, png: bytes) -> Path:
    """Write a chart PNG where senders pick it up (the previous versions are removed: the
    latest evidence is what is shown); returns its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{incident_id}-{version}.png"
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(png)
    tmp.replace(path)
    for old in directory.glob(f"{incident_id}-*.png"):
        if old != path:
            old.unlink(missing_ok=True)
    return path


__all__ = ["CHARTS", "RATIOS", "EvidenceGatherer", "Gathered", "incident_window", "save_chart"]
