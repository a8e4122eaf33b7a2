"""decline_spike: failed authorizations over attempts per slice, volume-aware, seasonal.

Method (see docs/detection.md):

- Signals are fetched once at full granularity (``by psp, country, method``) and summed in
  memory into the slices tested: the platform total and each dimension alone. A few large
  slices are tested, never every child slice, and the per-test false-alarm rate is tiny.
- The expected failure rate of a slice is the median of its rate at the same time of week in
  past weeks (pooled over +-15 minutes), else the median over the past few days, else a trailing
  window before the current one. A median over weeks ignores a past incident.
- A slice breaches when its failures over ``window`` are improbable under a beta-binomial
  around the expected rate (overdispersion estimated from its own recent windows), the rise is
  practically large (``min_rise_points`` and ``min_rise_ratio``), and the rate over the last
  ``short_window`` is still high (so a two-minute blip is over before ``for`` elapses); or,
  for a smaller rise that persists, when each of the last three whole windows is above the
  holding level (a blip touches at most two) and the rise is improbable over those 15
  minutes or over all of ``long_window``.
- The expected rate is the larger of the seasonal one and the slice's own rate over
  ``recent_window`` before ``long_window``: one past day is a noisy baseline, and a slice
  running a little higher today than yesterday is not an incident. Raised findings hold
  against the seasonal level only, on their last minutes (``_recovery``), so they do not
  clear by raising their own reference, nor stay open while their windows remember.
- Attribution: among the breaching slices, the one whose removal leaves the most others
  insignificant is reported first (a country's issuer spike explains the PSP carrying most
  of it and the card method; the PSP does not explain the country's other PSPs), then the
  rest are tested on what is left. The platform total is reported only when no single value
  explains it. Slices already raised explain their failures while they hold and for
  ``long_window`` after they cleared (``remembers``), so the same problem does not page
  again through an overlapping slice. Whether technical errors or
  issuer declines make the excess is told apart from the ``outcome="error"`` signal.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Set
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import numpy as np
from pydantic import Field

from paytriage.core.types import Duration, EnvStr, PositiveDuration, StrictModel, format_duration
from paytriage.detectors.base import (
    Assessment,
    BaselineConfig,
    Chart,
    Detector,
    DetectorConfig,
    DimensionList,
    RatioQueries,
    default_dimensions,
)
from paytriage.detectors.signals import (
    Frame,
    LabelKey,
    Offset,
    burst_since,
    last_minute,
    last_minute_high,
    nanquantile_rows,
    ratio_onset,
    ratio_recovery,
    seasonal_offsets,
)
from paytriage.detectors.stats import estimate_overdispersion_rows, proportion_excess
from paytriage.domain.findings import Finding, QueryRef, Severity


class Queries(StrictModel):
    """PromQL templates. ``{by}`` becomes the grouping labels, ``{window}`` the rate window."""

    attempts: EnvStr = "sum by ({by}) (increase(payment_authorizations_total[{window}]))"
    failures: EnvStr = (
        "sum by ({by}) "
        '(increase(payment_authorizations_total{{outcome=~"declined|error"}}[{window}]))'
    )
    errors: EnvStr = (
        'sum by ({by}) (increase(payment_authorizations_total{{outcome="error"}}[{window}]))'
    )
    declines_by_reason: EnvStr = (
        "sum by ({by}, reason) (increase(payment_declines_total[{window}]))"
    )


class Config(DetectorConfig):
    id: Literal["decline_spike"] = "decline_spike"
    severity: Severity = Severity.critical
    queries: Queries = Queries()
    dimensions: DimensionList = Field(default_factory=default_dimensions)
    window: PositiveDuration = "5m"  # type: ignore[assignment]
    baseline: BaselineConfig = BaselineConfig()
    min_attempts: int = Field(
        default=100, ge=1, description="attempts in the window to judge a slice"
    )
    min_rise_points: float = Field(default=2.0, ge=0, description="rise in percentage points")
    min_rise_ratio: float = Field(default=1.25, ge=1, description="rise as a ratio of baseline")
    false_alarm_rate: float = Field(default=1e-6, gt=0, lt=0.5, description="per-test alpha")
    sustained_false_alarm_rate: float = Field(
        default=1e-5,
        gt=0,
        lt=0.5,
        description="per-test alpha of a rise that persists: each of the last three windows "
        "must be above the holding level too, which a chance excursion rarely is",
    )
    for_: Duration = Field(
        default=timedelta(minutes=2),
        alias="for",
        description="the condition must hold this long before a finding is raised",
    )
    short_window: PositiveDuration = Field(
        default=timedelta(minutes=2),
        description="the rate over this recent window must still be high (one scrape+step)",
    )
    trailing: PositiveDuration = Field(
        default=timedelta(hours=3),
        description="fallback baseline when there is no seasonal history",
    )
    min_overdispersion: float = Field(default=0.0, ge=0, lt=0.5)
    recent_window: PositiveDuration = Field(
        default=timedelta(hours=1),
        description="the level before ``long_window`` a rise must also stand out from",
    )
    long_window: PositiveDuration = Field(
        default=timedelta(minutes=30),
        description="a smaller rise that persists is judged over this long (whole windows)",
    )
    burst: PositiveDuration = Field(
        default=timedelta(minutes=5),
        description="a rise over the last three to this many minutes that stays significant "
        "without its two worst minutes has persisted: it counts towards ``for`` from the first",
    )


HALF_POOL = 15  # steps either side of the same time of week pooled into a history rate


def signals(cfg: Config) -> dict[str, str]:
    by = ", ".join(cfg.dimensions)
    long_w = format_duration(cfg.window)
    q = cfg.queries
    return {
        "attempts": q.attempts.format(by=by, window=long_w),
        "failures": q.failures.format(by=by, window=long_w),
        "errors": q.errors.format(by=by, window=long_w),
        "attempts_short": last_minute(q.attempts, cfg.short_window, by=by),
        "failures_short": last_minute(q.failures, cfg.short_window, by=by),
    }


def offsets(cfg: Config) -> tuple[Offset, ...]:
    return seasonal_offsets(cfg.baseline.weeks, cfg.baseline.days)


def history_signals(cfg: Config) -> set[str]:
    """The signals read in past weeks and days (the others are fetched for the present)."""
    return {"attempts", "failures"}


def lookback(cfg: Config) -> timedelta:
    return max(cfg.trailing, cfg.long_window + cfg.recent_window) + cfg.window * 2


@dataclass
class Slice:
    key: LabelKey
    attempts: float
    failures: float
    errors: float
    short_rate: float
    expected: float
    baseline_kind: str
    threshold: float  # the rate that counts as a practical rise
    long_p_value: float = 1.0
    windows: tuple[int, ...] = ()  # the frame indices of the whole windows that breached
    long_windows: tuple[int, ...] = ()  # the whole windows of the best sustained test
    burst_since: int | None = None  # first of the last ``burst`` minutes, all breaching

    # The sharp-rise test over ``window``, against ``reference`` (the level just before it);
    # judged only with ``judged`` (enough attempts). Run when first read: most slices at most
    # steps are below ``threshold`` and never need it.
    reference: float = math.nan
    overdispersion: float = 0.0
    alpha: float = 1e-6
    judged: bool = False

    @property
    def rate(self) -> float:
        return self.failures / self.attempts if self.attempts else math.nan

    @functools.cached_property
    def _test(self) -> tuple[float, tuple[float, float]]:
        if not self.judged:
            return 1.0, (0.0, self.attempts)
        test = proportion_excess(
            self.failures,
            self.attempts,
            self.reference,
            overdispersion=self.overdispersion,
            alpha=self.alpha,
        )
        return test.p_value, (test.lower, test.upper)

    @property
    def p_value(self) -> float:
        return self._test[0]

    @property
    def band(self) -> tuple[float, float]:
        return self._test[1]

    seasonal: float = math.nan  # the seasonal expectation alone (``expected`` may be higher)
    hold_rise: float = 0.0

    @property
    def holding_level(self) -> float:
        """Measured from the seasonal level only, so a finding does not clear itself by
        raising the recent level it is compared with."""
        base = self.seasonal if math.isfinite(self.seasonal) else self.expected
        return base + 0.5 * self.hold_rise

    @property
    def excess(self) -> float:
        return self.failures - self.attempts * self.expected


KINDS = ("none", "weekly", "daily", "trailing")


def _expected_rate(
    frame: Frame, cfg: Config, dims: tuple[str, ...], key: LabelKey, i: int
) -> tuple[float, str, float]:
    """(expected failure rate, baseline kind, overdispersion) for a slice at index i."""
    if not 0 <= i < frame.n:
        return math.nan, "none", 0.0
    rate, kind = frame.series(
        ("decline_spike.seasonal", dims, key, _cfg_key(cfg)),
        functools.partial(_seasonal, frame, cfg, dims, key),
        i,
    )
    if kind[i] == 0:
        return math.nan, "none", 0.0
    rho = frame.series(
        ("decline_spike.rho", dims, key, _cfg_key(cfg)),
        functools.partial(_overdispersion, frame, cfg, dims, key),
        i,
    )
    return float(rate[i]), KINDS[kind[i]], float(rho[i])


def _cfg_key(cfg: Config) -> tuple[object, ...]:
    return (cfg.window, cfg.trailing, cfg.baseline.min_weeks, cfg.min_overdispersion)


def _seasonal(
    frame: Frame, cfg: Config, dims: tuple[str, ...], key: LabelKey, lo: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The expected failure rate of a slice at every index from ``lo`` on, and where it came
    from (an index into ``KINDS``; "none" before ``lo``): the median of the rates pooled over
    ``HALF_POOL`` steps either side of the same time in past weeks (at least
    ``baseline.min_weeks`` of them), else past days, else the slice's own trailing rate
    before the current window. Past blocks lie in the past however far ahead the pool
    reaches, and the trailing rate ends before index i."""
    n = frame.n
    i = np.arange(max(lo, 0), n)
    rate = np.full(len(i), np.nan)
    kind = np.zeros(len(i), dtype=np.int8)
    for code, name in ((1, "weekly"), (2, "daily")):
        rows = []
        for k in frame.history(name):
            f = frame.cumulative("failures", k, dims).get(key)
            a = frame.cumulative("attempts", k, dims).get(key)
            if f is None or a is None:
                continue
            fs, _ = f.sums(i - HALF_POOL, i + HALF_POOL + 1)
            as_, an = a.sums(i - HALF_POOL, i + HALF_POOL + 1)
            with np.errstate(divide="ignore", invalid="ignore"):
                rows.append(np.where((an >= HALF_POOL) & (as_ > 0), fs / as_, np.nan))
        if not rows:
            continue
        matrix = np.stack(rows, axis=1)
        enough = np.isfinite(matrix).sum(axis=1) >= (cfg.baseline.min_weeks if code == 1 else 1)
        take = enough & (kind == 0)
        rate[take] = nanquantile_rows(matrix[take], 0.5)
        kind[take] = code
    f = frame.cumulative("failures", 0, dims).get(key)
    a = frame.cumulative("attempts", 0, dims).get(key)
    if f is not None and a is not None:
        gap = frame.steps(cfg.window) + HALF_POOL
        since = i - frame.steps(cfg.trailing)
        fs, _ = f.sums(since, i - gap)
        as_, an = a.sums(since, i - gap)
        with np.errstate(divide="ignore", invalid="ignore"):
            trailing = np.where((an >= frame.steps(cfg.window) * 3) & (as_ > 0), fs / as_, np.nan)
        take = (kind == 0) & np.isfinite(trailing)
        rate[take] = trailing[take]
        kind[take] = 3
    rates, kinds = np.full(n, np.nan), np.zeros(n, dtype=np.int8)
    rates[i], kinds[i] = rate, kind
    return rates, kinds


def _recent_rate(
    frame: Frame, cfg: Config, dims: tuple[str, ...], key: LabelKey, i: int, before: timedelta
) -> float:
    """The slice's failure rate over ``recent_window`` ending ``before`` index i."""
    f = frame.cumulative("failures", 0, dims).get(key)
    a = frame.cumulative("attempts", 0, dims).get(key)
    if f is None or a is None:
        return math.nan
    hi = i - frame.steps(before)
    lo = hi - frame.steps(cfg.recent_window)
    fs, _ = f.sum(lo, hi)
    as_, an = a.sum(lo, hi)
    if an < frame.steps(cfg.recent_window) // 2 or as_ <= 0:
        return math.nan
    return fs / as_


def _overdispersion(
    frame: Frame, cfg: Config, dims: tuple[str, ...], key: LabelKey, lo: int = 0
) -> np.ndarray:
    """Extra-binomial variance of the slice's rate at every index from ``lo`` on, from its
    own recent non-overlapping windows over ``trailing``."""
    n = frame.n
    out = np.full(n, cfg.min_overdispersion)
    f = frame.rolled("failures", 0, dims).get(key)
    a = frame.rolled("attempts", 0, dims).get(key)
    if f is None or a is None:
        return out
    w = frame.steps(cfg.window)
    t = frame.steps(cfg.trailing)
    i = np.arange(max(lo, 0), min(n, len(f), len(a)))
    # Windows that end before the trailing baseline's gap: an incident under way must not
    # inflate the very variance it is judged against.
    end = i - w - HALF_POOL
    j = end[:, None] - w * np.arange(t // w + 2)[None, :]
    inside = (j > np.maximum(i - t, -1)[:, None]) & (j >= 0)
    jj = np.clip(j, 0, None)
    fw = np.where(inside, f[jj], np.nan)
    aw = np.where(inside, a[jj], np.nan)
    with np.errstate(invalid="ignore"):
        usable = (np.isfinite(fw) & np.isfinite(aw) & (aw > 0)).sum(axis=1) >= 3
    rho = estimate_overdispersion_rows(fw, aw)
    out[i] = np.where(usable, np.maximum(cfg.min_overdispersion, rho), cfg.min_overdispersion)
    return out


def _slices(frame: Frame, cfg: Config, i: int) -> list[tuple[tuple[str, ...], Slice]]:
    out = []
    groups: list[tuple[str, ...]] = [(), *((d,) for d in cfg.dimensions)]
    long_idx = frame.whole_windows(i, cfg.window, cfg.long_window)
    for dims in groups:
        attempts = frame.rolled("attempts", 0, dims)
        failures = frame.rolled("failures", 0, dims)
        errors = frame.rolled("errors", 0, dims)
        att_s = frame.rolled("attempts_short", 0, dims)
        fail_s = frame.rolled("failures_short", 0, dims)
        for key, a_arr in attempts.items():
            a = _at(a_arr, i)
            f_arr = failures.get(key)
            f = _at(f_arr, i)
            if not (math.isfinite(a) and math.isfinite(f)) or f_arr is None:
                continue
            la_all, lf_all = a_arr[long_idx], f_arr[long_idx]
            ok = np.isfinite(la_all) & np.isfinite(lf_all)
            la = float(la_all[ok].sum())
            if a < cfg.min_attempts and (la < cfg.min_attempts or ok.sum() < len(long_idx)):
                continue
            seasonal, kind, rho = _expected_rate(frame, cfg, dims, key, i)
            if not math.isfinite(seasonal):
                continue
            # A rise must stand out from the seasonal level and from the level just before
            # it: one past day is a noisy baseline, and today may simply run a little higher.
            recent = _recent_rate(frame, cfg, dims, key, i, cfg.long_window)
            expected = max(seasonal, recent) if math.isfinite(recent) else seasonal
            # A sharp rise is tested against the level just before the current window (a step
            # stands out from it at once, even when yesterday ran higher), and must still be
            # practically large against both levels.
            before = _recent_rate(frame, cfg, dims, key, i, cfg.window)
            fast_ref = before if math.isfinite(before) else expected
            alpha = cfg.false_alarm_rate
            a_short, f_short = _at(att_s.get(key), i), _at(fail_s.get(key), i)
            short_rate = f_short / a_short if a_short and a_short > 0 else math.nan
            slc = Slice(
                key=key,
                attempts=a,
                failures=f,
                errors=_at(errors.get(key), i, 0.0),
                short_rate=short_rate,
                expected=expected,
                baseline_kind=kind,
                threshold=expected + _rise(cfg, expected),
                seasonal=seasonal,
                hold_rise=_rise(cfg, seasonal),
                reference=fast_ref,
                overdispersion=rho,
                alpha=alpha,
                judged=a >= cfg.min_attempts,
            )
            slc.burst_since = burst_since(
                frame,
                key,
                i,
                span=cfg.burst,
                floor=slc.threshold,
                expected=fast_ref,
                alpha=alpha,
                min_den=cfg.min_attempts,
                window=cfg.window,
                overdispersion=rho,
            )
            with np.errstate(divide="ignore", invalid="ignore"):
                rates = lf_all[:3] / la_all[:3]
            persistent = len(long_idx) >= 3 and bool(np.all(rates >= slc.holding_level))
            # Sustained: the last three windows (15 min), then all of long_window, tested.
            for n_w in sorted({3, len(long_idx)}) if persistent else ():
                sa, sf = float(np.nansum(la_all[:n_w])), float(np.nansum(lf_all[:n_w]))
                if sa < cfg.min_attempts or sf / sa < slc.threshold:
                    continue
                p_long = proportion_excess(
                    sf, sa, expected, overdispersion=rho, alpha=cfg.sustained_false_alarm_rate
                )
                if p_long.p_value < slc.long_p_value:
                    slc.long_p_value = p_long.p_value
                    slc.long_windows = tuple(int(j) for j in long_idx[:n_w])
            out.append((dims, slc))
    return out


def _rise(cfg: Config, level: float) -> float:
    """The practical rise over a failure rate: ``min_rise_points`` and ``min_rise_ratio``."""
    return max(cfg.min_rise_points / 100, (cfg.min_rise_ratio - 1) * level)


def _at(arr: np.ndarray | None, i: int, default: float = math.nan) -> float:
    if arr is None or i >= len(arr) or not math.isfinite(arr[i]):
        return default
    return float(arr[i])


def _breaching(s: Slice, cfg: Config, frame: Frame, i: int) -> bool:
    """A sharp rise over ``window`` still on in the last minute, or a smaller one that
    persists: significant over ``long_window`` with each of the last three whole windows
    above the holding level (a two-minute blip touches at most two of them)."""
    alpha = cfg.false_alarm_rate
    if s.rate >= s.threshold and s.p_value < alpha and _still_on(s, cfg, frame, i):
        s.windows = (i,)
        return True
    if s.burst_since is not None:
        s.windows = (i,)
        return True
    if s.long_p_value < cfg.sustained_false_alarm_rate:
        s.windows = s.long_windows
        return True
    return False


def _still_on(s: Slice, cfg: Config, frame: Frame, i: int) -> bool:
    """Does the last minute stand out on its own (or has it no data)?"""
    return last_minute_high(
        frame,
        s.key,
        i,
        floor=s.threshold,
        expected=s.reference,
        window=cfg.window,
        overdispersion=s.overdispersion,
    )


def _recovery(cfg: Config, frame: Frame, s: Slice, i: int) -> tuple[bool, datetime | None]:
    """Does a raised slice still hold, and if not, since when is its rate back?

    Read over the last ``recovery_window`` minutes (longer for a small slice, up to
    ``long_window``: ``detectors.signals.ratio_recovery``), pooled: still at or above the
    holding level and improbable at the seasonal rate (``recovery_alpha``, the slice's own
    overdispersion). The 5-minute and longer windows that raised it still hold a problem
    minutes after it ended. Without minute data, the 5-minute rate against the holding
    level decides (and the window's own span shows nothing of when it came back).
    """
    base = s.seasonal if math.isfinite(s.seasonal) else s.expected
    rec = ratio_recovery(
        frame,
        s.key,
        i,
        span=cfg.recovery_window,
        floor=s.holding_level,
        expected=base,
        alpha=cfg.recovery_alpha,
        window=cfg.window,
        max_span=cfg.long_window,
        overdispersion=s.overdispersion,
    )
    if rec is None:
        return s.rate >= s.holding_level, None
    if rec.holding:
        return True, None
    return False, frame.when(max(0, i - rec.back * frame.steps(timedelta(minutes=1))))


def assess(
    cfg: Config, frame: Frame, i: int, active: Set[LabelKey] = frozenset()
) -> list[Assessment]:
    """Verdicts at index i: the slices that explain a rise in failed authorizations.

    ``active`` are the slices already raised: while they hold they explain the failures in
    them, so a PSP that carries much of a country's issuer spike is not paged separately
    minutes later.
    """
    stats = _slices(frame, cfg, i)
    hot = [s for _, s in stats if _breaching(s, cfg, frame, i)]
    # A raised slice explains the failures in it until it clears, also once its own rate
    # is back: a sustained test looks back over windows that still hold that problem.
    explained = [s for _, s in stats if s.key in active]
    # What open findings already explain does not page again.
    pending = [
        h
        for h in hot
        if h.key in active
        or _residual_significant(frame, cfg, h, [e for e in explained if e is not h], i)
    ]
    reported = _explain(frame, cfg, pending, i)
    reported_keys = {s.key for s in reported}
    # Slices already raised are judged on whether their rate is back (``_recovery``), also
    # when they still breach: the windows that raised them keep a problem for minutes
    # after it ended. For any other slice a verdict that does not breach is the same as none.
    out = []
    for _, s in stats:
        if s.key in active or s.key in reported_keys:
            holding, back = _recovery(cfg, frame, s, i)
            out.append(
                _assessment(
                    cfg, frame, s, i, breach=s.key in reported_keys, holding=holding, back=back
                )
            )
    return out


def _explain(frame: Frame, cfg: Config, hot: list[Slice], i: int) -> list[Slice]:
    """The fewest, most general slices that explain the breaching ones.

    The platform total is reported only when no single value explains it. Among overlapping
    slices (a country, the PSP carrying most of it, the card method) the one whose removal
    leaves the most others insignificant is the cause: removing the country explains the
    PSP and the method, removing the PSP leaves the country's other PSPs failing.
    """
    pending = list(hot)
    reported: list[Slice] = []
    total = next((s for s in pending if s.key == ()), None)
    if total is not None:
        pending.remove(total)
        if not any(not _residual_significant(frame, cfg, total, [c], i) for c in pending):
            return [total]
    while pending:

        def explains(c: Slice, among: list[Slice] = pending) -> tuple[int, float]:
            n = sum(
                1
                for h in among
                if h is not c and not _residual_significant(frame, cfg, h, [*reported, c], i)
            )
            return n, c.excess

        best = max(pending, key=explains)
        reported.append(best)
        pending = [
            h
            for h in pending
            if h is not best and _residual_significant(frame, cfg, h, reported, i)
        ]
    return reported


def _residual_significant(
    frame: Frame, cfg: Config, s: Slice, reported: list[Slice], i: int
) -> bool:
    """Is slice s still significant once the fine slices of reported ones are removed?"""
    if not reported:
        return True
    if any(r.key == () for r in reported):
        return False
    fine_a = frame.block("attempts", 0)
    fine_f = frame.block("failures", 0)
    own = dict(s.key)
    idx = np.array(s.windows or (i,), dtype=np.int64)
    a = f = 0.0
    for key, arr in fine_a.items():
        labels = dict(key)
        if any(labels.get(d) != v for d, v in own.items()):
            continue
        if any(all(labels.get(d) == v for d, v in r.key) for r in reported):
            continue
        fa = fine_f.get(key)
        a += float(np.nansum(arr[idx]))
        f += float(np.nansum(fa[idx])) if fa is not None else 0.0
    if a < cfg.min_attempts:
        return False
    test = proportion_excess(f, a, s.expected, alpha=cfg.false_alarm_rate)
    return test.p_value < cfg.false_alarm_rate and f / a >= s.threshold


def _assessment(
    cfg: Config,
    frame: Frame,
    s: Slice,
    i: int,
    *,
    breach: bool,
    holding: bool = True,
    back: datetime | None = None,
) -> Assessment:
    dims = dict(s.key)
    where = ", ".join(f"{k}={v}" for k, v in dims.items()) or "all payments"
    technical = s.errors >= 0.5 * max(s.excess, 1.0)
    what = "Technical errors" if technical else "Issuer declines"
    title = (
        f"{what} up at {where}: {s.rate:.1%} of authorizations failed (expected {s.expected:.1%})"
    )
    sigs = signals(cfg)
    start = frame.when(max(0, i - frame.steps(cfg.window)))
    finding = Finding(
        detector=cfg.id,
        severity=cfg.severity,
        dimensions=dims,
        title=title,
        observed=s.rate,
        expected=s.expected,
        band=(s.band[0], s.band[1]),
        onset=None,
        at=frame.when(i),
        unit="ratio",
        queries=tuple(
            QueryRef("prometheus", sigs[name], start, frame.when(i), None)
            for name in ("attempts", "failures", "errors")
        ),
        details={
            "attempts": s.attempts,
            "failures": s.failures,
            "errors": s.errors,
            "excess_failures": s.excess,
            "cause": "technical" if technical else "issuer",
            "p_value": s.p_value,
            "baseline": s.baseline_kind,
            "short_rate": s.short_rate,
            "window": format_duration(cfg.window),
        },
    )
    since = frame.when(s.burst_since) if breach and s.burst_since is not None else None
    return Assessment(
        key=s.key,
        breach=breach,
        holding=holding,
        finding=finding,
        since=since,
        recovered_since=None if holding else back,
    )


def remembers(cfg: Config) -> timedelta:
    """The sustained tests read back ``long_window``: that long after a slice clears, its
    problem still shows in the windows of the slices it overlaps, which it explains."""
    return cfg.long_window


def onset(cfg: Config, frame: Frame, a: Assessment, i: int) -> datetime | None:
    """When the rise began: a one-sided CUSUM over the recent short-window failure rate."""
    return ratio_onset(
        frame,
        "failures_short",
        "attempts_short",
        a.key,
        a.finding.expected,
        i,
        lookback=cfg.trailing,
        short_window=cfg.short_window,
    )


AUTHORIZATIONS = RatioQueries(
    numerator="sum by ({by}) (increase(payment_authorizations_total"
    '{{outcome=~"declined|error"{and_matchers}}}[{window}]{offset}))',
    denominator="sum by ({by}) (increase(payment_authorizations_total{{{matchers}}}"
    "[{window}]{offset}))",
    shared={
        "reason": "sum by ({by}) (increase(payment_declines_total{{{matchers}}}[{window}]{offset}))"
    },
)
"""Failed authorizations (declined or error) over attempts; decline reasons from
``payment_declines_total`` over the same attempts."""


FOLLOW_UPS = {
    "issuer": [
        (
            "Issuer declines: no bulk retries",
            "Do not retry issuer declines in bulk (scheme retry rules); share the decline "
            "codes seen on {where} with the PSP or acquirer and ask what the issuers changed.",
        ),
        (
            "Scheme and PSP communication",
            "Ask the PSP or acquirer for the issuers' explanation and any guidance for "
            "cardholders.",
        ),
    ],
    "": [
        (
            "Payments to retry",
            "List the payments that failed with technical errors on {where}; decide with the "
            "merchants which to retry (customers may already have paid another way).",
        ),
        (
            "Duplicate authorization check",
            "Check for duplicate authorizations (a timed-out request retried may have "
            "authorized twice) and void or refund the duplicates.",
        ),
        (
            "Scheme and PSP communication",
            "Ask the PSP (and through it the schemes) for their incident report, and whether "
            "fees or penalties apply to the failed attempts.",
        ),
    ],
}
"""Money follow-ups for the postmortem: issuer declines, else technical errors."""


CAUSES = {
    "technical": "The failures are mostly technical errors, not issuer declines: the PSP, the "
    "network or our integration is more likely at fault than the issuers.",
    "issuer": "The failures are mostly issuer declines, not technical errors: issuers or "
    "their rules are more likely to have changed than our systems.",
}
"""What each cause the detector names suggests, for the postmortem's hypotheses."""

DETECTOR = Detector(
    id="decline_spike",
    config=Config,
    signals=signals,
    offsets=offsets,
    lookback=lookback,
    assess=assess,
    onset=onset,
    history_signals=history_signals,
    remembers=remembers,
    chart=Chart("failures", per="attempts"),
    ratio=AUTHORIZATIONS,
    follow_ups=FOLLOW_UPS,
    causes=CAUSES,
)
