"""traffic_drop on two simulated days: a broken checkout pages, an odd baseline does not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from paytriage.detection.run import DetectorRun
from paytriage.detectors import traffic_drop
from paytriage.detectors.signals import DAY, Frame, Offset
from paytriage.lab.simulate import Scenario, SimulationSpec, generate
from tests.support.frames import auth_signal

DAY1 = datetime(2026, 11, 15, tzinfo=UTC)  # Sunday: the history
DAY2 = DAY1 + timedelta(days=1)  # Monday: judged against it
M = timedelta(minutes=1)


def replay_day2(*scenarios: Scenario, seed: int = 3) -> list[tuple[str, dict[str, str], datetime]]:
    data = generate(
        SimulationSpec(
            start=DAY1, end=DAY2 + timedelta(days=1), seed=seed, scenarios=scenarios, logs=False
        )
    )
    cfg = traffic_drop.Config()
    per_day = int(timedelta(days=1) / data.spec.step)
    n = len(data.traffic.times) - per_day
    frame = Frame(
        float(data.traffic.times[per_day]), 60.0, n, (Offset(0, "present"), Offset(DAY, "daily"))
    )
    dims = tuple(cfg.dimensions)
    for name, steps in (("attempts", 5), ("attempts_short", 2)):
        full = auth_signal(data, steps, dims)
        frame.put(name, 0, {k: v[per_day:] for k, v in full.items()})
        if name == "attempts":
            frame.put(name, 1, {k: v[:n] for k, v in full.items()})
    frame.put("age", 0, {k: np.zeros(n) for k in frame.present("attempts")})
    run = DetectorRun(cfg, traffic_drop.DETECTOR, M)
    out = []
    for i in range(frame.steps(traffic_drop.lookback(cfg)), n):
        out += [(e.kind, e.finding.dimensions, e.at) for e in run.step(frame, i)]
    return [e for e in out if e[0] == "raised"]


def test_a_broken_checkout_in_one_country_pages_within_minutes() -> None:
    at = DAY2 + timedelta(hours=14)
    raised = replay_day2(Scenario("traffic_drop", at, 30 * M, {"country": "FR"}))
    assert [(d, t - at <= 7 * M) for _, d, t in raised] == [({"country": "FR"}, True)]


@pytest.mark.parametrize(
    "scenario",
    [
        # yesterday's flash sale makes the same hour today look like half of "normal"
        Scenario("flash_sale", DAY1 + timedelta(hours=18), 60 * M, {"country": "GB"}, 1.5),
        # today's flash sale ends: traffic returns to normal, far below the sale
        Scenario("flash_sale", DAY2 + timedelta(hours=4), 45 * M, {"country": "DE"}, 1.5),
    ],
    ids=["yesterdays-sale", "sale-ends"],
)
def test_an_odd_baseline_without_a_cliff_does_not_page(scenario: Scenario) -> None:
    assert replay_day2(scenario) == []
