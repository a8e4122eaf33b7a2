"""Frames built from simulated data in memory, for detector unit tests without Prometheus.

``increase(x[w])`` at a step is the sum of the per-step increments over the last w steps;
this is what Prometheus computes on the same data (without its extrapolation), which the
integration tests exercise for real.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from paytriage.detectors.signals import Frame, LabelKey, Offset, label_key
from paytriage.lab.simulate import SimulatedData


def increments(values: np.ndarray) -> np.ndarray:
    d = np.diff(values, prepend=0.0)
    return np.where(d < 0, values, d)  # a counter reset counts its new value


def windowed(inc: np.ndarray, steps: int) -> np.ndarray:
    c = np.concatenate([[0.0], np.cumsum(np.nan_to_num(inc))])
    out = c[steps:] - c[:-steps]
    out = np.concatenate([np.full(steps - 1, np.nan), out])
    out[~np.isfinite(inc)] = np.nan
    return out


def auth_signal(
    data: SimulatedData,
    window_steps: int,
    dims: tuple[str, ...] = ("psp", "country", "method"),
    outcome: Callable[[str], bool] = lambda _: True,
) -> dict[LabelKey, np.ndarray]:
    out: dict[LabelKey, np.ndarray] = {}
    for fam in data.families:
        for s in fam.samples:
            if s.name != "payment_authorizations_total" or not outcome(s.labels["outcome"]):
                continue
            key = label_key(s.labels, dims)
            w = windowed(increments(s.values), window_steps)
            out[key] = out[key] + np.nan_to_num(w) if key in out else w
    return out


def decline_frame(data: SimulatedData, window: int = 5, short: int = 1) -> Frame:
    """The five decline_spike signals (present block only) from simulated data."""
    n = len(data.traffic.times)
    frame = Frame(float(data.traffic.times[0]), data.spec.step_seconds, n, (Offset(0, "present"),))
    fails = lambda o: o in ("declined", "error")  # noqa: E731
    frame.put("attempts", 0, auth_signal(data, window))
    frame.put("failures", 0, auth_signal(data, window, outcome=fails))
    frame.put("errors", 0, auth_signal(data, window, outcome=lambda o: o == "error"))
    frame.put("attempts_short", 0, auth_signal(data, short))
    frame.put("failures_short", 0, auth_signal(data, short, outcome=fails))
    return frame
