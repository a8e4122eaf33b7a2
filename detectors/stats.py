"""The statistics the detectors share: pure functions over numbers, scipy underneath.

- ``proportion_excess``: is a failure count improbably high for its volume? Binomial, or
  beta-binomial when rates wobble more than binomially (they do in real traffic).
- ``count_shortfall`` / ``count_excess``: Poisson or negative-binomial tails for counts.
- ``robust_baseline``: median and MAD of past same-time values (a past incident is ignored).
- ``cusum_onset``: when did the excursion that is alarming now begin?
- ``burn_rate``: SLO error-budget burn.
- ``Debouncer``: persistence (``for``) and hysteresis (``clear_after``) per key.
- ``quantile_from_buckets``: Prometheus' histogram_quantile on cumulative buckets.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from typing import Literal

import numpy as np
from scipy import stats as st

_P_MIN = 1e-6


@dataclass(frozen=True)
class Baseline:
    center: float
    spread: float  # 1.4826 * MAD: a standard deviation robust to outliers
    n: int


def robust_baseline(history: Sequence[float | None], *, min_points: int = 1) -> Baseline | None:
    vals = np.array([v for v in history if v is not None and math.isfinite(v)], dtype=float)
    if len(vals) < max(1, min_points):
        return None
    center = float(np.median(vals))
    mad = float(np.median(np.abs(vals - center)))
    return Baseline(center, 1.4826 * mad, len(vals))


@dataclass(frozen=True)
class ProportionTest:
    observed_rate: float
    expected_rate: float
    p_value: float  # P(failures >= observed | expected rate), one-sided
    lower: float  # band of the failure rate expected at this volume: [alpha, 1 - alpha]
    upper: float
    significant: bool


def _beta_params(p: float, rho: float) -> tuple[float, float]:
    scale = (1 - rho) / rho
    return p * scale, (1 - p) * scale


def proportion_excess(
    failures: float,
    attempts: float,
    baseline_rate: float,
    *,
    overdispersion: float = 0.0,
    alpha: float = 1e-6,
) -> ProportionTest:
    """Upper-tail test of ``failures`` out of ``attempts`` against ``baseline_rate``.

    Counts from ``increase()`` are not integers: they are rounded. ``overdispersion`` is the
    intra-class correlation rho of a beta-binomial (0: binomial); the variance of the rate is
    ``p(1-p)/n * (1 + (n-1) rho)``, so large slices are not held to binomial precision.
    """
    n = max(0, round(attempts)) if math.isfinite(attempts) else 0
    k = min(max(0, round(failures)) if math.isfinite(failures) else 0, n)
    p = min(max(baseline_rate if math.isfinite(baseline_rate) else 0.0, _P_MIN), 1 - _P_MIN)
    if n == 0:
        return ProportionTest(math.nan, p, 1.0, 0.0, 1.0, False)
    rho = min(max(overdispersion, 0.0), 0.5)
    dist: st.rv_discrete
    if rho < 1e-9:
        dist = st.binom(n, p)
    else:
        a, b = _beta_params(p, rho)
        dist = st.betabinom(n, a, b)
    p_value = float(min(1.0, max(0.0, dist.sf(k - 1)))) if k > 0 else 1.0
    lower = float(dist.ppf(alpha)) / n
    upper = float(dist.ppf(1 - alpha)) / n
    return ProportionTest(k / n, p, p_value, lower, upper, p_value < alpha)


def estimate_overdispersion(failures: Sequence[float], attempts: Sequence[float]) -> float:
    """Method-of-moments rho from historical windows; 0 with fewer than 3 usable windows."""
    f = np.asarray(failures, dtype=float)
    a = np.asarray(attempts, dtype=float)
    ok = np.isfinite(f) & np.isfinite(a) & (a > 0)
    f, a = f[ok], a[ok]
    m = len(a)
    if m < 3 or a.sum() <= 0:
        return 0.0
    p = float(f.sum() / a.sum())
    if p <= 0 or p >= 1:
        return 0.0
    chi = float(np.sum(a * (f / a - p) ** 2) / (p * (1 - p)))
    denom = float(np.sum(a - 1)) * (m - 1) / m
    if denom <= 0:
        return 0.0
    return float(min(0.5, max(0.0, (chi - (m - 1)) / denom)))


@dataclass(frozen=True)
class CountTest:
    observed: float
    expected: float
    p_value: float  # the tail probability in the tested direction
    lower: float
    upper: float
    significant: bool


def _count_dist(expected: float, dispersion: float) -> st.rv_discrete:
    mu = max(expected, 1e-9)
    if dispersion <= 1e-12:
        return st.poisson(mu)
    r = 1.0 / dispersion  # variance mu + dispersion * mu^2
    return st.nbinom(r, r / (r + mu))


def count_shortfall(
    observed: float, expected: float, *, dispersion: float = 0.0, alpha: float = 1e-6
) -> CountTest:
    """Lower tail: P(X <= observed) with mean ``expected`` (Poisson or negative binomial)."""
    dist = _count_dist(expected, dispersion)
    k = max(0, math.floor(observed)) if math.isfinite(observed) else 0
    p = float(dist.cdf(k))
    return CountTest(
        observed, expected, p, float(dist.ppf(alpha)), float(dist.ppf(1 - alpha)), p < alpha
    )


def count_excess(
    observed: float, expected: float, *, dispersion: float = 0.0, alpha: float = 1e-6
) -> CountTest:
    """Upper tail: P(X >= observed)."""
    dist = _count_dist(expected, dispersion)
    k = max(0, math.ceil(observed)) if math.isfinite(observed) else 0
    p = float(dist.sf(k - 1)) if k > 0 else 1.0
    return CountTest(
        observed, expected, p, float(dist.ppf(alpha)), float(dist.ppf(1 - alpha)), p < alpha
    )


def cusum_onset(
    values: Sequence[float],
    baseline: float,
    *,
    spread: float,
    k: float = 0.5,
    direction: Literal["up", "down"] = "up",
) -> int | None:
    """Index where the excursion that is still under way at the end began (one-sided CUSUM).

    Values are standardised ``(x - baseline) / spread`` (negated for ``down``); the statistic
    ``S = max(0, S + z - k)`` skips NaNs. Returns the first index after the last time S was
    zero, or None when S is zero at the end (nothing under way).
    """
    sd = spread if spread > 0 and math.isfinite(spread) else 1e-9
    sign = 1.0 if direction == "up" else -1.0
    s = 0.0
    start: int | None = None
    for i, x in enumerate(values):
        if x is None or not math.isfinite(x):
            continue
        s = max(0.0, s + sign * (x - baseline) / sd - k)
        if s == 0.0:
            start = None
        elif start is None:
            start = i
    return start if s > 0 else None


def burn_rate(bad: float, total: float, objective: float) -> float | None:
    """How many times faster than allowed the error budget burns; None without traffic."""
    if not total or total <= 0 or not math.isfinite(total) or not math.isfinite(bad):
        return None
    return (bad / total) / (1 - objective)


def quantile_from_buckets(buckets: Mapping[float, float], q: float) -> float | None:
    """histogram_quantile: linear interpolation in the bucket holding rank q * total."""
    items = sorted((float(le), float(c)) for le, c in buckets.items())
    if not items or not math.isinf(items[-1][0]):
        return None
    total = items[-1][1]
    if total <= 0 or not math.isfinite(total):
        return None
    rank = q * total
    prev_le, prev_c = 0.0, 0.0
    for le, c in items:
        if c >= rank:
            if math.isinf(le):
                return prev_le  # Prometheus returns the highest finite bound
            if c == prev_c:
                return le
            return prev_le + (le - prev_le) * (rank - prev_c) / (c - prev_c)
        prev_le, prev_c = le, c
    return None


class Transition(Enum):
    RAISED = "raised"
    CLEARED = "cleared"


@dataclass
class _KeyState:
    pending_since: datetime | None = None
    raised_at: datetime | None = None
    quiet_since: datetime | None = None
    last_seen: datetime | None = None


@dataclass
class Debouncer:
    """Persistence and hysteresis, per key, with the clock passed in.

    A condition raises once it has held continuously for ``for_`` (a gap in evaluations
    longer than ``max_gap`` breaks continuity); a raised key clears only after ``clear_after``
    of continuous quiet, and any breach in between restarts that quiet period, so an
    incident does not flap.
    """

    for_: timedelta
    clear_after: timedelta
    max_gap: timedelta = timedelta(minutes=5)
    _state: dict[Hashable, _KeyState] = field(default_factory=dict)

    def update(self, key: Hashable, breaching: bool, at: datetime) -> Transition | None:
        s = self._state.setdefault(key, _KeyState())
        gap = s.last_seen is not None and at - s.last_seen > self.max_gap
        s.last_seen = at
        if s.raised_at is None:
            if not breaching:
                s.pending_since = None
                return None
            if s.pending_since is None or gap:
                s.pending_since = at
            if at - s.pending_since >= self.for_:
                s.raised_at, s.pending_since, s.quiet_since = at, None, None
                return Transition.RAISED
            return None
        if breaching:
            s.quiet_since = None
            return None
        if s.quiet_since is None:
            s.quiet_since = at
        if at - s.quiet_since >= self.clear_after:
            self._state.pop(key, None)
            return Transition.CLEARED
        return None

    def active(self, key: Hashable) -> bool:
        s = self._state.get(key)
        return s is not None and s.raised_at is not None

    def pending_since(self, key: Hashable) -> datetime | None:
        s = self._state.get(key)
        return s.pending_since if s else None

    def raised_at(self, key: Hashable) -> datetime | None:
        s = self._state.get(key)
        return s.raised_at if s else None
