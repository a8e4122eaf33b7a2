"""webhook_lag: P95 processing lag, oldest backlog age and first-try failures per PSP.

A PSP breaches when any of these holds, each judged on data, not on one sample:

- the P95 lag over ``window`` is above the SLO (``slo_p95_seconds``) and above
  ``baseline_factor`` times its own recent median (a PSP that always runs at 50 s is not news
  at 61 s; one that runs at 5 s and jumps to 90 s is);
- the oldest unprocessed delivery is older than ``max_backlog_age_seconds`` (the queue is
  stuck even if the few events that get through are fast); the age itself shows how long
  it has been past the limit, which counts towards ``for``;
- first-try failures are significantly above ``max_first_try_failure_ratio`` (binomial tail
  at ``false_alarm_rate``) with at least ``min_events`` processed.

A raised PSP holds while the last minute's P95, the queue's age now or its recent first-try
failures are still out of band (``_holding``): until its backlog has drained.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Literal

import numpy as np
from pydantic import Field

from paytriage.core.types import Duration, EnvStr, PositiveDuration, StrictModel, format_duration
from paytriage.detectors.base import Assessment, Chart, Detector, DetectorConfig, ImpactLine
from paytriage.detectors.signals import (
    PRESENT,
    Frame,
    LabelKey,
    Offset,
    dims_of,
    last_minute,
    ratio_recovery,
)
from paytriage.detectors.stats import cusum_onset, proportion_excess
from paytriage.domain.findings import Finding, QueryRef


class Queries(StrictModel):
    lag_p95: EnvStr = (
        "histogram_quantile(0.95, sum by (psp, le) "
        "(rate(webhook_processing_lag_seconds_bucket[{window}])))"
    )
    backlog_oldest_age: EnvStr = "max by (psp) (webhook_backlog_oldest_age_seconds)"
    received: EnvStr = "sum by (psp) (increase(webhook_events_received_total[{window}]))"
    failed: EnvStr = (
        'sum by (psp) (increase(webhook_events_processed_total{{outcome="failed"}}[{window}]))'
    )
    processed: EnvStr = "sum by (psp) (increase(webhook_events_processed_total[{window}]))"


class Config(DetectorConfig):
    id: Literal["webhook_lag"] = "webhook_lag"
    queries: Queries = Queries()
    window: PositiveDuration = "5m"  # type: ignore[assignment]
    for_: Duration = Field(default=timedelta(minutes=1), alias="for")
    slo_p95_seconds: float = Field(default=60.0, gt=0, description="P95 lag objective")
    baseline_factor: float = Field(default=2.0, ge=1, description="P95 rise over its median")
    max_backlog_age_seconds: float = Field(default=120.0, gt=0)
    max_first_try_failure_ratio: float = Field(default=0.02, gt=0, lt=1)
    min_events: int = Field(default=50, ge=1)
    false_alarm_rate: float = Field(default=1e-6, gt=0, lt=0.5)
    trailing: PositiveDuration = Field(default=timedelta(hours=2))


SHORT_WINDOW = timedelta(minutes=2)  # ``last_minute``'s fallback: one scrape and a step


def signals(cfg: Config) -> dict[str, str]:
    w = format_duration(cfg.window)
    q = cfg.queries
    return {
        "lag_p95": q.lag_p95.format(window=w),
        "backlog_oldest_age": q.backlog_oldest_age.format(window=w),
        "failed": q.failed.format(window=w),
        "processed": q.processed.format(window=w),
        # What a raised finding holds on: the last minute (the last increment where the
        # scrape interval leaves one sample a minute, as for the other detectors).
        "lag_p95_short": last_minute(q.lag_p95, SHORT_WINDOW),
        "failed_short": last_minute(q.failed, SHORT_WINDOW),
        "processed_short": last_minute(q.processed, SHORT_WINDOW),
    }


def offsets(cfg: Config) -> tuple[Offset, ...]:
    return (PRESENT,)


def lookback(cfg: Config) -> timedelta:
    return cfg.trailing + cfg.window


def _median_before(frame: Frame, name: str, key: LabelKey, i: int, cfg: Config) -> float:
    arr = frame.present(name).get(key)
    if arr is None:
        return math.nan
    lo, hi = max(0, i - frame.steps(cfg.trailing)), max(0, i - frame.steps(cfg.window) * 3)
    chunk = arr[lo:hi]
    chunk = chunk[np.isfinite(chunk)]
    return float(np.median(chunk)) if len(chunk) >= 10 else math.nan


def assess(
    cfg: Config, frame: Frame, i: int, active: frozenset[LabelKey] = frozenset()
) -> list[Assessment]:
    sigs = signals(cfg)
    keys = set(frame.present("lag_p95")) | set(frame.present("backlog_oldest_age"))
    out = []
    for key in sorted(keys):
        p95 = frame.at("lag_p95", key, i)
        age = frame.at("backlog_oldest_age", key, i)
        processed = frame.at("processed", key, i)
        failed = frame.at("failed", key, i)
        usual = _median_before(frame, "lag_p95", key, i, cfg)
        reasons: list[str] = []
        slo = cfg.slo_p95_seconds
        if (
            math.isfinite(p95)
            and p95 > slo
            and (not math.isfinite(usual) or p95 > cfg.baseline_factor * usual)
        ):
            reasons.append(f"P95 lag {p95:,.0f}s (SLO {slo:g}s, usually {usual:,.0f}s)")
        since: datetime | None = None
        if math.isfinite(age) and age > cfg.max_backlog_age_seconds:
            reasons.append(f"oldest delivery waiting {age:,.0f}s")
            # The same delivery has been waiting all along: the queue has been stuck past
            # the limit for (age - limit), which counts towards ``for``.
            since = frame.when(i) - timedelta(seconds=age - cfg.max_backlog_age_seconds)
        ratio = math.nan
        if math.isfinite(processed) and processed >= cfg.min_events and math.isfinite(failed):
            ratio = failed / processed
            test = proportion_excess(
                failed, processed, cfg.max_first_try_failure_ratio, alpha=cfg.false_alarm_rate
            )
            if test.significant:
                reasons.append(f"{ratio:.1%} of deliveries failing first time")
        if not reasons and key not in active:
            continue
        holding = _holding(cfg, frame, key, i, ratio)
        dims = dims_of(key)
        where = ", ".join(f"{k}={v}" for k, v in dims.items()) or "all PSPs"
        start: datetime = frame.when(max(0, i - frame.steps(cfg.window)))
        title = f"Webhooks from {where} are backing up: " + (
            "; ".join(reasons) if reasons else "recovering"
        )
        finding = Finding(
            detector=cfg.id,
            severity=cfg.severity,
            dimensions=dims,
            title=title,
            observed=p95 if math.isfinite(p95) else age,
            expected=usual if math.isfinite(usual) else slo,
            band=(0.0, slo),
            onset=None,
            at=frame.when(i),
            unit="seconds",
            queries=tuple(
                QueryRef("prometheus", sigs[n], start, frame.when(i))
                for n in ("lag_p95", "backlog_oldest_age", "failed", "processed")
            ),
            details={
                "lag_p95_seconds": p95,
                "backlog_oldest_age_seconds": age,
                "first_try_failure_ratio": ratio,
                "processed": processed,
                "reasons": reasons,
                "window": format_duration(cfg.window),
            },
        )
        out.append(Assessment(key, bool(reasons), bool(holding), finding, since=since))
    return out


def _holding(cfg: Config, frame: Frame, key: LabelKey, i: int, ratio: float) -> list[str]:
    """What still keeps a raised PSP's finding open, read on the recent past: the last
    minute's P95 lag above three quarters of the SLO, the oldest delivery older than half
    the limit (a gauge: the queue now), first-try failures over the last
    ``recovery_window`` (pooled) above their limit, improbably so (``recovery_alpha``).
    The 5-minute P95 still holds a backlog minutes after it drained. A backlog that is
    still being worked off is still impact: deliveries are late until it is gone."""
    holding = []
    lag = frame.at("lag_p95_short", key, i)
    if math.isfinite(lag) and lag > 0.75 * cfg.slo_p95_seconds:
        holding.append("lag")
    age = frame.at("backlog_oldest_age", key, i)
    if math.isfinite(age) and age > 0.5 * cfg.max_backlog_age_seconds:
        holding.append("age")
    limit = cfg.max_first_try_failure_ratio
    rec = ratio_recovery(
        frame,
        key,
        i,
        span=cfg.recovery_window,
        floor=limit,
        expected=limit,
        alpha=cfg.recovery_alpha,
        window=cfg.window,
        num="failed_short",
        den="processed_short",
        reference="processed",
    )
    if rec.holding if rec is not None else ratio > limit:
        holding.append("failures")
    return holding


def onset(cfg: Config, frame: Frame, a: Assessment, i: int) -> datetime | None:
    """The backlog's start: when the oldest-age gauge began its climb."""
    arr = frame.present("backlog_oldest_age").get(a.key)
    if arr is None:
        return None
    lo = max(0, i - frame.steps(cfg.trailing))
    values = arr[lo : i + 1].tolist()
    start = cusum_onset(values, 0.0, spread=max(cfg.slo_p95_seconds / 4, 1.0), k=1.0)
    return frame.when(lo + start) if start is not None else None


FOLLOW_UPS = {
    "": [
        (
            "Reconcile payment states with PSP reports",
            "Compare the states of payments on {where} during the incident (authorized, "
            "captured, refunded, disputed) with the PSP's reports; replay missed webhooks and "
            "fix orders whose state is stale.",
        ),
    ],
}
"""Money follow-ups for the postmortem."""


# What a backlog cost: deliveries handled after the 60 s SLO (the histogram's 60 s bucket,
# written 60 or 60.0 by exporters) and deliveries that failed and will come again.
IMPACT = (
    ImpactLine(
        "webhook deliveries processed after 60 s",
        "sum by ({by}) (increase(webhook_processing_lag_seconds_count"
        "{{{matchers}}}[{window}]{offset}))"
        " - sum by ({by}) (increase(webhook_processing_lag_seconds_bucket"
        '{{le=~"60(\\\\.0)?"{and_matchers}}}[{window}]{offset}))',
    ),
    ImpactLine(
        "webhook deliveries that failed (the PSP sends them again)",
        "sum by ({by}) (increase(webhook_events_processed_total"
        '{{outcome="failed"{and_matchers}}}[{window}]{offset}))',
    ),
)


DETECTOR = Detector(
    id="webhook_lag",
    config=Config,
    signals=signals,
    offsets=offsets,
    lookback=lookback,
    assess=assess,
    onset=onset,
    chart=Chart("lag_p95"),
    impact=IMPACT,
    follow_ups=FOLLOW_UPS,
)
