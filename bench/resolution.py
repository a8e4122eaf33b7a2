#!/usr/bin/env python3
"""Resolution benchmark: how closely incidents resolve after their problem ends.

For every problem a replay pages, from the end of the problem (the labels' ``end``):

- to *impact ended*: when the signal of the incident's last finding went back within its
  band (``impact_ended_at``);
- to *resolved*: when the incident, and its page, resolved (``resolved_at``);

plus flaps: an incident re-opened after it resolved, or a new one on the same detector and
slice within an hour of it (``paytriage.lab.scoring``). Targets (issue 20): a median of at
most 3 min to impact ended and 10 min to resolved, none resolved more than 30 min after its
problem ended, no flap.

Two kinds of history are replayed:

1. **The detection benchmark's** (``bench/backtest.py``: the simulator's histories, backfilled
   into a Prometheus of their own): that script runs as it is, and its incidents are scored
   here. ``--seed``, ``--days``, ``--rounds`` and ``--history-days`` are passed on.
2. **Unseen histories**, which the simulator did not make: an independent generator below,
   with its own platform (other PSPs, countries and methods, two daily peaks, gamma-noisy
   minutes, drifting rates), its own problem shapes (abrupt ends, ramps of up to five
   minutes, a problem that eases for two or three minutes midway and comes back, tails) and
   its own queue models for webhooks and refunds. Each is replayed in memory through
   ``paytriage.lab.memory.InMemoryMetrics`` (PromQL answered as Prometheus does) with the
   same backtest and grouping as ``paytriage backtest``.

    python bench/resolution.py                     # benchmark seed 11 + unseen seeds 1, 2, 3
    python bench/resolution.py --seed 5 --days 3 --rounds 2 --unseen 4 5
    python bench/resolution.py --no-benchmark      # unseen histories only (no Prometheus)
    python bench/resolution.py --no-unseen

``--json FILE`` writes every score. The benchmark's data is kept as bench/backtest.py keeps it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from paytriage.config.models import Settings  # noqa: E402
from paytriage.lab.backtest import backtest  # noqa: E402
from paytriage.lab.memory import InMemoryMetrics  # noqa: E402
from paytriage.lab.scoring import (  # noqa: E402
    TARGETS,
    LabelledScenario,
    Score,
    format_misses,
    parse_labels,
    score,
)

M = timedelta(minutes=1)

# --- an independent platform --------------------------------------------------------------

PSPS = ("mollie", "nexi", "rapyd", "klarna")
COUNTRIES = ("NL", "ES", "IT", "MX", "IN")
METHODS = ("card", "ideal", "pix")
LAG_LE = (0.5, 2.0, 8.0, 20.0, 45.0, 90.0, 180.0, 400.0, 900.0, 2000.0, 5000.0)

# Share of traffic and base rates of each value (a slice is the product of its values).
_PSP_SHARE = {"mollie": 0.38, "nexi": 0.27, "rapyd": 0.2, "klarna": 0.15}
_COUNTRY_SHARE = {"NL": 0.3, "ES": 0.25, "IT": 0.2, "MX": 0.15, "IN": 0.1}
_METHOD_SHARE = {"card": 0.7, "ideal": 0.2, "pix": 0.1}
_COUNTRY_DECLINE = {"NL": 0.05, "ES": 0.08, "IT": 0.07, "MX": 0.15, "IN": 0.19}
_PSP_ERROR = {"mollie": 0.004, "nexi": 0.007, "rapyd": 0.01, "klarna": 0.003}
_PSP_CAPTURE_FAIL = {"mollie": 0.0015, "nexi": 0.003, "rapyd": 0.004, "klarna": 0.001}
_PEAK_PER_MINUTE = 1100.0  # attempts over the whole platform at the busiest minute


@dataclass(frozen=True)
class Problem:
    """One injected event: ``kind`` as the labels name it, full strength ``magnitude``."""

    kind: str
    start: datetime
    end: datetime
    dims: dict[str, str]
    magnitude: float
    shape: str  # "step" | "ramp" | "eases" (a relief midway) | "tail"
    id: str = ""


EXPECTED = {
    "psp_outage": ["decline_spike"],
    "issuer_decline_spike": ["decline_spike"],
    "method_failure": ["decline_spike"],
    "capture_failures": ["capture_failures"],
    "traffic_drop": ["traffic_drop"],
    "webhook_backlog": ["webhook_lag"],
    "refund_stall": ["refund_sla"],
    "blip": [],
    "flash_sale": [],
}


def intensity(
    minutes: np.ndarray, p: Problem, t0: datetime, rng: np.random.Generator
) -> np.ndarray:
    """0..1 strength at each minute (minute k covers (k-1, k]): zero at and after ``end``."""
    a = (p.start - t0) / M
    b = (p.end - t0) / M
    x = np.zeros(len(minutes))
    inside = (minutes > a) & (minutes <= b)
    x[inside] = 1.0
    if p.shape in ("ramp", "tail", "eases"):
        up = float(rng.integers(1, 4))
        down = float(rng.integers(1, 6)) if p.shape != "tail" else float(rng.integers(4, 8))
        rise = np.clip((minutes - a) / up, 0, 1)
        fall = np.clip((b - minutes) / down, 0, 1)
        if p.shape == "tail":  # most of it goes at once, then a slow fade
            fall = np.where(fall < 1, 0.35 * fall**2, 1.0)
        x = np.where(inside, np.minimum(rise, fall), 0.0)
    if p.shape == "eases":  # eases off for 2-3 minutes midway, then comes back
        mid = a + (b - a) * float(rng.uniform(0.4, 0.6))
        x[(minutes > mid) & (minutes <= mid + float(rng.integers(2, 4)))] *= 0.1
    return x


def _daily(hours: np.ndarray) -> np.ndarray:
    """Two peaks (lunch and evening) and a deep night."""

    def bump(center: float, width: float) -> np.ndarray:
        d = np.minimum(np.abs(hours - center), 24 - np.abs(hours - center))
        return np.exp(-0.5 * (d / width) ** 2)

    return 0.12 + 0.55 * bump(12.5, 2.5) + 0.9 * bump(20.0, 2.2) + 0.25 * bump(9.0, 1.5)


@dataclass
class History:
    start: datetime
    end: datetime
    problems: list[Problem]
    series: list[tuple[dict[str, str], np.ndarray, np.ndarray]] = field(default_factory=list)

    def labels(self) -> list[LabelledScenario]:
        return parse_labels(
            {
                "scenarios": [
                    {
                        "id": p.id,
                        "kind": p.kind,
                        "start": p.start.isoformat(),
                        "end": p.end.isoformat(),
                        "dims": p.dims,
                        "expected_detectors": EXPECTED[p.kind],
                    }
                    for p in self.problems
                ]
            }
        )


def plan_unseen(start: datetime, end: datetime, seed: int) -> list[Problem]:
    """Problems one after another with 40-90 quiet minutes between, slices rotating."""
    rng = np.random.default_rng([seed, 20])
    kinds = [
        ("psp_outage", (0.06, 0.3), (12, 30)),
        ("issuer_decline_spike", (0.8, 2.2), (20, 40)),
        ("method_failure", (0.1, 0.35), (15, 35)),
        ("capture_failures", (0.012, 0.05), (25, 50)),
        ("traffic_drop", (0.55, 0.85), (15, 35)),
        ("webhook_backlog", (0.75, 0.95), (20, 40)),
        ("refund_stall", (0.5, 0.97), (80, 150)),
        ("blip", (0.3, 0.5), (2, 2)),
        ("flash_sale", (1.5, 2.8), (30, 60)),
    ]
    turn = {"psp": int(rng.integers(4)), "country": int(rng.integers(5)), "method": 0}
    pools = {"psp": PSPS, "country": COUNTRIES, "method": ("ideal", "pix", "card")}

    def pick(dim: str) -> dict[str, str]:
        turn[dim] += 1
        return {dim: pools[dim][turn[dim] % len(pools[dim])]}

    out: list[Problem] = []
    cursor = start + timedelta(minutes=30)
    while True:
        kind, (lo, hi), (dmin, dmax) = kinds[int(rng.integers(len(kinds)))]
        duration = timedelta(minutes=int(rng.integers(dmin, dmax + 1)))
        begin = (cursor + timedelta(minutes=int(rng.integers(40, 91)))).replace(second=0)
        if begin + duration + timedelta(minutes=40) > end:
            return out
        dims = (
            pick("country")
            if kind in ("issuer_decline_spike", "traffic_drop", "flash_sale")
            else pick("method")
            if kind == "method_failure"
            else pick("psp")
        )
        shape = (
            ("step", "ramp", "eases", "tail")[int(rng.integers(4))] if kind != "blip" else "step"
        )
        mag = float(rng.uniform(lo, hi))
        pid = f"{kind}-{shape}-{begin:%d%H%M}"
        out.append(Problem(kind, begin, begin + duration, dims, mag, shape, pid))
        cursor = begin + duration


def generate_unseen(seed: int, history_days: int, days: int) -> History:
    """Minute counters and gauges of the unseen platform, history first."""
    rng = np.random.default_rng([seed, 7])
    day0 = datetime(2027, 3, 8, tzinfo=UTC)  # a Monday, far from the simulator's dates
    t0 = day0 - timedelta(days=history_days)
    end = day0 + timedelta(days=days)
    problems = plan_unseen(day0, end, seed)
    n = int((end - t0) / M) + 1
    minutes = np.arange(n, dtype=np.float64)
    stamps = t0.timestamp() + 60.0 * minutes
    hours = ((stamps / 3600.0) + 1.0) % 24  # the platform's clock: UTC+1
    level = _PEAK_PER_MINUTE * _daily(hours) / 1.5
    prob_int = {p.id: intensity(minutes, p, t0, rng) for p in problems}

    def hit(p: Problem, labels: dict[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in p.dims.items())

    series: list[tuple[dict[str, str], np.ndarray, np.ndarray]] = []

    def counter(name: str, labels: dict[str, str], per_minute: np.ndarray) -> None:
        series.append(({"__name__": name, **labels}, stamps, np.cumsum(per_minute)))

    def gauge(name: str, labels: dict[str, str], values: np.ndarray) -> None:
        series.append(({"__name__": name, **labels}, stamps, values))

    approved_psp = {p: np.zeros(n) for p in PSPS}
    drift_day = rng.normal(0, 0.08, size=(int(n / 1440) + 2,))
    drift = np.repeat(drift_day, 1440)[:n]
    for psp in PSPS:
        for country in COUNTRIES:
            for method in METHODS:
                labels = {"psp": psp, "country": country, "method": method}
                share = _PSP_SHARE[psp] * _COUNTRY_SHARE[country] * _METHOD_SHARE[method]
                mean = level * share * (1 + 0.03 * rng.standard_normal())
                mult = np.ones(n)
                decl = np.full(n, _COUNTRY_DECLINE[country]) * np.exp(drift * 0.5)
                if method == "pix":
                    decl = decl * 1.3
                err = np.full(n, _PSP_ERROR[psp])
                for p in problems:
                    e = prob_int[p.id]
                    if not hit(p, labels):
                        continue
                    if p.kind == "traffic_drop":
                        mult *= 1 - p.magnitude * e
                    elif p.kind == "flash_sale":
                        mult *= 1 + (p.magnitude - 1) * e
                    elif p.kind == "issuer_decline_spike":
                        decl = decl * (1 + p.magnitude * e)
                    elif p.kind in ("psp_outage", "method_failure", "blip"):
                        err = err + p.magnitude * e
                # gamma-noisy minutes: real traffic is burstier than Poisson
                lam = mean * mult * rng.gamma(40.0, 1 / 40.0, size=n)
                attempts = rng.poisson(np.maximum(lam, 0))
                errors = rng.binomial(attempts, np.clip(err, 0, 0.95))
                declined = rng.binomial(attempts - errors, np.clip(decl, 0, 0.95))
                approved = attempts - errors - declined
                approved_psp[psp] += approved
                for outcome, vals in (
                    ("approved", approved),
                    ("declined", declined),
                    ("error", errors),
                ):
                    counter(
                        "payment_authorizations_total",
                        {**labels, "outcome": outcome},
                        vals.astype(float),
                    )

    for psp in PSPS:
        approved = approved_psp[psp]
        labels = {"psp": psp}
        # captures: most approvals are captured some minutes later
        captures = rng.poisson(0.92 * np.convolve(approved, np.ones(7) / 7, mode="same"))
        fail = np.full(n, _PSP_CAPTURE_FAIL[psp])
        for p in problems:
            if p.kind == "capture_failures" and hit(p, labels):
                fail = fail + p.magnitude * prob_int[p.id]
        failed = rng.binomial(captures, np.clip(fail, 0, 0.9))
        counter("payment_captures_total", {**labels, "outcome": "succeeded"}, captures - failed)
        counter("payment_captures_total", {**labels, "outcome": "failed"}, failed.astype(float))

        # refunds: a worker completes what is requested; a stall leaves a backlog it works
        # off afterwards (a twentieth a minute), some of it past the SLA
        requested = rng.poisson(0.018 * approved).astype(float)
        pace = np.ones(n)
        for p in problems:
            if p.kind == "refund_stall" and hit(p, labels):
                pace *= 1 - p.magnitude * prob_int[p.id]
        done_on_time = np.zeros(n)
        done_late = np.zeros(n)
        over = np.zeros(n)
        queue = late_q = 0.0
        for t in range(n):
            queue += requested[t]
            if pace[t] > 0.99:
                take = min(queue, requested[t] + max(1.0, 0.05 * queue))
            else:
                take = min(queue, float(rng.poisson(requested[t] * pace[t])))
            late_share = late_q / queue if queue > 0 else 0.0
            late = min(late_q, take * late_share)
            queue -= take
            late_q -= late
            if pace[t] < 0.99 and queue > 5:  # old refunds crossing the SLA as it waits
                late_q = min(queue, late_q + float(rng.poisson(0.04 * queue)))
            done_on_time[t] = take - late
            done_late[t] = late
            over[t] = late_q
        done_late += rng.poisson(0.004 * requested)
        counter("refunds_requested_total", labels, requested)
        counter("refunds_completed_total", {**labels, "within_sla": "true"}, np.round(done_on_time))
        counter("refunds_completed_total", {**labels, "within_sla": "false"}, np.round(done_late))
        gauge("refunds_pending_over_sla", labels, rng.poisson(2.0, size=n) + np.round(over))

        # webhooks: a FIFO queue served at a capacity; a backlog drains at twice arrivals
        arrivals = rng.poisson(0.9 * approved + 0.3).astype(float)
        capacity = np.maximum(3.0 * np.convolve(arrivals, np.ones(30) / 30, mode="same"), 5)
        fails = np.full(n, 0.006)
        for p in problems:
            if p.kind == "webhook_backlog" and hit(p, labels):
                e = prob_int[p.id]
                capacity = capacity * (1 - p.magnitude * e) + 0.0
                fails = fails + 0.05 * e
        waiting: list[list[float]] = []  # [arrival minute, count]
        processed = np.zeros(n)
        oldest = np.zeros(n)
        buckets = np.zeros((n, len(LAG_LE)))
        for t in range(n):
            if arrivals[t]:
                waiting.append([float(t), arrivals[t]])
            budget = capacity[t]
            while waiting and budget > 0:
                at, cnt = waiting[0]
                take = min(cnt, budget)
                age = (t - at) * 60.0 + rng.lognormal(np.log(3.0), 0.6)
                buckets[t] += take * (np.asarray(LAG_LE) >= age)
                processed[t] += take
                budget -= take
                if take >= cnt:
                    waiting.pop(0)
                else:
                    waiting[0][1] = cnt - take
            oldest[t] = (t - waiting[0][0]) * 60.0 + 30.0 if waiting else 0.0
        failed_wh = rng.binomial(np.round(processed).astype(int), np.clip(fails, 0, 0.9))
        counter("webhook_events_received_total", labels, arrivals)
        counter(
            "webhook_events_processed_total",
            {**labels, "outcome": "ok"},
            np.round(processed) - failed_wh,
        )
        counter("webhook_events_processed_total", {**labels, "outcome": "failed"}, failed_wh * 1.0)
        for k, le in enumerate(LAG_LE):
            counter(
                "webhook_processing_lag_seconds_bucket",
                {**labels, "le": f"{le:g}"},
                np.round(buckets[:, k]),
            )
        counter(
            "webhook_processing_lag_seconds_bucket", {**labels, "le": "+Inf"}, np.round(processed)
        )
        gauge("webhook_backlog_oldest_age_seconds", labels, oldest)
    return History(day0, end, problems, series)


# --- scoring and printing -----------------------------------------------------------------


def _min(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds / 60:.1f}"


def report(name: str, s: Score) -> str:
    lines = [f"== {name}: {s.detected}/{s.expected} problems paged, {s.false_pages} false pages"]
    lines.append(
        f"   {'problem':<40} {'ended':>11}  {'impact ended':>12}  {'resolved':>8}  (min after end)"
    )
    for r in s.scenarios:
        if r.harmless or not r.detected:
            continue
        lines.append(
            f"   {r.id:<40} {r.end:%m-%d %H:%M}  {_min(r.impact_ended_seconds):>12}"
            f"  {_min(r.resolved_seconds):>8}"
        )
    lines.append(
        f"   median {_min(s.median_impact_end_seconds)} / max {_min(s.max_impact_end_seconds)}"
        f" min to impact ended; median {_min(s.median_resolve_seconds)} / max "
        f"{_min(s.max_resolve_seconds)} min to resolved"
        + (f" ({s.unresolved} still open)" if s.unresolved else "")
        + f"; flaps {s.flap_count}"
    )
    misses = format_misses(s).splitlines()[1:]
    lines.extend(f"  {m}" for m in misses)
    return "\n".join(lines)


def summary(scores: Sequence[tuple[str, Score]]) -> str:
    """All runs together: the figures over every paged problem, against the targets."""
    impact = [
        r.impact_ended_seconds
        for _, s in scores
        for r in s.scenarios
        if r.detected and r.impact_ended_seconds is not None
    ]
    resolved = [
        r.resolved_seconds
        for _, s in scores
        for r in s.scenarios
        if r.detected and r.resolved_seconds is not None
    ]
    flaps = sum(s.flap_count for _, s in scores)
    still = sum(s.unresolved for _, s in scores)
    recall = [f"{name} {s.detected}/{s.expected}" for name, s in scores]

    def med(xs: list[float]) -> float | None:
        return statistics.median(xs) if xs else None

    rows = [
        (
            "end to impact ended, median",
            f"{_min(med(impact))} min",
            f"<= {TARGETS['median_impact_end_seconds'] / 60:g} min",
        ),
        ("end to impact ended, max", f"{_min(max(impact, default=None))} min", ""),
        (
            "end to resolved, median",
            f"{_min(med(resolved))} min",
            f"<= {TARGETS['median_resolve_seconds'] / 60:g} min",
        ),
        (
            "end to resolved, max",
            f"{_min(max(resolved, default=None))} min"
            + (f" ({still} still open)" if still else ""),
            f"<= {TARGETS['max_resolve_seconds'] / 60:g} min",
        ),
        ("flaps", str(flaps), "0"),
    ]
    width = max(len(r[0]) for r in rows)
    value = max(len(r[1]) for r in rows)
    lines = [f"All runs: problems paged {', '.join(recall)}"]
    lines += [f"{a:<{width}}   {b:<{value}}   {c}".rstrip() for a, b, c in rows]
    return "\n".join(lines)


def run_benchmark(args: argparse.Namespace) -> Score | None:
    """bench/backtest.py as it is, then its incidents scored here."""
    work = args.work or ROOT / ".bench" / "backtest"
    cmd = [
        sys.executable, str(ROOT / "bench" / "backtest.py"),
        "--seed", str(args.seed), "--days", str(args.days), "--rounds", str(args.rounds),
        "--history-days", str(args.history_days), "--work", str(work),
    ]  # fmt: skip
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if res.returncode != 0:
        print(res.stdout[-3000:], res.stderr[-3000:], file=sys.stderr)
        return None
    doc = json.loads((work / "result.json").read_text())
    labels = json.loads((work / "data" / "labels.json").read_text())
    period = doc["period"]
    return score(doc["incidents"], parse_labels(labels), period["start"], period["end"])


def run_unseen(seed: int, history_days: int, days: int) -> tuple[Score, float]:
    t = time.monotonic()
    h = generate_unseen(seed, history_days, days)
    source = InMemoryMetrics(h.series, name=f"unseen-{seed}")
    settings = Settings()
    result = backtest(
        source,
        settings.detectors.enabled(),
        h.start,
        h.end,
        timedelta(seconds=60),
        correlation_window=settings.incidents.correlation_window,
        reopen_within=settings.incidents.reopen_within,
    )
    if result.failed:
        print(f"unseen {seed}: unreadable signals: {sorted(result.failed)}", file=sys.stderr)
    incidents = [i.as_dict() for i in result.incidents]
    return score(incidents, h.labels(), h.start, h.end, name=f"unseen {seed}"), (
        time.monotonic() - t
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seed", type=int, default=11, help="the benchmark's seed (11)")
    ap.add_argument("--days", type=int, default=2, help="benchmark days scored (2)")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--history-days", type=int, default=3)
    ap.add_argument("--work", type=Path, default=None, help="bench/backtest.py's --work")
    ap.add_argument("--unseen", type=int, nargs="*", default=[1, 2, 3], help="unseen seeds")
    ap.add_argument("--unseen-days", type=int, default=2, help="days scored of each (2)")
    ap.add_argument("--no-benchmark", action="store_true")
    ap.add_argument("--no-unseen", action="store_true")
    ap.add_argument("--json", type=Path, default=None, help="write every score here")
    args = ap.parse_args()

    scores: list[tuple[str, Score]] = []
    if not args.no_benchmark:
        s = run_benchmark(args)
        if s is None:
            return 1
        name = f"benchmark seed {args.seed}"
        scores.append((name, s))
        print(report(name, s), "\n")
    for seed in [] if args.no_unseen else args.unseen:
        s, seconds = run_unseen(seed, args.history_days, args.unseen_days)
        name = f"unseen seed {seed}"
        scores.append((name, s))
        print(report(f"{name} ({seconds:.0f} s)", s), "\n")
    print(summary(scores))
    if args.json:
        args.json.write_text(
            json.dumps({name: s.as_dict() for name, s in scores}, indent=2, default=str)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
