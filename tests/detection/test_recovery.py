"""Resolution follows recovery: a raised finding clears minutes after its signal is back in its
band, says when that was (``Event.recovered_at``, the finding's *impact ended*), and does not
flap on a brief dip back into band while the problem is still on (issue 20, finding 2)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from paytriage.detection.run import DetectorRun, Event, EventKind
from paytriage.detectors import capture_failures as cf
from paytriage.detectors import decline_spike as ds
from paytriage.detectors import refund_sla as rs
from paytriage.detectors import traffic_drop as td
from paytriage.detectors import webhook_lag as wl
from paytriage.detectors.signals import DAY, Frame, Offset
from paytriage.lab.simulate import Scenario, SimulationSpec, generate
from tests.support.frames import auth_signal, decline_frame, windowed

T0 = datetime(2026, 11, 16, 12, 0, tzinfo=UTC)
M = timedelta(minutes=1)


def step_all(run: DetectorRun, frame: Frame, first: int) -> list[Event]:
    return [e for i in range(first, frame.n) for e in run.step(frame, i)]


def kinds(events: list[Event]) -> list[str]:
    return [e.kind.value for e in events]


def cleared(events: list[Event]) -> Event:
    [c] = [e for e in events if e.kind is EventKind.CLEARED]
    return c


# --- capture_failures: hand-made minutes, with noise ----------------------------------------

PSP = (("psp", "worldpay"),)


def capture_frame(fail_share: np.ndarray, per_minute: float = 400.0, seed: int = 4) -> Frame:
    """Captures at ``per_minute`` a minute with a share ``fail_share[j]`` failing in minute j
    (Poisson), as Prometheus sums them over 5 and 1 minutes."""
    rng = np.random.default_rng(seed)
    n = len(fail_share)
    attempts = rng.poisson(per_minute, n).astype(float)
    failures = rng.binomial(attempts.astype(int), fail_share).astype(float)
    f = Frame(T0.timestamp(), 60.0, n, (Offset(0, "present"),))
    f.put("attempts", 0, {PSP: windowed(attempts, 5)})
    f.put("failures", 0, {PSP: windowed(failures, 5)})
    f.put("attempts_short", 0, {PSP: windowed(attempts, 1)})
    f.put("failures_short", 0, {PSP: windowed(failures, 1)})
    return f


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_capture_problem_that_ends_at_minute_x_clears_minutes_later_saying_x(seed: int) -> None:
    end = 160
    share = np.full(240, 0.002)
    share[120:end] = 0.05  # minutes 120 .. 159 fail; from minute 160 on it is over
    events = step_all(DetectorRun(cf.Config(), cf.DETECTOR, M), capture_frame(share, seed=seed), 60)
    assert kinds(events) == ["raised", "cleared"]
    c = cleared(events)
    assert c.recovered_at is not None
    assert abs(c.recovered_at - (T0 + end * M)) <= M  # impact ended at X +- 1 min
    # and the finding clears one clear_after later (5 min), not when its windows forget it
    assert c.at - c.recovered_at == cf.Config().clear_after
    assert c.at <= T0 + (end + 6) * M
    assert c.finding.details["recovered_at"] == c.recovered_at.isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_brief_dip_back_into_band_does_not_flap(seed: int) -> None:
    share = np.full(260, 0.002)
    share[100:180] = 0.05
    share[140:143] = 0.002  # three quiet minutes in the middle of the problem
    events = step_all(DetectorRun(cf.Config(), cf.DETECTOR, M), capture_frame(share, seed=seed), 60)
    assert kinds(events) == ["raised", "cleared"]
    assert cleared(events).at > T0 + 180 * M


def test_a_mild_rise_at_a_small_psp_holds_on_the_evidence_of_a_longer_pool() -> None:
    """Two failures a minute where one is normal: five minutes prove little, so recovery is
    judged over as many minutes as it takes (up to long_window): no clearing midway."""
    share = np.full(300, 0.005)
    share[100:220] = 0.02  # 2 % of 100 captures a minute, four times the allowance
    for seed in (1, 2, 3):
        events = step_all(
            DetectorRun(cf.Config(), cf.DETECTOR, M),
            capture_frame(share, per_minute=100.0, seed=seed),
            60,
        )
        assert kinds(events) == ["raised", "cleared"]
        c = cleared(events)
        assert c.at > T0 + 220 * M
        assert c.at <= T0 + 250 * M  # no half hour of silence


# --- decline_spike: the simulator's PSP outage ---------------------------------------------

START = datetime(2026, 11, 16, 6, 0, tzinfo=UTC)


@pytest.mark.parametrize("seed", [21, 22])
def test_a_psp_outage_clears_within_minutes_of_its_end(seed: int) -> None:
    onset = START + timedelta(hours=4)
    end = onset + 20 * M
    spec = SimulationSpec(
        start=START,
        end=START + timedelta(hours=5),
        seed=seed,
        scenarios=(Scenario("psp_outage", onset, 20 * M, {"psp": "stripe"}),),
        logs=False,
    )
    frame = decline_frame(generate(spec))
    run = DetectorRun(ds.Config(), ds.DETECTOR, M)
    events = step_all(run, frame, frame.index(START + timedelta(hours=3)))
    assert kinds(events) == ["raised", "cleared"]
    c = cleared(events)
    assert c.recovered_at is not None
    assert end - 2 * M <= c.recovered_at <= end + M  # it heals over its last two minutes
    assert c.at <= end + 7 * M


# --- traffic_drop: the simulator's broken checkout -----------------------------------------


def test_a_broken_checkout_clears_within_minutes_of_traffic_coming_back() -> None:
    day1 = datetime(2026, 11, 15, tzinfo=UTC)
    at = day1 + timedelta(days=1, hours=14)
    end = at + 30 * M
    data = generate(
        SimulationSpec(
            start=day1,
            end=day1 + timedelta(days=1, hours=16),
            seed=3,
            scenarios=(Scenario("traffic_drop", at, 30 * M, {"country": "FR"}),),
            logs=False,
        )
    )
    cfg = td.Config()
    per_day = 1440
    n = len(data.traffic.times) - per_day
    frame = Frame(
        float(data.traffic.times[per_day]), 60.0, n, (Offset(0, "present"), Offset(DAY, "daily"))
    )
    dims = tuple(cfg.dimensions)
    for name, steps in (("attempts", 5), ("attempts_short", 2), ("attempts_minute", 1)):
        full = auth_signal(data, steps, dims)
        frame.put(name, 0, {k: v[per_day:] for k, v in full.items()})
        if name == "attempts":
            frame.put(name, 1, {k: v[:n] for k, v in full.items()})
    frame.put("age", 0, {k: np.zeros(n) for k in frame.present("attempts")})
    run = DetectorRun(cfg, td.DETECTOR, M)
    events = step_all(run, frame, frame.index(at - timedelta(hours=1)))
    assert [(e.kind.value, e.finding.dimensions) for e in events] == [
        ("raised", {"country": "FR"}),
        ("cleared", {"country": "FR"}),
    ]
    c = cleared(events)
    assert c.recovered_at is not None and abs(c.recovered_at - end) <= 2 * M
    assert c.at <= end + 7 * M


# --- webhook_lag: a backlog is impact until it has drained ---------------------------------

WH = (("psp", "adyen"),)


def test_a_webhook_backlog_clears_once_drained_not_while_old_deliveries_wait() -> None:
    n, stuck, end, drained = 240, 120, 150, 165
    age = np.full(n, 1.0)
    age[stuck:end] = 60.0 * np.arange(1, end - stuck + 1)  # stuck for half an hour
    age[end:drained] = np.linspace(age[end - 1], 0.0, drained - end + 1)[1:]  # worked off
    lag = np.maximum(4.0, age)  # what gets processed is as old as the queue
    f = Frame(T0.timestamp(), 60.0, n, (Offset(0, "present"),))
    f.put("lag_p95", 0, {WH: np.convolve(lag, np.ones(5) / 5)[:n]})
    f.put("lag_p95_short", 0, {WH: lag})
    f.put("backlog_oldest_age", 0, {WH: age})
    for name, value in (("processed", 500.0), ("failed", 2.0)):
        f.put(name, 0, {WH: np.full(n, value)})
        f.put(f"{name}_short", 0, {WH: np.full(n, value / 5)})
    events = step_all(DetectorRun(wl.Config(), wl.DETECTOR, M), f, 100)
    assert kinds(events) == ["raised", "cleared"]
    c = cleared(events)
    assert c.recovered_at is not None
    assert T0 + (drained - 2) * M <= c.recovered_at <= T0 + drained * M
    assert T0 + drained * M < c.at <= T0 + (drained + 6) * M


# --- refund_sla: late completions of the backlog are not the stall going on ----------------

REF = (("psp", "adyen"),)


def refund_frame(cfg: rs.Config, seed: int = 3) -> tuple[Frame, int]:
    """A day of a PSP's refunds, a request a minute; the worker stops at minute 1200 and
    comes back at 1290 (the returned end), then works off its backlog at a twentieth a
    minute, a third of it past the SLA (those raise the burn rates for an hour after)."""
    rng = np.random.default_rng(seed)
    n, stop, end = 1440, 1200, 1290
    requested = rng.poisson(1.0, n).astype(float)
    completed = rng.poisson(1.0, n).astype(float)
    late = np.zeros(n)
    completed[stop:end] = 0.0
    backlog = float(requested[stop:end].sum())
    pending = rng.poisson(3.0, n).astype(float)
    pending[stop:end] += np.linspace(0, backlog / 3, end - stop)
    for t in range(end, n):
        work = min(backlog, requested[t] + max(1.0, backlog / 20))
        late[t] = round(work / 3) if backlog > requested[t] else 0.0
        completed[t] = work
        backlog -= work - requested[t]
        backlog = max(backlog, 0.0)
        pending[t] = 3.0 + backlog / 3
    f = Frame(T0.timestamp(), 60.0, n, (Offset(0, "present"),))
    for w in rs._windows(cfg):
        m = int(w.total_seconds() // 60)
        for name, per in (("requested", requested), ("completed", completed), ("late", late)):
            c = np.concatenate([[0.0], np.cumsum(per)])
            f.put(rs._name(name, w), 0, {REF: c[1:] - c[np.maximum(0, np.arange(1, n + 1) - m)]})
    f.put("pending_over_sla", 0, {REF: pending})
    return f, end


def test_a_refund_stall_resolves_as_refunds_flow_again_and_is_not_raised_again() -> None:
    cfg = rs.Config()
    frame, end = refund_frame(cfg)
    events = step_all(DetectorRun(cfg, rs.DETECTOR, M), frame, 1100)
    assert kinds(events) == ["raised", "cleared"]
    c = cleared(events)
    assert c.recovered_at is not None
    # back once completions have caught up with requests over its 30 minutes (the backlog
    # comes out at once), though the late ones keep the burn rates up for an hour
    assert T0 + end * M <= c.recovered_at <= T0 + (end + 8) * M
    assert c.at <= T0 + (end + 13) * M
