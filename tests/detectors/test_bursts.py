"""Persistence read from the data: a rise over the last minutes that survives setting its two
worst minutes aside has lasted, a two-minute blip never does (detectors.signals.burst_since,
traffic_drop's minute path, and the Debouncer taking ``since``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from paytriage.detection.run import DetectorRun
from paytriage.detectors import capture_failures as cf
from paytriage.detectors import traffic_drop as td
from paytriage.detectors.signals import Frame, Offset, burst_since
from paytriage.detectors.stats import Debouncer, Transition
from tests.support.frames import windowed

T0 = datetime(2026, 11, 16, 12, 0, tzinfo=UTC)
M = timedelta(minutes=1)
KEY = (("psp", "stripe"),)
N = 120
START = 60  # index of the first minute of each injected pattern


def ratio_frame(failures: np.ndarray, attempts: float = 40.0, short_scale: float = 1.0) -> Frame:
    """Per-minute counts as the detectors read them: 5-minute and last-minute increases.
    ``short_scale`` inflates the last-minute counts the way a fallback to a wider, extrapolated
    range does."""
    f = Frame(T0.timestamp(), 60.0, N, (Offset(0, "present"),))
    a = np.full(N, attempts)
    f.put("attempts", 0, {KEY: windowed(a, 5)})
    f.put("failures", 0, {KEY: windowed(failures, 5)})
    f.put("attempts_short", 0, {KEY: windowed(a, 1) * short_scale})
    f.put("failures_short", 0, {KEY: windowed(failures, 1) * short_scale})
    return f


def first_burst(fr: Frame, expected: float = 0.08) -> tuple[int, int] | None:
    """(evaluation index, since index) of the first burst found stepping through the frame."""
    for i in range(40, N):
        since = burst_since(
            fr,
            KEY,
            i,
            span=5 * M,
            floor=expected + 0.02,
            expected=expected,
            alpha=1e-6,
            min_den=100,
            window=5 * M,
        )
        if since is not None:
            return i, since
    return None


def pattern(*per_minute: float, base: float = 3.2) -> np.ndarray:
    fails = np.full(N, base)  # 8 % of 40 attempts a minute
    fails[START : START + len(per_minute)] = per_minute
    return fails


def test_three_minutes_that_each_stand_out_are_a_burst_from_the_first() -> None:
    assert first_burst(ratio_frame(pattern(16, 16, 16))) == (START + 2, START)


def test_a_two_minute_blip_next_to_a_noisy_minute_is_never_a_burst() -> None:
    # 5 of 40 (12.5 %) is above the 10 % floor but not unlikely at 8 %; the blip alone
    # makes any window that holds it improbable
    for noisy in ((5, 24, 24, 5), (24, 24, 5, 5), (5, 5, 24, 24)):
        assert first_burst(ratio_frame(pattern(*noisy))) is None, noisy


def test_a_ramp_pages_once_what_is_left_of_it_stands_out() -> None:
    # first minute half-strength: at three minutes it is what is left once the two worst
    # are set aside, and it does not stand out on its own, so the fourth minute is needed
    assert first_burst(ratio_frame(pattern(6, 16, 16, 16))) == (START + 3, START + 1)


def test_inflated_last_minute_counts_are_scaled_back_before_testing() -> None:
    mild = pattern(*[7.0] * 8)  # 17.5 % against 8 %: not sure enough within five minutes
    assert first_burst(ratio_frame(mild)) is None
    assert first_burst(ratio_frame(mild, short_scale=2.0)) is None
    # without the 5-minute counts to scale by, twice the counts look certain
    unscaled = ratio_frame(mild, short_scale=2.0)
    del unscaled.data["attempts"]
    assert first_burst(unscaled) is not None


def test_debouncer_counts_persistence_the_data_shows() -> None:
    d = Debouncer(for_=2 * M, clear_after=10 * M)
    assert d.update("k", True, T0 + 5 * M, since=T0 + 2 * M) is Transition.RAISED
    d = Debouncer(for_=2 * M, clear_after=10 * M)
    assert d.update("k", True, T0 + 5 * M, since=T0 + 4 * M) is None  # only one minute
    assert d.update("k", True, T0 + 6 * M) is Transition.RAISED


def capture_raised(fails: np.ndarray, captures: float) -> list[int]:
    fr = ratio_frame(fails, attempts=captures)
    run = DetectorRun(cf.Config(), cf.DETECTOR, M)
    return [i for i in range(40, N) for e in run.step(fr, i) if e.kind == "raised"]


def test_captures_failing_in_three_straight_minutes_page_at_the_third() -> None:
    fails = np.zeros(N)
    fails[START:] = 20.0  # 5 % of 400 captures, ten times the allowance
    assert capture_raised(fails, 400.0) == [START + 2]


@pytest.mark.parametrize("neighbour", [0.0, 3.0])
def test_a_capture_blip_does_not_page_even_with_a_failing_minute_beside_it(
    neighbour: float,
) -> None:
    fails = np.zeros(N)
    fails[START : START + 2] = 60.0
    fails[START + 2] = neighbour  # 0.75 %: above the allowance, not unlikely at it
    assert capture_raised(fails, 400.0) == []


def traffic_frame(per_minute: np.ndarray) -> Frame:
    fr = Frame(T0.timestamp(), 60.0, N, (Offset(0, "present"),))
    key = (("country", "FR"),)
    fr.put("attempts", 0, {key: windowed(per_minute, 5)})
    fr.put("attempts_short", 0, {key: windowed(per_minute, 2)})
    fr.put("attempts_minute", 0, {key: windowed(per_minute, 1)})
    fr.put("age", 0, {key: np.zeros(N)})
    return fr


def traffic_raised(per_minute: np.ndarray) -> list[int]:
    cfg = td.Config(trailing=timedelta(minutes=30), sudden_window=timedelta(minutes=20))
    fr = traffic_frame(per_minute)
    run = DetectorRun(cfg, td.DETECTOR, M)
    return [i for i in range(40, N) for e in run.step(fr, i) if e.kind == "raised"]


def test_a_checkout_that_stops_pages_at_the_third_empty_minute() -> None:
    traffic = np.full(N, 60.0)
    traffic[START:] = 2.0
    assert traffic_raised(traffic) == [START + 2]


def test_a_two_minute_dip_in_traffic_does_not_page() -> None:
    traffic = np.full(N, 60.0)
    traffic[START : START + 2] = 0.0
    traffic[START + 2] = 45.0  # a little low after it, as retries trickle back
    assert traffic_raised(traffic) == []


def test_a_scrape_gap_at_the_larger_psp_of_a_country_is_not_a_drop() -> None:
    """The gap shows in the minute counts at once, minutes before its series are old enough
    to count as stale; and after it, the window still holds minutes without them."""
    fr = Frame(T0.timestamp(), 60.0, N, (Offset(0, "present"),))
    big, small = (("country", "FR"), ("psp", "adyen")), (("country", "FR"), ("psp", "stripe"))
    gap = slice(START, START + 8)
    per_minute = {big: np.full(N, 45.0), small: np.full(N, 15.0)}
    per_minute[big][gap] = np.nan  # no samples: no increments either
    ages = {big: np.zeros(N), small: np.zeros(N)}
    ages[big][gap] = np.arange(1, 9) * 60.0
    ages[big][START + 5 : START + 8] = np.nan  # past the lookback: no value at all
    fr.put("attempts", 0, {k: windowed(v, 5) for k, v in per_minute.items()})
    fr.put("attempts_short", 0, {k: windowed(v, 2) for k, v in per_minute.items()})
    fr.put("attempts_minute", 0, {k: windowed(v, 1) for k, v in per_minute.items()})
    fr.put("age", 0, ages)
    cfg = td.Config(trailing=timedelta(minutes=30), sudden_window=timedelta(minutes=20))
    run = DetectorRun(cfg, td.DETECTOR, M)
    events = [e for i in range(40, N) for e in run.step(fr, i) if e.kind == "raised"]
    assert [e.finding.details.get("kind") for e in events] == ["data_problem"]
    assert events[0].finding.dimensions == {"psp": "adyen"}  # the slice with nothing fresh
