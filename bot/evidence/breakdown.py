"""Which values of a dimension carry an incident: contributions to the excess of failures.

For an incident on a slice (``{"psp": "stripe"}``, or the whole platform ``{}``) and each
dimension not fixed by it (``country``, ``method``, decline ``reason``...), every value's
*excess* is ``failures_now - attempts_now * its baseline rate`` and its *share* that excess
over the slice's own excess (``failures - attempts * the slice's baseline rate``). Values are
ranked by excess count, so a value with three attempts and a ratio of 100 % never outranks
one carrying thousands of failures; each value is also tested (``proportion_excess``) and a
rise that its volume cannot support is marked not significant.

Baselines, per value: the same window one week earlier (``EARLIER``) when that value had at
least ``min_baseline_attempts`` then, else the hour before the incident window (``BEFORE``),
else the slice's pooled rate (``pooled``). The test's null is the beta-binomial predictive
distribution of the value's failures given its baseline counts (Jeffreys prior), so a
baseline read off few attempts is held with the uncertainty it has.

``breakdown`` is the pure core over counts. ``gather_breakdown`` runs the instant queries
(``sum by (<dim>) (increase(...[<window>]))`` evaluated at the window's end, with ``offset``
for the baselines) through a ``MetricsSource`` and never raises a ``SourceError``: what could
not be read is named in ``Breakdown.missing``. Label matchers are built only from the
incident's dimension values, escaped as PromQL strings, with label names checked against
``[a-zA-Z_][a-zA-Z0-9_]*``; every number keeps the ``QueryRef`` behind it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from paytriage.core.promql import build_query, check_label_name
from paytriage.detectors.base import RatioQueries
from paytriage.detectors.signals import LabelKey, label_key
from paytriage.detectors.stats import proportion_excess
from paytriage.domain.findings import QueryRef
from paytriage.evidence.impact import format_count, format_percent, format_window
from paytriage.sources.base import MetricsSource, Series, SourceError

Counts = tuple[float, float]
"""(failures, attempts) of one label key over one window."""

NOW = "now"
EARLIER = "earlier"  # the same window, ``baseline_offset`` (a week) earlier
BEFORE = "before"  # the ``fallback_window`` (an hour) just before the incident window
NO_BASELINE = "none"

DEFAULT_ALPHA = 1e-3
"""Per-value significance level: a breakdown tests tens of values (countries), so each test is
held to 0.1 % for the whole to rarely mark a noise value significant."""

MIN_BASELINE_ATTEMPTS = 20.0
"""Fewer attempts than this in a baseline window do not make a baseline of their own."""

DEFAULT_DIMENSIONS = ("psp", "country", "method", "reason")


# --- the pure core ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Contribution:
    """One value's part in the change of a slice's failure ratio.

    ``rate`` is failures / attempts now; ``baseline_rate`` the value's rate in its baseline
    (``baseline_kind``: ``EARLIER``, ``BEFORE`` or ``NO_BASELINE``; ``baseline_pooled`` when
    the value had too few attempts of its own then and the slice's rate stands in). ``excess``
    is ``failures - attempts * baseline_rate`` (negative: better than usual; NaN: no
    baseline), ``share`` the excess over the slice's excess (NaN when that is not positive).
    ``p_value`` / ``significant``: is the rise more than its volume explains?
    ``specific``: significant, and it rose at least ``SPECIFIC_FACTOR`` times as much as the
    dimension's other values together (when every method rose fourfold, card carrying most
    of the excess is volume, not a card problem).
    """

    dimension: str
    value: str
    failures: float
    attempts: float
    rate: float
    baseline_failures: float
    baseline_attempts: float
    baseline_rate: float
    baseline_kind: str
    baseline_pooled: bool
    excess: float
    share: float
    p_value: float
    significant: bool
    queries: tuple[QueryRef, ...] = ()
    specific: bool = False

    @property
    def key(self) -> LabelKey:
        return ((self.dimension, self.value),)

    def describe(self) -> str:
        """``stripe: 4.1 % → 31 % failures, 1,820 failed of 5,870 in 10 min; 92 % of the
        excess`` (the window is read from the first query that has one)."""
        name = self.value if self.value else f"(no {self.dimension} label)"
        if math.isfinite(self.baseline_rate):
            rates = f"{format_percent(self.baseline_rate)} → {format_percent(self.rate)}"
        else:
            rates = f"{format_percent(self.rate)} (no baseline)"
        window = next(
            (q.end - q.start for q in self.queries if q.start is not None and q.end is not None),
            None,
        )
        within = f" in {format_window(window)}" if window is not None else ""
        text = (
            f"{name}: {rates} failures, {format_count(self.failures)} failed "
            f"of {format_count(self.attempts)}{within}"
        )
        if math.isfinite(self.share) and self.excess > 0:
            text += f"; {format_percent(self.share)} of the excess"
        elif math.isfinite(self.excess) and self.excess <= 0:
            text += "; not above its baseline"
        notes = []
        if math.isfinite(self.excess) and self.excess > 0 and not self.significant:
            notes.append("not significant")
        if self.baseline_pooled:
            notes.append("baseline: the whole slice's rate")
        return text + (f" ({', '.join(notes)})" if notes else "")


SPECIFIC_FACTOR = 1.5  # how much more than the other values a value must rise to be "the" one


def _mark_specific(rows: list[Contribution]) -> list[Contribution]:
    """Each significant value that rose ``SPECIFIC_FACTOR`` times as much as the others
    pooled (failures over what their baselines expected). A dimension with one value says
    nothing of its own: that value is the slice."""
    known = [c for c in rows if math.isfinite(c.baseline_rate)]
    total_f = sum(c.failures for c in known)
    total_expected = sum(c.attempts * c.baseline_rate for c in known)
    out = []
    for c in rows:
        specific = False
        if c.significant and c in known and len(known) > 1:
            expected = c.attempts * c.baseline_rate
            rest_expected = total_expected - expected
            rest_f = total_f - c.failures
            own = c.failures / expected if expected > 0 else math.inf
            rest = rest_f / rest_expected if rest_expected > 0 else math.inf
            specific = own >= SPECIFIC_FACTOR * max(rest, 1.0)
        out.append(replace(c, specific=specific) if specific else c)
    return out


def _by_value(counts: Mapping[LabelKey, Counts], dimension: str) -> dict[str, Counts]:
    """Counts summed by the value of ``dimension`` ("" when a key lacks it); non-finite or
    negative counts read as 0 and failures are capped at attempts."""
    out: dict[str, tuple[float, float]] = {}
    for key, (f, a) in counts.items():
        value = dict(key).get(dimension, "")
        f = f if math.isfinite(f) and f > 0 else 0.0
        a = a if math.isfinite(a) and a > 0 else 0.0
        pf, pa = out.get(value, (0.0, 0.0))
        out[value] = (pf + f, pa + a)
    return {v: (min(f, a), a) for v, (f, a) in out.items()}


def _pooled(counts: Mapping[str, Counts], shared: bool) -> Counts:
    if shared:
        den = max((a for _, a in counts.values()), default=0.0)
        return sum(f for f, _ in counts.values()), den
    return sum(f for f, _ in counts.values()), sum(a for _, a in counts.values())


def breakdown(
    now: Mapping[LabelKey, Counts],
    baseline: Mapping[LabelKey, Counts],
    dimension: str,
    *,
    fallback: Mapping[LabelKey, Counts] | None = None,
    baseline_kind: str = EARLIER,
    fallback_kind: str = BEFORE,
    shared_denominator: bool = False,
    total_excess: float | None = None,
    alpha: float = DEFAULT_ALPHA,
    overdispersion: float = 0.0,
    min_baseline_attempts: float = MIN_BASELINE_ATTEMPTS,
    queries: Mapping[str, Sequence[QueryRef]] | None = None,
) -> list[Contribution]:
    """Each value of ``dimension`` in ``now`` with its excess, share and significance, ranked
    by excess count (largest first; values without a baseline last).

    ``now`` / ``baseline`` / ``fallback`` map label keys to (failures, attempts); keys are
    summed by their value of ``dimension``. A value's baseline is ``baseline`` when it had at
    least ``min_baseline_attempts`` there, else ``fallback``, else the slice's pooled rate.
    ``shared_denominator``: every value's attempts are the slice's total (decline reasons);
    a value absent from a baseline then had 0 failures out of that total. ``total_excess`` is
    the slice's excess the shares are taken of; by default the slice's own failures minus its
    attempts at its pooled baseline rate (the sum of the values' excesses when shared).
    ``queries`` maps ``NOW`` and each baseline kind to the queries behind those counts.
    """
    check_label_name(dimension)
    refs = queries or {}
    cur = _by_value(now, dimension)
    candidates: list[tuple[dict[str, Counts], str]] = [
        (_by_value(baseline, dimension), baseline_kind)
    ]
    if fallback is not None:
        candidates.append((_by_value(fallback, dimension), fallback_kind))

    pool: Counts | None = None
    pool_kind = NO_BASELINE
    for counts, kind in candidates:
        pf, pa = _pooled(counts, shared_denominator)
        if pa >= min_baseline_attempts:
            pool, pool_kind = (pf, pa), kind
            break

    def base_of(value: str) -> tuple[Counts | None, str, bool]:
        for counts, kind in candidates:
            if value in counts and counts[value][1] >= min_baseline_attempts:
                return counts[value], kind, False
            if shared_denominator and value not in counts:
                den = _pooled(counts, True)[1]
                if den >= min_baseline_attempts:
                    return (0.0, den), kind, False
        if pool is not None and not shared_denominator:
            return pool, pool_kind, True
        return None, NO_BASELINE, False

    rows: list[Contribution] = []
    for value, (f, a) in cur.items():
        if a <= 0:
            continue
        base, kind, pooled = base_of(value)
        bf, ba = base if base is not None else (math.nan, math.nan)
        brate, p_value = math.nan, 1.0
        if base is not None:
            brate = bf / ba
            # The predictive distribution of failures given the baseline counts: beta-binomial
            # with the Jeffreys posterior of the baseline rate (mean (bf + .5) / (ba + 1),
            # intra-class correlation 1 / (ba + 2)), widened by any extra overdispersion.
            rho = max(overdispersion, 1.0 / (ba + 2.0))
            test = proportion_excess(f, a, (bf + 0.5) / (ba + 1.0), overdispersion=rho, alpha=alpha)
            p_value = test.p_value
        excess = f - a * brate  # NaN without a baseline
        rows.append(
            Contribution(
                dimension=dimension,
                value=value,
                failures=f,
                attempts=a,
                rate=f / a,
                baseline_failures=bf,
                baseline_attempts=ba,
                baseline_rate=brate,
                baseline_kind=kind,
                baseline_pooled=pooled,
                excess=excess,
                share=math.nan,
                p_value=p_value,
                significant=p_value < alpha and math.isfinite(excess) and excess > 0,
                queries=(*refs.get(NOW, ()), *refs.get(kind, ())),
            )
        )

    if not shared_denominator:
        rows = _mark_specific(rows)
    else:  # decline reasons share one denominator: a reason carrying the excess is the news
        rows = [replace(c, specific=c.significant) for c in rows]
    if total_excess is None:
        if shared_denominator:
            total_excess = sum(c.excess for c in rows if math.isfinite(c.excess))
        elif pool is not None:
            sf, sa = _pooled(cur, False)
            total_excess = sf - sa * pool[0] / pool[1]
    if total_excess is not None and math.isfinite(total_excess) and total_excess > 0:
        total = total_excess
        rows = [replace(c, share=c.excess / total) if math.isfinite(c.excess) else c for c in rows]
    rows.sort(
        key=lambda c: (
            not math.isfinite(c.excess),
            -c.excess if math.isfinite(c.excess) else 0.0,
            -c.failures,
            c.value,
        )
    )
    return rows


# --- gathering through a MetricsSource --------------------------------------------------------


@dataclass(frozen=True)
class DimensionBreakdown:
    """The contributions of one dimension's values (``missing``: why there are none)."""

    dimension: str
    contributions: tuple[Contribution, ...] = ()
    missing: str | None = None

    def top(self, n: int = 3) -> tuple[Contribution, ...]:
        return self.contributions[:n]


@dataclass(frozen=True)
class Breakdown:
    """What carries an incident on ``dimensions`` over ``[start, end]``.

    ``failures`` / ``attempts`` are the slice's totals (None when they could not be read),
    ``baseline_rate`` its rate in ``baseline_kind`` (NaN with ``NO_BASELINE``) and ``excess``
    its failures above that rate. ``missing`` names every query that failed (empty when all
    was read); ``queries`` are the totals' queries.
    """

    dimensions: Mapping[str, str]
    start: datetime
    end: datetime
    failures: float | None
    attempts: float | None
    baseline_rate: float
    baseline_kind: str
    excess: float
    breakdowns: tuple[DimensionBreakdown, ...] = ()
    missing: tuple[str, ...] = ()
    queries: tuple[QueryRef, ...] = ()
    baseline_offset: timedelta = timedelta(weeks=1)
    fallback_window: timedelta = timedelta(hours=1)

    @property
    def complete(self) -> bool:
        return not self.missing

    def dimension(self, name: str) -> DimensionBreakdown | None:
        return next((b for b in self.breakdowns if b.dimension == name), None)

    def baseline_text(self, kind: str) -> str:
        if kind == EARLIER:
            ago = (
                "a week"
                if self.baseline_offset == timedelta(weeks=1)
                else format_window(self.baseline_offset)
            )
            return f"the same {format_window(self.end - self.start)} {ago} earlier"
        if kind == BEFORE:
            return f"the {format_window(self.fallback_window)} before"
        return "no baseline"

    def lines(self, per_dimension: int = 3) -> list[str]:
        """The breakdown for people: the slice, then each dimension's top values."""
        where = ", ".join(f"{k}={v}" for k, v in sorted(self.dimensions.items()))
        where = where or "all payments"
        out = []
        if self.failures is None or self.attempts is None:
            out.append(f"{where}: failures unknown.")
        else:
            rate = self.failures / self.attempts if self.attempts > 0 else math.nan
            base = (
                f"{format_percent(self.baseline_rate)} → "
                if math.isfinite(self.baseline_rate)
                else ""
            )
            out.append(
                f"{where}: {base}{format_percent(rate)} failures, "
                f"{format_count(self.failures)} failed of {format_count(self.attempts)} in "
                f"{format_window(self.end - self.start)} "
                f"(baseline: {self.baseline_text(self.baseline_kind)})."
            )
        for b in self.breakdowns:
            if b.missing is not None:
                out.append(f"By {b.dimension}: unavailable ({b.missing}).")
                continue
            if not b.contributions:
                out.append(f"By {b.dimension}: no data.")
                continue
            kinds = sorted({c.baseline_kind for c in b.top(per_dimension)})
            basis = "; ".join(self.baseline_text(k) for k in kinds)
            out.append(f"By {b.dimension} (baseline: {basis}):")
            out.extend(f"  {c.describe()}" for c in b.top(per_dimension))
        out.extend(f"Missing: {m}" for m in self.missing if not self.breakdowns)
        return out


@dataclass(frozen=True)
class _Period:
    kind: str
    window: timedelta
    offset: timedelta | None
    start: datetime
    end: datetime


def _values(series: Iterable[Series], by: Sequence[str]) -> dict[LabelKey, float]:
    out: dict[LabelKey, float] = {}
    for s in series:
        v = s.last
        if math.isfinite(v):
            key = label_key(s.labels, by)
            out[key] = out.get(key, 0.0) + v
    return out


def _run(
    source: MetricsSource,
    template: str,
    by: Sequence[str],
    dims: Mapping[str, str],
    period: _Period,
    at: datetime,
) -> tuple[dict[LabelKey, float], QueryRef]:
    query = build_query(template, by=by, window=period.window, dims=dims, offset=period.offset)
    series = source.query(query, at=at)
    return _values(series, by), QueryRef("prometheus", query, period.start, period.end)


def _ratio(
    source: MetricsSource,
    queries: RatioQueries,
    by: Sequence[str],
    dims: Mapping[str, str],
    period: _Period,
    at: datetime,
) -> tuple[dict[LabelKey, Counts], tuple[QueryRef, ...]]:
    num, num_ref = _run(source, queries.numerator, by, dims, period, at)
    den, den_ref = _run(source, queries.denominator, by, dims, period, at)
    keys = set(den) | set(num)
    return {k: (num.get(k, 0.0), den.get(k, 0.0)) for k in keys}, (num_ref, den_ref)


def _needs_fallback(
    now: Mapping[LabelKey, Counts],
    base: Mapping[LabelKey, Counts],
    dimension: str,
    shared: bool,
    min_attempts: float,
) -> bool:
    cur, prev = _by_value(now, dimension), _by_value(base, dimension)
    if shared:
        return _pooled(prev, True)[1] < min_attempts
    return any(a > 0 and prev.get(v, (0.0, 0.0))[1] < min_attempts for v, (_, a) in cur.items())


def _total(counts: Mapping[LabelKey, Counts]) -> Counts:
    """The counts of all keys together (a ``sum by ()`` query has one, keyed ``()``)."""
    a = max(0.0, sum(a for _, a in counts.values()))
    f = max(0.0, sum(f for f, _ in counts.values()))
    return min(f, a), a


def gather_breakdown(
    source: MetricsSource,
    queries: RatioQueries,
    dimensions: Mapping[str, str],
    start: datetime,
    end: datetime,
    *,
    by: Sequence[str] = DEFAULT_DIMENSIONS,
    baseline_offset: timedelta = timedelta(weeks=1),
    fallback_window: timedelta = timedelta(hours=1),
    alpha: float = DEFAULT_ALPHA,
    overdispersion: float = 0.0,
    min_baseline_attempts: float = MIN_BASELINE_ATTEMPTS,
) -> Breakdown:
    """The breakdown of an incident on ``dimensions`` over ``[start, end]``, by each of ``by``
    not fixed by ``dimensions``, read with instant queries evaluated at ``end``.

    The slice's totals are read first (``sum by ()``), then each dimension's values, now and
    ``baseline_offset`` earlier; the ``fallback_window`` before ``start`` is read only where
    that earlier window has too few attempts. A ``SourceError`` never escapes: a failure of
    the totals ends the gathering (``missing`` set, nothing else read), a failure inside one
    dimension leaves that dimension ``missing``. Bad label names or templates raise
    ValueError (a programming or configuration error, before any query runs).
    """
    for name in (*dimensions, *by):
        check_label_name(name)
    window = end - start
    if window <= timedelta(0):
        raise ValueError(f"the window must end after it starts ({start} .. {end})")
    if baseline_offset <= timedelta(0) or fallback_window <= timedelta(0):
        raise ValueError("baseline_offset and fallback_window must be positive")
    dims = dict(dimensions)
    periods = {
        NOW: _Period(NOW, window, None, start, end),
        EARLIER: _Period(
            EARLIER, window, baseline_offset, start - baseline_offset, end - baseline_offset
        ),
        BEFORE: _Period(BEFORE, fallback_window, window, start - fallback_window, start),
    }
    empty = Breakdown(
        dimensions=dims,
        start=start,
        end=end,
        failures=None,
        attempts=None,
        baseline_rate=math.nan,
        baseline_kind=NO_BASELINE,
        excess=math.nan,
        baseline_offset=baseline_offset,
        fallback_window=fallback_window,
    )

    # The slice's totals: now, earlier, and the window before when earlier is too thin.
    totals: dict[str, Counts] = {}
    total_refs: dict[str, tuple[QueryRef, ...]] = {}

    def read_totals(kind: str) -> Counts:
        if kind not in totals:
            counts, refs = _ratio(source, queries, (), dims, periods[kind], end)
            totals[kind], total_refs[kind] = _total(counts), refs
        return totals[kind]

    try:
        read_totals(NOW)
        if read_totals(EARLIER)[1] < min_baseline_attempts:
            read_totals(BEFORE)
    except SourceError as exc:
        read = tuple(r for rs in total_refs.values() for r in rs)
        return replace(empty, missing=(str(exc),), queries=read)

    f_now, a_now = totals[NOW]
    slice_kind = next(
        (k for k in (EARLIER, BEFORE) if k in totals and totals[k][1] >= min_baseline_attempts),
        NO_BASELINE,
    )
    slice_rate = math.nan
    if slice_kind != NO_BASELINE:
        slice_rate = totals[slice_kind][0] / totals[slice_kind][1]
    slice_excess = f_now - a_now * slice_rate if math.isfinite(slice_rate) else math.nan
    used_refs = (*total_refs[NOW], *total_refs.get(slice_kind, ()))

    parts: list[DimensionBreakdown] = []
    missing: list[str] = []
    for dim in dict.fromkeys(by):
        if dim in dims:
            continue  # fixed by the incident: nothing to break down
        shared = dim in queries.shared
        refs: dict[str, tuple[QueryRef, ...]] = {}
        counts_by: dict[str, dict[LabelKey, Counts]] = {}
        try:
            for kind in (NOW, EARLIER, BEFORE):
                if kind == BEFORE and not _needs_fallback(
                    counts_by[NOW], counts_by[EARLIER], dim, shared, min_baseline_attempts
                ):
                    break
                if shared:
                    # Failures from their own metric, over the slice's attempts; a value seen
                    # now and absent then had no failures out of those attempts.
                    num, ref = _run(source, queries.shared[dim], (dim,), dims, periods[kind], end)
                    den = read_totals(kind)[1]
                    keys = set(num) | set(counts_by.get(NOW, {}))
                    counts_by[kind] = {k: (num.get(k, 0.0), den) for k in keys}
                    refs[kind] = (ref, total_refs[kind][1])
                else:
                    counts_by[kind], refs[kind] = _ratio(
                        source, queries, (dim,), dims, periods[kind], end
                    )
        except SourceError as exc:
            parts.append(DimensionBreakdown(dim, missing=str(exc)))
            missing.append(f"{dim}: {exc}")
            continue
        contributions = breakdown(
            counts_by[NOW],
            counts_by[EARLIER],
            dim,
            fallback=counts_by.get(BEFORE),
            shared_denominator=shared,
            total_excess=slice_excess,
            alpha=alpha,
            overdispersion=overdispersion,
            min_baseline_attempts=min_baseline_attempts,
            queries=refs,
        )
        parts.append(DimensionBreakdown(dim, tuple(contributions)))

    return replace(
        empty,
        failures=f_now,
        attempts=a_now,
        baseline_rate=slice_rate,
        baseline_kind=slice_kind,
        excess=slice_excess,
        breakdowns=tuple(parts),
        missing=tuple(missing),
        queries=used_refs,
    )
