"""traffic_drop: attempts far below their seasonal baseline (checkout silently broken).

Each value of each configured dimension (``country``, ``psp``) is judged on its own:

- expected attempts over ``window``: the median of the same time of week in past weeks (else
  of the same time on the past few days; each day's value is a low quantile of +-15 minutes
  around it, so a sale that ended a little later that day does not count), scaled by how
  the last ``scale_window`` compared with those same hours then (growth, a holiday; the
  median of 15-minute ratios, so a flash sale in either day does not skew it); without
  history, the mean of the trailing hour before the window;
- a drop breaches when attempts are below ``max_drop_ratio`` of expected, improbably so
  (Poisson/negative-binomial lower tail at ``false_alarm_rate``), with at least
  ``min_expected`` expected, the last ``short_window`` also low, and attempts below
  ``max_sudden_ratio`` of the half hour before: broken checkouts fall off a cliff, while a
  baseline that is merely off (yesterday's flash sale, a Sunday against a Monday) does not;
- once raised it holds while attempts stay below the midpoint of ``max_drop_ratio`` and 1;
- missing data is not a drop: when any series of a slice is older than ``max_staleness``
  (scrape gap, exporter or source down) the slice is not judged and a data problem is
  reported instead (key ``{"data": "stale", ...}``, severity warning).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Literal

import numpy as np
from pydantic import Field

from bot.config.types import Duration, EnvStr, StrictModel, format_duration
from detectors.base import (
    Assessment,
    BaselineConfig,
    DetectorConfig,
    DimensionList,
    Finding,
    QueryRef,
    Severity,
)
from detectors.signals import Cum, Frame, LabelKey, Offset, seasonal_offsets
from detectors.stats import count_shortfall, cusum_onset


class Queries(StrictModel):
    """``{by}`` is the full grouping (all dimensions): slices are summed in memory."""

    attempts: EnvStr = "sum by ({by}) (increase(payment_authorizations_total[{window}]))"
    last_sample_age: EnvStr = "time() - max by ({by}) (timestamp(payment_authorizations_total))"


class Config(DetectorConfig):
    id: Literal["traffic_drop"] = "traffic_drop"
    severity: Severity = Severity.critical
    queries: Queries = Queries()
    dimensions: DimensionList = Field(default_factory=lambda: ["country", "psp"])
    window: Duration = "5m"  # type: ignore[assignment]
    short_window: Duration = Field(default=timedelta(minutes=2))
    for_: Duration = Field(default=timedelta(minutes=2), alias="for")
    baseline: BaselineConfig = BaselineConfig()
    max_drop_ratio: float = Field(
        default=0.5, gt=0, lt=1, description="page below this share of expected"
    )
    min_expected: float = Field(
        default=100, ge=1, description="expected events in the window to judge"
    )
    false_alarm_rate: float = Field(default=1e-6, gt=0, lt=0.5)
    max_staleness: Duration = "3m"  # type: ignore[assignment]
    dispersion: float = Field(
        default=0.01, ge=0, description="negative-binomial extra variance (mu + d mu^2)"
    )
    trailing: Duration = Field(
        default=timedelta(hours=1), description="fallback baseline when there is no history"
    )
    scale_window: Duration = Field(
        default=timedelta(hours=3),
        description="today against the history over this long scales the seasonal baseline",
    )
    sudden_window: Duration = Field(
        default=timedelta(minutes=30), description="the level a sudden drop is measured from"
    )
    max_sudden_ratio: float = Field(
        default=0.7,
        gt=0,
        lt=1,
        description="a drop must also fall below this share of the level just before it",
    )


HALF_POOL = 15
# A low quantile of the history around the same time: a past flash sale that ended a few
# minutes later than today's must not make today's normal traffic look like a drop.
POOL_QUANTILE = 0.2
SCALE_BUCKET = timedelta(minutes=15)


def signals(cfg: Config) -> dict[str, str]:
    by = ", ".join(cfg.dimensions)
    return {
        "attempts": cfg.queries.attempts.format(by=by, window=format_duration(cfg.window)),
        "attempts_short": cfg.queries.attempts.format(
            by=by, window=format_duration(cfg.short_window)
        ),
        "age": cfg.queries.last_sample_age.format(by=by),
    }


def offsets(cfg: Config) -> tuple[Offset, ...]:
    return seasonal_offsets(cfg.baseline.weeks, cfg.baseline.days)


def history_signals(cfg: Config) -> set[str]:
    """The signals read in past weeks and days (the others are fetched for the present)."""
    return {"attempts"}


def lookback(cfg: Config) -> timedelta:
    return max(cfg.trailing, cfg.scale_window, cfg.sudden_window) + cfg.window * 2


def _staleness(frame: Frame, cfg: Config, key: LabelKey, i: int) -> str:
    """ "none", "partial" or "all": are the fine series of this slice missing or too old?"""
    own = dict(key)
    limit = cfg.max_staleness.total_seconds()
    ages = frame.present("age")
    attempts = frame.present("attempts")
    stale = fresh = 0
    for fine, arr in ages.items():
        labels = dict(fine)
        if any(labels.get(d) != v for d, v in own.items()):
            continue
        seen = attempts.get(fine, arr)
        was_there = bool(np.isfinite(seen[max(0, i - 30) : i]).any())
        v = arr[i] if i < len(arr) else math.nan
        if (not math.isfinite(v) and was_there) or (math.isfinite(v) and v > limit):
            stale += 1
        elif math.isfinite(v):
            fresh += 1
    if not stale:
        return "none"
    return "partial" if fresh else "all"


def _scale(cur: Cum, hist: Cum, lo: int, hi: int, bucket: int) -> float:
    """How today compares with the history block over [lo, hi): the median ratio of
    bucket sums, so a flash sale or an earlier incident in either does not skew it."""
    ratios = []
    for a in range(max(lo, 0), hi - bucket + 1, bucket):
        cs, cn = cur.sum(a, a + bucket)
        hs, hn = hist.sum(a, a + bucket)
        if cn >= bucket // 2 and hn >= bucket // 2 and hs > 0:
            ratios.append((cs / cn) / (hs / hn))
    return float(np.median(ratios)) if ratios else math.nan


def _recent_level(frame: Frame, cfg: Config, dims: tuple[str, ...], key: LabelKey, i: int) -> float:
    """Mean attempts per window over ``sudden_window`` before the current window."""
    cur = frame.cumulative("attempts", 0, dims).get(key)
    if cur is None:
        return math.nan
    w = frame.steps(cfg.window)
    s, n = cur.sum(i - w - frame.steps(cfg.sudden_window), i - w)
    return s / n if n >= frame.steps(cfg.sudden_window) // 2 else math.nan


def _expected(
    frame: Frame, cfg: Config, dims: tuple[str, ...], key: LabelKey, i: int
) -> tuple[float, str]:
    cur = frame.cumulative("attempts", 0, dims).get(key)
    if cur is None:
        return math.nan, "none"
    w = frame.steps(cfg.window)
    recent_lo, recent_hi = i - frame.steps(cfg.trailing) - w, i - w
    bucket = max(1, frame.steps(SCALE_BUCKET))
    for kind in ("weekly", "daily"):
        values, scales = [], []
        for k in frame.history(kind):
            hist = frame.cumulative("attempts", k, dims).get(key)
            low = frame.rolling_quantile("attempts", k, dims, HALF_POOL, POOL_QUANTILE).get(key)
            if hist is None or low is None or not 0 <= i < len(low) or not math.isfinite(low[i]):
                continue
            values.append(float(low[i]))
            scale = _scale(cur, hist, i - w - frame.steps(cfg.scale_window), i - w, bucket)
            if math.isfinite(scale):
                scales.append(scale)
        if len(values) >= (cfg.baseline.min_weeks if kind == "weekly" else 1):
            scale = float(np.clip(np.median(scales), 0.5, 2.0)) if scales else 1.0
            return float(np.median(values)) * scale, kind
    s, n = cur.sum(recent_lo, recent_hi)
    if n < frame.steps(cfg.trailing) // 2:
        return math.nan, "none"
    return s / n, "trailing"


def assess(cfg: Config, frame: Frame, i: int) -> list[Assessment]:
    sigs = signals(cfg)
    out: list[Assessment] = []
    short_ratio_steps = cfg.short_window / cfg.window
    stale_slices: list[tuple[LabelKey, str]] = []
    for dim in cfg.dimensions:
        dims = (dim,)
        attempts = frame.rolled("attempts", 0, dims)
        short = frame.rolled("attempts_short", 0, dims)
        for key, arr in attempts.items():
            where = ", ".join(f"{k}={v}" for k, v in key)
            staleness = _staleness(frame, cfg, key, i)
            if staleness == "all":
                stale_slices.append((key, where))
            if staleness != "none":
                continue  # missing data is never read as a drop
            obs = float(arr[i]) if math.isfinite(arr[i]) else math.nan
            expected, kind = _expected(frame, cfg, dims, key, i)
            if not (math.isfinite(obs) and math.isfinite(expected)):
                continue
            if expected < cfg.min_expected:
                continue
            test = count_shortfall(
                obs, expected, dispersion=cfg.dispersion, alpha=cfg.false_alarm_rate
            )
            s_arr = short.get(key)
            s_obs = float(s_arr[i]) if s_arr is not None and math.isfinite(s_arr[i]) else math.nan
            recent_low = not math.isfinite(s_obs) or (
                s_obs < cfg.max_drop_ratio * expected * short_ratio_steps
            )
            ratio = obs / expected
            # A checkout that breaks falls off a cliff: attempts are also far below the
            # half hour before. A baseline that is simply off (yesterday's flash sale, a
            # Sunday compared with a Monday) shows no such cliff and does not page.
            recent = _recent_level(frame, cfg, dims, key, i)
            sudden = not math.isfinite(recent) or obs < cfg.max_sudden_ratio * recent
            breach = test.significant and ratio < cfg.max_drop_ratio and recent_low and sudden
            holding = ratio < (1 + cfg.max_drop_ratio) / 2
            if not (breach or holding):
                continue
            start: datetime = frame.when(max(0, i - frame.steps(cfg.window)))
            finding = Finding(
                detector=cfg.id,
                severity=cfg.severity,
                dimensions=dict(key),
                title=(
                    f"Traffic drop at {where}: {obs:,.0f} authorization attempts in "
                    f"{format_duration(cfg.window)}, {ratio:.0%} of the {expected:,.0f} expected"
                ),
                observed=obs,
                expected=expected,
                band=(test.lower, test.upper),
                onset=None,
                at=frame.when(i),
                unit="attempts",
                queries=(QueryRef("prometheus", sigs["attempts"], start, frame.when(i)),),
                details={"p_value": test.p_value, "baseline": kind, "ratio": ratio},
            )
            out.append(Assessment(key, breach, holding, finding))
    # A slice whose every series went quiet is a data problem; when every slice did, the
    # whole source is: one report, not one per country.
    if stale_slices and _staleness(frame, cfg, (), i) == "all":
        out.append(_data_problem(cfg, frame, (), "all payments", i, sigs))
    else:
        out.extend(_data_problem(cfg, frame, k, w, i, sigs) for k, w in stale_slices)
    return out


def _data_problem(
    cfg: Config, frame: Frame, key: LabelKey, where: str, i: int, sigs: dict[str, str]
) -> Assessment:
    dims = dict(key)
    finding = Finding(
        detector=cfg.id,
        severity=Severity.warning,
        dimensions=dims,
        title=(
            f"No fresh payment metrics for {where}: a data problem (scrape gap or exporter "
            "down), not judged as a traffic drop"
        ),
        observed=math.nan,
        expected=math.nan,
        band=(math.nan, math.nan),
        onset=None,
        at=frame.when(i),
        unit="",
        queries=(QueryRef("prometheus", sigs["age"], frame.when(i), frame.when(i)),),
        details={"kind": "data_problem", "max_staleness": format_duration(cfg.max_staleness)},
    )
    return Assessment((*key, ("data", "stale")), True, True, finding)


def onset(cfg: Config, frame: Frame, a: Assessment, i: int) -> datetime | None:
    if a.finding.details.get("kind") == "data_problem":
        return None
    dims = tuple(d for d, _ in a.key)
    arr = frame.rolled("attempts_short", 0, dims).get(a.key)
    if arr is None:
        return None
    lo = max(0, i - frame.steps(cfg.trailing))
    per = a.finding.expected * (cfg.short_window / cfg.window)
    start = cusum_onset(
        arr[lo : i + 1].tolist(), per, spread=max(math.sqrt(per), 0.1 * per), direction="down"
    )
    if start is None:
        return None
    return frame.when(lo + start) - cfg.short_window + timedelta(seconds=frame.step)
