"""The evidence of an incident, typed from the gathering to every reader.

``paytriage.evidence.gather`` builds an :class:`Evidence` (onset, findings, breakdown, impact, log
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

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any, Self, get_args, get_origin, get_type_hints

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


# -- one codec for every section: field by field, by the field's type ------------------------


def _pair(value: object) -> tuple[float | None, float | None]:
    """A ``[low, high]`` pair of numbers (a band)."""
    if not isinstance(value, list | tuple) or len(value) != 2:
        return (None, None)
    return (_float(value[0]), _float(value[1]))


_READERS: dict[Any, Callable[[object], Any]] = {
    str: _str,
    str | None: _opt_str,
    int: _int,
    float: lambda v: _float(v) or 0.0,
    float | None: _float,
    bool: _bool,
    datetime | None: _time,
    tuple[datetime, datetime] | None: _span,
    tuple[float | None, float | None]: _pair,
    dict[str, str]: _dims,
    tuple[str, ...]: _strs,
    tuple[QueryRef, ...]: _queries,
}


def _encode(value: object) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, QueryRef):
        return query_to_json(value)
    if isinstance(value, Section):
        return value.to_json()
    if isinstance(value, tuple | list):
        return [_encode(v) for v in value]
    if isinstance(value, Mapping):
        return dict(value)
    return value


def _reader(hint: Any) -> Callable[[object], Any]:
    """How to read a field of type ``hint`` from stored JSON (never raising)."""
    if hint in _READERS:
        return _READERS[hint]
    args = get_args(hint)
    if get_origin(hint) is tuple and len(args) == 2 and args[1] is Ellipsis:  # of sections
        item: Any = args[0]
        return item.from_json_list
    section = next(a for a in args or (hint,) if isinstance(a, type) and issubclass(a, Section))
    return section.from_json


@functools.cache
def _field_readers(cls: type) -> tuple[tuple[str, Callable[[object], Any]], ...]:
    hints = get_type_hints(cls)
    return tuple((f.name, _reader(hints[f.name])) for f in fields(cls))


class Section:
    """A frozen dataclass of the evidence, written to and read from JSON field by field in
    the order of its fields; a value that is missing or of the wrong type reads as the
    field's empty value (``""``, ``0``, ``None``, ``()``)."""

    def to_json(self) -> Json:
        return {f.name: _encode(getattr(self, f.name)) for f in fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_json(cls, value: object) -> Self | None:
        """None when ``value`` is not an object."""
        if (d := _map(value)) is None:
            return None
        return cls(**{name: read(d.get(name)) for name, read in _field_readers(cls)})  # type: ignore[arg-type]

    @classmethod
    def from_json_list(cls, value: object) -> tuple[Self, ...]:
        """The sections of a stored list (anything in it that is not an object skipped)."""
        return tuple(x for m in _maps(value) if (x := cls.from_json(m)) is not None)


# -- sections ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Onset(Section):
    """When the incident began (``how``: a change point on the signal, or the first alert)
    and when it was detected."""

    at: datetime | None = None
    how: str = ""
    detected_at: datetime | None = None


@dataclass(frozen=True)
class FindingItem(Section):
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


@dataclass(frozen=True)
class TopValue(Section):
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
    specific: bool = False  # it rose well beyond the dimension's other values


@dataclass(frozen=True)
class DimensionItem(Section):
    """The values of one dimension that stand out (significant), at most three
    (``missing``: why there are none); ``standing_out`` of ``values`` stand out in all, and
    ``alike`` says they all rose about alike (none is specific)."""

    dimension: str
    missing: str | None = None
    top: tuple[TopValue, ...] = ()
    standing_out: int = 0
    values: int = 0
    alike: bool = False

    @property
    def heading(self) -> str:
        """``top 3 of the 5 that stand out, of 7 values``, or ``none of 7 values stands
        out`` (plain text; empty for evidence stored before these counts were kept)."""
        if not self.values:
            return ""
        if not self.top:
            return f"none of {self.values} values stands out"
        shown = len(self.top)
        if self.standing_out > shown:
            lead = f"top {shown} of the {self.standing_out} that stand out"
        else:
            lead = f"{shown} that stand{'s' if shown == 1 else ''} out"
        alike = "; they all rose about alike" if self.alike else ""
        return f"{lead}, of {self.values} values{alike}"


@dataclass(frozen=True)
class BreakdownSection(Section):
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


@dataclass(frozen=True)
class ImpactSection(Section):
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


@dataclass(frozen=True)
class PatternItem(Section):
    """A log template that rose (counts estimated from a sample when ``sampled``)."""

    template: str
    error_code: str | None = None
    count_now: int = 0
    count_before: int = 0
    new: bool = False
    example: str = ""
    sampled: bool = False


@dataclass(frozen=True)
class CodeItem(Section):
    """An error code's count in the incident window and in the window before."""

    code: str
    count_now: int = 0
    count_before: int = 0


@dataclass(frozen=True)
class LogsSection(Section):
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
        return super().to_json()


@dataclass(frozen=True)
class ChangeItem(Section):
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
    score: float | None = None  # how likely a cause (evidence.changes.change_score)

    @property
    def when(self) -> str:
        """``12 min before onset``, ``3 min after onset``, or ``near onset`` when unknown."""
        mins = self.minutes_before_onset
        if mins is None:
            return "near onset"
        return f"{mins:g} min before onset" if mins >= 0 else f"{-mins:g} min after onset"


@dataclass(frozen=True)
class ChangesSection(Section):
    """The changes around ``onset``, likeliest cause first (``total``: all that matched);
    each says whether it came before or after the onset."""

    items: tuple[ChangeItem, ...] = ()
    total: int = 0
    onset: datetime | None = None
    missing: str | None = None
    queries: tuple[QueryRef, ...] = ()

    def to_json(self) -> Json:
        if self == ChangesSection(missing=self.missing):  # not read at all: only why
            return {"missing": self.missing}
        return super().to_json()


@dataclass(frozen=True)
class ConcurrentItem(Section):
    """Another finding raised in the incident's window (``related``: on an overlapping
    slice)."""

    detector: str
    dimensions: dict[str, str]
    title: str = ""
    at: datetime | None = None
    related: bool = False


@dataclass(frozen=True)
class ChartSection(Section):
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


@dataclass(frozen=True)
class RunbookGroup(Section):
    """One heading of a runbook's steps (``First 5 minutes``, ``Mitigate``...) and its steps
    (Markdown); ``queries``: a step of it refers to the runbook's queries ("PromQL below"),
    so readers show the queries right after it."""

    heading: str
    steps: tuple[str, ...] = ()
    queries: bool = False


@dataclass(frozen=True)
class RunbookQuery(Section):
    """One item of a runbook's queries: ``text`` (Markdown: what it shows, or a query in
    inline code) and a ``code`` block in ``lang`` (``promql``, ``json``...), filled in with
    the incident's dimensions; ``notes`` say which placeholders were left unfilled and why."""

    text: str = ""
    lang: str = ""
    code: str = ""
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunbookSection(Section):
    """The runbook matched (``id`` None: none matched) and ``reason``, why (or why not).

    ``steps``: the first steps (for summaries); ``groups``: every step under its heading,
    ``escalation``: who to call, ``queries``: the runbook's queries; all Markdown with
    absolute links (or plain text where no base URL is known) and the incident's dimensions
    filled in. ``link``: the published runbook (an http(s) URL) or, without a base URL,
    the file's path on the bot's host; ``name``: the file's name in the runbooks directory.
    """

    id: str | None
    title: str | None = None
    link: str | None = None
    owner: str | None = None
    reason: str | None = None
    steps: tuple[str, ...] = ()
    name: str | None = None
    groups: tuple[RunbookGroup, ...] = ()
    escalation: tuple[str, ...] = ()
    queries: tuple[RunbookQuery, ...] = ()

    def to_json(self) -> Json:
        if self == RunbookSection(None, reason=self.reason):  # none matched: only why
            return {"id": None, "reason": self.reason}
        return super().to_json()


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
            findings=FindingItem.from_json_list(d.get("findings")),
            breakdown=BreakdownSection.from_json(d.get("breakdown")),
            impact=ImpactSection.from_json(d.get("impact")),
            logs=LogsSection.from_json(d.get("logs")),
            changes=ChangesSection.from_json(d.get("changes")),
            concurrent=ConcurrentItem.from_json_list(d.get("concurrent")),
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
    "RunbookGroup",
    "RunbookQuery",
    "RunbookSection",
    "TopValue",
    "query_from_json",
    "query_to_json",
]
