"""decline_spike: failed authorizations over attempts per slice, volume-aware, seasonal.

Method (see DETECTION_NOTES.md):

- Signals are fetched once at full granularity (``by psp, country, method``) and summed in
  memory into the slices tested: the platform total and each dimension alone. A few large
  slices are tested, never every child slice, and the per-test false-alarm rate is tiny.
- The expected failure rate of a slice is the median of its rate at the same time of week in
  past weeks (pooled over +-15 minutes), else the same time yesterday, else a trailing
  window before the current one. A median over weeks ignores a past incident.
- A slice breaches when its failures over ``window`` are improbable under a beta-binomial
  around the expected rate (overdispersion estimated from its own recent windows), the rise is
  practically large (``min_rise_points`` and ``min_rise_ratio``), and the rate over the last
  ``short_window`` is still high (so a two-minute blip is over before ``for`` elapses).
- Attribution: the breaching slices are explained greedily. When one value of a dimension
  carries ``explain_share`` of the excess failures of the total, it is reported instead of the
  platform; a slice is reported only when its failures outside already reported slices are
  still significant. Whether technical errors or issuer declines make the excess is told
  apart from the ``outcome="error"`` signal; issuer reasons are fetched for the report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import numpy as np
from pydantic import Field

from bot.config.types import Duration, EnvStr, StrictModel, format_duration
from detectors.base import (
    Assessment,
    BaselineConfig,
    DetectorConfig,
    DimensionList,
    Finding,
    QueryRef,
    Severity,
    default_dimensions,
)
from detectors.signals import Frame, LabelKey, Offset, ratio_onset, seasonal_offsets
from detectors.stats import estimate_overdispersion, proportion_excess


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
    window: Duration = "5m"  # type: ignore[assignment]
    baseline: BaselineConfig = BaselineConfig()
    min_attempts: int = Field(
        default=200, ge=1, description="attempts in the window to judge a slice"
    )
    min_rise_points: float = Field(default=2.0, ge=0, description="rise in percentage points")
    min_rise_ratio: float = Field(default=1.25, ge=1, description="rise as a ratio of baseline")
    false_alarm_rate: float = Field(default=1e-6, gt=0, lt=0.5, description="per-test alpha")
    for_: Duration = Field(
        default=timedelta(minutes=2),
        alias="for",
        description="the condition must hold this long before a finding is raised",
    )
    short_window: Duration = Field(
        default=timedelta(minutes=2),
        description="the rate over this recent window must still be high (one scrape+step)",
    )
    trailing: Duration = Field(
        default=timedelta(hours=3),
        description="fallback baseline when there is no seasonal history",
    )
    explain_share: float = Field(
        default=0.75, gt=0.5, le=1, description="share of the excess one value must carry"
    )
    min_overdispersion: float = Field(default=0.0, ge=0, lt=0.5)


HALF_POOL = 15  # steps either side of the same time of week pooled into a history rate


def signals(cfg: Config) -> dict[str, str]:
    by = ", ".join(cfg.dimensions)
    long_w, short_w = format_duration(cfg.window), format_duration(cfg.short_window)
    q = cfg.queries
    return {
        "attempts": q.attempts.format(by=by, window=long_w),
        "failures": q.failures.format(by=by, window=long_w),
        "errors": q.errors.format(by=by, window=long_w),
        "attempts_short": q.attempts.format(by=by, window=short_w),
        "failures_short": q.failures.format(by=by, window=short_w),
    }


def offsets(cfg: Config) -> tuple[Offset, ...]:
    return seasonal_offsets(cfg.baseline.weeks)


def history_signals(cfg: Config) -> set[str]:
    """The signals read in past weeks and days (the others are fetched for the present)."""
    return {"attempts", "failures"}


def lookback(cfg: Config) -> timedelta:
    return cfg.trailing + cfg.window * 2


@dataclass
class Slice:
    key: LabelKey
    attempts: float
    failures: float
    errors: float
    short_rate: float
    expected: float
    baseline_kind: str
    p_value: float
    band: tuple[float, float]
    threshold: float  # the rate that counts as a practical rise

    @property
    def rate(self) -> float:
        return self.failures / self.attempts if self.attempts else math.nan

    @property
    def excess(self) -> float:
        return self.failures - self.attempts * self.expected


def _expected_rate(
    frame: Frame, cfg: Config, dims: tuple[str, ...], key: LabelKey, i: int
) -> tuple[float, str, float]:
    """(expected failure rate, baseline kind, overdispersion) for a slice at index i."""
    for kind in ("weekly", "daily"):
        rates = []
        for k in frame.history(kind):
            f = frame.cumulative("failures", k, dims).get(key)
            a = frame.cumulative("attempts", k, dims).get(key)
            if f is None or a is None:
                continue
            fs, _ = f.sum(i - HALF_POOL, i + HALF_POOL + 1)
            as_, an = a.sum(i - HALF_POOL, i + HALF_POOL + 1)
            if an >= HALF_POOL and as_ > 0:
                rates.append(fs / as_)
        if len(rates) >= (cfg.baseline.min_weeks if kind == "weekly" else 1):
            rho = _overdispersion(frame, cfg, dims, key, i)
            return float(np.median(rates)), kind, rho
    gap = frame.steps(cfg.window) + HALF_POOL
    lo = i - frame.steps(cfg.trailing)
    f = frame.cumulative("failures", 0, dims).get(key)
    a = frame.cumulative("attempts", 0, dims).get(key)
    if f is None or a is None:
        return math.nan, "none", 0.0
    fs, _ = f.sum(lo, i - gap)
    as_, an = a.sum(lo, i - gap)
    if an < frame.steps(cfg.window) * 3 or as_ <= 0:
        return math.nan, "none", 0.0
    return fs / as_, "trailing", _overdispersion(frame, cfg, dims, key, i)


def _overdispersion(
    frame: Frame, cfg: Config, dims: tuple[str, ...], key: LabelKey, i: int
) -> float:
    """Extra-binomial variance of the slice's rate, from its own recent non-overlapping windows."""
    f = frame.rolled("failures", 0, dims).get(key)
    a = frame.rolled("attempts", 0, dims).get(key)
    if f is None or a is None:
        return cfg.min_overdispersion
    w = frame.steps(cfg.window)
    # Windows that end before the trailing baseline's gap: an incident under way must not
    # inflate the very variance it is judged against.
    end = i - w - HALF_POOL
    idx = np.arange(end, max(i - frame.steps(cfg.trailing), -1), -w)
    idx = idx[idx >= 0]
    ok = np.isfinite(f[idx]) & np.isfinite(a[idx]) & (a[idx] > 0)
    if ok.sum() < 3:
        return cfg.min_overdispersion
    rho = estimate_overdispersion(f[idx][ok].tolist(), a[idx][ok].tolist())
    return max(cfg.min_overdispersion, rho)


def _slices(frame: Frame, cfg: Config, i: int) -> list[tuple[tuple[str, ...], Slice]]:
    out = []
    groups: list[tuple[str, ...]] = [(), *((d,) for d in cfg.dimensions)]
    for dims in groups:
        attempts = frame.rolled("attempts", 0, dims)
        failures = frame.rolled("failures", 0, dims)
        errors = frame.rolled("errors", 0, dims)
        att_s = frame.rolled("attempts_short", 0, dims)
        fail_s = frame.rolled("failures_short", 0, dims)
        for key, a_arr in attempts.items():
            a = float(a_arr[i]) if i < len(a_arr) else math.nan
            f = _at(failures.get(key), i)
            if not math.isfinite(a) or a < cfg.min_attempts or not math.isfinite(f):
                continue
            expected, kind, rho = _expected_rate(frame, cfg, dims, key, i)
            if not math.isfinite(expected):
                continue
            test = proportion_excess(f, a, expected, overdispersion=rho, alpha=cfg.false_alarm_rate)
            a_short, f_short = _at(att_s.get(key), i), _at(fail_s.get(key), i)
            short_rate = f_short / a_short if a_short and a_short > 0 else math.nan
            rise = max(cfg.min_rise_points / 100, (cfg.min_rise_ratio - 1) * expected)
            out.append(
                (
                    dims,
                    Slice(
                        key=key,
                        attempts=a,
                        failures=f,
                        errors=_at(errors.get(key), i, 0.0),
                        short_rate=short_rate,
                        expected=expected,
                        baseline_kind=kind,
                        p_value=test.p_value,
                        band=(test.lower, test.upper),
                        threshold=expected + rise,
                    ),
                )
            )
    return out


def _at(arr: np.ndarray | None, i: int, default: float = math.nan) -> float:
    if arr is None or i >= len(arr) or not math.isfinite(arr[i]):
        return default
    return float(arr[i])


def _breaching(s: Slice, alpha: float) -> bool:
    recent = not math.isfinite(s.short_rate) or s.short_rate >= s.threshold
    return s.p_value < alpha and s.rate >= s.threshold and recent


def _holding(s: Slice) -> bool:
    return s.rate >= s.expected + 0.5 * (s.threshold - s.expected)


def assess(cfg: Config, frame: Frame, i: int) -> list[Assessment]:
    """Verdicts at index i: the slices that explain a rise in failed authorizations."""
    stats = _slices(frame, cfg, i)
    by_key = {s.key: s for _, s in stats}
    hot = [s for _, s in stats if _breaching(s, cfg.false_alarm_rate)]
    reported: list[Slice] = []
    total = by_key.get(())
    if total is not None and total in hot:
        best = max(
            (s for _, s in stats if s.key),
            key=lambda s: s.excess,
            default=None,
        )
        if best is not None and (
            best.excess >= cfg.explain_share * total.excess
            or not _residual_significant(frame, cfg, total, [best], i)
        ):
            reported.append(best)
        else:
            reported.append(total)
    for s in sorted((s for s in hot if s.key), key=lambda s: -s.excess):
        if s in reported:
            continue
        if not _residual_significant(frame, cfg, s, reported, i):
            continue
        reported.append(s)
    # Slices already raised keep being assessed (looser) so they can hold or clear.
    out = [_assessment(cfg, frame, s, i, breach=True) for s in reported]
    reported_keys = {s.key for s in reported}
    for _, s in stats:
        if s.key not in reported_keys and _holding(s):
            out.append(_assessment(cfg, frame, s, i, breach=False))
    return out


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
    a = f = 0.0
    for key, arr in fine_a.items():
        labels = dict(key)
        if any(labels.get(d) != v for d, v in own.items()):
            continue
        if any(all(labels.get(d) == v for d, v in r.key) for r in reported):
            continue
        a += _at(arr, i, 0.0)
        f += _at(fine_f.get(key), i, 0.0)
    if a < cfg.min_attempts:
        return False
    rest = Slice(
        s.key, a, f, 0.0, s.short_rate, s.expected, s.baseline_kind, 1.0, s.band, s.threshold
    )
    test = proportion_excess(f, a, s.expected, alpha=cfg.false_alarm_rate)
    return test.p_value < cfg.false_alarm_rate and rest.rate >= s.threshold


def _assessment(cfg: Config, frame: Frame, s: Slice, i: int, *, breach: bool) -> Assessment:
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
    return Assessment(key=s.key, breach=breach, holding=True, finding=finding)


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
