"""capture_failures on hand-made series: volume-aware, and a small persistent excess is found."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from paytriage.detection.run import DetectorRun
from paytriage.detectors import capture_failures as cf
from paytriage.detectors.signals import Frame, Offset
from tests.support.frames import windowed

T0 = datetime(2026, 11, 16, 12, 0, tzinfo=UTC)
KEY = (("psp", "worldpay"),)
N = 180  # three hours at one-minute steps


def frame(failures_per_minute: np.ndarray, captures_per_minute: float = 40.0) -> Frame:
    """The detector's signals from per-minute counts, as Prometheus computes them from a
    60 s scrape: increase over 5 minutes spans 4 to 5 increments, over 2 minutes the last
    one (extrapolated; only its ratio is read)."""
    n = len(failures_per_minute)
    f = Frame(T0.timestamp(), 60.0, n, (Offset(0, "present"),))
    # no captures reported where no failures are (NaN: before the PSP reported at all)
    a = np.where(np.isfinite(failures_per_minute), captures_per_minute, np.nan)
    f.put("attempts", 0, {KEY: windowed(a, 5)})
    f.put("failures", 0, {KEY: windowed(failures_per_minute, 5)})
    f.put("attempts_short", 0, {KEY: windowed(a, 1)})
    f.put("failures_short", 0, {KEY: windowed(failures_per_minute, 1)})
    return f


def raised_at(fr: Frame, first: int = 60) -> list[datetime]:
    run = DetectorRun(cf.Config(), cf.DETECTOR, timedelta(minutes=1))
    return [e.at for i in range(first, fr.n) for e in run.step(fr, i) if e.kind == "raised"]


def test_two_percent_failing_at_a_small_psp_is_found_once_it_has_lasted() -> None:
    fails = np.full(N, 0.32)  # 0.8 % of 40 captures a minute: within reach of the allowance
    fails[90:150] = 0.8  # 2 % of 40 captures a minute, four times the allowance
    [at] = raised_at(frame(fails))
    # too few failures in any five minutes to be sure; half an hour of them is
    assert T0 + timedelta(minutes=110) <= at <= T0 + timedelta(minutes=125)


def test_a_rise_at_a_psp_cleaner_than_the_allowance_is_judged_against_its_own_rate() -> None:
    """1.1 % of 40 captures a minute: at a PSP that fails 0.2 % it is found within the half
    hour (against the allowance it never would be), at one that fails 0.8 % it is not."""
    n = 8 * 60  # six hours of baseline before it
    clean, close = np.full(n, 0.08), np.full(n, 0.32)
    clean[400:445] = close[400:445] = 0.44
    [at] = raised_at(frame(clean), first=380)
    assert T0 + timedelta(minutes=405) <= at <= T0 + timedelta(minutes=435)
    assert raised_at(frame(close), first=380) == []
    # and not against under three hours of the PSP's own rate
    young = clean.copy()
    young[: 400 - 150] = np.nan  # two and a half hours of it
    assert raised_at(frame(young), first=380) == []


def test_the_same_ratio_at_ten_times_the_volume_pages_within_minutes() -> None:
    fails = np.zeros(N)
    fails[90:150] = 8.0
    [at] = raised_at(frame(fails, captures_per_minute=400.0))
    # the 5-minute window needs three minutes of it to be sure, then `for` is two minutes
    assert T0 + timedelta(minutes=90) < at <= T0 + timedelta(minutes=96)


def test_a_short_burst_does_not_page_at_any_volume() -> None:
    fails = np.zeros(N)
    fails[100:102] = 6.0  # two minutes with 15 % failing, then nothing
    assert raised_at(frame(fails)) == []
    assert raised_at(frame(fails * 10, captures_per_minute=400.0)) == []
