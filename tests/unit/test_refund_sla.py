"""refund_sla on hand-made signals: burn-rate windows and the drain forecast."""

from __future__ import annotations

import numpy as np

import detectors.refund_sla as rs
from detectors.signals import Frame, Offset

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
