"""anomaly: a generic seasonal anomaly detector on any PromQL expression a user configures.

For each series a signal returns, the value at each step is compared with a robust baseline:
the median and MAD of the same time of week over past weeks (pooled over +-10 minutes), else
of the trailing ``trailing`` window before the last ``gap``. A breach is a robust z-score
beyond ``threshold_sigmas`` in the configured direction (with an optional ``min_value`` so
tiny absolute values never page); the spread is floored at ``min_relative_spread`` of the
center so a flat history does not turn noise into sigmas.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Literal

import numpy as np
from pydantic import Field

from paytriage.core.types import EnvStr, PositiveDuration, StrictModel
from paytriage.detectors.base import Assessment, BaselineConfig, Detector, DetectorConfig
from paytriage.detectors.signals import Frame, LabelKey, Offset, seasonal_offsets
from paytriage.detectors.stats import cusum_onset, robust_baseline
from paytriage.domain.findings import Finding, QueryRef


class Signal(StrictModel):
    """One user-defined signal: a PromQL expression returning one or more series."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_\-]*$")
    query: EnvStr
    direction: Literal["up", "down", "both"] = "both"
    min_value: float | None = None
    threshold_sigmas: float = Field(default=6.0, gt=0)
    unit: str = ""


class Config(DetectorConfig):
    id: Literal["anomaly"] = "anomaly"
    signals: list[Signal] = Field(default_factory=list)
    baseline: BaselineConfig = BaselineConfig()
    trailing: PositiveDuration = Field(default=timedelta(hours=2))
    gap: PositiveDuration = Field(default=timedelta(minutes=15))
    min_relative_spread: float = Field(default=0.05, ge=0)


HALF_POOL = 10


def signals(cfg: Config) -> dict[str, str]:
    return {s.name: s.query for s in cfg.signals}


def offsets(cfg: Config) -> tuple[Offset, ...]:
    return seasonal_offsets(cfg.baseline.weeks, cfg.baseline.days)


def lookback(cfg: Config) -> timedelta:
    return cfg.trailing + cfg.gap


def _baseline(
    frame: Frame, cfg: Config, name: str, key: LabelKey, i: int
) -> tuple[float, float, str]:
    for kind in ("weekly", "daily"):
        values: list[float] = []
        for k in frame.history(kind):
            arr = frame.block(name, k).get(key)
            if arr is None:
                continue
            chunk = arr[max(0, i - HALF_POOL) : i + HALF_POOL + 1]
            values.extend(chunk[np.isfinite(chunk)].tolist())
        need = cfg.baseline.min_weeks if kind == "weekly" else 1
        if len(values) >= need * HALF_POOL:
            b = robust_baseline(values)
            if b is not None:
                return b.center, b.spread, kind
    arr = frame.present(name).get(key)
    if arr is None:
        return math.nan, math.nan, "none"
    lo, hi = max(0, i - frame.steps(cfg.trailing)), max(0, i - frame.steps(cfg.gap))
    chunk = arr[lo:hi]
    b = robust_baseline(chunk[np.isfinite(chunk)].tolist(), min_points=10)
    return (b.center, b.spread, "trailing") if b else (math.nan, math.nan, "none")


def assess(
    cfg: Config, frame: Frame, i: int, active: frozenset[LabelKey] = frozenset()
) -> list[Assessment]:
    out = []
    for sig in cfg.signals:
        for key, arr in frame.present(sig.name).items():
            x = float(arr[i]) if i < len(arr) else math.nan
            if not math.isfinite(x):
                continue
            center, spread, kind = _baseline(frame, cfg, sig.name, key, i)
            if not math.isfinite(center):
                continue
            scale = max(spread, cfg.min_relative_spread * abs(center), 1e-9)
            z = (x - center) / scale
            signed = {"up": z, "down": -z, "both": abs(z)}[sig.direction]
            big_enough = sig.min_value is None or abs(x) >= sig.min_value
            breach = signed >= sig.threshold_sigmas and big_enough
            holding = signed >= sig.threshold_sigmas / 2
            if not (breach or holding):
                continue
            labels = dict(key)
            where = ", ".join(f"{k}={v}" for k, v in labels.items()) or "overall"
            unit = f" {sig.unit}" if sig.unit else ""
            finding = Finding(
                detector=cfg.id,
                severity=cfg.severity,
                dimensions={"signal": sig.name, **labels},
                title=(
                    f"{sig.name} at {where} is {x:,.4g}{unit}, usually {center:,.4g}{unit} "
                    f"({z:+.1f} sigma)"
                ),
                observed=x,
                expected=center,
                band=(center - sig.threshold_sigmas * scale, center + sig.threshold_sigmas * scale),
                onset=None,
                at=frame.when(i),
                unit=sig.unit,
                queries=(QueryRef("prometheus", sig.query, frame.when(i), frame.when(i)),),
                details={"z": z, "baseline": kind, "spread": scale},
            )
            out.append(Assessment((("signal", sig.name), *key), breach, holding, finding))
    return out


def onset(cfg: Config, frame: Frame, a: Assessment, i: int) -> datetime | None:
    name = a.finding.dimensions["signal"]
    key = tuple(kv for kv in a.key if kv != ("signal", name))
    arr = frame.present(name).get(key)
    if arr is None:
        return None
    lo = max(0, i - frame.steps(cfg.trailing))
    spread = float(a.finding.details["spread"])
    up = a.finding.observed >= a.finding.expected
    start = cusum_onset(
        arr[lo : i + 1].tolist(),
        a.finding.expected,
        spread=spread,
        k=1.0,
        direction="up" if up else "down",
    )
    return frame.when(lo + start) if start is not None else None


DETECTOR = Detector(
    id="anomaly",
    config=Config,
    signals=signals,
    offsets=offsets,
    lookback=lookback,
    assess=assess,
    onset=onset,
)
