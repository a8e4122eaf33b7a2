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
- once raised it holds while attempts over the last ``recovery_window`` stay below the
  midpoint of ``max_drop_ratio`` and 1, improbably so, and clears ``clear_after`` after
  traffic is back (``_recovery``: the data dates its return);
- missing data is not a drop: when any series of a slice is older than ``max_staleness``
  (scrape gap, exporter or source down) the slice is not judged and a data problem is
  reported instead (key ``{"data": "stale", ...}``, severity warning); nor is it judged
  until a whole window has passed since its data came back (those minutes lack a part).
"""

from __future__ import annotations

import functools
import math
import statistics
from datetime import datetime, timedelta
from typing import Literal

import numpy as np
from pydantic import Field

from paytriage.core.types import Duration, EnvStr, PositiveDuration, StrictModel, format_duration
from paytriage.detectors.base import (
    Assessment,
    BaselineConfig,
    Chart,
    Detector,
    DetectorConfig,
    DimensionList,
    ImpactLine,
)
from paytriage.detectors.signals import (
    BLIP_MINUTES,
    CHANGE_ALPHA,
    MINUTE_ALPHA,
    Cum,
    Frame,
    LabelKey,
    Offset,
    last_minute,
    minute_counts,
    nanquantile_rows,
    seasonal_offsets,
)
from paytriage.detectors.stats import count_excess, count_shortfall, cusum_onset, recovery
from paytriage.domain.findings import Finding, QueryRef, Severity


class Queries(StrictModel):
    """``{by}`` is the full grouping (all dimensions): slices are summed in memory."""

    attempts: EnvStr = "sum by ({by}) (increase(payment_authorizations_total[{window}]))"
    # How long ago a slice's series last reported: at most ``max_staleness`` (``{staleness}``)
    # where its data is fresh, above it or no value where it is not. The default says only
    # whether a sample came in within ``max_staleness`` (0 if one did, no value if none did):
    # present_over_time costs Prometheus a fifteenth of what timestamp() does over a range
    # (at 10x the reference cardinality 2 ms a step against 30, which timed the backtest
    # out). ``time() - max by ({by}) (timestamp(payment_authorizations_total))`` is the age.
    last_sample_age: EnvStr = (
        "0 * max by ({by}) (present_over_time(payment_authorizations_total[{staleness}]))"
    )


class Config(DetectorConfig):
    id: Literal["traffic_drop"] = "traffic_drop"
    severity: Severity = Severity.critical
    queries: Queries = Queries()
    dimensions: DimensionList = Field(default_factory=lambda: ["country", "psp"])
    window: PositiveDuration = "5m"  # type: ignore[assignment]
    short_window: PositiveDuration = Field(default=timedelta(minutes=2))
    for_: Duration = Field(default=timedelta(minutes=2), alias="for")
    baseline: BaselineConfig = BaselineConfig()
    max_drop_ratio: float = Field(
        default=0.5, gt=0, lt=1, description="page below this share of expected"
    )
    min_expected: float = Field(
        default=100, ge=1, description="expected events in the window to judge"
    )
    false_alarm_rate: float = Field(default=1e-6, gt=0, lt=0.5)
    max_staleness: PositiveDuration = "3m"  # type: ignore[assignment]
    dispersion: float = Field(
        default=0.01, ge=0, description="negative-binomial extra variance (mu + d mu^2)"
    )
    trailing: PositiveDuration = Field(
        default=timedelta(hours=1), description="fallback baseline when there is no history"
    )
    scale_window: PositiveDuration = Field(
        default=timedelta(hours=3),
        description="today against the history over this long scales the seasonal baseline",
    )
    sudden_window: PositiveDuration = Field(
        default=timedelta(minutes=30), description="the level a sudden drop is measured from"
    )
    max_sudden_ratio: float = Field(
        default=0.7,
        gt=0,
        lt=1,
        description="a drop must also fall below this share of the level just before it",
    )
    burst: PositiveDuration = Field(
        default=timedelta(minutes=5),
        description="a drop over the last three to this many minutes that stays significant "
        "without its two lowest minutes has persisted: it counts towards ``for`` from the first",
    )


HALF_POOL = 15
# A low quantile of the history around the same time: a past flash sale that ended a few
# minutes later than today's must not make today's normal traffic look like a drop.
POOL_QUANTILE = 0.2
SCALE_BUCKET = timedelta(minutes=15)
M = timedelta(minutes=1)


def signals(cfg: Config) -> dict[str, str]:
    by = ", ".join(cfg.dimensions)
    return {
        "attempts": cfg.queries.attempts.format(by=by, window=format_duration(cfg.window)),
        "attempts_short": cfg.queries.attempts.format(
            by=by, window=format_duration(cfg.short_window)
        ),
        "attempts_minute": last_minute(cfg.queries.attempts, cfg.short_window, by=by),
        "age": cfg.queries.last_sample_age.format(
            by=by, staleness=format_duration(cfg.max_staleness)
        ),
    }


def offsets(cfg: Config) -> tuple[Offset, ...]:
    return seasonal_offsets(cfg.baseline.weeks, cfg.baseline.days)


def history_signals(cfg: Config) -> set[str]:
    """The signals read in past weeks and days (the others are fetched for the present)."""
    return {"attempts"}


def lookback(cfg: Config) -> timedelta:
    return max(cfg.trailing, cfg.scale_window, cfg.sudden_window) + cfg.window * 2


def _staleness(frame: Frame, cfg: Config, key: LabelKey, i: int, back: int = 0) -> str:
    """ "none", "partial" or "all": are the fine series of this slice missing or too old at
    index i, or (``"recent"``) at any of the ``back`` indices before it?"""
    limit = cfg.max_staleness.total_seconds()
    attempts = frame.present("attempts")
    stale = fresh = 0
    was_stale = False
    for fine, arr in frame.members("age", key).items():
        seen = attempts.get(fine, arr)
        was_there = bool(np.isfinite(seen[max(0, i - 30) : i]).any())
        v = arr[i] if i < len(arr) else math.nan
        if (not math.isfinite(v) and was_there) or (math.isfinite(v) and v > limit):
            stale += 1
        elif math.isfinite(v):
            fresh += 1
        if back and not was_stale and was_there:
            past = arr[max(0, i - back) : i]
            was_stale = bool(np.any(~np.isfinite(past) | (past > limit)))
    if not stale:
        return "recent" if was_stale else "none"
    return "partial" if fresh else "all"


def _scales(cur: Cum, hist: Cum, back: int, gap: int, bucket: int, lo: int = 0) -> np.ndarray:
    """How today compares with a history block, at every index i of the frame from ``lo``
    on (NaN before it): the median ratio of ``bucket`` sums (today's mean over the block's)
    over ``[i - gap - back, i - gap)``, buckets laid from the start of that range, so a flash
    sale or an earlier incident in either does not skew it. NaN where no bucket has half its
    points on both sides."""
    n = len(cur.values)
    out = np.full(n, np.nan)
    i = np.arange(max(lo, 0), n)
    starts = np.maximum(i - gap - back, 0)[:, None] + bucket * np.arange(back // bucket + 1)
    ends = starts + bucket
    cs, cn = cur.sums(starts, ends)
    hs, hn = hist.sums(starts, ends)
    ok = (ends <= (i - gap)[:, None]) & (cn >= bucket // 2) & (hn >= bucket // 2) & (hs > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.where(ok, (cs / cn) / (hs / hn), np.nan)
    if len(i) == 1:  # the live cycle's one index: numpy's median of what is there
        row = ratios[0][ok[0]]
        out[i] = np.median(row) if len(row) else np.nan
    else:
        out[i] = nanquantile_rows(ratios, 0.5)
    return out


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
            scale = frame.series(
                ("traffic_drop.scale", dims, key, k, frame.steps(cfg.scale_window), w, bucket),
                functools.partial(_scales, cur, hist, frame.steps(cfg.scale_window), w, bucket),
                i,
            )[i]
            if math.isfinite(scale):
                scales.append(scale)
        if len(values) >= (cfg.baseline.min_weeks if kind == "weekly" else 1):
            scale = min(max(statistics.median(scales), 0.5), 2.0) if scales else 1.0
            return statistics.median(values) * scale, kind
    s, n = cur.sum(recent_lo, recent_hi)
    if n < frame.steps(cfg.trailing) // 2:
        return math.nan, "none"
    return s / n, "trailing"


def assess(
    cfg: Config, frame: Frame, i: int, active: frozenset[LabelKey] = frozenset()
) -> list[Assessment]:
    sigs = signals(cfg)
    out: list[Assessment] = []
    stale_slices: list[tuple[LabelKey, str]] = []
    for dim in cfg.dimensions:
        dims = (dim,)
        attempts = frame.rolled("attempts", 0, dims)
        for key, arr in attempts.items():
            where = ", ".join(f"{k}={v}" for k, v in key)
            # Back over the window: minutes from before the data came back are incomplete.
            staleness = _staleness(frame, cfg, key, i, back=frame.steps(cfg.window) + 1)
            if staleness == "all":
                stale_slices.append((key, where))
            if staleness != "none":
                continue  # missing data is never read as a drop
            if not _complete(frame, key, i, frame.steps(max(cfg.window, cfg.burst))):
                continue
            obs = float(arr[i]) if math.isfinite(arr[i]) else math.nan
            expected, kind = _expected(frame, cfg, dims, key, i)
            if not (math.isfinite(obs) and math.isfinite(expected)):
                continue
            if expected < cfg.min_expected:
                continue
            test = count_shortfall(
                obs, expected, dispersion=cfg.dispersion, alpha=cfg.false_alarm_rate
            )
            recent_low = _last_minute_low(frame, cfg, dims, key, i, expected)
            ratio = obs / expected
            # A checkout that breaks falls off a cliff: attempts are also far below the
            # half hour before. A baseline that is simply off (yesterday's flash sale, a
            # Sunday compared with a Monday) shows no such cliff and does not page.
            recent = _recent_level(frame, cfg, dims, key, i)
            sudden = not math.isfinite(recent) or obs < cfg.max_sudden_ratio * recent
            breach = test.significant and ratio < cfg.max_drop_ratio and recent_low and sudden
            since = _burst_since(frame, cfg, dims, key, i, expected, recent)
            breach = breach or since is not None
            if not (breach or key in active):
                continue
            holding, back = _recovery(frame, cfg, dims, key, i, expected, ratio)
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
            out.append(
                Assessment(
                    key,
                    breach,
                    holding,
                    finding,
                    since=None if since is None else frame.when(since),
                    recovered_since=None if holding else back,
                )
            )
    # A slice whose every series went quiet is a data problem; when every slice did, the
    # whole source is: one report, not one per country.
    if stale_slices and _staleness(frame, cfg, (), i) == "all":
        out.append(_data_problem(cfg, frame, (), "all payments", i, sigs))
    else:
        out.extend(_data_problem(cfg, frame, k, w, i, sigs) for k, w in stale_slices)
    return out


def _minute_counts(
    frame: Frame, cfg: Config, dims: tuple[str, ...], key: LabelKey, i: int, n: int
) -> np.ndarray | None:
    counts = minute_counts(
        frame,
        "attempts_minute",
        "attempts_minute",
        dims,
        key,
        i,
        n,
        reference="attempts",
        window=cfg.window,
        allow_empty=True,
    )
    return None if counts is None else counts[0]


def _low(cfg: Config, observed: float, expected: float) -> bool:
    """Below ``max_drop_ratio`` of expected and unlikely on its own (``MINUTE_ALPHA``)."""
    if observed >= cfg.max_drop_ratio * expected:
        return False
    test = count_shortfall(observed, expected, dispersion=cfg.dispersion, alpha=MINUTE_ALPHA)
    return test.significant


def _last_minute_low(
    frame: Frame, cfg: Config, dims: tuple[str, ...], key: LabelKey, i: int, expected: float
) -> bool:
    """Is the drop still on in the last minute? True when that minute has no value."""
    obs = _minute_counts(frame, cfg, dims, key, i, 1)
    return obs is None or _low(cfg, float(obs[0]), expected * (M / cfg.window))


def _recovery(
    frame: Frame,
    cfg: Config,
    dims: tuple[str, ...],
    key: LabelKey,
    i: int,
    expected: float,
    ratio: float,
) -> tuple[bool, datetime | None]:
    """Does a raised drop still hold, and if not, since when is traffic back?

    Read over the last ``recovery_window`` minutes, pooled: attempts still below the
    holding ratio (midway between ``max_drop_ratio`` and normal) of expected, and
    improbably so (``recovery_alpha``). The 5-minute window still holds a checkout that
    came back minutes ago. Traffic is back since minute ``j`` when the minutes since are
    above the holding ratio and improbably many (``CHANGE_ALPHA``) for the level of the
    ``recovery_window`` before them, the most improbable such change
    (``detectors.stats.recovery``). Without minute data,
    the window's ratio decides.
    """
    hold = (1 + cfg.max_drop_ratio) / 2
    n = max(1, round(cfg.recovery_window / M))
    counts = _minute_counts(frame, cfg, dims, key, i, 2 * n)
    if counts is None:
        counts = _minute_counts(frame, cfg, dims, key, i, n)
        if counts is None:
            return ratio < hold, None
    per = expected * (M / cfg.window)
    cum = np.cumsum(counts)

    def low(k: int) -> bool:
        obs, exp = float(cum[k - 1]), per * k
        if obs >= hold * exp:
            return False
        test = count_shortfall(obs, exp, dispersion=cfg.dispersion, alpha=cfg.recovery_alpha)
        return test.significant

    def back_since(j: int) -> float | None:
        if j + n >= len(counts) or cum[j] < hold * per * (j + 1):  # not back above the hold
            return None
        before = float(cum[j + n] - cum[j]) / n  # a minute's attempts just before
        rise = count_excess(
            float(cum[j]), before * (j + 1), dispersion=cfg.dispersion, alpha=CHANGE_ALPHA
        )
        return rise.p_value if rise.significant else None

    rec = recovery(low, back_since, n)
    if rec.holding:
        return True, None
    return False, frame.when(max(0, i - rec.back * frame.steps(M)))


def _burst_since(
    frame: Frame,
    cfg: Config,
    dims: tuple[str, ...],
    key: LabelKey,
    i: int,
    expected: float,
    recent: float,
) -> int | None:
    """The first of the last k minutes (three up to ``burst``) that hold a drop which has
    persisted, as ``detectors.signals.burst_since`` does for ratios: the total improbably low,
    below ``max_sudden_ratio`` of the level before, and what is left once the two lowest
    minutes are set aside still low on its own (a two-minute dip is all in those two)."""
    n = max(1, round(cfg.burst / M))
    obs_all = _minute_counts(frame, cfg, dims, key, i, n)
    if obs_all is None or not math.isfinite(recent):
        return None
    exp_each = expected * (M / cfg.window)
    idx = frame.whole_windows(i, M, cfg.burst)
    for k in range(BLIP_MINUTES + 1, n + 1):
        obs = obs_all[:k]
        if obs.sum() >= cfg.max_sudden_ratio * recent * (k * M / cfg.window):
            continue
        rest = np.sort(obs)[BLIP_MINUTES:]
        if not _low(cfg, float(rest.sum()), exp_each * len(rest)):
            continue
        total = count_shortfall(
            float(obs.sum()), exp_each * k, dispersion=cfg.dispersion, alpha=cfg.false_alarm_rate
        )
        if total.significant:
            return int(idx[k - 1])
    return None


def _complete(frame: Frame, key: LabelKey, i: int, back: int) -> bool:
    """Did every series of the slice that reported in the half hour before report in each
    of the last ``back`` minutes? A scrape gap shows in the counts minutes before it is old
    enough to count as stale, and a slice summed without one of its parts is not a drop."""
    lo = max(0, i - back)
    for arr in frame.members("attempts_minute", key).values():
        if np.isfinite(arr[max(0, lo - 30) : lo]).any() and not np.isfinite(arr[lo : i + 1]).all():
            return False
    return True


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


FOLLOW_UPS = {
    "": [
        (
            "Lost checkouts",
            "Estimate the checkouts lost on {where} against the expected traffic (the "
            "detector's expected level, in the evidence) with product analytics.",
        ),
        (
            "Merchant communication about the outage",
            "Tell affected merchants when payments on {where} were unavailable, and that it "
            "is resolved.",
        ),
    ],
}
"""Money follow-ups for the postmortem."""


# What a drop cost: the attempts that did not come, against the same window a week earlier.
IMPACT = (
    ImpactLine(
        "payment attempts that did not come",
        "sum by ({by}) (increase(payment_authorizations_total{{{matchers}}}[{window}]{offset}))",
        shortfall=True,
    ),
)


DETECTOR = Detector(
    id="traffic_drop",
    config=Config,
    signals=signals,
    offsets=offsets,
    lookback=lookback,
    assess=assess,
    onset=onset,
    history_signals=history_signals,
    chart=Chart("attempts"),
    impact=IMPACT,
    follow_ups=FOLLOW_UPS,
)
