"""refund_sla on hand-made signals: burn-rate windows and the drain forecast."""

from __future__ import annotations

import numpy as np

import paytriage.detectors.refund_sla as rs
from paytriage.detectors.signals import Frame, Offset

KEY = (("psp", "adyen"),)
N = 400


def frame(
    cfg: rs.Config,
    per_min_requested: float,
    late_share: float,
    drain: float,
    pending_growth: float = 0.0,
) -> Frame:
    f = Frame(1_800_000_000.0, 60.0, N, (Offset(0, "present"),))
    for w in rs._windows(cfg):
        minutes = w.total_seconds() / 60
        req = per_min_requested * minutes
        f.put(rs._name("requested", w), 0, {KEY: np.full(N, req)})
        f.put(rs._name("completed", w), 0, {KEY: np.full(N, req * drain)})
        f.put(rs._name("late", w), 0, {KEY: np.full(N, req * drain * late_share)})
    f.put("pending_over_sla", 0, {KEY: 3 + pending_growth * np.arange(N)})
    return f


def verdict(cfg: rs.Config, fr: Frame) -> rs.Assessment | None:
    out = rs.assess(cfg, fr, N - 1)
    return out[0] if out else None


def test_normal_refunds_raise_nothing() -> None:
    cfg = rs.Config()
    assert verdict(cfg, frame(cfg, 2.0, late_share=0.01, drain=1.0)) is None


def test_fast_burn_pages_on_both_windows() -> None:
    cfg = rs.Config()
    # 80 % of refunds late: burn 16x > 14.4 on 1h and 5m
    v = verdict(cfg, frame(cfg, 2.0, late_share=0.8, drain=1.0))
    assert v is not None and v.breach
    assert "14.4x" in v.finding.title
    burns = v.finding.details["burn_rates"]
    assert abs(burns["1h/5m"] - 16.0) < 1e-9


def test_slow_burn_below_every_page_window_does_not_page() -> None:
    cfg = rs.Config()
    v = verdict(cfg, frame(cfg, 2.0, late_share=0.2, drain=1.0))  # burn 4x
    assert v is None or not v.breach


def test_too_few_bad_events_do_not_page() -> None:
    cfg = rs.Config(min_bad_events=1000)
    v = verdict(cfg, frame(cfg, 2.0, late_share=0.8, drain=1.0))
    assert v is None or not v.breach


def test_a_stalled_worker_is_caught_with_a_forecast() -> None:
    cfg = rs.Config()
    v = verdict(cfg, frame(cfg, 4.0, late_share=0.0, drain=0.1, pending_growth=0.2))
    assert v is not None and v.breach
    d = v.finding.details
    assert abs(d["drain_ratio"] - 0.1) < 1e-9
    # 30 m: 120 requested, 12 completed -> 108 behind, 216 an hour
    assert abs(d["forecast_breaches_per_hour"] - 216) < 1e-6


# --- the same-window drain test, calibrated on the PSP's own past windows ------------------

DAYS3 = 3 * 24 * 60 + 1


def paced_frame(
    cfg: rs.Config,
    per_min: float,
    *,
    last_hour_drain: float,
    lumpy: bool = False,
    demand_after: float | None = None,
    pending: np.ndarray | None = None,
    seed: int = 3,
) -> Frame:
    """Three days of a PSP's refunds at ``per_min`` requests a minute, completed at the
    same pace one by one (Poisson noise), or at a pace that wanders from a third to
    five thirds of it from one half hour to the next, keeping up on average (``lumpy``); in
    the last hour only ``last_hour_drain`` of the requests complete, or the demand falls to
    ``demand_after`` a minute and completions follow it. Refunds pending past the SLA are
    ``pending`` (default: about 3, Poisson noise)."""
    rng = np.random.default_rng(seed)
    n = DAYS3
    requested = rng.poisson(per_min, n).astype(float)
    completed = rng.poisson(per_min, n).astype(float)
    if lumpy:
        pace = np.repeat(rng.uniform(1 / 3, 5 / 3, n // 30 + 1), 30)[:n]
        completed = rng.poisson(per_min * pace).astype(float)
    if demand_after is not None:
        requested[-60:] = rng.poisson(demand_after, 60)
        completed[-60:] = rng.poisson(demand_after, 60)
    completed[-60:] = rng.poisson(completed[-60:] * last_hour_drain)
    f = Frame(1_800_000_000.0, 60.0, n, (Offset(0, "present"),))
    for w in rs._windows(cfg):
        m = int(w.total_seconds() // 60)
        for name, per in (("requested", requested), ("completed", completed)):
            c = np.concatenate([[0.0], np.cumsum(per)])
            window = c[1:] - c[np.maximum(0, np.arange(1, n + 1) - m)]
            f.put(rs._name(name, w), 0, {KEY: window})
        f.put(rs._name("late", w), 0, {KEY: np.zeros(n)})
    if pending is None:
        pending = rng.poisson(3.0, n).astype(float)
    f.put("pending_over_sla", 0, {KEY: pending})
    return f


def test_half_the_refunds_completing_for_an_hour_is_a_stall_at_a_steady_psp() -> None:
    cfg = rs.Config()
    fr = paced_frame(cfg, 1.6, last_hour_drain=0.4)  # ~96 an hour, ~38 completed
    # the fixed-dispersion test against the hour's requests does not see it ...
    assert not rs._stalled(cfg, fr, KEY, DAYS3 - 1)
    # ... the PSP's own pace does
    assert rs._behind_own_pace(cfg, fr, KEY, DAYS3 - 1)
    v = verdict_at(cfg, fr)
    assert v is not None and v.breach
    assert "completed" in v.finding.title


def test_a_normal_hour_at_a_steady_psp_is_no_stall() -> None:
    cfg = rs.Config()
    for seed in range(5):
        fr = paced_frame(cfg, 1.6, last_hour_drain=1.0, seed=seed)
        assert not rs._behind_own_pace(cfg, fr, KEY, DAYS3 - 1)


def test_the_same_slow_hour_at_a_psp_with_a_lumpy_pace_is_not_paged() -> None:
    cfg = rs.Config()
    fr = paced_frame(cfg, 1.6, last_hour_drain=0.4, lumpy=True)
    assert not rs._behind_own_pace(cfg, fr, KEY, DAYS3 - 1)


def test_completions_following_a_falling_demand_are_no_stall() -> None:
    cfg = rs.Config()
    # demand falls from ~96 to ~30 an hour: completions over the hour are a third of the
    # hour-old request rate, but keep pace with the requests of the same window
    fr = paced_frame(cfg, 1.6, last_hour_drain=1.0, demand_after=0.5)
    assert not rs._behind_own_pace(cfg, fr, KEY, DAYS3 - 1)


def test_without_enough_past_windows_the_own_pace_test_is_not_run() -> None:
    cfg = rs.Config(min_history_windows=500)  # three days hold 70 one-hour windows
    fr = paced_frame(cfg, 1.6, last_hour_drain=0.4)
    assert not rs._behind_own_pace(cfg, fr, KEY, DAYS3 - 1)
    assert rs._behind_own_pace(rs.Config(), fr, KEY, DAYS3 - 1)


def verdict_at(cfg: rs.Config, fr: Frame) -> rs.Assessment | None:
    out = rs.assess(cfg, fr, fr.n - 1)
    return out[0] if out else None


# --- refunds left past the SLA ----------------------------------------------------------------


def rising_pending(rng_seed: int = 5, rise: float = 15.0, scale: float = 1.0) -> np.ndarray:
    """About 3 refunds pending past the SLA (times ``scale``), rising by ``rise`` over the
    last 90 minutes."""
    rng = np.random.default_rng(rng_seed)
    g = rng.poisson(3.0 * scale, DAYS3).astype(float)
    g[-90:] += np.linspace(0, rise, 90).round()
    return g


def test_refunds_piling_up_past_the_sla_page_when_the_counts_cannot_tell() -> None:
    """A PSP with ~45 refunds an hour completing 70 % of them: too few to tell from the
    counts, but the refunds past the SLA have grown from about 3 to about 18."""
    cfg = rs.Config()
    fr = paced_frame(cfg, 0.75, last_hour_drain=0.7, pending=rising_pending())
    i = DAYS3 - 1
    assert not rs._stalled(cfg, fr, KEY, i) and not rs._behind_own_pace(cfg, fr, KEY, i)
    piling = rs._breaches_piling_up(cfg, fr, KEY, i)
    assert piling is not None and piling[0] >= 15 and piling[1] >= 10
    v = verdict_at(cfg, fr)
    assert v is not None and v.breach
    assert "17 refunds pending past the 1d SLA, ~14 more than usual" in v.finding.title


def test_pending_refunds_within_their_usual_range_do_not_page() -> None:
    cfg = rs.Config()
    for seed in range(5):
        fr = paced_frame(cfg, 0.75, last_hour_drain=0.7, pending=rising_pending(seed, rise=0))
        assert rs._breaches_piling_up(cfg, fr, KEY, DAYS3 - 1) is None


def test_more_pending_refunds_in_a_busier_hour_are_no_breach() -> None:
    """A flash sale at a PSP that always has some 10 refunds past the SLA: requests,
    completions and the pending gauge all three times usual."""
    cfg = rs.Config()
    g = rising_pending(rise=0, scale=10 / 3)
    g[-60:] = np.random.default_rng(9).poisson(30.0, 60)
    fr = paced_frame(cfg, 0.75, last_hour_drain=0.7, demand_after=2.25, pending=g)
    i = DAYS3 - 1
    done = fr.at(rs._name("completed", cfg.drain_reference), KEY, i)
    assert done < fr.at(rs._name("requested", cfg.drain_reference), KEY, i)  # lagging
    assert rs._breaches_piling_up(cfg, fr, KEY, i) is None


def test_pending_refunds_being_worked_off_do_not_page() -> None:
    """The gauge is still up, but completions now outrun requests: the backlog drains."""
    cfg = rs.Config()
    fr = paced_frame(cfg, 0.75, last_hour_drain=2.5, pending=rising_pending())
    i = DAYS3 - 1
    done = fr.at(rs._name("completed", cfg.drain_reference), KEY, i)
    assert done > fr.at(rs._name("requested", cfg.drain_reference), KEY, i)
    assert rs._breaches_piling_up(cfg, fr, KEY, i) is None


def test_a_pending_gauge_that_wanders_is_not_paged_at_the_top_of_its_usual_range() -> None:
    """Some 20 refunds past the SLA, swinging by 8 either way every six hours: 28 now is
    8 above the usual level, over ``min_bad_events``, but within its own spread."""
    cfg = rs.Config()
    t = np.arange(DAYS3)
    wave = 20 + 8 * np.sin(2 * np.pi * (t - t[-1]) / 360 + np.pi / 2)  # at its top now
    g = np.random.default_rng(4).poisson(wave).astype(float)
    fr = paced_frame(cfg, 0.75, last_hour_drain=0.7, pending=g)
    assert rs._breaches_piling_up(cfg, fr, KEY, DAYS3 - 1) is None
