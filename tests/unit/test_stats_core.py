"""The shared statistics, pinned on small hand-made cases with independently computed values."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import binomtest

from detectors.stats import (
    Debouncer,
    Transition,
    burn_rate,
    count_shortfall,
    cusum_onset,
    estimate_overdispersion,
    proportion_excess,
    quantile_from_buckets,
    robust_baseline,
)

T0 = datetime(2026, 11, 16, tzinfo=UTC)
M = timedelta(minutes=1)


def test_binomial_p_value_matches_scipy_binomtest() -> None:
    t = proportion_excess(30, 200, 0.1, alpha=1e-3)
    ref = binomtest(30, 200, 0.1, alternative="greater").pvalue
    assert math.isclose(t.p_value, ref, rel_tol=1e-9)
    assert t.observed_rate == 0.15 and not t.significant


def test_hand_computed_tiny_case() -> None:
    # P(X >= 2 | n=2, p=0.5) = 0.25
    assert math.isclose(proportion_excess(2, 2, 0.5).p_value, 0.25)


def test_power_from_the_detection_notes() -> None:
    assert proportion_excess(150, 1000, 0.10, alpha=1e-3).significant  # 10 % -> 15 %
    assert not proportion_excess(105, 1000, 0.10, alpha=1e-3).significant  # 10 % -> 10.5 %


def test_overdispersion_widens_the_band_and_weakens_the_evidence() -> None:
    plain = proportion_excess(700, 5000, 0.12, alpha=1e-6)
    wide = proportion_excess(700, 5000, 0.12, overdispersion=0.002, alpha=1e-6)
    assert wide.upper - wide.lower > plain.upper - plain.lower
    assert wide.p_value > plain.p_value
    assert plain.lower < 0.12 < plain.upper


def test_no_attempts_and_odd_inputs() -> None:
    assert proportion_excess(0, 0, 0.1).p_value == 1.0
    t = proportion_excess(12.6, 10.2, 1.0)  # increase() fractions, failures above attempts
    assert 0 <= t.p_value <= 1 and t.observed_rate == 1.0


@given(
    n=st.integers(1, 5000),
    p=st.floats(0.0, 1.0),
    rho=st.floats(0.0, 0.3),
    k1=st.floats(0, 1),
    k2=st.floats(0, 1),
)
def test_p_values_are_probabilities_and_fall_with_more_failures(
    n: int, p: float, rho: float, k1: float, k2: float
) -> None:
    lo, hi = sorted((round(k1 * n), round(k2 * n)))
    a = proportion_excess(lo, n, p, overdispersion=rho)
    b = proportion_excess(hi, n, p, overdispersion=rho)
    assert 0 <= b.p_value <= a.p_value <= 1


def test_overdispersion_estimate() -> None:
    rng = np.random.default_rng(4)
    n = np.full(60, 2000)
    binomial = rng.binomial(n, 0.1)
    assert estimate_overdispersion(binomial, n) < 0.001
    rates = rng.beta(0.1 * 199, 0.9 * 199, size=60)  # rho = 1 / (a + b + 1) = 0.005
    extra = rng.binomial(n, rates)
    assert 0.002 < estimate_overdispersion(extra, n) < 0.01
    assert estimate_overdispersion([1, 2], [10, 10]) == 0.0


def test_count_shortfall_poisson_and_negative_binomial() -> None:
    t = count_shortfall(2, 10)
    # P(X <= 2 | mu = 10) = e^-10 (1 + 10 + 50)
    assert math.isclose(t.p_value, math.exp(-10) * 61, rel_tol=1e-9)
    nb = count_shortfall(2, 10, dispersion=0.5)
    assert nb.p_value > t.p_value
    assert count_shortfall(400, 1000, alpha=1e-6).significant
    assert not count_shortfall(950, 1000, alpha=1e-6).significant


def test_robust_baseline_ignores_one_bad_week() -> None:
    b = robust_baseline([0.10, 0.11, 0.09, 0.45, None, float("nan")])
    assert b is not None and b.n == 4
    assert math.isclose(b.center, 0.105) and b.spread < 0.05
    assert robust_baseline([None], min_points=1) is None


def test_cusum_finds_a_planted_step() -> None:
    rng = np.random.default_rng(7)
    x = np.concatenate([rng.normal(0.05, 0.01, 120), rng.normal(0.09, 0.01, 15)])
    start = cusum_onset(x.tolist(), 0.05, spread=0.01)
    assert start is not None and abs(start - 120) <= 2
    assert cusum_onset(rng.normal(0.05, 0.01, 50).tolist(), 0.05, spread=0.01, k=3) is None
    down = cusum_onset([10, 10, 10, 2, 2, math.nan, 2], 10, spread=1, direction="down")
    assert down == 3


def test_burn_rate() -> None:
    rate = burn_rate(72, 1000, 0.995)
    assert rate is not None and math.isclose(rate, 14.4)
    assert burn_rate(1, 0, 0.99) is None


def test_quantile_from_buckets_matches_hand_calculation() -> None:
    buckets = {1.0: 50, 5.0: 90, 15.0: 100, math.inf: 100}
    # rank 95 lies in (5, 15]: 5 + 10 * (95 - 90) / (100 - 90) = 10
    assert quantile_from_buckets(buckets, 0.95) == 10.0
    assert quantile_from_buckets({1.0: 0, math.inf: 0}, 0.5) is None
    assert quantile_from_buckets({1.0: 1, math.inf: 10}, 0.99) == 1.0


def feed(d: Debouncer, pattern: str, start: datetime = T0) -> list[tuple[int, Transition]]:
    out = []
    for i, ch in enumerate(pattern):
        tr = d.update("k", ch == "x", start + i * M)
        if tr:
            out.append((i, tr))
    return out


def test_debouncer_persistence_and_hysteresis() -> None:
    d = Debouncer(for_=3 * M, clear_after=10 * M)
    assert feed(d, "xx......") == []  # a two-minute blip
    d = Debouncer(for_=3 * M, clear_after=10 * M)
    assert feed(d, "xxxxx" + "." * 12) == [(3, Transition.RAISED), (15, Transition.CLEARED)]
    d = Debouncer(for_=3 * M, clear_after=10 * M)
    flapping = "xxxx" + "....x" * 5 + "." * 11
    # quiet from index 29 on (the last breach was at 28): clears ten minutes later
    assert feed(d, flapping) == [(3, Transition.RAISED), (39, Transition.CLEARED)]


def test_debouncer_gap_breaks_continuity() -> None:
    d = Debouncer(for_=3 * M, clear_after=10 * M, max_gap=2 * M)
    assert d.update("k", True, T0) is None
    assert d.update("k", True, T0 + 10 * M) is None  # after a gap: pending restarts
    assert d.pending_since("k") == T0 + 10 * M
    assert d.update("k", True, T0 + 13 * M) is None  # 3 min apart: another gap
    assert d.pending_since("k") == T0 + 13 * M
    for m in (14, 15):
        assert d.update("k", True, T0 + m * M) is None
    assert d.update("k", True, T0 + 16 * M) is Transition.RAISED
    assert d.active("k") and d.raised_at("k") == T0 + 16 * M
