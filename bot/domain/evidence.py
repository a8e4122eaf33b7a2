"""The evidence of an incident, typed from the gathering to every reader.

``bot.evidence.gather`` builds an :class:`Evidence` (onset, findings, breakdown, impact, log
patterns, changes, concurrent findings, chart), the incident pipeline completes it (its
version, the chart's file, the runbook), the store keeps it as JSON and the Slack message,
the PagerDuty event, the incident commander's summary and the postmortem read it back.

One codec, next to the types: :meth:`Evidence.to_json` writes the JSON the store keeps (the
shape every version of the bot has stored) and :meth:`Evidence.from_json` reads it back
from rows of any age. Reading never raises: unknown keys are ignored, a missing or
malformed value reads as its default (``None``, empty, ``0``) and a missing or malformed
section as ``None``.

Absent and unavailable are told apart. An optional section is ``None`` when it was not
gathered at all (``breakdown`` and ``impact`` exist only for detectors with a ratio, and
not for a data problem). A section that was attempted keeps why it is incomplete in its
``missing``; a logs or changes section that could not be read at all (no log source)
holds nothing else and is stored as just ``{"missing": why}``. ``Evidence.missing`` says
why no evidence could be gathered. Every number keeps the queries and windows behind it
(:class:`~paytriage.domain.findings.QueryRef`); a number that could not be computed is
``None``, never NaN.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from paytriage.core.types import iso
from paytriage.domain.findings import QueryRef

Json = dict[str, Any]

# -- reading stored JSON: anything may be missing or of the wrong type ------------------------


def _map(value: object) -> Mapping[str, Any] | None:
    return value if isinstance(value, Mapping) else None


def _maps(value: object) -> list[Mapping[str, Any]]:
    """The mappings of a list (anything else in it is skipped)."""
    if not isinstance(value, list | tuple):
        return []
    return [v for v in value if isinstance(v, Mapping)]


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def _opt_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _strs(value: object) -> tuple[str, ...]:
    if not isinstance(value, list | tuple):
        return ()
    return tuple(v for v in value if isinstance(v, str))


def _float(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        x = float(value)
    except OverflowError:  # an integer beyond a float's range
        return None
    return x if math.isfinite(x) else None


def _int(value: object) -> int:
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return 0


def _bool(value: object) -> bool:
    return value is True


def _time(value: object) -> datetime | None:
    """An ISO 8601 time, in UTC (the store writes UTC; a time without an offset is UTC)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def _span(value: object) -> tuple[datetime, datetime] | None:
    """A ``[start, end]`` pair of times (None unless both read)."""
    if not isinstance(value, list | tuple) or len(value) != 2:
        return None
    start, end = _time(value[0]), _time(value[1])
    return None if start is None or end is None else (start, end)


def _dims(value: object) -> dict[str, str]:
    m = _map(value) or {}
    return {k: v for k, v in m.items() if isinstance(k, str) and isinstance(v, str)}


def _iso(at: datetime | None) -> str | None:
    return None if at is None else iso(at)


def _span_json(span: tuple[datetime, datetime] | None) -> list[str] | None:
    return None if span is None else [iso(span[0]), iso(span[1])]


# -- queries ----------------------------------------------------------------------------------


def query_to_json(q: QueryRef) -> Json:
    """``{source, query, start?, end?, step_seconds?}``: what is known of a query's window."""
    out: Json = {"source": q.source, "query": q.query}
    if q.start is not None:
        out["start"] = iso(q.start)
    if q.end is not None:
        out["end"] = iso(q.end)
    if q.step is not None:
        out["step_seconds"] = q.step.total_seconds()
    return out


def query_from_json(d: Mapping[str, Any]) -> QueryRef:
    return QueryRef(
        source=_str(d.get("source")),
        query=_str(d.get("query")),
        start=_time(d.get("start")),
        end=_time(d.get("end")),
        step=_seconds(d.get("step_seconds")),
    )


def _seconds(value: object) -> timedelta | None:
    seconds = _float(value)
    try:
        return None if seconds is None else timedelta(seconds=seconds)
    except OverflowError:
        return None


def _queries(value: object) -> tuple[QueryRef, ...]:
    return tuple(query_from_json(q) for q in _maps(value))


def _queries_json(queries: tuple[QueryRef, ...]) -> list[Json]:
    return [query_to_json(q) for q in queries]


# -- sections ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Onset:
    """When the incident began (``how``: a change point on the signal, or the first alert)
    and when it was detected."""

    at: datetime | None = None
    how: str = ""
    detected_at: datetime | None = None

    def to_json(self) -> Json:
        return {"at": _iso(self.at), "how": self.how, "detected_at": _iso(self.detected_at)}

    @classmethod
    def from_json(cls, value: object) -> Onset | None:
        if (d := _map(value)) is None:
            return None
        return cls(_time(d.get("at")), _str(d.get("how")), _time(d.get("detected_at")))


@dataclass(frozen=True)
class FindingItem:
    """A finding of the incident as the evidence keeps it (the numbers the detector judged)."""

    detector: str
    dimensions: dict[str, str]
    title: str
    observed: float | None = None
    expected: float | None = None
    band: tuple[float | None, float | None] = (None, None)
    unit: str = ""
    at: datetime | None = None
    onset: datetime | None = None
    queries: tuple[QueryRef, ...] = ()

    def to_json(self) -> Json:
        return {
            "detector": self.detector,
            "dimensions": dict(self.dimensions),
            "title": self.title,
            "observed": self.observed,
            "expected": self.expected,
            "band": list(self.band),
            "unit": self.unit,
            "at": _iso(self.at),
            "onset": _iso(self.onset),
            "queries": _queries_json(self.queries),
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> FindingItem:
        band = d.get("band")
        low, high = band if isinstance(band, list | tuple) and len(band) == 2 else (None, None)
        return cls(
            detector=_str(d.get("detector")),
            dimensions=_dims(d.get("dimensions")),
            title=_str(d.get("title")),
            observed=_float(d.get("observed")),
            expected=_float(d.get("expected")),
            band=(_float(low), _float(high)),
            unit=_str(d.get("unit")),
            at=_time(d.get("at")),
            onset=_time(d.get("onset")),
            queries=_queries(d.get("queries")),
        )


@dataclass(frozen=True)
class TopValue:
    """One value's part in the excess failures (``text``: how people read it)."""

    value: str
    text: str
    rate: float | None = None
    baseline_rate: float | None = None
    failures: float | None = None
    attempts: float | None = None
    share_of_excess: float | None = None
    significant: bool = False
    queries: tuple[QueryRef, ...] = ()

    def to_json(self) -> Json:
        return {
            "value": self.value,
            "text": self.text,
            "rate": self.rate,
            "baseline_rate": self.baseline_rate,
            "failures": self.failures,
            "attempts": self.attempts,
            "share_of_excess": self.share_of_excess,
            "significant": self.significant,
            "queries": _queries_json(self.queries),
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> TopValue:
        return cls(
            value=_str(d.get("value")),
            text=_str(d.get("text")),
            rate=_float(d.get("rate")),
            baseline_rate=_float(d.get("baseline_rate")),
            failures=_float(d.get("failures")),
            attempts=_float(d.get("attempts")),
            share_of_excess=_float(d.get("share_of_excess")),
            significant=_bool(d.get("significant")),
            queries=_queries(d.get("queries")),
        )


@dataclass(frozen=True)
class DimensionItem:
    """The top values of one dimension (``missing``: why there are none)."""

    dimension: str
    missing: str | None = None
    top: tuple[TopValue, ...] = ()

    def to_json(self) -> Json:
        return {
            "dimension": self.dimension,
            "missing": self.missing,
            "top": [t.to_json() for t in self.top],
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> DimensionItem:
        return cls(
            dimension=_str(d.get("dimension")),
            missing=_opt_str(d.get("missing")),
            top=tuple(TopValue.from_json(t) for t in _maps(d.get("top"))),
        )


@dataclass(frozen=True)
class BreakdownSection:
    """Where the failures come from: the slice's totals against its ``baseline`` and, per
    dimension, the values carrying the excess. ``missing`` names every query that failed."""

    lines: tuple[str, ...] = ()
    failures: float | None = None
    attempts: float | None = None
    baseline_rate: float | None = None
    baseline: str = ""
    excess: float | None = None
    dimensions: tuple[DimensionItem, ...] = ()
    missing: tuple[str, ...] = ()
    queries: tuple[QueryRef, ...] = ()

    def to_json(self) -> Json:
        return {
            "lines": list(self.lines),
            "failures": self.failures,
            "attempts": self.attempts,
            "baseline_rate": self.baseline_rate,
            "baseline": self.baseline,
            "excess": self.excess,
            "dimensions": [d.to_json() for d in self.dimensions],
            "missing": list(self.missing),
            "queries": _queries_json(self.queries),
        }

    @classmethod
    def from_json(cls, value: object) -> BreakdownSection | None:
        if (d := _map(value)) is None:
            return None
        return cls(
            lines=_strs(d.get("lines")),
            failures=_float(d.get("failures")),
            attempts=_float(d.get("attempts")),
            baseline_rate=_float(d.get("baseline_rate")),
            baseline=_str(d.get("baseline")),
            excess=_float(d.get("excess")),
            dimensions=tuple(DimensionItem.from_json(x) for x in _maps(d.get("dimensions"))),
            missing=_strs(d.get("missing")),
            queries=_queries(d.get("queries")),
        )


@dataclass(frozen=True)
class ImpactSection:
    """Failed payments, the excess over the usual level and the amount at risk (``currency``
    None: no average ticket configured) over ``window_seconds``."""

    lines: tuple[str, ...] = ()
    failed: float | None = None
    attempts: float | None = None
    excess: float | None = None
    per_minute: float | None = None
    amount_so_far: float | None = None
    amount_per_minute: float | None = None
    currency: str | None = None
    window_seconds: float = 0.0
    queries: tuple[QueryRef, ...] = ()

    def to_json(self) -> Json:
        return {
            "lines": list(self.lines),
            "failed": self.failed,
            "attempts": self.attempts,
            "excess": self.excess,
            "per_minute": self.per_minute,
            "amount_so_far": self.amount_so_far,
            "amount_per_minute": self.amount_per_minute,
            "currency": self.currency,
            "window_seconds": self.window_seconds,
            "queries": _queries_json(self.queries),
        }

    @classmethod
    def from_json(cls, value: object) -> ImpactSection | None:
        if (d := _map(value)) is None:
            return None
        return cls(
            lines=_strs(d.get("lines")),
            failed=_float(d.get("failed")),
            attempts=_float(d.get("attempts")),
            excess=_float(d.get("excess")),
            per_minute=_float(d.get("per_minute")),
            amount_so_far=_float(d.get("amount_so_far")),
            amount_per_minute=_float(d.get("amount_per_minute")),
            currency=_opt_str(d.get("currency")),
            window_seconds=_float(d.get("window_seconds")) or 0.0,
            queries=_queries(d.get("queries")),
        )


@dataclass(frozen=True)
class PatternItem:
    """A log template that rose (counts estimated from a sample when ``sampled``)."""

    template: str
    error_code: str | None = None
    count_now: int = 0
    count_before: int = 0
    new: bool = False
    example: str = ""
    sampled: bool = False

    def to_json(self) -> Json:
        return {
            "template": self.template,
            "error_code": self.error_code,
            "count_now": self.count_now,
            "count_before": self.count_before,
            "new": self.new,
            "example": self.example,
            "sampled": self.sampled,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> PatternItem:
        return cls(
            template=_str(d.get("template")),
            error_code=_opt_str(d.get("error_code")),
            count_now=_int(d.get("count_now")),
            count_before=_int(d.get("count_before")),
            new=_bool(d.get("new")),
            example=_str(d.get("example")),
            sampled=_bool(d.get("sampled")),
        )


@dataclass(frozen=True)
class CodeItem:
    """An error code's count in the incident window and in the window before."""

    code: str
    count_now: int = 0
    count_before: int = 0

    def to_json(self) -> Json:
        return {"code": self.code, "count_now": self.count_now, "count_before": self.count_before}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> CodeItem:
        return cls(_str(d.get("code")), _int(d.get("count_now")), _int(d.get("count_before")))


@dataclass(frozen=True)
class LogsSection:
    """The log patterns and error codes that rose in ``window`` against ``before``."""

    patterns: tuple[PatternItem, ...] = ()
    error_codes: tuple[CodeItem, ...] = ()
    window: tuple[datetime, datetime] | None = None
    before: tuple[datetime, datetime] | None = None
    total_now: int = 0
    total_before: int = 0
    ignored_dimensions: tuple[str, ...] = ()
    missing: str | None = None
    queries: tuple[QueryRef, ...] = ()

    def to_json(self) -> Json:
        if self == LogsSection(missing=self.missing):  # not read at all: only why
            return {"missing": self.missing}
        return {
            "patterns": [p.to_json() for p in self.patterns],
            "error_codes": [c.to_json() for c in self.error_codes],
            "window": _span_json(self.window),
            "before": _span_json(self.before),
            "total_now": self.total_now,
            "total_before": self.total_before,
            "ignored_dimensions": list(self.ignored_dimensions),
            "missing": self.missing,
            "queries": _queries_json(self.queries),
        }

    @classmethod
    def from_json(cls, value: object) -> LogsSection | None:
        if (d := _map(value)) is None:
            return None
        return cls(
            patterns=tuple(PatternItem.from_json(p) for p in _maps(d.get("patterns"))),
            error_codes=tuple(CodeItem.from_json(c) for c in _maps(d.get("error_codes"))),
            window=_span(d.get("window")),
            before=_span(d.get("before")),
            total_now=_int(d.get("total_now")),
            total_before=_int(d.get("total_before")),
            ignored_dimensions=_strs(d.get("ignored_dimensions")),
            missing=_opt_str(d.get("missing")),
            queries=_queries(d.get("queries")),
        )


@dataclass(frozen=True)
class ChangeItem:
    """A deploy, config change or PSP status event near the onset (``mentions``: the
    incident's dimension values its description names)."""

    at: datetime | None
    service: str = ""
    kind: str = ""
    version: str = ""
    author: str = ""
    description: str = ""
    minutes_before_onset: float | None = None  # negative: after the onset
    mentions: tuple[str, ...] = ()

    @property
    def when(self) -> str:
        """``12 min before onset``, ``3 min after onset``, or ``near onset`` when unknown."""
        mins = self.minutes_before_onset
        if mins is None:
            return "near onset"
        return f"{mins:g} min before onset" if mins >= 0 else f"{-mins:g} min after onset"

    def to_json(self) -> Json:
        return {
            "at": _iso(self.at),
            "service": self.service,
            "kind": self.kind,
            "version": self.version,
            "author": self.author,
            "description": self.description,
            "minutes_before_onset": self.minutes_before_onset,
            "mentions": list(self.mentions),
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ChangeItem:
        return cls(
            at=_time(d.get("at")),
            service=_str(d.get("service")),
            kind=_str(d.get("kind")),
            version=_str(d.get("version")),
            author=_str(d.get("author")),
            description=_str(d.get("description")),
            minutes_before_onset=_float(d.get("minutes_before_onset")),
            mentions=_strs(d.get("mentions")),
        )


@dataclass(frozen=True)
class ChangesSection:
    """The changes around ``onset``, most suspicious first (``total``: all that matched)."""

    items: tuple[ChangeItem, ...] = ()
    total: int = 0
    onset: datetime | None = None
    missing: str | None = None
    queries: tuple[QueryRef, ...] = ()

    def to_json(self) -> Json:
        if self == ChangesSection(missing=self.missing):  # not read at all: only why
            return {"missing": self.missing}
        return {
            "items": [c.to_json() for c in self.items],
            "total": self.total,
            "onset": _iso(self.onset),
            "missing": self.missing,
            "queries": _queries_json(self.queries),
        }

    @classmethod
    def from_json(cls, value: object) -> ChangesSection | None:
        if (d := _map(value)) is None:
            return None
        return cls(
            items=tuple(ChangeItem.from_json(c) for c in _maps(d.get("items"))),
            total=_int(d.get("total")),
            onset=_time(d.get("onset")),
            missing=_opt_str(d.get("missing")),
            queries=_queries(d.get("queries")),
        )


@dataclass(frozen=True)
class ConcurrentItem:
    """Another finding raised in the incident's window (``related``: on an overlapping
    slice)."""

    detector: str
    dimensions: dict[str, str]
    title: str = ""
    at: datetime | None = None
    related: bool = False

    def to_json(self) -> Json:
        return {
            "detector": self.detector,
            "dimensions": dict(self.dimensions),
            "title": self.title,
            "at": _iso(self.at),
            "related": self.related,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ConcurrentItem:
        return cls(
            detector=_str(d.get("detector")),
            dimensions=_dims(d.get("dimensions")),
            title=_str(d.get("title")),
            at=_time(d.get("at")),
            related=_bool(d.get("related")),
        )


@dataclass(frozen=True)
class ChartSection:
    """Whether a chart was drawn, the file it was saved to and, when there is none, why."""

    rendered: bool
    path: str | None = None
    missing: str | None = None

    def to_json(self) -> Json:
        out: Json = {"rendered": self.rendered}
        if self.path is not None:
            out["path"] = self.path
        if self.missing is not None:
            out["missing"] = self.missing
        return out

    @classmethod
    def from_json(cls, value: object) -> ChartSection | None:
        if (d := _map(value)) is None:
            return None
        return cls(_bool(d.get("rendered")), _opt_str(d.get("path")), _opt_str(d.get("missing")))


@dataclass(frozen=True)
class RunbookSection:
    """The runbook matched (``id`` None: none matched) and ``reason``, why (or why not)."""

    id: str | None
    title: str | None = None
    link: str | None = None
    owner: str | None = None
    reason: str | None = None
    steps: tuple[str, ...] = ()

    def to_json(self) -> Json:
        if self == RunbookSection(None, reason=self.reason):  # none matched: only why
            return {"id": None, "reason": self.reason}
        return {
            "id": self.id,
            "title": self.title,
            "link": self.link,
            "owner": self.owner,
            "reason": self.reason,
            "steps": list(self.steps),
        }

    @classmethod
    def from_json(cls, value: object) -> RunbookSection | None:
        if (d := _map(value)) is None:
            return None
        return cls(
            id=_opt_str(d.get("id")),
            title=_opt_str(d.get("title")),
            link=_opt_str(d.get("link")),
            owner=_opt_str(d.get("owner")),
            reason=_opt_str(d.get("reason")),
            steps=_strs(d.get("steps")),
        )


# -- the evidence -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Evidence:
    """Everything gathered for one incident, as of ``gathered_at`` (see the module's
    docstring). ``version`` counts the gatherings (0: none yet); ``window`` is the incident
    window the sections were read over. ``Evidence()`` is an incident's evidence before the
    first gathering."""

    version: int = 0
    gathered_at: datetime | None = None
    missing: str | None = None  # why nothing could be gathered
    window: tuple[datetime, datetime] | None = None
    onset: Onset | None = None
    findings: tuple[FindingItem, ...] = ()
    breakdown: BreakdownSection | None = None
    impact: ImpactSection | None = None
    logs: LogsSection | None = None
    changes: ChangesSection | None = None
    concurrent: tuple[ConcurrentItem, ...] = ()
    chart: ChartSection | None = None
    runbook: RunbookSection | None = None

    @property
    def empty(self) -> bool:
        """Nothing recorded yet (no gathering, not even a failed one)."""
        return self == Evidence()

    def to_json(self) -> Json:
        """The JSON the store keeps. A gathered evidence (one with a ``window``) always lists
        its findings and concurrent findings, even none; absent sections are left out."""
        gathered = self.window is not None
        out: Json = {}
        if self.gathered_at is not None:
            out["gathered_at"] = iso(self.gathered_at)
        if self.window is not None:
            out["window"] = _span_json(self.window)
        if self.onset is not None:
            out["onset"] = self.onset.to_json()
        if self.findings or gathered:
            out["findings"] = [f.to_json() for f in self.findings]
        for name, section in (
            ("breakdown", self.breakdown),
            ("impact", self.impact),
            ("logs", self.logs),
            ("changes", self.changes),
        ):
            if section is not None:
                out[name] = section.to_json()
        if self.concurrent or gathered:
            out["concurrent"] = [c.to_json() for c in self.concurrent]
        if self.chart is not None:
            out["chart"] = self.chart.to_json()
        if self.version:
            out["version"] = self.version
        if self.missing is not None:
            out["missing"] = self.missing
        if self.runbook is not None:
            out["runbook"] = self.runbook.to_json()
        return out

    @classmethod
    def from_json(cls, value: object) -> Evidence:
        """The evidence of a stored JSON value (anything that is not an object: none)."""
        if (d := _map(value)) is None:
            return cls()
        return cls(
            version=_int(d.get("version")),
            gathered_at=_time(d.get("gathered_at")),
            missing=_opt_str(d.get("missing")),
            window=_span(d.get("window")),
            onset=Onset.from_json(d.get("onset")),
            findings=tuple(FindingItem.from_json(f) for f in _maps(d.get("findings"))),
            breakdown=BreakdownSection.from_json(d.get("breakdown")),
            impact=ImpactSection.from_json(d.get("impact")),
            logs=LogsSection.from_json(d.get("logs")),
            changes=ChangesSection.from_json(d.get("changes")),
            concurrent=tuple(ConcurrentItem.from_json(c) for c in _maps(d.get("concurrent"))),
            chart=ChartSection.from_json(d.get("chart")),
            runbook=RunbookSection.from_json(d.get("runbook")),
        )


__all__ = [
    "BreakdownSection",
    "ChangeItem",
    "ChangesSection",
    "ChartSection",
    "CodeItem",
    "ConcurrentItem",
    "DimensionItem",
    "Evidence",
    "FindingItem",
    "ImpactSection",
    "LogsSection",
    "Onset",
    "PatternItem",
    "RunbookSection",
    "TopValue",
    "query_from_json",
    "query_to_json",
]
