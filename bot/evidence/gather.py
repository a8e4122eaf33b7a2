"""Evidence for one incident: every section gathered into an ``Evidence``
(``paytriage.domain.evidence``, which the store keeps as JSON).

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
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

from paytriage.config.models import EvidenceConfig, LogFields
from paytriage.core.promql import build_query
from paytriage.core.types import iso
from paytriage.detectors import REGISTRY
from paytriage.detectors.base import ImpactLine, RatioQueries
from paytriage.detectors.signals import Frame
from paytriage.domain.evidence import (
    BreakdownSection,
    ChangeItem,
    ChangesSection,
    ChartSection,
    CodeItem,
    ConcurrentItem,
    DimensionItem,
    Evidence,
    FindingItem,
    ImpactSection,
    LogsSection,
    Onset,
    PatternItem,
    TopValue,
)
from paytriage.domain.findings import Finding, QueryRef
from paytriage.domain.incidents import Incident, MemberKey, related
from paytriage.evidence.breakdown import Breakdown, DimensionBreakdown
from paytriage.evidence.breakdown import gather_breakdown as read_breakdown
from paytriage.evidence.changes import ChangeEvidence, gather_changes
from paytriage.evidence.chart import chart_finding
from paytriage.evidence.impact import (
    Impact,
    TicketSize,
    estimate_impact,
    format_count,
    format_money,
    format_window,
)
from paytriage.evidence.logs import LogEvidence, gather_logs
from paytriage.sources.base import LogSource, MetricsSource, Series, SourceError

log = logging.getLogger(__name__)


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


def breakdown_section(b: Breakdown) -> BreakdownSection:
    return BreakdownSection(
        lines=tuple(b.lines()),
        failures=_num(b.failures),
        attempts=_num(b.attempts),
        baseline_rate=_num(b.baseline_rate),
        baseline=b.baseline_text(b.baseline_kind),
        excess=_num(b.excess),
        dimensions=tuple(dimension_item(d) for d in b.breakdowns),
        missing=tuple(b.missing),
        queries=tuple(b.queries),
    )


MIN_CHART_SPAN = timedelta(hours=1)


def zoom(onset: datetime, now: datetime, widest: timedelta) -> timedelta:
    """How much a chart shows, up to now: the incident so far and twice as long before its
    onset for context (a 10-minute outage is not a blip in three hours of traffic), at least
    an hour and at most ``widest`` (``evidence.chart_span``)."""
    lasted = max(now - onset, timedelta(0))
    return min(widest, max(MIN_CHART_SPAN, 3 * lasted))


def _total(series: Sequence[Series]) -> float | None:
    """The sum of an instant query's values (None when it returned nothing finite)."""
    values = [float(v) for x in series for v in x.values if math.isfinite(v)]
    return sum(values) if values else None


def dimension_item(d: DimensionBreakdown, shown: int = 3) -> DimensionItem:
    """The values of a dimension that stand out (significant), at most ``shown``: a value
    that does not stand out is noise to the person reading, so it is counted, not listed."""
    standing = [c for c in d.contributions if c.significant]
    return DimensionItem(
        dimension=d.dimension,
        missing=d.missing,
        top=tuple(
            TopValue(
                value=c.value,
                text=c.describe(),
                rate=_num(c.rate),
                baseline_rate=_num(c.baseline_rate),
                failures=_num(c.failures),
                attempts=_num(c.attempts),
                share_of_excess=_num(c.share),
                significant=c.significant,
                queries=c.queries,
                specific=c.specific,
            )
            for c in standing[:shown]
        ),
        standing_out=len(standing),
        values=len(d.contributions),
        alike=bool(standing) and not any(c.specific for c in standing),
    )


def impact_section(i: Impact) -> ImpactSection:
    return ImpactSection(
        lines=tuple(i.lines()),
        failed=_num(i.failed),
        attempts=_num(i.attempts),
        excess=_num(i.excess),
        per_minute=_num(i.per_minute),
        amount_so_far=_num(i.amount_so_far),
        amount_per_minute=_num(i.amount_per_minute),
        currency=i.ticket.currency if i.ticket else None,
        window_seconds=i.duration.total_seconds(),
        queries=tuple(i.queries),
    )


def logs_section(ev: LogEvidence) -> LogsSection:
    return LogsSection(
        patterns=tuple(
            PatternItem(
                template=p.template,
                error_code=p.error_code,
                count_now=p.count_now,
                count_before=p.count_before,
                new=p.new,
                example=p.example,
                sampled=p.sampled,
            )
            for p in ev.patterns
        ),
        error_codes=tuple(CodeItem(c.code, c.count_now, c.count_before) for c in ev.rising_codes),
        window=(ev.start, ev.end),
        before=(ev.before_start, ev.before_end),
        total_now=ev.total_now,
        total_before=ev.total_before,
        ignored_dimensions=tuple(ev.ignored_dimensions),
        missing=ev.missing,
        queries=tuple(ev.queries),
    )


def changes_section(ev: ChangeEvidence) -> ChangesSection:
    return ChangesSection(
        items=tuple(
            ChangeItem(
                at=c.at,
                service=c.service,
                kind=c.kind,
                version=c.version,
                author=c.author,
                description=c.description,
                minutes_before_onset=round(c.seconds_before_onset / 60, 1),
                mentions=tuple(c.mentions),
                score=c.score,
            )
            for c in ev.changes[:10]
        ),
        total=ev.total,
        onset=ev.onset,
        missing=ev.missing,
        queries=(ev.query,) if ev.query else (),
    )


def concurrent_section(
    inc: Incident, active: Sequence[Finding], start: datetime
) -> tuple[ConcurrentItem, ...]:
    """Other findings raised in the incident window that are not part of it, those on a
    related slice first, then by time."""
    others = [
        (related(inc.dimensions, f.dimensions), f)
        for f in active
        if MemberKey.of(f) not in inc.members and f.at >= start
    ]
    return tuple(
        ConcurrentItem(f.detector, dict(f.dimensions), f.title, f.at, rel)
        for rel, f in sorted(others, key=lambda x: (not x[0], iso(x[1].at)))
    )


def finding_section(f: Finding) -> FindingItem:
    return FindingItem(
        detector=f.detector,
        dimensions=dict(f.dimensions),
        title=f.title,
        observed=_num(f.observed),
        expected=_num(f.expected),
        band=(_num(f.band[0]), _num(f.band[1])),
        unit=f.unit,
        at=f.at,
        onset=f.onset,
        queries=tuple(f.queries),
    )


@dataclass(frozen=True)
class Gathered:
    """The evidence and, when one could be drawn, the chart (a PNG the pipeline saves)."""

    evidence: Evidence
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
        breakdown: BreakdownSection | None = None
        impact: ImpactSection | None = None
        declared = REGISTRY.get(inc.detector)
        ratio = declared.ratio if declared is not None else None
        if declared is not None and declared.impact and ratio is None and not inc.data_problem:
            impact = self._impact(declared.impact, inc.dimensions, start, end)
        if ratio is not None and not inc.data_problem:
            b = self._breakdown(ratio, inc.dimensions, start, end, ratio.labels)
            breakdown = breakdown_section(b)
            impact = impact_section(
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
            logs = LogsSection(missing="no log source configured")
            changes = ChangesSection(missing="no log source configured")
        else:
            logs = logs_section(
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
            changes = changes_section(
                gather_changes(
                    self.logs,
                    self.changes_index,
                    onset,
                    self.config.changes_lookback,
                    self.config.changes_after,
                    dimensions=inc.dimensions,
                )
            )
        chart = self._chart(inc, lead, (frames or {}).get(inc.detector))
        ev = Evidence(
            gathered_at=at,
            window=(start, end),
            onset=Onset(
                at=onset,
                how="change point on the detector's signal" if inc.onset else "first alert",
                detected_at=inc.opened_at,
            ),
            findings=tuple(finding_section(f) for f in inc.active.values())
            or (finding_section(lead),),
            breakdown=breakdown,
            impact=impact,
            logs=logs,
            changes=changes,
            concurrent=concurrent_section(inc, active, start),
            chart=ChartSection(True)
            if chart is not None
            else ChartSection(False, missing="no chart for this detector's signal"),
        )
        return Gathered(ev, chart)

    def _impact(
        self,
        lines: Sequence[ImpactLine],
        dims: Mapping[str, str],
        start: datetime,
        end: datetime,
    ) -> ImpactSection:
        """What the incident cost in the detector's own terms over its window (see
        ``detectors.base.ImpactLine``); a figure that cannot be read says so."""
        window = end - start
        texts: list[str] = []
        refs: list[QueryRef] = []
        lost: float | None = None
        for line in lines:
            now_q = build_query(line.query, by=(), window=window, dims=dims)
            refs.append(QueryRef("prometheus", now_q, start, end))
            try:
                now = _total(self.metrics.query(now_q, end))
                if not line.shortfall:
                    texts.append(f"{format_count(now)} {line.what} in {format_window(window)}")
                    continue
                base, when = None, ""
                # the same window a week earlier (seasonal), else a day earlier (short history)
                for offset in dict.fromkeys((self.config.baseline_offset, timedelta(days=1))):
                    base_q = build_query(line.query, by=(), window=window, dims=dims, offset=offset)
                    base = _total(self.metrics.query(base_q, end))
                    if base is not None:
                        refs.append(QueryRef("prometheus", base_q, start - offset, end - offset))
                        when = f"{format_window(offset)} earlier"
                        break
            except SourceError as exc:
                texts.append(f"{line.what}: could not be read ({exc.kind.value} error)")
                continue
            if now is None or base is None:
                texts.append(f"{line.what}: unknown (no data to compare with)")
                continue
            lost = max(0.0, base - now)
            texts.append(
                f"{format_count(lost)} {line.what} in {format_window(window)} "
                f"({format_count(now)} came, against {format_count(base)} the same window "
                f"{when})"
            )
        if lost and self.ticket is not None:
            amount = format_money(lost * self.ticket.amount, self.ticket.currency)
            texts.append(f"About {amount} of payments at the average ticket")
        return ImpactSection(
            lines=tuple(texts), window_seconds=window.total_seconds(), queries=tuple(refs)
        )

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

    def _chart(self, inc: Incident, lead: Finding, frame: Frame | None) -> bytes | None:
        """The incident's chart, titled as it was paged, with the expected value and band
        it was paged against (a refresh's band, learnt during the incident, can swallow the
        spike) and its real detection time; the data run up to now."""
        detector = inc.detector
        declared = REGISTRY.get(detector)
        spec = declared.chart if declared is not None else None
        if spec is None or frame is None or spec.signal not in frame.data:
            return None
        if not 0 <= frame.index(lead.at) < frame.n:
            return None
        first = inc.first
        judged = first if first is not None and MemberKey.of(first) == MemberKey.of(lead) else lead
        shown = replace(
            lead,
            title=inc.title,
            onset=inc.onset or lead.onset,
            expected=judged.expected,
            band=judged.band,
        )
        try:
            return chart_finding(
                frame,
                shown,
                spec.signal,
                spec.per,
                span=zoom(inc.onset or inc.opened_at, lead.at, self.config.chart_span),
                detected=inc.opened_at,
            )
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


__all__ = ["EvidenceGatherer", "Gathered", "incident_window", "save_chart"]
