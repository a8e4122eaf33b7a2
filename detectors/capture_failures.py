"""capture_failures: capture failure ratio per PSP against the 99.5 % success target.

Volume-aware: a PSP breaches when its failures over ``window`` are improbable under the
failure rate the objective allows (binomial upper tail at ``false_alarm_rate``), the ratio is
at least ``min_ratio_of_allowance`` times that allowance, and the last ``short_window`` is
still failing (so a burst that is over does not page). Ten failures out of 300 captures is
noise at 99.5 %; 100 out of 3,000 is not. A smaller excess at a small PSP that persists is
judged over ``long_window`` instead, with each of the last three windows still failing:
against the allowance, or against the PSP's own failure rate over the ``baseline`` before
(beta-binomial, with the overdispersion of its windows) when it is cleaner than the
allowance, so 1 % failing at a PSP that fails 0.2 % of its 200 captures every 5 minutes is
raised within the half hour, while the same 1 % at a PSP that always fails 0.8 % is only
judged against the allowance. These persistent tests run at ``sustained_false_alarm_rate``.
A raised PSP holds on its last minutes, not on those windows (``_recovery``).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Literal

import numpy as np
from pydantic import Field

from paytriage.core.types import Duration, EnvStr, PositiveDuration, StrictModel, format_duration
from paytriage.detectors.base import Assessment, Chart, Detector, DetectorConfig, RatioQueries
from paytriage.detectors.signals import (
    PRESENT,
    Frame,
    LabelKey,
    Offset,
    burst_since,
    dims_of,
    last_minute,
    last_minute_high,
    ratio_onset,
    ratio_recovery,
)
from paytriage.detectors.stats import estimate_overdispersion, proportion_excess
from paytriage.domain.findings import Finding, QueryRef, Severity


class Queries(StrictModel):
    attempts: EnvStr = "sum by (psp) (increase(payment_captures_total[{window}]))"
    failures: EnvStr = (
        'sum by (psp) (increase(payment_captures_total{{outcome="failed"}}[{window}]))'
    )


class Config(DetectorConfig):
    id: Literal["capture_failures"] = "capture_failures"
    severity: Severity = Severity.critical
    queries: Queries = Queries()
    window: PositiveDuration = "5m"  # type: ignore[assignment]
    short_window: PositiveDuration = Field(default=timedelta(minutes=2))
    for_: Duration = Field(default=timedelta(minutes=2), alias="for")
    objective: float = Field(default=0.995, gt=0, lt=1, description="capture success target")
    min_attempts: int = Field(default=100, ge=1)
    min_ratio_of_allowance: float = Field(
        default=2.0, ge=1, description="failure ratio must reach this multiple of 1 - objective"
    )
    false_alarm_rate: float = Field(default=1e-6, gt=0, lt=0.5)
    sustained_false_alarm_rate: float = Field(
        default=1e-5,
        gt=0,
        lt=0.5,
        description="for the excess that persists (each of the last three windows failing "
        "is itself rare by chance)",
    )
    long_window: PositiveDuration = Field(
        default=timedelta(minutes=30),
        description="a smaller excess that persists is judged over this long (whole windows)",
    )
    baseline: PositiveDuration = Field(
        default=timedelta(hours=6),
        description="the PSP's own failure rate is read over this, before long_window",
    )
    burst: PositiveDuration = Field(
        default=timedelta(minutes=5),
        description="failures over the last three to this many minutes that stay "
        "significant without their two worst minutes have persisted: they count towards "
        "``for`` from the first",
    )


def signals(cfg: Config) -> dict[str, str]:
    w = format_duration(cfg.window)
    return {
        "attempts": cfg.queries.attempts.format(window=w),
        "failures": cfg.queries.failures.format(window=w),
        "attempts_short": last_minute(cfg.queries.attempts, cfg.short_window),
        "failures_short": last_minute(cfg.queries.failures, cfg.short_window),
    }


def offsets(cfg: Config) -> tuple[Offset, ...]:
    return (PRESENT,)


def lookback(cfg: Config) -> timedelta:
    return cfg.long_window + cfg.baseline + cfg.window


def _own_rate(cfg: Config, frame: Frame, key: LabelKey, i: int) -> tuple[float, float] | None:
    """The PSP's failure rate and overdispersion over the whole windows of ``baseline``
    that end before ``long_window`` (a problem under way is not its own baseline; one in
    the baseline only makes it more tolerant). One failure's worth of the allowance is
    added to the pooled counts, so a PSP without failures is not held to a rate of zero.
    None when under half of ``baseline`` has data, or under ``min_attempts`` in all."""
    end = i - frame.steps(cfg.long_window)
    if end < 0:
        return None
    idx = frame.whole_windows(end, cfg.window, cfg.baseline)
    a_arr, f_arr = frame.present("attempts").get(key), frame.present("failures").get(key)
    if a_arr is None or f_arr is None:
        return None
    a, f = a_arr[idx], np.nan_to_num(f_arr[idx])
    ok = np.isfinite(a) & (a > 0)
    if ok.sum() < max(3, round(cfg.baseline / cfg.window) / 2) or a[ok].sum() < cfg.min_attempts:
        return None
    rate = (float(f[ok].sum()) + 1) / (float(a[ok].sum()) + 1 / (1 - cfg.objective))
    return rate, estimate_overdispersion(f[ok], a[ok])


def _sustained(
    cfg: Config, frame: Frame, key: LabelKey, i: int, floor: float, hold_level: float
) -> bool:
    """A smaller excess that persists: each of the last three windows above the holding level
    (a short burst touches at most two of them), and significant with a ratio above the floor
    over those 15 minutes or over all of ``long_window`` (whole windows), against the
    allowance or the PSP's own lower rate (:func:`_own_rate`)."""
    idx = frame.whole_windows(i, cfg.window, cfg.long_window)
    a_arr, f_arr = frame.present("attempts").get(key), frame.present("failures").get(key)
    if a_arr is None or f_arr is None or len(idx) < 3:
        return False
    a, f = a_arr[idx], np.nan_to_num(f_arr[idx])
    if not np.isfinite(a).all():
        return False
    with np.errstate(divide="ignore", invalid="ignore"):
        if not bool(np.all(f[:3] / a[:3] >= hold_level)):
            return False
    nulls = [(1 - cfg.objective, 0.0)]
    own = _own_rate(cfg, frame, key, i)
    if own is not None and own[0] < nulls[0][0]:
        nulls.append(own)
    for n_w in sorted({3, len(idx)}):  # the last 15 minutes, then all of long_window
        la, lf = float(a[:n_w].sum()), float(f[:n_w].sum())
        if la < cfg.min_attempts or lf / la < floor:
            continue
        for rate, rho in nulls:
            test = proportion_excess(
                lf, la, rate, overdispersion=rho, alpha=cfg.sustained_false_alarm_rate
            )
            if test.significant:
                return True
    return False


def assess(
    cfg: Config, frame: Frame, i: int, active: frozenset[LabelKey] = frozenset()
) -> list[Assessment]:
    allowance = 1 - cfg.objective
    sigs = signals(cfg)
    out = []
    for key in frame.present("attempts"):
        a, f = frame.at("attempts", key, i), frame.at("failures", key, i)
        if not (math.isfinite(a) and a >= cfg.min_attempts):
            continue
        f = f if math.isfinite(f) else 0.0
        test = proportion_excess(f, a, allowance, alpha=cfg.false_alarm_rate)
        ratio = f / a
        recent = last_minute_high(
            frame, key, i, floor=allowance, expected=allowance, window=cfg.window
        )
        floor = cfg.min_ratio_of_allowance * allowance
        hold_level = allowance * (1 + cfg.min_ratio_of_allowance) / 2
        breach = test.significant and ratio >= floor and recent
        since = burst_since(
            frame,
            key,
            i,
            span=cfg.burst,
            floor=floor,
            expected=allowance,
            alpha=cfg.false_alarm_rate,
            min_den=cfg.min_attempts,
            window=cfg.window,
        )
        breach = breach or since is not None
        if not breach:
            breach = _sustained(cfg, frame, key, i, floor, hold_level)
        if not (breach or key in active):
            continue
        holding, back = _recovery(cfg, frame, key, i, ratio, hold_level)
        dims = dims_of(key)
        where = ", ".join(f"{k}={v}" for k, v in dims.items()) or "all PSPs"
        start: datetime = frame.when(max(0, i - frame.steps(cfg.window)))
        finding = Finding(
            detector=cfg.id,
            severity=cfg.severity,
            dimensions=dims,
            title=(
                f"Captures failing at {where}: {ratio:.2%} failed "
                f"({f:,.0f} of {a:,.0f} in {format_duration(cfg.window)}; target under "
                f"{allowance:.1%})"
            ),
            observed=ratio,
            expected=allowance,
            band=(test.lower, test.upper),
            onset=None,
            at=frame.when(i),
            unit="ratio",
            queries=tuple(
                QueryRef("prometheus", sigs[n], start, frame.when(i))
                for n in ("attempts", "failures")
            ),
            details={
                "attempts": a,
                "failures": f,
                "p_value": test.p_value,
                "objective": cfg.objective,
                "window": format_duration(cfg.window),
            },
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
    return out


def _recovery(
    cfg: Config, frame: Frame, key: LabelKey, i: int, ratio: float, hold_level: float
) -> tuple[bool, datetime | None]:
    """Does a raised PSP still hold, and if not, since when are its captures back?

    Read over the last ``recovery_window`` minutes (longer for a PSP with few captures, up
    to ``long_window``: ``detectors.signals.ratio_recovery``), pooled: failures still at or
    above the holding level (midway between the allowance and the paging floor) and
    improbable under the allowance, or under the PSP's own rate where that is cleaner (as
    the sustained test judges it), at ``recovery_alpha``. The 5-minute and 30-minute
    windows that raised it still hold a problem minutes after it ended. Without minute
    data, the 5-minute ratio against the holding level decides.
    """
    null, rho = 1 - cfg.objective, 0.0
    own = _own_rate(cfg, frame, key, i)
    if own is not None and own[0] < null:
        null, rho = own
    rec = ratio_recovery(
        frame,
        key,
        i,
        span=cfg.recovery_window,
        floor=hold_level,
        expected=null,
        alpha=cfg.recovery_alpha,
        window=cfg.window,
        max_span=cfg.long_window,
        overdispersion=rho,
        change_overdispersion=0.0,  # the own windows' spread at a tenth of the rate: not this
    )
    if rec is None:
        return ratio >= hold_level, None
    if rec.holding:
        return True, None
    return False, frame.when(max(0, i - rec.back * frame.steps(timedelta(minutes=1))))


def onset(cfg: Config, frame: Frame, a: Assessment, i: int) -> datetime | None:
    return ratio_onset(
        frame,
        "failures_short",
        "attempts_short",
        a.key,
        a.finding.expected,
        i,
        lookback=lookback(cfg),
        short_window=cfg.short_window,
    )


CAPTURES = RatioQueries(
    numerator='sum by ({by}) (increase(payment_captures_total{{outcome="failed"{and_matchers}}}'
    "[{window}]{offset}))",
    denominator="sum by ({by}) (increase(payment_captures_total{{{matchers}}}[{window}]{offset}))",
    labels=("psp",),
)
"""Failed captures over all captures (``payment_captures_total`` only has ``psp``)."""


FOLLOW_UPS = {
    "": [
        (
            "Captures to retry before authorizations expire",
            "List the captures that failed on {where} and retry them before their "
            "authorizations expire (check each scheme's and PSP's validity period); release "
            "the authorizations that will not be captured.",
        ),
        (
            "Reconcile captured amounts",
            "Compare captured amounts with the PSP's settlement report: no capture missing, "
            "none duplicated by a retry, partial captures as intended.",
        ),
    ],
}
"""Money follow-ups for the postmortem."""


DETECTOR = Detector(
    id="capture_failures",
    config=Config,
    signals=signals,
    offsets=offsets,
    lookback=lookback,
    assess=assess,
    onset=onset,
    chart=Chart("failures", per="attempts"),
    ratio=CAPTURES,
    follow_ups=FOLLOW_UPS,
)
