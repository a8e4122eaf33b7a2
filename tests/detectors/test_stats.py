"""detectors.stats: expected values derived by hand or from independent scipy/numpy calls."""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hst
from scipy import stats as sst

from paytriage.detectors.stats import (
    DEFAULT_BURN_WINDOWS,
    MAD_TO_SD,
    Baseline,
    BurnWindow,
    Debouncer,
    Recovery,
    Transition,
    burn_rate,
    count_excess,
    count_shortfall,
    cusum_onset,
    estimate_overdispersion,
    multiwindow_alert,
    proportion_excess,
    quantile_from_buckets,
    recovery,
    robust_baseline,
)
from tests.support.factories import T0

MIN = timedelta(minutes=1)
H = timedelta(hours=1)


def _ab(p: float, rho: float) -> tuple[float, float]:
    """Beta parameters with mean p and intra-class correlation rho = 1 / (a + b + 1)."""
    s = 1 / rho - 1
    return p * s, (1 - p) * s


# --- robust_baseline -------------------------------------------------------------------------


def test_baseline_is_median_and_scaled_mad_and_ignores_one_incident_week() -> None:
    # median 0.11; absolute deviations 0.01, 0, 0.02, 0.01, 0.39 -> MAD 0.01
    b = robust_baseline([0.10, 0.11, 0.09, 0.12, 0.50])
    assert b is not None
    assert b.n == 5
    assert b.center == pytest.approx(0.11)
    assert b.spread == pytest.approx(1.4826 * 0.01)
    # the incident week would have dragged a mean to 0.184 and a standard deviation past 0.17
    assert b.spread < 0.02


def test_baseline_skips_missing_weeks_and_needs_min_points() -> None:
    history = [None, 10.0, math.nan, 14.0, 12.0]
    b = robust_baseline(history)
    assert b == Baseline(center=12.0, spread=1.4826 * 2.0, n=3)
    assert robust_baseline(history, min_points=3) is not None
    assert robust_baseline(history, min_points=4) is None
    assert robust_baseline([None, math.nan, math.inf]) is None
    assert robust_baseline([]) is None


def test_scaled_mad_estimates_the_standard_deviation_of_normal_data() -> None:
    rng = np.random.default_rng(11)
    b = robust_baseline(rng.normal(50.0, 2.0, 20_000).tolist())
    assert b is not None
    assert b.center == pytest.approx(50.0, abs=0.05)
    assert b.spread == pytest.approx(2.0, rel=0.03)


@given(
    hst.lists(hst.floats(-1e6, 1e6), min_size=3, max_size=30),
    hst.floats(-1e12, 1e12),
)
def test_one_outlier_keeps_the_median_inside_the_other_values(
    values: list[float], outlier: float
) -> None:
    b = robust_baseline([*values, outlier])
    assert b is not None
    assert min(values) <= b.center <= max(values)
    assert b.spread >= 0


# --- proportion_excess -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("k", "n", "p"),
    [(30, 200, 0.1), (0, 50, 0.2), (1, 1, 0.3), (149, 990, 0.10), (700, 5000, 0.12), (9, 10, 0.5)],
)
def test_binomial_p_value_matches_binomtest(k: int, n: int, p: float) -> None:
    ref = sst.binomtest(k, n, p, alternative="greater").pvalue
    assert proportion_excess(k, n, p).p_value == pytest.approx(ref, rel=1e-9)


def test_small_cases_by_hand() -> None:
    # P(X >= 2 | n=4, p=0.1) = 1 - 0.9^4 - 4 * 0.1 * 0.9^3
    assert proportion_excess(2, 4, 0.1).p_value == pytest.approx(1 - 0.9**4 - 0.4 * 0.9**3)
    # a = b = 1 (p = 0.5, rho = 1/3): the beta-binomial is uniform on {0, 1, 2}
    assert proportion_excess(2, 2, 0.5, overdispersion=1 / 3).p_value == pytest.approx(1 / 3)
    assert proportion_excess(1, 2, 0.5, overdispersion=1 / 3).p_value == pytest.approx(2 / 3)
    assert proportion_excess(0, 2, 0.5, overdispersion=1 / 3).p_value == 1.0


def _betabinom_sf_direct(k: int, n: int, a: float, b: float) -> float:
    """P(X >= k), straight from the pmf C(n, j) B(j + a, n - j + b) / B(a, b)."""

    def lbeta(x: float, y: float) -> float:
        return math.lgamma(x) + math.lgamma(y) - math.lgamma(x + y)

    terms = (
        math.exp(
            math.lgamma(n + 1)
            - math.lgamma(j + 1)
            - math.lgamma(n - j + 1)
            + lbeta(j + a, n - j + b)
            - lbeta(a, b)
        )
        for j in range(k, n + 1)
    )
    return math.fsum(terms)


@pytest.mark.parametrize(("n", "p", "rho"), [(50, 0.1, 0.01), (400, 0.3, 0.2), (2000, 0.05, 0.002)])
def test_beta_binomial_matches_its_definition_and_scipy(n: int, p: float, rho: float) -> None:
    a, b = _ab(p, rho)
    ref = sst.betabinom(n, a, b)
    for k in (1, round(n * p), round(n * p * 1.5) + 1, round(n * p * 2) + 3):
        got = proportion_excess(k, n, p, overdispersion=rho, alpha=1e-3).p_value
        assert got == pytest.approx(_betabinom_sf_direct(k, n, a, b), rel=1e-9)
        # scipy takes 1 - cdf, good to about 1e-7 relative in these tails
        assert got == pytest.approx(float(ref.sf(k - 1)), rel=1e-6)
    t = proportion_excess(round(n * p), n, p, overdispersion=rho, alpha=1e-3)
    assert t.lower == ref.ppf(1e-3) / n
    assert t.upper == ref.ppf(1 - 1e-3) / n


def test_binomial_band_is_the_binomial_quantiles_over_attempts() -> None:
    t = proportion_excess(130, 1000, 0.1, alpha=1e-4)
    assert t.lower == sst.binom.ppf(1e-4, 1000, 0.1) / 1000
    assert t.upper == sst.binom.ppf(1 - 1e-4, 1000, 0.1) / 1000
    assert t.lower < 0.1 < t.upper
    assert t.observed_rate == 0.13 and t.expected_rate == 0.1


def test_tiny_tails_are_summed_not_subtracted_from_one() -> None:
    # 1 - cdf would give exactly 0 here; the tail sum keeps ordering far beyond 1e-16
    a = proportion_excess(400, 1000, 0.1, overdispersion=0.001)
    b = proportion_excess(420, 1000, 0.1, overdispersion=0.001)
    assert 0 < b.p_value < a.p_value < 1e-20


def test_overdispersion_widens_the_band_and_weakens_the_evidence() -> None:
    plain = proportion_excess(700, 5000, 0.12)
    for rho in (1e-4, 1e-3, 1e-2):
        wide = proportion_excess(700, 5000, 0.12, overdispersion=rho)
        assert wide.lower <= plain.lower and wide.upper >= plain.upper
        assert wide.upper - wide.lower > plain.upper - plain.lower
        assert wide.p_value > plain.p_value
        assert wide.lower < 0.12 < wide.upper


def test_beta_binomial_tends_continuously_to_the_binomial() -> None:
    plain = proportion_excess(140, 1000, 0.1, alpha=1e-3)
    for rho in (1e-300, 1e-15, 1e-12):
        near = proportion_excess(140, 1000, 0.1, overdispersion=rho, alpha=1e-3)
        assert near.p_value == pytest.approx(plain.p_value, rel=1e-6)
        assert (near.lower, near.upper) == (plain.lower, plain.upper)


def _critical_count(n: int, p0: float, alpha: float) -> int:
    """Smallest failure count a one-sided exact binomial test at level alpha rejects."""
    return next(
        k for k in range(n + 1) if sst.binomtest(k, n, p0, alternative="greater").pvalue < alpha
    )


@pytest.mark.parametrize(
    ("n", "p1", "alpha", "power_above", "power_below"),
    [
        (990, 0.15, 1e-3, 0.95, 1.0),  # 10 % -> 15 %: about 990 attempts suffice
        (5900, 0.12, 1e-3, 0.95, 1.0),  # 10 % -> 12 %: about 5,900
        (2000, 0.12, 1e-3, 0.0, 0.5),  # ... and 2,000 do not
        (1000, 0.105, 1e-3, 0.0, 0.01),  # 10 % -> 10.5 % on 1,000: hopeless
    ],
)
def test_power_from_the_detection_notes(
    n: int, p1: float, alpha: float, power_above: float, power_below: float
) -> None:
    c = _critical_count(n, 0.10, alpha)
    # the test rejects exactly from the exact binomial test's critical count upwards
    assert proportion_excess(c, n, 0.10, alpha=alpha).significant
    assert not proportion_excess(c - 1, n, 0.10, alpha=alpha).significant
    power = float(sst.binom.sf(c - 1, n, p1))
    assert power_above < power < power_below
    # false alarms under no change stay below alpha
    assert float(sst.binom.sf(c - 1, n, 0.10)) < alpha


def test_detection_notes_examples_directly() -> None:
    assert proportion_excess(0.15 * 990, 990, 0.10, alpha=1e-3).significant
    assert not proportion_excess(105, 1000, 0.10, alpha=1e-3).significant


def test_awkward_inputs_are_made_safe() -> None:
    none = proportion_excess(0, 0, 0.1)
    assert none.p_value == 1.0 and not none.significant and math.isnan(none.observed_rate)
    # increase() fractions: 10.2 -> 10 attempts, 12.6 failures capped at 10
    frac = proportion_excess(12.6, 10.2, 0.5)
    assert frac.observed_rate == 1.0
    assert frac.p_value == pytest.approx(0.5**10)
    assert proportion_excess(2.4, 10, 0.3).p_value == proportion_excess(2, 10, 0.3).p_value
    assert proportion_excess(2.6, 10, 0.3).p_value == proportion_excess(3, 10, 0.3).p_value
    assert proportion_excess(-3, 10, 0.3).p_value == 1.0
    # a zero baseline is clipped to 1e-6: P(X >= 1 | n = 100) = 1 - (1 - 1e-6)^100
    zero = proportion_excess(1, 100, 0.0)
    assert zero.expected_rate == 1e-6
    assert zero.p_value == pytest.approx(1 - (1 - 1e-6) ** 100, rel=1e-6)
    one = proportion_excess(100, 100, 1.0)
    assert one.expected_rate == 1 - 1e-6
    assert one.p_value == pytest.approx((1 - 1e-6) ** 100)
    unknown = proportion_excess(50, 100, math.nan)
    assert unknown.p_value == 1.0 and not unknown.significant


@pytest.mark.parametrize(
    "kwargs", [{"alpha": 0.0}, {"alpha": 0.5}, {"overdispersion": 1.0}, {"overdispersion": -0.1}]
)
def test_invalid_parameters_are_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"alpha|overdispersion"):
        proportion_excess(1, 10, 0.1, **kwargs)


def test_very_large_volumes_follow_the_beta_limit() -> None:
    # with n * rho in the thousands the rate is essentially Beta(a, b)
    n, p, rho = 4_000_000, 0.1, 1e-3
    a, b = _ab(p, rho)
    for rate in (0.11, 0.13, 0.16):
        t = proportion_excess(rate * n, n, p, overdispersion=rho)
        assert t.p_value == pytest.approx(float(sst.beta.sf(rate, a, b)), rel=0.02)
    t = proportion_excess(0.1 * n, n, p, overdispersion=rho)
    assert t.lower == pytest.approx(float(sst.beta.ppf(1e-6, a, b)), rel=0.01)
    assert t.upper == pytest.approx(float(sst.beta.isf(1e-6, a, b)), rel=0.01)


@settings(max_examples=150, deadline=None)
@given(
    n=hst.integers(1, 3000),
    p=hst.floats(0.0, 1.0),
    rho=hst.sampled_from([0.0, 1e-9, 1e-4, 1e-2, 0.3]),
    u1=hst.floats(0, 1),
    u2=hst.floats(0, 1),
)
def test_p_values_are_probabilities_and_fall_as_failures_rise(
    n: int, p: float, rho: float, u1: float, u2: float
) -> None:
    lo, hi = sorted((u1 * n, u2 * n))
    a = proportion_excess(lo, n, p, overdispersion=rho, alpha=1e-3)
    b = proportion_excess(hi, n, p, overdispersion=rho, alpha=1e-3)
    assert 0.0 <= b.p_value <= a.p_value <= 1.0
    assert 0.0 <= a.lower <= a.upper <= 1.0
    assert a.significant == (a.p_value < 1e-3)


@settings(max_examples=100, deadline=None)
@given(
    n=hst.integers(1, 2000),
    k=hst.integers(0, 2000),
    p1=hst.floats(0.001, 0.999),
    p2=hst.floats(0.001, 0.999),
)
def test_p_values_rise_with_the_baseline_rate(n: int, k: int, p1: float, p2: float) -> None:
    lo, hi = sorted((p1, p2))
    k = min(k, n)
    assert proportion_excess(k, n, lo).p_value <= proportion_excess(k, n, hi).p_value + 1e-12


# --- estimate_overdispersion -----------------------------------------------------------------


def test_overdispersion_by_hand() -> None:
    # pooled p = 0.2; X = 100 * (0.01 + 0 + 0.01) / 0.16 = 12.5; (m-1)/m * sum(n-1) = 198
    rho = estimate_overdispersion([10, 20, 30], [100, 100, 100])
    assert rho == pytest.approx((12.5 - 2) / 198)


def test_overdispersion_recovers_simulated_rho() -> None:
    rng = np.random.default_rng(5)
    n = rng.integers(500, 5000, size=300)
    plain = rng.binomial(n, 0.1)
    assert estimate_overdispersion(plain.tolist(), n.tolist()) < 1e-3
    a, b = _ab(0.1, 0.01)
    extra = rng.binomial(n, rng.beta(a, b, size=300))
    assert estimate_overdispersion(extra.tolist(), n.tolist()) == pytest.approx(0.01, rel=0.3)


def test_overdispersion_edge_cases() -> None:
    assert estimate_overdispersion([1, 2], [10, 10]) == 0.0  # too few windows
    assert estimate_overdispersion([1, 2, math.nan, 3], [10, 10, 10, 0]) == 0.0
    assert estimate_overdispersion([0, 0, 0], [10, 20, 30]) == 0.0  # pooled rate 0
    assert estimate_overdispersion([10, 10, 10, 10], [100] * 4) == 0.0  # no variance at all
    assert estimate_overdispersion([0, 100, 0, 100], [100] * 4) == 0.5  # clipped
    with pytest.raises(ValueError, match="same length"):
        estimate_overdispersion([1, 2, 3], [10, 10])


# --- count tests -----------------------------------------------------------------------------


def test_poisson_tails_by_hand() -> None:
    # P(X <= 2 | mu = 10) = e^-10 (1 + 10 + 100/2)
    assert count_shortfall(2, 10).p_value == pytest.approx(math.exp(-10) * 61, rel=1e-12)
    # P(X >= 12 | mu = 10) = 1 - sum_{j<12} e^-10 10^j / j!
    below = math.fsum(math.exp(-10) * 10**j / math.factorial(j) for j in range(12))
    assert count_excess(12, 10).p_value == pytest.approx(1 - below, rel=1e-9)
    assert count_excess(0, 10).p_value == 1.0


def test_negative_binomial_by_hand() -> None:
    # dispersion 1 is a geometric law: P(X <= k) = 1 - (mu / (1 + mu))^(k + 1)
    t = count_shortfall(2, 4, dispersion=1.0)
    assert t.p_value == pytest.approx(1 - 0.8**3)
    assert count_excess(3, 4, dispersion=1.0).p_value == pytest.approx(0.8**3)
    # variance mu + d mu^2: check against the distribution the band comes from
    mu, d = 200.0, 0.05
    r = 1 / d
    dist = sst.nbinom(r, r / (r + mu))
    assert dist.var() == pytest.approx(mu + d * mu**2)
    t = count_shortfall(120, mu, dispersion=d, alpha=1e-3)
    assert t.p_value == pytest.approx(float(dist.cdf(120)))
    assert (t.lower, t.upper) == (dist.ppf(1e-3), dist.ppf(1 - 1e-3))


def test_extra_dispersion_weakens_a_shortfall() -> None:
    poisson = count_shortfall(700, 1000)
    nb = count_shortfall(700, 1000, dispersion=0.01)
    assert nb.p_value > poisson.p_value
    assert nb.upper - nb.lower > poisson.upper - poisson.lower
    # continuity: a vanishing dispersion is the Poisson, not a point mass at 0
    for d in (1e-300, 1e-14):
        assert count_shortfall(900, 1000, dispersion=d).p_value == pytest.approx(
            count_shortfall(900, 1000).p_value, rel=1e-4
        )


def test_traffic_drop_examples() -> None:
    assert count_shortfall(400, 1000).significant
    assert not count_shortfall(950, 1000).significant
    t = count_shortfall(1000, 1000)
    assert t.lower < 1000 < t.upper
    assert count_shortfall(2.4, 10).p_value == count_shortfall(2, 10).p_value
    assert count_shortfall(2.6, 10).p_value == count_shortfall(3, 10).p_value
    unknown = count_shortfall(0, math.nan)
    assert unknown.p_value == 1.0 and not unknown.significant
    assert count_shortfall(0, 0).p_value == 1.0
    with pytest.raises(ValueError, match="dispersion"):
        count_shortfall(1, 10, dispersion=-1)


@settings(max_examples=150, deadline=None)
@given(
    mu=hst.floats(0.1, 1e5),
    d=hst.sampled_from([0.0, 1e-3, 0.1, 2.0]),
    u1=hst.floats(0, 3),
    u2=hst.floats(0, 3),
)
def test_count_tails_are_monotone_and_complementary(
    mu: float, d: float, u1: float, u2: float
) -> None:
    lo, hi = sorted((math.floor(u1 * mu), math.floor(u2 * mu)))
    s_lo, s_hi = count_shortfall(lo, mu, dispersion=d), count_shortfall(hi, mu, dispersion=d)
    assert 0.0 <= s_lo.p_value <= s_hi.p_value <= 1.0
    e_lo, e_hi = count_excess(lo, mu, dispersion=d), count_excess(hi, mu, dispersion=d)
    assert 0.0 <= e_hi.p_value <= e_lo.p_value <= 1.0
    # P(X <= k) + P(X >= k + 1) = 1
    assert s_lo.p_value + count_excess(lo + 1, mu, dispersion=d).p_value == pytest.approx(1.0)


# --- cusum_onset -----------------------------------------------------------------------------


def test_cusum_by_hand() -> None:
    # S = 0, 0, 2.5, 2.0, 4.5, 7.0: one excursion from index 2
    assert cusum_onset([0, 0, 3, 0, 3, 3], 0, spread=1) == 2
    # S = 0, 2.5, 0, 0, 1.5, 3.0: the first excursion ended, the last began at 4
    assert cusum_onset([0, 3, -5, 0, 2, 2], 0, spread=1) == 4
    assert cusum_onset([0, 3, -5], 0, spread=1) is None
    # standardisation: the same series scaled by 10 with spread 10
    assert cusum_onset([0, 30, -50, 0, 20, 20], 0, spread=10) == 4
    # NaN carries the statistic: S = 0, 4.5, 4.5, 9 -> onset 1
    assert cusum_onset([0, 5, math.nan, 5], 0, spread=1) == 1
    assert cusum_onset([math.nan, math.nan], 0, spread=1) is None
    assert cusum_onset([], 0, spread=1) is None


def test_cusum_down_and_degenerate_spread() -> None:
    assert cusum_onset([10, 10, 10, 2, 2, math.nan, 2], 10, spread=1, direction="down") == 3
    assert cusum_onset([10, 10, 10, 2, 2], 10, spread=1, direction="up") is None
    # a flat history has MAD 0: any real move away from it counts
    assert cusum_onset([5, 5, 5, 5, 6, 6], 5, spread=0.0) == 4
    assert cusum_onset([5, 5, 5], 5, spread=0.0) is None


@pytest.mark.parametrize("seed", range(25))
def test_cusum_finds_a_planted_step(seed: int) -> None:
    rng = np.random.default_rng(seed)
    # a 3-sigma rise at index 200; allowance k = half the shift, as CUSUM theory advises
    x = np.concatenate([rng.normal(100, 5, 200), rng.normal(115, 5, 30)])
    onset = cusum_onset(x.tolist(), 100, spread=5, k=1.5)
    assert onset is not None and abs(onset - 200) <= 2
    y = np.concatenate([rng.normal(100, 5, 200), rng.normal(85, 5, 30)])
    onset = cusum_onset(y.tolist(), 100, spread=5, k=1.5, direction="down")
    assert onset is not None and abs(onset - 200) <= 2


def test_cusum_sees_nothing_in_noise_with_a_wide_allowance() -> None:
    rng = np.random.default_rng(3)
    assert cusum_onset(rng.normal(0, 1, 500).tolist(), 0, spread=1, k=4) is None


# --- burn rates ------------------------------------------------------------------------------


def test_burn_rate() -> None:
    # 7.2 % bad against a 0.5 % budget
    rate = burn_rate(72, 1000, 0.995)
    assert rate == pytest.approx(14.4)
    assert burn_rate(5, 1000, 0.995) == pytest.approx(1.0)
    assert burn_rate(0, 1000, 0.99) == 0.0
    assert burn_rate(1, 0, 0.99) is None
    assert burn_rate(math.nan, 10, 0.99) is None
    with pytest.raises(ValueError, match="objective"):
        burn_rate(1, 10, 1.0)


def _burns(**minutes: float | None) -> dict[timedelta, float | None]:
    return {timedelta(minutes=float(m[1:])): v for m, v in minutes.items()}


def test_multiwindow_picks_the_highest_rule_where_both_windows_burn() -> None:
    page, slow, ticket = DEFAULT_BURN_WINDOWS
    burns = _burns(m60=20.0, m5=16.0, m360=8.0, m30=7.0, m4320=2.0)
    assert multiwindow_alert(burns, DEFAULT_BURN_WINDOWS) == page
    # the order windows are given in does not matter
    assert multiwindow_alert(burns, list(reversed(DEFAULT_BURN_WINDOWS))) == page
    # a recovered short window stops the fast rule: the slower one still holds
    assert multiwindow_alert({**burns, 5 * MIN: 1.0}, DEFAULT_BURN_WINDOWS) == slow
    # 6 h serves both as the slow rule's long window and the ticket rule's short one
    low = _burns(m60=3.0, m5=3.0, m360=2.0, m30=2.0, m4320=1.5)
    assert multiwindow_alert(low, DEFAULT_BURN_WINDOWS) == ticket
    assert multiwindow_alert(_burns(m60=20.0, m5=None), DEFAULT_BURN_WINDOWS) is None
    assert multiwindow_alert({}, DEFAULT_BURN_WINDOWS) is None
    assert multiwindow_alert(burns, []) is None


def test_multiwindow_needs_enough_bad_events_in_the_long_window() -> None:
    page, slow, _ = DEFAULT_BURN_WINDOWS
    burns = _burns(m60=20.0, m5=16.0, m360=8.0, m30=7.0)
    bad = {H: 3.0, 6 * H: 40.0}
    assert multiwindow_alert(burns, DEFAULT_BURN_WINDOWS, bad=bad, min_bad=10) == slow
    assert multiwindow_alert(burns, DEFAULT_BURN_WINDOWS, bad=bad, min_bad=3) == page
    assert multiwindow_alert(burns, DEFAULT_BURN_WINDOWS, bad={H: 3.0}, min_bad=10) is None
    with pytest.raises(ValueError, match="min_bad"):
        multiwindow_alert(burns, DEFAULT_BURN_WINDOWS, min_bad=10)


def test_burn_window_validation() -> None:
    assert BurnWindow(H, 5 * MIN, 14.4).factor == 14.4
    with pytest.raises(ValueError, match="short"):
        BurnWindow(5 * MIN, H, 14.4)
    with pytest.raises(ValueError, match="factor"):
        BurnWindow(H, 5 * MIN, 0)


# --- quantile_from_buckets -------------------------------------------------------------------

BUCKETS = {0.1: 10.0, 0.5: 60.0, 1.0: 90.0, 2.0: 100.0, math.inf: 100.0}


@pytest.mark.parametrize(
    ("q", "want"),
    [
        (0.5, 0.1 + 0.4 * (50 - 10) / (60 - 10)),  # rank 50 in (0.1, 0.5]
        (0.95, 1.0 + 1.0 * (95 - 90) / (100 - 90)),  # rank 95 in (1, 2]
        (0.05, 0.1 * 5 / 10),  # rank 5 in the first bucket, which starts at 0
        (0.9, 1.0),  # rank 90 is exactly the top of (0.5, 1]
        (1.0, 2.0),
        (0.0, 0.0),
    ],
)
def test_quantile_by_hand(q: float, want: float) -> None:
    assert quantile_from_buckets(BUCKETS, q) == pytest.approx(want)


def test_quantile_follows_prometheus_edge_rules() -> None:
    # rank in the +Inf bucket: the highest finite bound
    assert quantile_from_buckets({1.0: 5, 2.0: 8, math.inf: 10}, 0.9) == 2.0
    # unordered input and non-monotonic counts (raised to the running maximum)
    skewed = {math.inf: 20, 3.0: 20, 1.0: 10, 2.0: 8}
    assert quantile_from_buckets(skewed, 0.75) == pytest.approx(2.0 + (15 - 10) / (20 - 10))
    # a first bucket bounded at or below zero returns its bound
    assert quantile_from_buckets({-1.0: 5, 0.0: 10, math.inf: 10}, 0.2) == -1.0
    assert quantile_from_buckets({1.0: 0, math.inf: 0}, 0.5) is None
    assert quantile_from_buckets({1.0: 3, 2.0: 4}, 0.5) is None  # no +Inf bucket
    assert quantile_from_buckets({math.inf: 4}, 0.5) is None  # no finite bucket
    assert quantile_from_buckets(BUCKETS, math.nan) is None
    assert quantile_from_buckets(BUCKETS, -0.1) == -math.inf
    assert quantile_from_buckets(BUCKETS, 1.1) == math.inf


def test_quantile_tracks_the_sample_quantile() -> None:
    rng = np.random.default_rng(8)
    x = rng.uniform(0, 10, 100_000)
    bounds = [*np.arange(1.0, 10.5, 1.0), math.inf]
    buckets = {b: float(np.sum(x <= b)) for b in bounds}
    for q in (0.1, 0.5, 0.9, 0.99):
        est = quantile_from_buckets(buckets, q)
        assert est is not None
        assert est == pytest.approx(float(np.quantile(x, q)), abs=0.05)


# --- Debouncer -------------------------------------------------------------------------------


def run(d: Debouncer, pattern: str, key: str = "k") -> list[tuple[int, Transition]]:
    """One evaluation a minute; x = breaching, . = not."""
    out = []
    for i, ch in enumerate(pattern):
        tr = d.update(key, ch == "x", T0 + i * MIN)
        if tr is not None:
            out.append((i, tr))
    return out


def deb(**kw: timedelta) -> Debouncer:
    return Debouncer(**{"for_": 3 * MIN, "clear_after": 10 * MIN, **kw})


def test_a_two_minute_blip_does_not_raise() -> None:
    d = deb()
    assert run(d, "xxx" + "." * 15) == []  # breaching at 0, 1 and 2 minutes: 2 minutes long
    assert not d.active("k") and d.pending_since("k") is None


def test_a_five_minute_incident_raises_once_and_clears_once() -> None:
    d = deb()
    # breaching from 0 to 5 minutes; quiet from 6: clears at 6 + 10
    assert run(d, "xxxxxx" + "." * 20) == [(3, Transition.RAISED), (16, Transition.CLEARED)]
    assert not d.active("k") and d.raised_at("k") is None


def test_one_quiet_evaluation_resets_the_pending_timer() -> None:
    d = deb()
    assert run(d, "xx.xx.xx.xx.") == []
    d = deb()
    d.update("k", True, T0)
    d.update("k", True, T0 + MIN)
    assert d.pending_since("k") == T0
    d.update("k", False, T0 + 2 * MIN)
    assert d.pending_since("k") is None
    d.update("k", True, T0 + 3 * MIN)
    assert d.pending_since("k") == T0 + 3 * MIN


def test_alternating_breach_and_quiet_does_not_flap() -> None:
    d = deb()
    pattern = "xxxx" + "x." * 20 + "." * 12
    # last breach at 42; quiet from 43; clears at 53
    assert run(d, pattern) == [(3, Transition.RAISED), (53, Transition.CLEARED)]


def test_state_accessors_and_independent_keys() -> None:
    d = deb()
    assert d.update("a", True, T0) is None
    assert d.pending_since("a") == T0 and not d.active("a") and d.raised_at("a") is None
    assert d.update("b", False, T0) is None
    assert d.pending_since("b") is None
    for m in (1, 2):
        assert d.update("a", True, T0 + m * MIN) is None
    assert d.update("a", True, T0 + 3 * MIN) is Transition.RAISED
    assert d.active("a") and d.raised_at("a") == T0 + 3 * MIN and d.pending_since("a") is None
    assert not d.active("b")


def test_zero_for_raises_at_once_and_it_can_raise_again_after_clearing() -> None:
    d = deb(for_=timedelta(0), clear_after=2 * MIN)
    assert run(d, "x..." + "x...") == [
        (0, Transition.RAISED),
        (3, Transition.CLEARED),
        (4, Transition.RAISED),
        (7, Transition.CLEARED),
    ]


def test_gaps_break_continuity() -> None:
    d = deb(max_gap=3 * MIN)
    assert d.update("k", True, T0) is None
    assert d.update("k", True, T0 + 2 * MIN) is None  # 2 min: still continuous
    assert d.pending_since("k") == T0
    assert d.update("k", True, T0 + 10 * MIN) is None  # 8 min without data
    assert d.pending_since("k") == T0 + 10 * MIN
    for m in (11, 12):
        assert d.update("k", True, T0 + m * MIN) is None
    assert d.update("k", True, T0 + 13 * MIN) is Transition.RAISED
    # quiet on both sides of a gap is not continuous quiet either
    assert d.update("k", False, T0 + 14 * MIN) is None
    assert d.update("k", False, T0 + 30 * MIN) is None  # the quiet timer restarts here
    assert d.update("k", False, T0 + 32 * MIN) is None
    assert d.update("k", False, T0 + 35 * MIN) is None  # 3 min step: within max_gap
    assert d.update("k", False, T0 + 38 * MIN) is None
    assert d.update("k", False, T0 + 40 * MIN) is Transition.CLEARED


def test_the_quiet_period_starts_where_the_data_shows_the_signal_back() -> None:
    d = deb()
    assert run(d, "xxxxxxxx") == [(3, Transition.RAISED)]
    t = T0 + 8 * MIN
    # the detector sees its signal back since three minutes ago: that counts towards
    # clear_after, but half of clear_after is still watched evaluation by evaluation
    assert d.update("k", False, t, since=t - 3 * MIN) is None
    assert d.quiet_since("k") == t - 3 * MIN
    for m in range(1, 7):
        assert d.update("k", False, t + m * MIN) is None
    assert d.update("k", False, t + 7 * MIN) is Transition.CLEARED  # 10 min dated, 7 watched
    assert d.recovered_at("k") == t - 3 * MIN
    assert not d.active("k") and d.quiet_since("k") is None
    # dated back further, it still waits until half of clear_after has been watched
    d = deb()
    run(d, "x" * 12)  # raised at 3, breaching up to 11
    t = T0 + 12 * MIN
    assert d.update("k", False, t, since=t - 9 * MIN) is None  # 10 min dated at t + 1
    for m in range(1, 5):
        assert d.update("k", False, t + m * MIN) is None
    assert d.update("k", False, t + 5 * MIN) is Transition.CLEARED
    assert d.recovered_at("k") == t - 9 * MIN


def test_one_evaluation_that_reads_a_lull_as_a_recovery_does_not_clear() -> None:
    d = deb()
    run(d, "xxxxxxxx")
    t = T0 + 8 * MIN
    assert d.update("k", False, t, since=t - 30 * MIN) is None  # not before the raise
    assert d.quiet_since("k") == T0 + 3 * MIN
    assert d.update("k", True, t + MIN) is None  # the problem is still on
    assert d.active("k") and d.quiet_since("k") is None and d.recovered_at("k") is None


def test_the_recovery_time_is_kept_until_the_key_raises_again() -> None:
    d = deb(for_=timedelta(0), clear_after=2 * MIN)
    assert run(d, "x...") == [(0, Transition.RAISED), (3, Transition.CLEARED)]
    assert d.recovered_at("k") == T0 + MIN  # the first quiet evaluation
    assert d.update("k", True, T0 + 10 * MIN) is Transition.RAISED
    assert d.recovered_at("k") is None


def test_recovery_ends_a_problem_at_the_most_improbable_change() -> None:
    p_values = {2: 1e-4, 3: 1e-6, 4: 1e-3}
    out = recovery(lambda k: True, p_values.get, 8, 5)  # the pools still hold the problem
    assert out == Recovery(False, 3)


def test_recovery_without_a_change_holds_while_a_pool_is_out_of_band() -> None:
    assert recovery(lambda k: k == 8, lambda j: None, 8, 5) == Recovery(True)  # long pool
    assert recovery(lambda k: k == 5, lambda j: None, 8, 5) == Recovery(True)  # newest ones
    # a problem that faded too slowly to show a change: back since the newest minute
    assert recovery(lambda k: False, lambda j: None, 8, 5) == Recovery(False, 0)
    with pytest.raises(ValueError, match="least"):
        recovery(lambda k: False, lambda j: None, 4, 5)


def test_stale_evaluations_are_ignored_and_bad_settings_rejected() -> None:
    d = deb()
    d.update("k", True, T0 + 5 * MIN)
    assert d.update("k", False, T0) is None
    assert d.pending_since("k") == T0 + 5 * MIN
    with pytest.raises(ValueError, match="negative"):
        Debouncer(for_=-MIN, clear_after=MIN)
    with pytest.raises(ValueError, match="max_gap"):
        Debouncer(for_=MIN, clear_after=MIN, max_gap=timedelta(0))


@settings(max_examples=200, deadline=None)
@given(hst.lists(hst.booleans(), max_size=120))
def test_transitions_respect_for_and_clear_after(breaches: list[bool]) -> None:
    d = deb()
    events = run(d, "".join("x" if b else "." for b in breaches))
    kinds = [tr for _, tr in events]
    # strictly alternating, starting with a raise
    assert kinds == [Transition.RAISED, Transition.CLEARED] * (len(kinds) // 2) + (
        [Transition.RAISED] if len(kinds) % 2 else []
    )
    for i, tr in events:
        if tr is Transition.RAISED:  # breaching at every minute of the last 3
            assert i >= 3 and all(breaches[i - 3 : i + 1])
        else:  # quiet at every minute of the last 10
            assert i >= 10 and not any(breaches[i - 10 : i + 1])
    # and nothing was missed: every run of 4 breaches while quiet raised
    active = False
    for j in range(len(breaches)):
        trs = [tr for i, tr in events if i == j]
        if trs:
            active = trs[0] is Transition.RAISED
        elif not active and j >= 3:
            assert not all(breaches[j - 3 : j + 1])


def test_mad_constant_is_the_normal_consistency_factor() -> None:
    assert pytest.approx(1 / sst.norm.ppf(0.75), rel=1e-4) == MAD_TO_SD


@pytest.mark.parametrize("dispersion", [0.0, 0.01, 0.3])
@pytest.mark.parametrize("mu", [0.0, 0.4, 3.0, 57.5, 2_000.0])
def test_fast_count_distribution_equals_scipy_stats(mu: float, dispersion: float) -> None:
    from paytriage.detectors.stats import _count_dist

    d = _count_dist(mu, dispersion)
    if math.isinf(d.r):
        ref = sst.poisson(mu)
    else:
        ref = sst.nbinom(d.r, d.r / (d.r + mu))
    for q in (1e-6, 0.01, 0.5, 0.99, 1 - 1e-6):
        assert d.ppf(q) == int(ref.ppf(q)), q
    for k in {0, 1, int(mu), int(mu * 1.5) + 1, int(mu * 3) + 5}:
        assert d.cdf(k) == pytest.approx(float(ref.cdf(k)), rel=1e-9, abs=1e-300)
        assert d.sf_ge(k) == pytest.approx(float(ref.sf(k - 1)), rel=1e-9, abs=1e-300)


@pytest.mark.parametrize(("n", "p"), [(1, 0.5), (40, 0.02), (900, 0.07), (50_000, 0.3)])
def test_binomial_band_equals_scipy_stats(n: int, p: float) -> None:
    from paytriage.detectors.stats import _proportion_tail_and_band

    for k in (0, 1, int(n * p), int(n * p * 2) + 1):
        tail, band = _proportion_tail_and_band(k, n, p, 0.0, 1e-6)
        assert tail == pytest.approx(float(sst.binom.sf(k - 1, n, p)) if k else 1.0, rel=1e-9)
        lo, hi = band()
        assert (round(lo * n), round(hi * n)) == (
            sst.binom.ppf(1e-6, n, p),
            sst.binom.ppf(1 - 1e-6, n, p),
        )
