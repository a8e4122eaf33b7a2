"""The statistics the detectors share: pure, typed functions over numbers, scipy underneath.

Nothing here does IO or reads a clock; times are passed in.

- ``robust_baseline``: median and scaled MAD of past same-time-of-week values, so one past
  incident in the history does not move the baseline.
- ``proportion_excess``: is a failure count improbably high for its volume? Binomial, or
  beta-binomial when rates wobble more than binomially (they do in real traffic);
  ``estimate_overdispersion`` measures that wobble from historical windows.
- ``count_shortfall`` / ``count_excess``: Poisson or negative-binomial tails for event counts.
- ``cusum_onset``: when did the excursion that is alarming now begin?
- ``burn_rate``, ``BurnWindow``, ``multiwindow_alert``: SLO error-budget burn, the SRE
  workbook's multi-window, multi-burn-rate rule.
- ``recovery``: is a raised finding's signal, pooled over its last minutes, still out of its
  band, and if not, since when is it back?
- ``Debouncer``: persistence (``for_``) and hysteresis (``clear_after``) per key.
- ``quantile_from_buckets``: Prometheus' ``histogram_quantile`` on cumulative buckets.

Counts from PromQL ``increase()`` are extrapolated and rarely integers; the discrete tests
round them to the nearest integer (halves up).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import special

__all__ = [
    "DEFAULT_BURN_WINDOWS",
    "Baseline",
    "BurnWindow",
    "CountTest",
    "Debouncer",
    "ProportionTest",
    "Recovery",
    "Transition",
    "burn_rate",
    "count_excess",
    "count_shortfall",
    "cusum_onset",
    "estimate_overdispersion",
    "multiwindow_alert",
    "proportion_excess",
    "quantile_from_buckets",
    "recovery",
    "robust_baseline",
]

MAD_TO_SD = 1.4826
"""Scales the median absolute deviation to the standard deviation of a normal distribution."""

_RATE_FLOOR = 1e-6
"""Baseline rates are clipped to ``[_RATE_FLOOR, 1 - _RATE_FLOOR]``: 0 or 1 make any deviation
infinitely surprising."""

_MAX_RHO = 0.5
"""Largest intra-class correlation accepted or estimated (beyond it a rate is noise)."""

_EXACT_MAX_ATTEMPTS = 2_000_000
"""Above this many attempts the beta-binomial is evaluated on scaled-down counts (see
``proportion_excess``) to bound memory; real payment windows are far smaller."""

_POISSON_LIMIT = 1e-10
"""A negative binomial whose extra variance ``dispersion * mu`` is below this (relative to the
Poisson variance) is evaluated as a Poisson: identical in value, and numerically safe."""

FloatArray = npt.NDArray[np.float64]


def _finite(x: object) -> bool:
    """A real number that is neither NaN nor infinite (None and non-numbers are not)."""
    return isinstance(x, int | float | np.integer | np.floating) and math.isfinite(x)


def _as_count(x: float) -> int:
    """A non-negative integer from a possibly fractional ``increase()`` value (NaN -> 0)."""
    if not _finite(x) or x <= 0:
        return 0
    return math.floor(x + 0.5)


def _check_alpha(alpha: float) -> None:
    if not 0 < alpha < 0.5:
        raise ValueError(f"alpha must be in (0, 0.5), got {alpha!r}")


# --- baselines -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Baseline:
    """A robust summary of past values.

    ``center`` is the median, ``spread`` the scaled MAD (``1.4826 * MAD``: the standard
    deviation for normal data, unaffected by a minority of outliers) and ``n`` the number of
    finite values it is built from. ``spread`` is 0 when most values are identical.
    """

    center: float
    spread: float
    n: int


def robust_baseline(history: Sequence[float | None], *, min_points: int = 1) -> Baseline | None:
    """Median and scaled MAD of the finite values of ``history``.

    ``history`` holds the values at the same time of week in previous weeks; missing weeks may
    be None or NaN and are skipped. A past incident in one week moves neither the median nor
    the MAD much (breakdown point 50 %). Returns None with fewer than ``min_points`` (at least
    one) finite values.
    """
    vals = np.array([float(v) for v in history if v is not None and _finite(v)], dtype=float)
    if len(vals) < max(1, min_points):
        return None
    center = float(np.median(vals))
    mad = float(np.median(np.abs(vals - center)))
    return Baseline(center=center, spread=MAD_TO_SD * mad, n=len(vals))


# --- proportions (declines, failures) --------------------------------------------------------


class _LazyBand:
    """``lower`` and ``upper`` from a test's ``_band``, computed when first read."""

    _band: Callable[[], tuple[float, float]]

    @functools.cached_property
    def _bounds(self) -> tuple[float, float]:
        return self._band()

    @property
    def lower(self) -> float:
        return self._bounds[0]

    @property
    def upper(self) -> float:
        return self._bounds[1]


@dataclass(frozen=True)
class ProportionTest(_LazyBand):
    """Result of ``proportion_excess``.

    ``observed_rate`` is failures / attempts after rounding (NaN without attempts);
    ``expected_rate`` the baseline rate actually tested (clipped away from 0 and 1);
    ``p_value`` is P(X >= failures) under the null, one-sided; ``lower`` and ``upper`` bound
    the failure *rate* expected at this volume: the null distribution's ``alpha`` and
    ``1 - alpha`` quantiles divided by attempts; ``significant`` is ``p_value < alpha``. The
    band is computed when first read (a detector that only asks whether a slice is
    significant never pays for it).
    """

    observed_rate: float
    expected_rate: float
    p_value: float
    significant: bool
    _band: Callable[[], tuple[float, float]] = field(repr=False, compare=False)


def _log_rising(c: float, m_max: int) -> FloatArray:
    """``L[m] = log(Gamma(c + m) / (Gamma(c) * c**m))`` for m = 0..m_max, accurately.

    For large ``c`` the log-gamma difference cancels catastrophically, so the product
    ``prod(1 + i / c)`` is summed in log1p form instead; both tend to 0 as c grows, which is
    what makes the beta-binomial tend continuously to the binomial.
    """
    m = np.arange(m_max + 1, dtype=float)
    if c >= 1e6:
        return np.concatenate(([0.0], np.cumsum(np.log1p(m[:-1] / c))))
    out: FloatArray = special.gammaln(c + m) - special.gammaln(c) - m * math.log(c)
    return out


def _betabinom_pmf(n: int, p: float, rho: float) -> FloatArray:
    """The beta-binomial pmf over 0..n with mean ``n p`` and intra-class correlation ``rho``.

    Written as the binomial pmf times a correction, ``B(k+a, n-k+b) / B(a, b)`` over
    ``p**k (1-p)**(n-k)``, with ``a = p s``, ``b = (1-p) s``, ``s = (1-rho)/rho``.
    """
    s = (1.0 - rho) / rho
    a, b = p * s, (1.0 - p) * s
    k = np.arange(n + 1, dtype=float)
    log_binom = (
        special.gammaln(n + 1.0)
        - special.gammaln(k + 1.0)
        - special.gammaln(n - k + 1.0)
        + k * math.log(p)
        + (n - k) * math.log1p(-p)
    )
    log_s = float(_log_rising(s, n)[n])
    logpmf = log_binom + _log_rising(a, n) + _log_rising(b, n)[::-1] - log_s
    pmf: FloatArray = np.exp(logpmf - np.max(logpmf))
    return pmf / float(np.sum(pmf))


def _binom_band(n: int, p: float, alpha: float) -> tuple[float, float]:
    """The binomial's ``alpha`` and ``1 - alpha`` quantiles, as rates of ``n``."""
    sd = math.sqrt(n * p * (1 - p))

    def binom_cdf(x: int) -> float:
        return float(special.bdtr(x, n, p)) if x < n else 1.0

    return _ppf(binom_cdf, alpha, n * p, sd, n) / n, _ppf(binom_cdf, 1 - alpha, n * p, sd, n) / n


def _fixed(lower: float, upper: float) -> tuple[float, float]:
    return lower, upper


def _proportion_tail_and_band(
    k: int, n: int, p: float, rho: float, alpha: float
) -> tuple[float, Callable[[], tuple[float, float]]]:
    """P(X >= k) of the failure count under the null, and its ``alpha`` and ``1 - alpha``
    quantiles as rates (a callable: the binomial's are searched for only when asked)."""
    if rho == 0.0:
        tail = float(special.bdtrc(k - 1, n, p)) if k > 0 else 1.0
        return tail, functools.partial(_binom_band, n, p, alpha)
    pmf = _betabinom_pmf(n, p, rho)
    cdf = np.cumsum(pmf)
    upper_tail = np.cumsum(pmf[::-1])[::-1]  # upper_tail[j] = P(X >= j), summed from the tail
    tail = float(upper_tail[k]) if k > 0 else 1.0
    lower_q = int(np.searchsorted(cdf, alpha, side="left"))
    # smallest x with P(X > x) <= alpha, i.e. cdf(x) >= 1 - alpha, read off the accurate tail
    beyond = np.append(upper_tail[1:], 0.0)
    upper_q = int(np.searchsorted(-beyond, -alpha, side="left"))
    return tail, functools.partial(_fixed, min(lower_q, n) / n, min(upper_q, n) / n)


def proportion_excess(
    failures: float,
    attempts: float,
    baseline_rate: float,
    *,
    overdispersion: float = 0.0,
    alpha: float = 1e-6,
) -> ProportionTest:
    """Upper-tail test of ``failures`` out of ``attempts`` against ``baseline_rate``.

    Under the null the failure count is beta-binomial with mean ``attempts * baseline_rate``
    and intra-class correlation ``overdispersion`` (rho; 0 is the plain binomial and the
    beta-binomial tends to it continuously as rho -> 0). The variance of the rate is
    ``p (1-p) / n * (1 + (n-1) rho)``, so large slices are not held to binomial precision
    when real rates wobble between windows.

    Inputs are made safe rather than rejected, since they come from PromQL: counts are rounded
    to the nearest integer, negatives and NaN become 0 and failures are capped at attempts;
    ``baseline_rate`` is clipped to ``[1e-6, 1 - 1e-6]``. No attempts, or a baseline that is not
    a number, give ``p_value = 1`` (nothing to test) and a ``[0, 1]`` band.

    Tail probabilities are summed from the tail, so p-values far below machine epsilon stay
    meaningful. Above two million attempts the beta-binomial is evaluated on counts scaled down
    to two million, with rho raised so the variance of the rate is unchanged (or left at 0 when
    even the binomial at that size is wider, which only makes the test more cautious).

    Raises ValueError when ``alpha`` is not in (0, 0.5) or ``overdispersion`` not in [0, 1).
    """
    _check_alpha(alpha)
    if not (_finite(overdispersion) and 0.0 <= overdispersion < 1.0):
        raise ValueError(f"overdispersion must be in [0, 1), got {overdispersion!r}")
    n = _as_count(attempts)
    k = min(_as_count(failures), n)
    if n == 0 or not _finite(baseline_rate):
        rate = float(baseline_rate) if _finite(baseline_rate) else math.nan
        observed = k / n if n else math.nan
        return ProportionTest(observed, rate, 1.0, False, functools.partial(_fixed, 0.0, 1.0))
    p = min(max(float(baseline_rate), _RATE_FLOOR), 1.0 - _RATE_FLOOR)
    rho = float(overdispersion)
    n_eval, k_eval = n, k
    if rho > 0.0 and n > _EXACT_MAX_ATTEMPTS:
        n_eval = _EXACT_MAX_ATTEMPTS
        k_eval = min(math.floor(k * n_eval / n + 0.5), n_eval)
        inflation = n_eval / n * (1.0 + (n - 1) * rho)  # variance factor needed at n_eval
        rho = min(max((inflation - 1.0) / (n_eval - 1), 0.0), 1.0 - 1e-9)
    tail, band = _proportion_tail_and_band(k_eval, n_eval, p, rho, alpha)
    p_value = min(max(tail, 0.0), 1.0)
    return ProportionTest(
        observed_rate=k / n,
        expected_rate=p,
        p_value=p_value,
        significant=p_value < alpha,
        _band=band,
    )


def estimate_overdispersion(failures: Sequence[float], attempts: Sequence[float]) -> float:
    """Method-of-moments intra-class correlation rho from historical windows.

    Each window i contributes ``failures[i]`` out of ``attempts[i]``. With the pooled rate p,
    ``X = sum n_i (r_i - p)^2 / (p (1-p))`` has expectation about
    ``(m - 1) + rho * (m - 1) / m * sum(n_i - 1)`` for m windows, which is solved for rho.
    Windows without attempts or with non-finite values are dropped and failures are capped at
    attempts. Returns 0 with fewer than 3 usable windows, a pooled rate of 0 or 1, or no
    variance beyond the binomial; the estimate is clipped to [0, 0.5].
    """
    if len(failures) != len(attempts):
        raise ValueError("failures and attempts must have the same length")
    rows = estimate_overdispersion_rows(
        np.asarray(failures, dtype=float)[None, :], np.asarray(attempts, dtype=float)[None, :]
    )
    return float(rows[0])


def estimate_overdispersion_rows(failures: np.ndarray, attempts: np.ndarray) -> FloatArray:
    """:func:`estimate_overdispersion` of each row of two matrices at once (the same rules:
    a window counts when both values are finite and attempts > 0; pad a row with NaN)."""
    f = np.asarray(failures, dtype=float)
    a = np.asarray(attempts, dtype=float)
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(f) & np.isfinite(a) & (a > 0)
    a = np.where(ok, a, 0.0)
    f = np.clip(np.where(ok, f, 0.0), 0.0, a)
    m = ok.sum(axis=1)
    a_sum = a.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = f.sum(axis=1) / a_sum
        r = np.where(ok, f / np.where(ok, a, 1.0), 0.0)
        chi = np.sum(a * (r - p[:, None]) ** 2, axis=1) / (p * (1.0 - p))
        denom = np.sum(np.where(ok, a - 1.0, 0.0), axis=1) * (m - 1) / m
        rho = np.minimum(_MAX_RHO, np.maximum(0.0, (chi - (m - 1)) / denom))
    usable = (m >= 3) & (p > 0.0) & (p < 1.0) & (denom > 0.0)
    out: FloatArray = np.where(usable, rho, 0.0)
    return out


# --- counts (traffic) ------------------------------------------------------------------------


@dataclass(frozen=True)
class CountTest(_LazyBand):
    """Result of ``count_shortfall`` / ``count_excess``.

    ``p_value`` is the tail probability in the tested direction; ``lower`` and ``upper`` are
    the ``alpha`` and ``1 - alpha`` quantiles of the *count* expected (not a rate), computed
    when first read; ``significant`` is ``p_value < alpha``.
    """

    observed: float
    expected: float
    p_value: float
    significant: bool
    _band: Callable[[], tuple[float, float]] = field(repr=False, compare=False)


def _ppf(cdf: Callable[[int], float], q: float, mean: float, sd: float, cap: int | None) -> int:
    """The smallest integer x >= 0 with cdf(x) >= q, by bisection from a normal guess.

    What ``scipy.stats`` ppf computes, at a fraction of its per-call overhead: a backtest
    runs tens of thousands of these.
    """
    hi = max(1, math.ceil(mean + 8 * sd + 10))
    while cdf(hi) < q:
        if cap is not None and hi >= cap:
            return cap
        hi *= 2
    if cap is not None:
        hi = min(hi, cap)
    lo = -1  # cdf(-1) = 0 < q
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if cdf(mid) >= q:
            hi = mid
        else:
            lo = mid
    return hi


@dataclass(frozen=True)
class _CountDist:
    """Poisson(mu) or negative binomial with mean mu and variance ``mu + dispersion mu^2``,
    through ``scipy.special`` (the regularised incomplete gamma and beta functions)."""

    mu: float
    r: float  # inf for the Poisson

    def cdf(self, k: int) -> float:
        if k < 0:
            return 0.0
        if math.isinf(self.r):
            return float(special.pdtr(k, self.mu))
        return float(special.betainc(self.r, k + 1, self.r / (self.r + self.mu)))

    def sf_ge(self, k: int) -> float:
        """P(X >= k), from the upper tail so tiny p-values keep their precision."""
        if k <= 0:
            return 1.0
        if math.isinf(self.r):
            return float(special.pdtrc(k - 1, self.mu))
        return float(special.betainc(k, self.r, self.mu / (self.r + self.mu)))

    def ppf(self, q: float) -> int:
        var = self.mu if math.isinf(self.r) else self.mu + self.mu * self.mu / self.r
        return _ppf(self.cdf, q, self.mu, math.sqrt(var), None)


def _count_dist(expected: float, dispersion: float) -> _CountDist:
    mu = max(expected, 0.0)
    if dispersion * mu < _POISSON_LIMIT:
        return _CountDist(mu, math.inf)
    return _CountDist(mu, 1.0 / dispersion)


def _count_test(
    observed: float, expected: float, dispersion: float, alpha: float, lower_tail: bool
) -> CountTest:
    _check_alpha(alpha)
    if not (_finite(dispersion) and dispersion >= 0.0):
        raise ValueError(f"dispersion must be >= 0, got {dispersion!r}")
    if not _finite(expected):
        return CountTest(observed, expected, 1.0, False, functools.partial(_fixed, 0.0, math.inf))
    dist = _count_dist(expected, dispersion)
    k = _as_count(observed)
    p_value = dist.cdf(k) if lower_tail else dist.sf_ge(k)
    p_value = min(max(p_value, 0.0), 1.0)
    return CountTest(
        observed=observed,
        expected=expected,
        p_value=p_value,
        significant=p_value < alpha,
        _band=functools.partial(_count_band, dist, alpha),
    )


def _count_band(dist: _CountDist, alpha: float) -> tuple[float, float]:
    return float(dist.ppf(alpha)), float(dist.ppf(1 - alpha))


def count_shortfall(
    observed: float, expected: float, *, dispersion: float = 0.0, alpha: float = 1e-6
) -> CountTest:
    """Lower tail: P(X <= observed) when X has mean ``expected``.

    X is Poisson for ``dispersion`` 0, else negative binomial with variance
    ``expected + dispersion * expected^2`` (the Poisson is its continuous limit). ``observed``
    is rounded to the nearest integer. An ``expected`` that is not a number gives p = 1.
    Raises ValueError for a negative dispersion or ``alpha`` outside (0, 0.5).
    """
    return _count_test(observed, expected, dispersion, alpha, lower_tail=True)


def count_excess(
    observed: float, expected: float, *, dispersion: float = 0.0, alpha: float = 1e-6
) -> CountTest:
    """Upper tail: P(X >= observed); otherwise as ``count_shortfall``."""
    return _count_test(observed, expected, dispersion, alpha, lower_tail=False)


# --- onset -----------------------------------------------------------------------------------


def cusum_onset(
    values: Sequence[float],
    baseline: float,
    *,
    spread: float,
    k: float = 0.5,
    direction: Literal["up", "down"] = "up",
) -> int | None:
    """Index where the excursion still under way at the end of ``values`` began.

    Runs a one-sided CUSUM over ``z = (x - baseline) / spread`` (negated for ``down``):
    ``S = max(0, S + z - k)``, ``k`` being the allowance in standard deviations. Returns the
    first index after the last time S was at zero, i.e. the first point of the final
    excursion, or None when S is zero at the end (nothing under way). NaN (or None) values are
    skipped and carry S unchanged. A ``spread`` that is not positive is replaced by a tiny
    epsilon relative to the baseline, so any deviation beyond ``k * epsilon`` counts. A
    baseline that is not a number gives None.
    """
    if not _finite(baseline):
        return None
    if _finite(spread) and spread > 0:
        sd = float(spread)
    else:
        sd = 1e-9 * max(1.0, abs(baseline))
    sign = 1.0 if direction == "up" else -1.0
    s = 0.0
    start: int | None = None
    for i, x in enumerate(values):
        if not _finite(x):
            continue
        s = max(0.0, s + sign * (float(x) - baseline) / sd - k)
        if s == 0.0:
            start = None
        elif start is None:
            start = i
    return start if s > 0.0 else None


# --- SLO burn rates --------------------------------------------------------------------------


def burn_rate(bad: float, total: float, objective: float) -> float | None:
    """How many times faster than allowed the error budget burns: ``(bad/total)/(1-objective)``.

    1 spends exactly the budget over the SLO period. None when there is no traffic
    (``total <= 0``) or a count is not a number. Raises ValueError unless
    ``0 <= objective < 1``.
    """
    if not (_finite(objective) and 0.0 <= objective < 1.0):
        raise ValueError(f"objective must be in [0, 1), got {objective!r}")
    if not (_finite(total) and _finite(bad)) or total <= 0:
        return None
    return (bad / total) / (1.0 - objective)


@dataclass(frozen=True)
class BurnWindow:
    """One rule of the multi-window, multi-burn-rate alert.

    Fires when the burn rate is at least ``factor`` over both the ``long`` window (enough
    budget is really being spent) and the ``short`` one (it is still happening, which also lets
    the alert reset quickly; conventionally 1/12 of the long window).
    """

    long: timedelta
    short: timedelta
    factor: float

    def __post_init__(self) -> None:
        if not timedelta(0) < self.short <= self.long:
            raise ValueError("BurnWindow needs 0 < short <= long")
        if not (_finite(self.factor) and self.factor > 0):
            raise ValueError("BurnWindow factor must be positive")


DEFAULT_BURN_WINDOWS: tuple[BurnWindow, ...] = (
    BurnWindow(timedelta(hours=1), timedelta(minutes=5), 14.4),
    BurnWindow(timedelta(hours=6), timedelta(minutes=30), 6.0),
    BurnWindow(timedelta(days=3), timedelta(hours=6), 1.0),
)
"""The SRE workbook's page (14.4x over 1 h and 5 m, 6x over 6 h and 30 m) and ticket
(1x over 3 d and 6 h) rules, for a 30-day SLO."""


def multiwindow_alert(
    burn: Mapping[timedelta, float | None],
    windows: Sequence[BurnWindow],
    *,
    bad: Mapping[timedelta, float] | None = None,
    min_bad: float = 0.0,
) -> BurnWindow | None:
    """The highest-factor rule of ``windows`` that fires, or None.

    ``burn`` maps a window length to its burn rate (from ``burn_rate``; None or a missing
    length means unknown, which never fires). A rule fires when the burn rates over both its
    long and short windows are at least its factor and, when ``min_bad > 0``, ``bad`` (bad
    events per window length) holds at least ``min_bad`` for the long window, so a handful of
    failures at low volume does not page. Rules are tried by decreasing factor, in the given
    order among equal factors. Raises ValueError when ``min_bad > 0`` without ``bad``.
    """
    if min_bad > 0 and bad is None:
        raise ValueError("min_bad needs the bad-event counts per window")
    for w in sorted(windows, key=lambda w: -w.factor):
        long_rate, short_rate = burn.get(w.long), burn.get(w.short)
        if long_rate is None or short_rate is None:
            continue
        if not (long_rate >= w.factor and short_rate >= w.factor):
            continue
        n_bad = bad.get(w.long) if bad is not None else None
        if min_bad > 0 and (n_bad is None or not n_bad >= min_bad):
            continue
        return w
    return None


# --- histograms ------------------------------------------------------------------------------


def quantile_from_buckets(buckets: Mapping[float, float], q: float) -> float | None:
    """Prometheus' ``histogram_quantile(q, ...)`` on cumulative counts keyed by upper bound.

    Follows Prometheus: the buckets must include ``+Inf`` and at least one finite bound (else
    None); counts are made monotonic (a lower count after a higher one is raised to it); the
    quantile is interpolated linearly inside the bucket holding rank ``q * total``, the first
    bucket starting at 0 (or returning its bound when that is <= 0); a rank in the ``+Inf``
    bucket returns the highest finite bound. None when the total is 0 or not a number or ``q``
    is NaN; ``q < 0`` gives -inf and ``q > 1`` +inf.
    """
    if not _finite(q):
        if isinstance(q, float) and math.isinf(q):
            return math.inf if q > 0 else -math.inf
        return None
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    items = sorted((float(le), float(c)) for le, c in buckets.items())
    if len(items) < 2 or items[-1][0] != math.inf:
        return None
    bounds = [le for le, _ in items]
    counts = np.maximum.accumulate(np.array([c for _, c in items], dtype=float))
    total = float(counts[-1])
    if not math.isfinite(total) or total <= 0:
        return None
    rank = q * total
    b = int(np.searchsorted(counts[:-1], rank, side="left"))  # first bucket with count >= rank
    if b == len(items) - 1:
        return bounds[-2]
    if b == 0 and bounds[0] <= 0:
        return bounds[0]
    start, prev = (bounds[b - 1], float(counts[b - 1])) if b > 0 else (0.0, 0.0)
    in_bucket = float(counts[b]) - prev
    if in_bucket <= 0:  # only q == 0 over leading empty buckets
        return start
    return start + (bounds[b] - start) * (rank - prev) / in_bucket


# --- recovery ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recovery:
    """Whether a raised finding's signal is still out of its band over its last minutes.

    ``holding``: it still is. Otherwise ``back`` is how many minutes before the newest one
    the data shows the signal back (0: since the newest minute only).
    """

    holding: bool
    back: int = 0


def recovery(
    out_of_band: Callable[[int], bool],
    back_since: Callable[[int], float | None],
    n: int,
    least: int | None = None,
) -> Recovery:
    """Judge a raised finding's recovery from its last ``n`` minutes (newest first).

    ``back_since(j)`` says whether the data shows the signal back since minute ``j`` (0 the
    newest): the newest ``j + 1`` minutes within band and improbably far from the minutes
    just before them (a change, not a lull: not being improbable is no proof that a
    problem ended); it gives that change's p-value, or None for no change.
    ``out_of_band(k)`` says whether the newest ``k`` minutes, pooled, are still out of band
    (a lenient test: pooling gives a small slice the evidence one minute lacks).

    A change in the data ends the problem at the most improbable one: so a problem that
    ended two minutes ago is seen back two minutes ago, not once a pool of older minutes
    has forgotten it. Without one, the finding holds while its newest ``least`` minutes
    (default ``n``) or all ``n`` are out of band, and is back since the newest minute once
    neither is (a problem that faded too slowly to show a change). A mild problem's
    quieter minutes are no change, and its pool still holds it.
    """
    least = n if least is None else least
    if n < 1 or not 1 <= least <= n:
        raise ValueError(f"need 1 <= least <= n, got least={least}, n={n}")
    best: tuple[float, int] | None = None
    for j in range(n - 1, -1, -1):
        p = back_since(j)
        if p is not None and (best is None or p < best[0]):
            best = (p, j)
    if best is not None:
        return Recovery(False, best[1])
    if out_of_band(least) or out_of_band(n):
        return Recovery(True)
    return Recovery(False, 0)


# --- persistence and hysteresis --------------------------------------------------------------


class Transition(Enum):
    """What a ``Debouncer.update`` changed."""

    RAISED = "raised"
    CLEARED = "cleared"


@dataclass
class _KeyState:
    pending_since: datetime | None = None
    raised_at: datetime | None = None
    quiet_since: datetime | None = None  # the quiet period's start (the data may date it)
    quiet_seen: datetime | None = None  # its first quiet evaluation
    last_seen: datetime | None = None


@dataclass
class Debouncer:
    """Persistence and hysteresis per key, with the clock passed in.

    A key raises once its condition has held continuously for ``for_`` (0 raises on the first
    breach): the first breach starts a pending timer and a single non-breaching evaluation
    resets it. A raised key clears only after ``clear_after`` of continuous non-breach; any
    breach in between restarts that quiet period, so an incident does not flap. The quiet
    period may start before the first quiet evaluation, when the data shows the signal
    back since then (``since``); at least half of it is still watched evaluation by
    evaluation, so one evaluation that reads a lull as a recovery does not clear a key. The
    start of the quiet period that clears a key is when its signal went back
    (``recovered_at``, kept until the key raises again). Evaluations further apart than
    ``max_gap`` are not continuous: after such a gap the pending (or quiet) timer restarts at
    the new evaluation. An evaluation older than the key's last one is ignored. Keys that
    are neither pending nor raised keep no state but that recovery time.
    """

    for_: timedelta
    clear_after: timedelta
    max_gap: timedelta = timedelta(minutes=5)
    _state: dict[Hashable, _KeyState] = field(default_factory=dict, init=False, repr=False)
    _recovered: dict[Hashable, datetime] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.for_ < timedelta(0) or self.clear_after < timedelta(0):
            raise ValueError("for_ and clear_after must not be negative")
        if self.max_gap <= timedelta(0):
            raise ValueError("max_gap must be positive")

    def update(
        self, key: Hashable, breaching: bool, at: datetime, since: datetime | None = None
    ) -> Transition | None:
        """Record one evaluation of ``key`` at ``at``; returns the transition it caused.

        ``since`` is when the data itself shows the current run began (a detector that
        checked every minute of the last three is not asked to wait another ``for_`` of
        evaluations): a pending timer starts no later than that; for a raised key that is
        not breaching, the quiet period starts no later than that (the data shows the
        signal back since then), though never before the key was raised.
        """
        s = self._state.get(key)
        if s is None:
            if not breaching:
                return None
            s = self._state[key] = _KeyState()
        if s.last_seen is not None and at < s.last_seen:
            return None
        gap = s.last_seen is not None and at - s.last_seen > self.max_gap
        s.last_seen = at
        if s.raised_at is None:
            if not breaching:
                del self._state[key]
                return None
            if s.pending_since is None or gap:
                s.pending_since = at
            if since is not None and since < s.pending_since:
                s.pending_since = since
            if at - s.pending_since >= self.for_:
                s.raised_at, s.pending_since, s.quiet_since = at, None, None
                self._recovered.pop(key, None)
                return Transition.RAISED
            return None
        if breaching:
            s.quiet_since = s.quiet_seen = None
            return None
        if s.quiet_since is None or gap:
            s.quiet_since = s.quiet_seen = at
            if since is not None and not gap:
                s.quiet_since = max(min(since, at), s.raised_at)
        assert s.quiet_seen is not None
        watched = at - s.quiet_seen >= self.clear_after / 2
        if at - s.quiet_since >= self.clear_after and watched:
            del self._state[key]
            self._recovered[key] = s.quiet_since
            return Transition.CLEARED
        return None

    def active(self, key: Hashable) -> bool:
        """Whether ``key`` is raised."""
        s = self._state.get(key)
        return s is not None and s.raised_at is not None

    def pending_since(self, key: Hashable) -> datetime | None:
        """When the current unbroken run of breaches began, if ``key`` is pending (not raised)."""
        s = self._state.get(key)
        return s.pending_since if s else None

    def raised_at(self, key: Hashable) -> datetime | None:
        """When ``key`` was raised, if it is raised."""
        s = self._state.get(key)
        return s.raised_at if s else None

    def quiet_since(self, key: Hashable) -> datetime | None:
        """When the current quiet period of a raised ``key`` began, if it is in one."""
        s = self._state.get(key)
        return s.quiet_since if s and s.raised_at is not None else None

    def recovered_at(self, key: Hashable) -> datetime | None:
        """When the signal of ``key`` went back, as of its last clearing: the start of the
        quiet period that cleared it (None if it never cleared, or was raised again since)."""
        return self._recovered.get(key)
