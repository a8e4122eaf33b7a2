"""refund_sla: refunds completed outside / pending past the 24 h SLA, with burn-rate windows.

Bad events are refunds that missed the SLA: completed late (``within_sla="false"``) plus
the rise of refunds pending past it; the total is refunds requested in the same window (the
demand, which does not collapse when the worker stalls, unlike completions). Paging follows
the SRE workbook's multi-window, multi-burn-rate method against the objective (95 % within
24 h): a window pair fires when both its long and short window burn the error budget at
least ``burn_rate`` times too fast and the long window holds ``min_bad_events``.

An SLA of a day makes burn rates slow to move, so the detector also watches the drain: when
completions over ``drain_short``, ``drain_window`` or ``drain_reference`` fall below
``min_drain_ratio`` of the request rate over ``drain_reference``, improbably so (Poisson
lower tail), refunds are piling up and will breach; the finding forecasts how many at the
current drain rate. A slower stall (half the refunds completing) is told from noise by the
PSP's own pace: the requests' share of requests plus completions over the same window,
against the share and overdispersion of its past windows (beta-binomial upper tail). At a
PSP with a few dozen refunds an hour such a stall is too small to tell from the counts in
time, but the refunds it leaves past the SLA are not: refunds pending past it, per request,
far above their own level over the past days (and at least ``pending_burn_rate`` times the
error budget of the hour's requests) while completions trail requests page too.

A raised PSP holds while its completions trail its requests and one of those tests still
holds at the lenient ``recovery_alpha`` (``_holding``); not on the burn rates, which the late
completions of a worked-off backlog keep up for an hour or more.
"""

from __future__ import annotations

import functools
import math
import warnings
from datetime import datetime, timedelta
from statistics import NormalDist
from typing import Literal

import numpy as np
from pydantic import Field

from paytriage.core.types import Duration, EnvStr, PositiveDuration, StrictModel, format_duration
from paytriage.detectors.base import Assessment, Chart, Detector, DetectorConfig, ImpactLine
from paytriage.detectors.signals import PRESENT, Frame, LabelKey, Offset, dims_of
from paytriage.detectors.stats import (
    burn_rate,
    count_shortfall,
    estimate_overdispersion,
    proportion_excess,
)
from paytriage.domain.findings import Finding, QueryRef, Severity


class Queries(StrictModel):
    completed: EnvStr = "sum by (psp) (increase(refunds_completed_total[{window}]))"
    completed_late: EnvStr = (
        'sum by (psp) (increase(refunds_completed_total{{within_sla="false"}}[{window}]))'
    )
    requested: EnvStr = "sum by (psp) (increase(refunds_requested_total[{window}]))"
    pending_over_sla: EnvStr = "sum by (psp) (refunds_pending_over_sla)"


class BurnWindow(StrictModel):
    """One multi-window, multi-burn-rate alert (SRE workbook): long and short window."""

    long: PositiveDuration
    short: PositiveDuration
    burn_rate: float = Field(gt=0)
    severity: str = "page"


def _default_windows() -> list[BurnWindow]:
    return [
        BurnWindow(long=timedelta(hours=1), short=timedelta(minutes=5), burn_rate=14.4),
        BurnWindow(long=timedelta(hours=6), short=timedelta(minutes=30), burn_rate=6),
        BurnWindow(
            long=timedelta(days=3), short=timedelta(hours=6), burn_rate=1, severity="ticket"
        ),
    ]


class Config(DetectorConfig):
    id: Literal["refund_sla"] = "refund_sla"
    severity: Severity = Severity.error
    interval: Duration = Field(default=timedelta(minutes=1))
    for_: Duration = Field(default=timedelta(minutes=5), alias="for")
    recovery_window: PositiveDuration = Field(
        default=timedelta(minutes=30),
        description="a raised finding holds while completions over this window still fall "
        "short of the requests in it (a few refunds a minute: minutes hold too few to tell)",
    )
    queries: Queries = Queries()
    objective: float = Field(default=0.95, gt=0, lt=1, description="share completed within SLA")
    sla: PositiveDuration = "24h"  # type: ignore[assignment]
    burn_windows: list[BurnWindow] = Field(default_factory=_default_windows)
    min_bad_events: int = Field(default=5, ge=0, description="bad events in the long window")
    drain_window: PositiveDuration = Field(default=timedelta(minutes=30))
    drain_short: PositiveDuration = Field(default=timedelta(minutes=15))
    min_drain_ratio: float = Field(
        default=0.5, gt=0, lt=1, description="completions per request below this: not draining"
    )
    min_requests: int = Field(
        default=10, ge=1, description="requests over drain_reference to judge the drain"
    )
    drain_reference: PositiveDuration = Field(
        default=timedelta(hours=1), description="the request rate completions must keep up with"
    )
    drain_false_alarm_rate: float = Field(default=1e-4, gt=0, lt=0.5)
    pending_window: PositiveDuration = Field(
        default=timedelta(minutes=15),
        description="refunds pending past the SLA are read as their median over this",
    )
    pending_burn_rate: float = Field(
        default=2.0,
        gt=0,
        description="pending refunds above their usual level, per error budget of the "
        "hour's requests, needed to page",
    )
    min_history_windows: int = Field(
        default=20,
        ge=3,
        description="past windows that calibrate the same-window drain test (else not run)",
    )


def _windows(cfg: Config) -> list[timedelta]:
    ws = {cfg.drain_window, cfg.drain_short, cfg.drain_reference, cfg.recovery_window}
    for b in cfg.burn_windows:
        ws |= {b.long, b.short}
    return sorted(ws)


@functools.lru_cache(maxsize=256)
def _name(kind: str, w: timedelta) -> str:
    """The signal name of ``kind`` over ``w`` (kept: every slice asks at every step)."""
    return f"{kind}_{format_duration(w)}"


def signals(cfg: Config) -> dict[str, str]:
    q = cfg.queries
    out = {"pending_over_sla": q.pending_over_sla.format(window="")}
    for w in _windows(cfg):
        text = format_duration(w)
        out[_name("requested", w)] = q.requested.format(window=text)
        out[_name("late", w)] = q.completed_late.format(window=text)
        out[_name("completed", w)] = q.completed.format(window=text)
    return out


def offsets(cfg: Config) -> tuple[Offset, ...]:
    return (PRESENT,)


def lookback(cfg: Config) -> timedelta:
    return max(b.long for b in cfg.burn_windows) if cfg.burn_windows else cfg.drain_window


def _pending_rise(frame: Frame, key: LabelKey, i: int, w: timedelta) -> float:
    arr = frame.present("pending_over_sla").get(key)
    if arr is None or i >= len(arr) or not math.isfinite(arr[i]):
        return 0.0
    back = arr[max(0, i - frame.steps(w)) : i + 1]
    back = back[np.isfinite(back)]
    return max(0.0, float(arr[i] - back.min())) if len(back) else 0.0


def _bad(frame: Frame, key: LabelKey, i: int, w: timedelta) -> tuple[float, float]:
    late = frame.at(_name("late", w), key, i)
    requested = frame.at(_name("requested", w), key, i)
    bad = (late if math.isfinite(late) else 0.0) + _pending_rise(frame, key, i, w)
    return bad, requested


def _stalled(cfg: Config, frame: Frame, key: LabelKey, i: int) -> bool:
    """Completions far below the request rate, improbably so.

    In a steady state completions keep pace with requests whatever the processing delay
    (what flows in flows out), so the completions over ``drain_short``, ``drain_window`` and
    ``drain_reference`` itself are compared with the requests over ``drain_reference``
    scaled to that window: a Poisson lower tail at ``drain_false_alarm_rate`` and a ratio
    below ``min_drain_ratio``. The short windows catch a busy PSP's stall in minutes; the
    hour catches it at a PSP with a handful of refunds an hour. Fifteen
    minutes without a completion where ten were due is a stall; seven of twenty-one in a
    lull after a surge of requests is not.
    """
    ref = frame.at(_name("requested", cfg.drain_reference), key, i)
    if not math.isfinite(ref) or ref < cfg.min_requests:
        return False
    for w in (cfg.drain_short, cfg.drain_window, cfg.drain_reference):
        done = frame.at(_name("completed", w), key, i)
        if not math.isfinite(done):
            continue
        due = ref * (w / cfg.drain_reference)
        if (
            done < cfg.min_drain_ratio * due
            and count_shortfall(
                done, due, dispersion=0.05, alpha=cfg.drain_false_alarm_rate
            ).significant
        ):
            return True
    return False


#: Past windows calibrating the same-window drain test end at least this long ago, so a
#: stall under way is not part of its own baseline.
_CALIBRATION_GAP = timedelta(hours=2)


def _calibration_ends(
    cfg: Config, frame: Frame, i: int, reach: timedelta, stride: int, earliest: int = 0
) -> np.ndarray:
    """Indices of the past windows that calibrate a test at i, newest first, ``stride``
    apart: from ``_CALIBRATION_GAP`` (or ``reach``, what the test reads at i, if longer)
    before i back to the lookback, none before ``earliest``; empty when there are none."""
    first = max(earliest, i - frame.steps(lookback(cfg)))
    last = i - frame.steps(max(_CALIBRATION_GAP, reach))
    return np.arange(last, first - 1, -stride) if last >= first else np.arange(0)


def _behind_own_pace(
    cfg: Config, frame: Frame, key: LabelKey, i: int, alpha: float | None = None
) -> bool:
    """Completions fell behind requests over the same window, beyond the PSP's own pace.

    Over ``drain_window`` and ``drain_reference``, requests ``r`` and completions ``d`` (at
    most ``min_drain_ratio`` of ``r``) are compared in one window, so a falling demand,
    which completions follow, is no stall. Under the PSP's normal pace ``r`` out of
    ``r + d`` is beta-binomial with the share and the overdispersion of its past windows
    (one window apart, from ``_CALIBRATION_GAP`` back to the lookback, ``min_requests``
    each): a PSP whose refunds complete in lumps has a wide spread and is not paged for a
    slow hour, a smooth one is, at ``drain_false_alarm_rate`` (or ``alpha``). Without
    ``min_history_windows`` past windows the test is not run.
    """
    for w in (cfg.drain_window, cfg.drain_reference):
        req = frame.present(_name("requested", w)).get(key)
        done = frame.present(_name("completed", w)).get(key)
        if req is None or done is None or i >= len(req) or i >= len(done):
            continue
        r, d = float(req[i]), float(done[i])
        if not (
            math.isfinite(r)
            and math.isfinite(d)
            and r >= cfg.min_requests
            and d < cfg.min_drain_ratio * r
        ):
            continue
        past = _calibration_ends(cfg, frame, i, w, frame.steps(w))
        behind, total = req[past], req[past] + done[past]
        with np.errstate(invalid="ignore"):
            ok = np.isfinite(total) & (req[past] >= cfg.min_requests) & (done[past] >= 0)
        if ok.sum() < cfg.min_history_windows:
            continue
        behind, total = behind[ok], total[ok]
        share = float(np.median(behind / total))
        rho = estimate_overdispersion(behind, total)
        if proportion_excess(
            r, r + d, share, overdispersion=rho, alpha=alpha or cfg.drain_false_alarm_rate
        ).significant:
            return True
    return False


def _breaches_piling_up(
    cfg: Config, frame: Frame, key: LabelKey, i: int, alpha: float | None = None
) -> tuple[float, float] | None:
    """How many refunds are pending past the SLA, and how many more than usual, when that
    pages; else None.

    The gauge, read as its median over ``pending_window`` and per request over the
    ``drain_reference`` hour (a busy hour has more of everything, a flash sale is no
    breach), is compared with the same ratio in past windows (one ``pending_window``
    apart, from ``_CALIBRATION_GAP`` back to the lookback): above their median by a robust
    z (1.4826 MAD) past ``drain_false_alarm_rate`` (or ``alpha``), by at least
    ``min_bad_events`` refunds
    and ``pending_burn_rate`` error budgets of the hour's requests, while completions
    trail requests over the hour (a backlog still growing, not one being worked off).
    """
    gauge = frame.present("pending_over_sla").get(key)
    req = frame.present(_name("requested", cfg.drain_reference)).get(key)
    done = frame.present(_name("completed", cfg.drain_reference)).get(key)
    if gauge is None or req is None or done is None or i >= min(len(gauge), len(req)):
        return None
    r, d = float(req[i]), float(done[i])
    if not (math.isfinite(r) and r >= cfg.min_requests and math.isfinite(d) and d < r):
        return None
    span = frame.steps(cfg.pending_window)
    if i + 1 < span:
        return None
    now = gauge[i + 1 - span : i + 1]
    if not np.isfinite(now).any():
        return None
    level = float(np.nanmedian(now))
    need = max(cfg.min_bad_events, cfg.pending_burn_rate * (1 - cfg.objective) * r)
    if level < need:  # cannot be that far above any usual level
        return None
    ends = _calibration_ends(cfg, frame, i, cfg.drain_reference, span, earliest=span - 1)
    if not len(ends):
        return None
    blocks = np.lib.stride_tricks.sliding_window_view(gauge[: ends[0] + 1], span)[ends + 1 - span]
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN block: left out
        past = np.nanmedian(blocks, axis=1) / np.maximum(req[ends], cfg.min_requests)
        past = past[np.isfinite(past) & (req[ends] >= cfg.min_requests)]
    if len(past) < cfg.min_history_windows:
        return None
    usual = float(np.median(past))
    spread = 1.4826 * float(np.median(np.abs(past - usual)))
    excess = (level / r - usual) * r  # refunds above the usual share of this hour's
    z = NormalDist().inv_cdf(1 - (alpha or cfg.drain_false_alarm_rate))
    if excess >= need and level / r - usual > z * spread:
        return level, excess
    return None


def assess(
    cfg: Config, frame: Frame, i: int, active: frozenset[LabelKey] = frozenset()
) -> list[Assessment]:
    sigs = signals(cfg)
    keys = set(frame.present("pending_over_sla")) | set(
        frame.present(_name("requested", cfg.drain_window))
    )
    out = []
    for key in sorted(keys):
        fired: BurnWindow | None = None
        burns: dict[str, float | None] = {}
        for b in cfg.burn_windows:
            bad_l, tot_l = _bad(frame, key, i, b.long)
            bad_s, tot_s = _bad(frame, key, i, b.short)
            rl = burn_rate(bad_l, tot_l, cfg.objective)
            rs = burn_rate(bad_s, tot_s, cfg.objective)
            burns[f"{format_duration(b.long)}/{format_duration(b.short)}"] = rl
            if (
                fired is None
                and b.severity == "page"
                and rl is not None
                and rs is not None
                and rl >= b.burn_rate
                and rs >= b.burn_rate
                and bad_l >= cfg.min_bad_events
            ):
                fired = b
        req = frame.at(_name("requested", cfg.drain_window), key, i)
        done = frame.at(_name("completed", cfg.drain_window), key, i)
        drain = done / req if math.isfinite(req) and req >= cfg.min_requests else math.nan
        stalled = _stalled(cfg, frame, key, i) or _behind_own_pace(cfg, frame, key, i)
        piling = _breaches_piling_up(cfg, frame, key, i)
        breach = bool(stalled or fired or piling is not None)
        # A raised finding holds while refunds do not flow again (``_holding``); the burn
        # rates and the refunds past the SLA still count the stall long after it ended, so
        # one that cleared lately (``remembers``) is raised again only if they do not flow.
        # A first stall at a small PSP is found before its pace tells: not held back.
        holding = _holding(cfg, frame, key, i) if key in active else breach
        if not (breach or key in active):
            continue
        pending = frame.at("pending_over_sla", key, i)
        backlog = max(
            0.0, (req if math.isfinite(req) else 0) - (done if math.isfinite(done) else 0)
        )
        per_hour = backlog * (timedelta(hours=1) / cfg.drain_window)
        dims = dims_of(key)
        where = ", ".join(f"{k}={v}" for k, v in dims.items()) or "all PSPs"
        parts = []
        if fired is not None:
            parts.append(
                f"SLA error budget burning {fired.burn_rate:g}x too fast over "
                f"{format_duration(fired.long)} and {format_duration(fired.short)}"
            )
        if stalled:
            share = (
                f"only {drain:.0%} of refunds requested in the last "
                f"{format_duration(cfg.drain_window)} completed"
                if math.isfinite(drain)
                else "completions fell behind requests"
            )
            parts.append(
                f"{share}; ~{per_hour:,.0f} an hour will miss the "
                f"{format_duration(cfg.sla)} SLA at this rate"
            )
        if piling is not None:
            parts.append(
                f"{piling[0]:,.0f} refunds pending past the {format_duration(cfg.sla)} SLA, "
                f"~{piling[1]:,.0f} more than usual for this many requests"
            )
        start: datetime = frame.when(max(0, i - frame.steps(cfg.drain_window)))
        finding = Finding(
            detector=cfg.id,
            severity=cfg.severity,
            dimensions=dims,
            title=f"Refunds at {where}: " + ("; ".join(parts) or "recovering"),
            observed=drain,
            expected=1.0,
            band=(cfg.min_drain_ratio, 1.0),
            onset=None,
            at=frame.when(i),
            unit="ratio",
            queries=tuple(
                QueryRef("prometheus", sigs[n], start, frame.when(i))
                for n in (
                    _name("requested", cfg.drain_window),
                    _name("completed", cfg.drain_window),
                    "pending_over_sla",
                )
            ),
            details={
                "burn_rates": burns,
                "drain_ratio": drain,
                "pending_over_sla": pending,
                "forecast_breaches_per_hour": per_hour,
                "pending_above_usual": None if piling is None else piling[1],
                "objective": cfg.objective,
            },
        )
        out.append(Assessment(key, breach, holding, finding))
    return out


def _holding(cfg: Config, frame: Frame, key: LabelKey, i: int) -> bool:
    """Do a raised PSP's refunds still not flow? While completions trail requests over
    ``recovery_window`` (``drain_reference`` where that holds under ``min_requests``
    requests, a small PSP at night), any of the tests that page, read at the lenient
    ``recovery_alpha`` (hysteresis):

    - completions below the midpoint of ``min_drain_ratio`` and 1 of the requests in that
      window, improbably so (the drain test's dispersion);
    - completions behind the PSP's own pace (``_behind_own_pace``);
    - refunds past the SLA piling up (``_breaches_piling_up``).

    A worker that is back works its backlog off: completions run ahead of requests at once,
    and the finding lets go, though the refunds past the SLA, the hour's windows and the
    burn rates (never read here) still count the stall for an hour or more: the late
    completions of its backlog are its consequence, not the problem still on.
    """
    for w in (cfg.recovery_window, cfg.drain_reference):
        req = frame.at(_name("requested", w), key, i)
        done = frame.at(_name("completed", w), key, i)
        if math.isfinite(req) and req >= cfg.min_requests:
            break
    else:
        return False
    done = done if math.isfinite(done) else 0.0
    if done >= req:
        return False
    if _behind_own_pace(cfg, frame, key, i, cfg.recovery_alpha):
        return True
    if _breaches_piling_up(cfg, frame, key, i, cfg.recovery_alpha) is not None:
        return True
    if done >= (1 + cfg.min_drain_ratio) / 2 * req:
        return False
    return count_shortfall(done, req, dispersion=0.05, alpha=cfg.recovery_alpha).significant


def remembers(cfg: Config) -> timedelta:
    """The paging burn windows and the drain's reference still count a stall this long
    after it ended (late completions of its backlog, refunds past the SLA)."""
    pages = [b.long for b in cfg.burn_windows if b.severity == "page"]
    return max([cfg.drain_reference, *pages])


def onset(cfg: Config, frame: Frame, a: Assessment, i: int) -> datetime | None:
    """When completions stopped keeping up: the first recent step whose short-window drain
    fell below the threshold, walking back while it stays below."""
    req = frame.present(_name("requested", cfg.drain_short)).get(a.key)
    done = frame.present(_name("completed", cfg.drain_short)).get(a.key)
    if req is None or done is None:
        return None
    j = i
    while j > 0 and req[j - 1] > 0 and done[j - 1] / req[j - 1] < cfg.min_drain_ratio:
        j -= 1
    return frame.when(j) - cfg.drain_short + timedelta(seconds=frame.step)


FOLLOW_UPS = {
    "": [
        (
            "Stuck refunds to reconcile",
            "List the refunds on {where} that missed the SLA or are still pending; reconcile "
            "each with the PSP's refund report (completed, failed or never received) and "
            "re-submit the ones the PSP never got.",
        ),
        (
            "Merchant communication about refunds",
            "Tell affected merchants which refunds were delayed and when they completed, so "
            "their support can answer customers.",
        ),
    ],
}
"""Money follow-ups for the postmortem."""


# What a stall cost: refunds completed past the 24 h SLA, and the most pending past it.
IMPACT = (
    ImpactLine(
        "refunds completed past the 24 h SLA",
        "sum by ({by}) (increase(refunds_completed_total"
        '{{within_sla="false"{and_matchers}}}[{window}]{offset}))',
    ),
    ImpactLine(
        "refunds pending past the SLA at the worst moment",
        "sum by ({by}) (max_over_time(refunds_pending_over_sla{{{matchers}}}[{window}]{offset}))",
    ),
)


DETECTOR = Detector(
    id="refund_sla",
    config=Config,
    signals=signals,
    offsets=offsets,
    lookback=lookback,
    assess=assess,
    onset=onset,
    remembers=remembers,
    chart=Chart("pending_over_sla"),
    impact=IMPACT,
    follow_ups=FOLLOW_UPS,
)
