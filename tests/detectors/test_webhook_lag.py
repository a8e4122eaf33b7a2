"""webhook_lag on hand-made series: a stuck queue's age is its own persistence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from paytriage.detection.run import DetectorRun
from paytriage.detectors import webhook_lag as wl
from paytriage.detectors.signals import Frame, Offset

T0 = datetime(2026, 11, 16, 12, 0, tzinfo=UTC)
KEY = (("psp", "adyen"),)
N = 200
STUCK = 150  # index at which the queue stops


def frame(age: np.ndarray) -> Frame:
    f = Frame(T0.timestamp(), 60.0, N, (Offset(0, "present"),))
    f.put("lag_p95", 0, {KEY: np.full(N, 4.0)})  # what gets through is fast
    f.put("backlog_oldest_age", 0, {KEY: age})
    f.put("processed", 0, {KEY: np.full(N, 500.0)})
    f.put("failed", 0, {KEY: np.full(N, 2.0)})
    return f


def raised(age: np.ndarray, cfg: wl.Config) -> list[int]:
    run = DetectorRun(cfg, wl.DETECTOR, timedelta(minutes=1))
    fr = frame(age)
    return [i for i in range(130, N) for e in run.step(fr, i) if e.kind == "raised"]


def stuck_for(minutes: int) -> np.ndarray:
    age = np.full(N, 2.0)
    age[STUCK : STUCK + minutes] = 60.0 * np.arange(1, minutes + 1)
    return age


def test_a_queue_stuck_past_the_limit_pages_once_it_has_been_past_it_for_long_enough() -> None:
    cfg = wl.Config(max_backlog_age_seconds=120, **{"for": timedelta(minutes=1)})
    # age 120 s at the 2nd minute, 180 s at the 3rd: past the limit for a minute by then
    assert raised(stuck_for(30), cfg) == [STUCK + 2]
    # a longer `for` waits for the age to show it
    slow = wl.Config(max_backlog_age_seconds=120, **{"for": timedelta(minutes=3)})
    assert raised(stuck_for(30), slow) == [STUCK + 4]


def test_a_queue_stuck_for_two_minutes_does_not_page() -> None:
    cfg = wl.Config(max_backlog_age_seconds=120, **{"for": timedelta(minutes=1)})
    assert raised(stuck_for(2), cfg) == []
