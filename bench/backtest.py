#!/usr/bin/env python3
"""Detection benchmark: paytriage's detectors against static alert rules on the same history.

Simulates days of payment traffic with every scenario kind injected in a mild and a severe
variant plus the harmless confounders (flash sales, two-minute blips, scrape gaps),
backfills it into a real Prometheus (scripts/stack, on its own port and directory so the
test stack is left alone), then runs ``paytriage backtest --labels --compare-rules`` and
prints recall, precision, false pages per day, median time to detect, attribution,
duplicates and the backtest's wall time, side by side with ``bench/static-rules.yml``.

    python bench/backtest.py                 # 3 days of history + 2 days scored, seed 11
    python bench/backtest.py --days 3 --seed 5 --history-days 7

Data is kept under .bench/ and reused while its parameters are unchanged.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from paytriage.lab.simulate import Scenario, SimulationSpec, simulate  # noqa: E402
from paytriage.lab.simulate.spec import COUNTRIES, METHODS, PSPS  # noqa: E402

M = timedelta(minutes=1)

# (kind, magnitude, duration) — mild variants are real problems a team wants paged, just
# smaller: +10 points of PSP errors, +7 points of issuer declines, half the refunds, ...
VARIANTS: list[tuple[str, float, timedelta]] = [
    ("psp_outage", 0.3, 15 * M),
    ("psp_outage", 1.5, 25 * M),
    ("issuer_decline_spike", 0.4, 30 * M),
    ("issuer_decline_spike", 1.5, 30 * M),
    ("method_failure", 0.4, 30 * M),
    ("method_failure", 1.5, 30 * M),
    ("webhook_backlog", 0.6, 30 * M),
    ("webhook_backlog", 1.2, 40 * M),
    ("refund_stall", 0.5, 120 * M),
    ("refund_stall", 1.0, 150 * M),
    ("capture_failures", 0.25, 45 * M),
    ("capture_failures", 1.0, 45 * M),
    ("traffic_drop", 0.7, 30 * M),
    ("traffic_drop", 1.1, 30 * M),
    # harmless confounders: nothing should page
    ("flash_sale", 1.0, 60 * M),
    ("flash_sale", 1.5, 45 * M),
    ("blip", 1.0, 2 * M),
    ("blip", 1.5, 2 * M),
    ("scrape_gap", 1.0, 15 * M),
    ("scrape_gap", 1.0, 10 * M),
]


def plan(start: datetime, end: datetime, seed: int, rounds: int) -> tuple[Scenario, ...]:
    """Every variant ``rounds`` times, shuffled, one after another with quiet time between.

    Dimensions rotate so one slice is never hit twice within a few hours (a relapse would
    rightly be grouped into the earlier incident).
    """
    rng = np.random.default_rng([seed, 4242])
    variants = [v for _ in range(rounds) for v in VARIANTS]
    order = rng.permutation(len(variants))
    span = end - start
    busy = sum((variants[i][2] for i in order), timedelta())
    gap = (span - busy) / (len(variants) + 1)
    if gap < 30 * M:
        raise SystemExit(
            f"{len(variants)} scenarios do not fit in {span} with 30 min between them: "
            "use more --days or fewer --rounds"
        )
    pools = {
        "psp": list(PSPS),
        "country": list(COUNTRIES),
        "method": [m for m in METHODS if m != "card"] + ["card"],
    }
    turn = {k: int(rng.integers(len(v))) for k, v in pools.items()}

    def pick(dim: str) -> str:
        turn[dim] += 1
        return pools[dim][turn[dim] % len(pools[dim])]

    out = []
    cursor = start
    for n, i in enumerate(order):
        kind, magnitude, duration = variants[i]
        jitter = gap * float(rng.uniform(0.6, 1.4))
        begin = (cursor + jitter).replace(second=0, microsecond=0)
        if kind in ("issuer_decline_spike", "flash_sale", "traffic_drop") and not (
            kind == "traffic_drop" and n % 2
        ):
            dims = {"country": pick("country")}
        elif kind == "method_failure":
            dims = {"method": pick("method")}
        else:
            dims = {"psp": pick("psp")}
        variant = "confounder" if kind in _HARMLESS else "mild" if magnitude < 1 else "severe"
        label = f"{kind}-{variant}-{begin:%d%H%M}"
        out.append(Scenario(kind, begin, duration, dims, magnitude, label))
        cursor = begin + duration
    if cursor > end:
        raise SystemExit("the plan overran the window: use more --days")
    return tuple(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--days", type=int, default=2, help="days scored (default 2)")
    ap.add_argument("--history-days", type=int, default=3, help="history before them (3)")
    ap.add_argument("--rounds", type=int, default=1, help="times each variant is played (1)")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--step", default="60s", help="backtest step (60s)")
    ap.add_argument("--rules", type=Path, default=ROOT / "bench" / "static-rules.yml")
    ap.add_argument("--work", type=Path, default=ROOT / ".bench" / "backtest")
    args = ap.parse_args()

    day0 = datetime(2026, 11, 16, tzinfo=UTC)  # a Monday
    start = day0 - timedelta(days=args.history_days)
    scored_start, end = day0, day0 + timedelta(days=args.days)
    scenarios = plan(scored_start, end, args.seed, args.rounds)
    spec = SimulationSpec(start=start, end=end, seed=args.seed, scenarios=scenarios, logs=False)
    data_dir = args.work / "data"
    stamp = json.dumps(
        {"spec": repr(spec), "version": 1}, sort_keys=True
    )  # regenerate when anything changes
    env = {
        **os.environ,
        "PAYTRIAGE_STACK_DIR": str(args.work / "stack"),
        "PAYTRIAGE_PROMETHEUS_PORT": os.environ.get("PAYTRIAGE_BENCH_PROMETHEUS_PORT", "19190"),
    }
    prom_url = f"http://127.0.0.1:{env['PAYTRIAGE_PROMETHEUS_PORT']}"
    stack = [str(ROOT / "scripts" / "stack")]
    stamp_file = args.work / "loaded.json"
    if not stamp_file.exists() or stamp_file.read_text() != stamp:
        t = time.monotonic()
        summary = simulate(spec, data_dir)
        print(
            f"simulated {summary.series} series x {summary.samples // max(summary.series, 1)} "
            f"samples ({len(scenarios)} scenarios) in {time.monotonic() - t:.0f} s"
        )
        t = time.monotonic()
        subprocess.run([*stack, "load-metrics", str(data_dir)], env=env, check=True)
        (data_dir / "metrics.om").unlink()  # hundreds of MB; the TSDB holds it now
        stamp_file.write_text(stamp)
        print(f"backfilled into Prometheus in {time.monotonic() - t:.0f} s")
    else:
        subprocess.run([*stack, "up", "prometheus"], env=env, check=True)

    out = args.work / "result.json"
    cmd = [
        sys.executable, "-m", "paytriage.cli", "backtest",
        "--prometheus-url", prom_url,
        "--start", scored_start.isoformat(), "--end", end.isoformat(),
        "--step", args.step, "--labels", str(data_dir / "labels.json"),
        "--compare-rules", str(args.rules), "--output", str(out),
    ]  # fmt: skip
    t = time.monotonic()
    res = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    wall = time.monotonic() - t
    print(res.stdout)
    if res.returncode != 0:
        print(res.stderr, file=sys.stderr)
        return res.returncode
    doc = json.loads(out.read_text())
    mild = sum(1 for s in scenarios if s.magnitude < 1 and s.kind not in _HARMLESS)
    print(
        f"scenarios: {len(scenarios)} ({mild} mild, "
        f"{sum(1 for s in scenarios if s.kind in _HARMLESS)} harmless) over {args.days} day(s), "
        f"seed {args.seed}; history {args.history_days} day(s)"
    )
    print(f"backtest wall time (both, incl. static rules): {wall:.1f} s")
    for s in doc.get("scores", []):
        print(
            f"{s['name']}: recall {s['recall']:.2f} precision {s['precision']:.2f} "
            f"false/day {s['false_pages_per_day']:.2f} median TTD "
            f"{(s['median_ttd_seconds'] or 0) / 60:.1f} min attribution "
            f"{(s['attribution'] or 0):.2f} duplicates {s['duplicates']}"
        )
    return 0


_HARMLESS = {"flash_sale", "blip", "scrape_gap"}

if __name__ == "__main__":
    raise SystemExit(main())
