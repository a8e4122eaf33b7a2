"""The statistics a detector derives once per frame, for every index at once, equal the
per-index computations they replaced, and use no data after their index (a replay reads
them at each step; the live bot reads the last one).

Each reference below is the obvious per-index loop, written out here on purpose.
"""

from __future__ import annotations

import math
import statistics

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from paytriage.detectors import decline_spike as ds
from paytriage.detectors import traffic_drop as td
from paytriage.detectors.signals import Cum, Frame, LabelKey, _minute_factors, seasonal_offsets
from paytriage.detectors.stats import estimate_overdispersion, estimate_overdispersion_rows

KEY: LabelKey = (("psp", "adyen"),)
DIMS = ("psp",)


def _series(rng: np.random.Generator, n: int, scale: float, holes: float) -> np.ndarray:
    values = rng.poisson(scale, n).astype(float)
    values[rng.random(n) < holes] = math.nan
    return values


def _frame(seed: int, n: int, holes: float, drop_blocks: tuple[int, ...] = ()) -> Frame:
    """A frame of one PSP's attempts and failures, now and in two past weeks and a day."""
    rng = np.random.default_rng(seed)
    frame = Frame(1_800_000_000.0, 60.0, n, seasonal_offsets(weeks=2, days=1))
    for k in range(len(frame.offsets)):
        if k in drop_blocks:
            continue
        attempts = _series(rng, n, rng.uniform(0.5, 40), holes)
        draws = rng.binomial(np.nan_to_num(attempts).astype(int), 0.05)
        failures = np.where(np.isnan(attempts), math.nan, draws)
        frame.put("attempts", k, {KEY: attempts})
        frame.put("failures", k, {KEY: failures.astype(float)})
        frame.put("attempts_short", k, {KEY: attempts / 5})
    return frame


FRAMES = st.tuples(
    st.integers(0, 10**6),
    st.integers(1, 400),
    st.sampled_from([0.0, 0.05, 0.5, 0.95]),
    st.sampled_from([(), (1,), (1, 2), (3,), (1, 2, 3)]),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 1e4), min_size=0, max_size=30), st.data())
def test_cum_sums_equal_each_sum(values: list[float], data: st.DataObject) -> None:
    arr = np.array(values, dtype=float)
    arr[::3] = math.nan
    cum = Cum(arr)
    bounds = data.draw(st.lists(st.tuples(st.integers(-5, 40), st.integers(-5, 40)), max_size=10))
    lo = np.array([b[0] for b in bounds], dtype=np.int64)
    hi = np.array([b[1] for b in bounds], dtype=np.int64)
    sums, counts = cum.sums(lo, hi)
    for j, (a, b) in enumerate(bounds):
        assert (sums[j], counts[j]) == cum.sum(a, b)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 10**6), st.integers(0, 6), st.integers(0, 30), st.booleans())
def test_prefix_sums_of_a_block_in_one_pass_equal_each_rows_own(
    seed: int, rows: int, n: int, ragged: bool
) -> None:
    rng = np.random.default_rng(seed)
    series = {}
    for r in range(rows):
        arr = rng.uniform(0, 1e4, n + (r if ragged else 0))
        arr[rng.random(len(arr)) < 0.3] = math.nan
        series[(("psp", f"p{r}"),)] = arr
    got = Cum.each(series)
    assert list(got) == list(series)
    for key, arr in series.items():
        want = Cum(arr)
        assert got[key].values is arr
        assert np.array_equal(got[key]._sum, want._sum)  # the same additions, in order
        assert np.array_equal(got[key]._cnt, want._cnt)
        assert got[key].sum(-3, n + 9) == want.sum(-3, n + 9)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10**6), st.integers(1, 12), st.integers(1, 9))
def test_overdispersion_rows_equal_the_estimate_of_each_row(seed: int, rows: int, m: int) -> None:
    rng = np.random.default_rng(seed)
    attempts = rng.integers(0, 300, (rows, m)).astype(float)
    failures = rng.binomial(attempts.astype(int), rng.uniform(0, 0.4, (rows, 1))).astype(float)
    failures += rng.integers(0, 3, (rows, m))  # sometimes more failures than attempts
    attempts[rng.random((rows, m)) < 0.15] = math.nan
    failures[rng.random((rows, m)) < 0.15] = math.nan
    got = estimate_overdispersion_rows(failures, attempts)
    for r in range(rows):
        want = estimate_overdispersion(failures[r].tolist(), attempts[r].tolist())
        assert math.isclose(got[r], want, rel_tol=1e-9, abs_tol=1e-15)


def _scale_at(cur: Cum, hist: Cum, lo: int, hi: int, bucket: int) -> float:
    ratios = []
    for a in range(max(lo, 0), hi - bucket + 1, bucket):
        cs, cn = cur.sum(a, a + bucket)
        hs, hn = hist.sum(a, a + bucket)
        if cn >= bucket // 2 and hn >= bucket // 2 and hs > 0:
            ratios.append((cs / cn) / (hs / hn))
    return statistics.median(ratios) if ratios else math.nan


@settings(max_examples=60, deadline=None)
@given(FRAMES, st.integers(1, 120), st.integers(0, 10), st.integers(2, 20))
def test_traffic_scale_at_every_index_is_the_median_bucket_ratio_before_it(
    frame_args: tuple[int, int, float, tuple[int, ...]], back: int, gap: int, bucket: int
) -> None:
    seed, n, holes, _ = frame_args
    frame = _frame(seed, n, holes)
    cur = frame.cumulative("attempts", 0, DIMS)[KEY]
    hist = frame.cumulative("attempts", 1, DIMS)[KEY]
    got = td._scales(cur, hist, back, gap, bucket)
    lo = seed % n  # computed from a later index on, as the live cycle does for its last one
    later = td._scales(cur, hist, back, gap, bucket, lo)
    assert np.isnan(later[:lo]).all()
    assert np.allclose(later[lo:], got[lo:], rtol=1e-12, atol=0, equal_nan=True)
    last = td._scales(cur, hist, back, gap, bucket, n - 1)  # the live cycle's one index
    assert np.allclose(last[n - 1 :], got[n - 1 :], rtol=1e-12, atol=0, equal_nan=True)
    for i in range(n):
        want = _scale_at(cur, hist, i - gap - back, i - gap, bucket)
        assert math.isclose(got[i], want, rel_tol=1e-12) or (
            math.isnan(got[i]) and math.isnan(want)
        )


def _seasonal_at(frame: Frame, cfg: ds.Config, i: int) -> tuple[float, str]:
    h = ds.HALF_POOL
    for kind in ("weekly", "daily"):
        rates = []
        for k in frame.history(kind):
            f = frame.cumulative("failures", k, DIMS).get(KEY)
            a = frame.cumulative("attempts", k, DIMS).get(KEY)
            if f is None or a is None:
                continue
            fs, _ = f.sum(i - h, i + h + 1)
            as_, an = a.sum(i - h, i + h + 1)
            if an >= h and as_ > 0:
                rates.append(fs / as_)
        if len(rates) >= (cfg.baseline.min_weeks if kind == "weekly" else 1):
            return statistics.median(rates), kind
    f = frame.cumulative("failures", 0, DIMS).get(KEY)
    a = frame.cumulative("attempts", 0, DIMS).get(KEY)
    if f is None or a is None:
        return math.nan, "none"
    gap = frame.steps(cfg.window) + h
    lo = i - frame.steps(cfg.trailing)
    fs, _ = f.sum(lo, i - gap)
    as_, an = a.sum(lo, i - gap)
    if an < frame.steps(cfg.window) * 3 or as_ <= 0:
        return math.nan, "none"
    return fs / as_, "trailing"


def _rho_at(frame: Frame, cfg: ds.Config, i: int) -> float:
    f = frame.rolled("failures", 0, DIMS)[KEY]
    a = frame.rolled("attempts", 0, DIMS)[KEY]
    w = frame.steps(cfg.window)
    idx = list(range(i - w - ds.HALF_POOL, max(i - frame.steps(cfg.trailing), -1), -w))
    idx = [j for j in idx if j >= 0 and math.isfinite(f[j]) and math.isfinite(a[j]) and a[j] > 0]
    if len(idx) < 3:
        return cfg.min_overdispersion
    return max(cfg.min_overdispersion, estimate_overdispersion(list(f[idx]), list(a[idx])))


@settings(max_examples=60, deadline=None)
@given(FRAMES, st.integers(1, 3))
def test_decline_baseline_at_every_index_is_the_per_index_one(
    frame_args: tuple[int, int, float, tuple[int, ...]], min_weeks: int
) -> None:
    seed, n, holes, dropped = frame_args
    frame = _frame(seed, n, holes, dropped)
    cfg = ds.Config(baseline={"min_weeks": min_weeks})
    # Asked from a later index first (as live), then from 0 (the series is derived again).
    for i in [*range(seed % n, n), *range(n)]:
        rate, kind, rho = ds._expected_rate(frame, cfg, DIMS, KEY, i)
        want_rate, want_kind = _seasonal_at(frame, cfg, i)
        assert kind == want_kind
        assert math.isclose(rate, want_rate, rel_tol=1e-12) or (
            math.isnan(rate) and math.isnan(want_rate)
        )
        want_rho = 0.0 if want_kind == "none" else _rho_at(frame, cfg, i)
        assert math.isclose(rho, want_rho, rel_tol=1e-9, abs_tol=1e-15)


def _factor_at(frame: Frame, i: int) -> float:
    short_c = frame.cumulative("attempts_short", 0, DIMS)[KEY]
    ref_c = frame.cumulative("attempts", 0, DIMS)[KEY]
    lo = max(0, i - 30)
    (short, ns), (ref, nr) = short_c.sum(lo, i + 1), ref_c.sum(lo, i + 1)
    if min(ns, nr) >= 5 and short > 0:
        factor = ref * ns / (nr * short * 5)
        return min(max(factor, 0.25), 4.0) if math.isfinite(factor) else 1.0
    return 1.0


@settings(max_examples=60, deadline=None)
@given(FRAMES)
def test_minute_count_scale_at_every_index_is_the_per_index_one(
    frame_args: tuple[int, int, float, tuple[int, ...]],
) -> None:
    seed, n, holes, _ = frame_args
    frame = _frame(seed, n, holes)
    window = ds.Config().window
    got = _minute_factors(frame, "attempts_short", "attempts", DIMS, KEY, window)
    assert [float(x) for x in got] == [_factor_at(frame, i) for i in range(n)]
    lo = seed % n
    later = _minute_factors(frame, "attempts_short", "attempts", DIMS, KEY, window, lo)
    assert np.array_equal(later[lo:], got[lo:])


@settings(max_examples=40, deadline=None)
@given(FRAMES, st.data())
def test_no_series_reads_the_present_after_its_index(
    frame_args: tuple[int, int, float, tuple[int, ...]], data: st.DataObject
) -> None:
    """What a series holds at index i is the same when the present after i is different."""
    seed, n, holes, dropped = frame_args
    i = data.draw(st.integers(0, n - 1))
    cfg = ds.Config()

    def read(frame: Frame) -> list[float]:
        rate, _, rho = ds._expected_rate(frame, cfg, DIMS, KEY, i)
        cur = frame.cumulative("attempts", 0, DIMS)[KEY]
        hist = frame.cumulative("attempts", 1, DIMS).get(KEY, cur)
        scale = td._scales(cur, hist, 60, 5, 15, i)[i]
        factor = _minute_factors(frame, "attempts_short", "attempts", DIMS, KEY, cfg.window, i)[i]
        return [rate, rho, scale, factor]

    before = read(_frame(seed, n, holes, dropped))
    changed = _frame(seed, n, holes, dropped)
    rng = np.random.default_rng(seed + 1)
    for signal in ("attempts", "failures", "attempts_short"):
        arr = changed.present(signal)[KEY].copy()
        arr[i + 1 :] = rng.poisson(500, n - i - 1)
        changed.put(signal, 0, {KEY: arr})
    after = read(changed)
    assert np.array_equal(np.array(before), np.array(after), equal_nan=True)
