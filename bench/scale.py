#!/usr/bin/env python3
"""Scale benchmark: the live cycle and the backtest at 1x and 10x the reference cardinality.

Simulates the reference platform (6 countries, 5 PSPs, 4 methods, 8 decline reasons) and one
with ten times its slices (60 countries, the same PSPs, methods and reasons), backfills each
into a real Prometheus of its own (scripts/stack, ports 19193 and 19194, data under
.bench/scale/), then, in a separate process per scale and per measurement so peak memory is
the measurement's own:

- runs ``LiveCycle.run_once`` (built by ``paytriage.app.compose.build`` from
  config/paytriage.yaml, all five default detectors plus the per-cycle Prometheus probe) at
  ``--cycles`` evaluation times spread over two days, seven of them inside an injected
  incident, each after an unmeasured cycle at the minute before (the live loop runs every
  minute: what a cycle keeps from the last one is in place; detector state starts fresh at
  each time), and reports p50/p95 wall time, the bot's own share (wall time minus the time
  at least one request to Prometheus was in flight; and its CPU time, which overlaps
  requests in flight as its fetch threads parse answers), the Prometheus process's CPU time,
  queries and bytes per cycle (counted at the HTTP layer, ``requests.Session.send``, without
  touching the bot's code) and peak RSS (VmHWM). The incident pipeline is replaced by a
  no-op: evidence gathering, the store and Slack only run when an incident opens, and are
  not the detector cycle;
- runs the two-day backtest (``paytriage.lab.backtest``, 60 s step, as ``paytriage backtest``
  does) and reports its wall time, queries, bytes and peak RSS.

History: the detectors read the same time of week over four past weeks and the same time
of day over three past days, and refund_sla a three-day burn window; so each scale holds a
continuous block from 7 days 4 hours before the scored two days to their end (present, the
daily offsets, the first weekly offset and the 3-day windows of ``increase(...[3d])``) and
the two-day windows four, three and two weeks back that the weekly offsets read (nothing
between them is ever queried). Every measured cycle checks that each history block its
detectors read holds data.

    python bench/scale.py                  # both scales: simulate and load if needed, measure
    python bench/scale.py --cycles 50 --keep-up
    python bench/scale.py --profile .bench/scale/prof   # cProfile of each cycles process

Data is kept under .bench/scale/ and reused while its parameters are unchanged; the figures
are printed as a table and written to .bench/scale/results.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

M = timedelta(minutes=1)
DAY0 = datetime(2026, 11, 16, tzinfo=UTC)  # a Monday: the scored two days start here
SCORED = timedelta(days=2)
WEEK = timedelta(days=7)
WEEKS = 4  # detectors' default baseline.weeks
MARGIN = timedelta(hours=4)  # before each block: the detectors' lookback (3h10m) and windows
TARGET_P95 = 2.0  # seconds
TARGET_OWN_SHARE = 0.5
TARGET_RSS_MB = 300.0
HOUR_MINUTES = 60
# Problems injected inside the scored days, each active at one of the measured cycles:
# (kind, dims, duration, minutes it started before that cycle)
INCIDENTS: list[tuple[str, dict[str, str], timedelta, int]] = [
    ("psp_outage", {"psp": "stripe"}, 25 * M, 8),
    ("issuer_decline_spike", {"country": "BR"}, 30 * M, 12),
    ("method_failure", {"method": "apple_pay"}, 30 * M, 12),
    ("webhook_backlog", {"psp": "adyen"}, 40 * M, 15),
    ("refund_stall", {"psp": "stripe"}, 120 * M, 60),
    ("capture_failures", {"psp": "adyen"}, 45 * M, 10),
    ("traffic_drop", {"country": "DE"}, 30 * M, 8),
]


def cycle_times(n: int) -> list[datetime]:
    """``n`` evaluation times spread evenly over the scored days, on the minute."""
    out = []
    for k in range(n):
        t = DAY0 + SCORED * ((k + 0.5) / n)
        out.append(t.replace(second=0, microsecond=0))
    return out


# --- the data ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scale:
    name: str
    countries: int
    methods: tuple[str, ...]
    port: int


def blocks(scale: Scale, seed: int, n_cycles: int) -> dict[str, Any]:
    """The simulation specs of one scale: the continuous block and the older weekly windows."""
    from paytriage.lab.simulate import Scenario, SimulationSpec
    from paytriage.lab.simulate.spec import PSPS, country_codes

    times = cycle_times(n_cycles)
    step = max(1, n_cycles // (len(INCIDENTS) + 1))
    scenarios = []
    for j, (kind, dims, duration, before) in enumerate(INCIDENTS):
        at = times[min(len(times) - 1, step * (j + 1) - 1)] - before * M
        scenarios.append(Scenario(kind, at, duration, dims, 1.0, f"{kind}-{at:%d%H%M}"))
    common: dict[str, Any] = {
        "countries": country_codes(scale.countries),
        "psps": PSPS,
        "methods": scale.methods,
        "logs": False,
    }
    specs = {
        "main": SimulationSpec(
            start=DAY0 - WEEK - MARGIN,
            end=DAY0 + SCORED,
            seed=seed,
            scenarios=tuple(scenarios),
            **common,
        )
    }
    # The same seed is the same platform (routing, each PSP's decline level); each older
    # window starts k x 11 minutes earlier so its minute-to-minute noise is not the present's.
    for k in range(WEEKS, 1, -1):
        specs[f"week{k}"] = SimulationSpec(
            start=DAY0 - k * WEEK - MARGIN - k * 11 * M,
            end=DAY0 - k * WEEK + SCORED + timedelta(hours=1),
            seed=seed,
            **common,
        )
    return specs


def stack_env(work: Path, scale: Scale) -> dict[str, str]:
    return {
        **os.environ,
        "PAYTRIAGE_STACK_DIR": str(work / scale.name / "stack"),
        "PAYTRIAGE_PROMETHEUS_PORT": str(scale.port),
    }


PART = 7200  # seconds: promtool's block length


def write_parts(data: Any, out: Path) -> tuple[list[Path], int, int]:
    """The simulated metrics as one OpenMetrics file per two-hour block, each in its own
    directory for ``scripts/stack load-metrics``.

    promtool (2.42) re-reads the whole input once per two-hour block it writes, so one file
    of nine days is parsed 111 times over (the 10-day backfill that took 25 minutes); a file
    per block is parsed once. Returns (directories, series, samples)."""
    import shutil

    from paytriage.lab.simulate.model import Family, Sample
    from paytriage.lab.simulate.output import write_openmetrics

    if out.exists():
        shutil.rmtree(out)
    times = data.traffic.times
    dirs, series, samples = [], 0, 0
    first = int(times[0]) // PART * PART
    for lo_t in range(first, int(times[-1]) + 1, PART):
        lo, hi = (int(x) for x in times.searchsorted([lo_t, lo_t + PART]))
        if hi <= lo:
            continue
        fams = [
            Family(
                f.name,
                f.type,
                f.help,
                [Sample(x.name, x.labels, x.values[lo:hi]) for x in f.samples],
            )
            for f in data.families
        ]
        d = out / f"part-{lo_t}"
        d.mkdir(parents=True)
        n_series, n_samples = write_openmetrics(fams, times[lo:hi], d / "metrics.om")
        series = max(series, n_series)
        samples += n_samples
        dirs.append(d)
    return dirs, series, samples


def ensure_loaded(work: Path, scale: Scale, seed: int, n_cycles: int) -> dict[str, Any]:
    """Simulate and backfill the scale's data unless it is already there; start Prometheus."""
    from paytriage.lab.simulate import generate

    specs = blocks(scale, seed, n_cycles)
    stamp = json.dumps({"specs": {k: repr(v) for k, v in specs.items()}, "version": 2})
    base = work / scale.name
    stamp_file = base / "loaded.json"
    env = stack_env(work, scale)
    stack = [str(ROOT / "scripts" / "stack")]
    if stamp_file.exists() and json.loads(stamp_file.read_text()).get("stamp") == stamp:
        subprocess.run([*stack, "up", "prometheus"], env=env, check=True)
        info: dict[str, Any] = json.loads(stamp_file.read_text())
        return info
    stamp_file.unlink(missing_ok=True)
    dirs: list[Path] = []
    series = samples = 0
    t = time.monotonic()
    for name, spec in specs.items():
        parts, n_series, n_samples = write_parts(generate(spec), base / "data" / name)
        dirs += parts
        series = max(series, n_series)
        samples += n_samples
        days = (spec.end - spec.start) / timedelta(days=1)
        print(
            f"[{scale.name}] simulated {name}: {days:.1f} days, {n_series:,} series, "
            f"{n_samples:,} samples ({time.monotonic() - t:.0f} s)",
            flush=True,
        )
    _reuse_opensearch_jars(work, base)
    t = time.monotonic()
    subprocess.run([*stack, "load-metrics", *map(str, dirs)], env=env, check=True)
    for d in dirs:
        (d / "metrics.om").unlink()  # gigabytes; the TSDB holds it now
    info = {
        "stamp": stamp,
        "series": series,
        "samples": samples,
        "backfill_seconds": round(time.monotonic() - t, 1),
        "days": round(sum((s.end - s.start) / timedelta(days=1) for s in specs.values()), 2),
    }
    stamp_file.write_text(json.dumps(info, indent=1))
    print(f"[{scale.name}] backfilled in {info['backfill_seconds']:.0f} s", flush=True)
    return info


def _reuse_opensearch_jars(work: Path, base: Path) -> None:
    """``scripts/stack load-metrics`` installs the whole stack into its directory, OpenSearch's
    jars included: hard-link another scale's copy instead of fetching them again."""
    import shutil

    lib = base / "stack" / "opensearch" / "lib"
    if (lib / ".complete").exists():
        return
    for other in work.glob("*/stack/opensearch/lib/.complete"):
        if lib.exists():
            shutil.rmtree(lib)
        shutil.copytree(other.parent, lib, copy_function=os.link)
        return


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_settled(work: Path, scale: Scale, limit: float = 3600.0) -> None:
    """Wait until the scale's Prometheus is idle: after a backfill it compacts the 2-hour
    blocks promtool wrote into bigger ones, which would be measured as query time."""
    pid = int((work / scale.name / "stack" / "prometheus.pid").read_text())
    began = time.monotonic()
    quiet = 0
    while time.monotonic() - began < limit:
        c0 = _cpu_seconds(pid)
        time.sleep(20)
        used = _cpu_seconds(pid) - c0
        quiet = quiet + 1 if used < 0.5 else 0
        if quiet >= 4:  # 80 s without compaction (its loop runs every minute)
            return
        if used >= 0.5:
            print(f"[{scale.name}] Prometheus busy (compacting?): {used:.1f} s CPU in 20 s")
    print(f"[{scale.name}] warning: Prometheus still busy after {limit:.0f} s", flush=True)


# --- measuring in a child process ------------------------------------------------------------


@dataclass
class Call:
    began: float
    ended: float
    wire: int  # bytes on the wire (gzip)
    body: int  # bytes of JSON
    tag: str


@dataclass
class Meter:
    """Every HTTP request the process makes, with its time, size and the detector behind it."""

    calls: list[Call] = field(default_factory=list)
    tag: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def install(self) -> None:
        import requests
        import urllib3.response

        # Bytes as received (gzip): every raw chunk, chunked or not, goes through _decode.
        decode = urllib3.response.HTTPResponse._decode

        def counting_decode(resp: Any, data: bytes, *a: Any, **kw: Any) -> bytes:
            resp._bench_wire = getattr(resp, "_bench_wire", 0) + len(data or b"")
            out: bytes = decode(resp, data, *a, **kw)
            return out

        urllib3.response.HTTPResponse._decode = counting_decode  # type: ignore[method-assign]
        original = requests.Session.send
        meter = self

        def send(session: Any, request: Any, **kw: Any) -> Any:
            tag = meter.tag
            began = time.perf_counter()
            resp = None
            try:
                resp = original(session, request, **kw)  # reads the body unless streaming
                return resp
            finally:
                ended = time.perf_counter()
                wire = body = 0
                if resp is not None:
                    body = len(resp.content)
                    wire = int(getattr(resp.raw, "_bench_wire", body))
                with meter.lock:
                    meter.calls.append(Call(began, ended, wire, body, tag))

        requests.Session.send = send  # type: ignore[method-assign]

    def since(self, t0: float) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if c.began >= t0]


def in_flight(calls: Iterable[Call], lo: float = -math.inf, hi: float = math.inf) -> float:
    """Seconds during which at least one of the calls was in flight (within [lo, hi])."""
    spans = sorted((max(c.began, lo), min(c.ended, hi)) for c in calls)
    total, cur_a, cur_b = 0.0, None, None
    for a, b in spans:
        if b <= a:
            continue
        if cur_b is None or a > cur_b:
            if cur_b is not None and cur_a is not None:
                total += cur_b - cur_a
            cur_a, cur_b = a, b
        else:
            cur_b = max(cur_b, b)
    if cur_a is not None and cur_b is not None:
        total += cur_b - cur_a
    return total


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def settings_for(url: str, tmp: Path) -> Any:
    """config/paytriage.yaml against the scale's Prometheus; no Slack, OpenSearch or pages,
    a throwaway SQLite store."""
    import yaml

    from paytriage.config import parse_settings

    data = yaml.safe_load((ROOT / "config" / "paytriage.yaml").read_text())
    data["sources"]["prometheus"]["url"] = url
    data["sources"]["opensearch"]["enabled"] = False
    data["slack"] = {"enabled": False}
    data["pagerduty"]["enabled"] = False
    data["store"] = {"url": f"sqlite:///{tmp / 'paytriage.db'}"}
    data["evidence"]["chart_dir"] = str(tmp / "charts")
    data["runbooks"]["dir"] = str(ROOT / "runbooks")
    return parse_settings(yaml.safe_dump(data), "config/paytriage.yaml", secrets_for=("sources",))


class NoPipeline:
    """Stands in for the incident pipeline: records what the detectors handed it (how many
    findings, which history blocks held data; not the frames, which the real pipeline lets
    go after each step too: kept, they would hold last cycle's blocks during the next)."""

    def __init__(self) -> None:
        self.active = 0
        self.coverage: dict[str, str] = {}

    def step(self, events: list[Any], active: list[Any], at: datetime, frames: Any) -> Any:
        from paytriage.incidents.pipeline import StepReport

        self.active = len(active)
        self.coverage = history_coverage(frames)
        return StepReport()


def history_coverage(frames: dict[str, Any]) -> dict[str, str]:
    """Per detector with history offsets: how many of its history blocks hold data."""
    out = {}
    for rid, frame in frames.items():
        hist = [k for k, o in enumerate(frame.offsets) if o.seconds]
        if not hist:
            continue
        name = next(iter(frame.data))
        full = sum(1 for k in hist if frame.block(name, k))
        out[rid] = f"{full}/{len(hist)}"
    return out


def child_cycles(
    url: str, n: int, tmp: Path, profile: Path | None, prom_pid: int
) -> dict[str, Any]:
    meter = Meter()
    meter.install()
    import paytriage.incidents.cycle as live
    from paytriage.app.compose import build
    from paytriage.detection.run import runs_for

    settings = settings_for(url, tmp)
    times = cycle_times(n)
    cycle, store = build(settings, now=times[0])
    pipeline = NoPipeline()
    cycle.pipeline = pipeline  # type: ignore[assignment]

    # Per detector: which one is fetching (tags its requests), its fetch and assess time.
    per: dict[str, dict[str, float]] = {}
    real_fetch = live.fetch_frame

    def fetch(*a: Any, **kw: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return real_fetch(*a, **kw)
        finally:
            per.setdefault(meter.tag, {}).setdefault("fetch", 0.0)
            per[meter.tag]["fetch"] += time.perf_counter() - t0

    live.fetch_frame = fetch  # type: ignore[assignment]

    def wrap(run: Any) -> None:
        signals, step = run.signals, run.step

        def tagged_signals() -> Any:
            meter.tag = run.cfg.id
            return signals()

        def timed_step(frame: Any, i: int) -> Any:
            t0 = time.perf_counter()
            try:
                return step(frame, i)
            finally:
                per[run.cfg.id]["assess"] = (
                    per[run.cfg.id].get("assess", 0.0) + time.perf_counter() - t0
                )

        run.signals, run.step = tagged_signals, timed_step

    # Slices that breach in a cycle (the attribution and onset work happens for them).
    breaching = [0]

    def count(run: Any) -> None:
        assess = run.detector.assess
        if not hasattr(assess, "__wrapped__"):
            run.detector = dataclasses.replace(run.detector, assess=_counting(assess, breaching))

    for run in cycle.runs:
        count(run)

    def fresh_runs() -> list[Any]:
        """Detector state as after a restart: measured cycles are 96 minutes apart, and a
        debouncer restarts its quiet timer after such a gap, so carried-over findings would
        never clear."""
        runs = runs_for(settings.detectors.enabled(), live.STEP)
        for run in runs:
            wrap(run)
            count(run)
        return runs

    for src in cycle.checks:
        check = src.check

        def tagged_check(check: Callable[[], None] = check) -> None:
            meter.tag = "probe"
            check()

        src.check = tagged_check  # type: ignore[method-assign]

    prof = None
    if profile is not None:
        import cProfile

        prof = cProfile.Profile()
    # The first cycle after start, reported apart: imports, connections, nothing kept yet.
    warm_at = times[0] - 7 * M
    cycle.runs = fresh_runs()
    t0 = time.perf_counter()
    cycle.run_once(warm_at)
    warm = time.perf_counter() - t0
    rows = []
    errors: dict[str, str] = {}
    coverage: dict[str, str] = {}

    def measure(at: datetime) -> dict[str, Any]:
        per.clear()
        breaching[0] = 0
        cycle.health.last_error.clear()
        p0 = _cpu_seconds(prom_pid) if prom_pid else math.nan
        t0, c0 = time.perf_counter(), time.process_time()
        if prof is not None:
            prof.enable()
        cycle.run_once(at)
        if prof is not None:
            prof.disable()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        prom_cpu = _cpu_seconds(prom_pid) - p0 if prom_pid else math.nan
        t1 = t0 + wall
        calls = meter.since(t0)
        waiting = in_flight(calls, t0, t1)
        by_det: dict[str, Any] = {}
        for rid, d in per.items():
            mine = [c for c in calls if c.tag == rid]
            by_det[rid] = {
                "fetch_s": d.get("fetch", 0.0),
                "assess_s": d.get("assess", 0.0),
                "queries": len(mine),
                "wire_bytes": sum(c.wire for c in mine),
                "body_bytes": sum(c.body for c in mine),
            }
        errors.update(cycle.health.last_error)
        cov = pipeline.coverage
        coverage.update({k: min(v, coverage.get(k, v)) for k, v in cov.items()})
        return {
            "at": at.isoformat(),
            "wall_s": wall,
            "waiting_s": waiting,
            "own_s": wall - waiting,
            "cpu_s": cpu,
            "prometheus_cpu_s": prom_cpu,
            "queries": len(calls),
            "wire_bytes": sum(c.wire for c in calls),
            "body_bytes": sum(c.body for c in calls),
            "active_findings": pipeline.active,
            "breaching_slices": breaching[0],
            "detectors": by_det,
        }

    for at in times:
        # The minute before, not measured: the live loop runs every minute, so what a cycle
        # keeps from the one before (detector state, anything the cycle caches) is in place.
        cycle.runs = fresh_runs()
        cycle.run_once(at - M)
        row = measure(at)
        rows.append(row)
        print(
            f"  cycle {at:%m-%d %H:%M}: {row['wall_s']:.2f} s (own {row['own_s']:.2f} s, "
            f"cpu {row['cpu_s']:.2f} s), {row['queries']} queries, "
            f"{row['wire_bytes'] / 1e6:.2f} MB, {row['breaching_slices']} breaching",
            file=sys.stderr,
            flush=True,
        )
    # An hour of consecutive minutes, as the live loop runs them: the cycles above each
    # follow one warm-up minute, so they never include a past block's read ahead (each
    # block reads the next hour of the past once an hour, at its own minute); these do.
    hour_start = times[len(times) // 2] + 3 * HOUR_MINUTES * M
    cycle.runs = fresh_runs()
    cycle._last.clear()  # the hour is earlier than the last cycle above: not "too soon"
    cycle.run_once(hour_start - M)
    hour = []
    for k in range(HOUR_MINUTES):
        r = measure(hour_start + k * M)
        hour.append({x: r[x] for x in ("wall_s", "own_s", "cpu_s", "queries", "wire_bytes")})
    walls = sorted(r["wall_s"] for r in hour)
    print(
        f"  an hour of consecutive minutes from {hour_start:%m-%d %H:%M}: wall p50 "
        f"{pct(walls, 50):.2f} s, p95 {pct(walls, 95):.2f} s, max {walls[-1]:.2f} s; queries "
        f"{min(r['queries'] for r in hour)}-{max(r['queries'] for r in hour)}",
        file=sys.stderr,
        flush=True,
    )
    if prof is not None and profile is not None:
        profile.parent.mkdir(parents=True, exist_ok=True)
        prof.dump_stats(str(profile))
    store.close()
    return {
        "warmup_wall_s": warm,
        "cycles": rows,
        "hour": hour,
        "errors": errors,
        "history_blocks_with_data": coverage,
        "peak_rss_mb": peak_rss_mb(),
        "threads": threading.active_count(),
    }


def _counting(assess: Callable[..., Any], counter: list[int]) -> Callable[..., Any]:
    import functools

    @functools.wraps(assess)  # keeps the signature DetectorRun inspects
    def wrapper(*a: Any, **kw: Any) -> Any:
        out = assess(*a, **kw)
        counter[0] += sum(1 for x in out if x.breach)
        return out

    return wrapper


def child_backtest(url: str, tmp: Path, prom_pid: int) -> dict[str, Any]:
    meter = Meter()
    meter.install()
    from paytriage.lab.backtest import backtest
    from paytriage.sources import PrometheusSource

    settings = settings_for(url, tmp)
    source = PrometheusSource(settings.sources.prometheus)
    p0 = _cpu_seconds(prom_pid) if prom_pid else math.nan
    t0, c0 = time.perf_counter(), time.process_time()
    result = backtest(
        source,
        settings.detectors.enabled(),
        DAY0,
        DAY0 + SCORED,
        timedelta(seconds=60),
        correlation_window=settings.incidents.correlation_window,
        reopen_within=settings.incidents.reopen_within,
    )
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    calls = meter.since(t0)
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "prometheus_cpu_s": _cpu_seconds(prom_pid) - p0 if prom_pid else math.nan,
        "waiting_s": in_flight(calls, t0, t0 + wall),
        "queries": len(calls),
        "wire_bytes": sum(c.wire for c in calls),
        "body_bytes": sum(c.body for c in calls),
        "incidents": len(result.incidents),
        "data_problems": len(result.data_problems),
        "unreadable": result.failed,
        "peak_rss_mb": peak_rss_mb(),
    }


def run_child(kind: str, scale: Scale, args: argparse.Namespace) -> dict[str, Any]:
    out = args.work / scale.name / f"{kind}.json"
    tmp = args.work / scale.name / f"tmp-{kind}"
    tmp.mkdir(parents=True, exist_ok=True)
    for f in tmp.glob("paytriage.db*"):
        f.unlink()
    cmd = [
        sys.executable, str(Path(__file__).resolve()), "--child", kind,
        "--url", f"http://127.0.0.1:{scale.port}", "--cycles", str(args.cycles),
        "--child-out", str(out), "--child-tmp", str(tmp),
        "--prom-pid", (args.work / scale.name / "stack" / "prometheus.pid").read_text().strip(),
    ]  # fmt: skip
    if args.profile is not None and kind == "cycles":
        cmd += ["--profile", str(args.profile / f"{scale.name}-cycles.prof")]
    print(f"[{scale.name}] {kind} ...", flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True)
    result: dict[str, Any] = json.loads(out.read_text())
    return result


# --- the report ---------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(values, q)) if values else math.nan


def summarise(cyc: dict[str, Any], bt: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
    rows = cyc["cycles"]
    wall = [r["wall_s"] for r in rows]
    own = [r["own_s"] for r in rows]
    cpu = [r["cpu_s"] for r in rows]
    shares = [r["own_s"] / r["wall_s"] for r in rows if r["wall_s"] > 0]
    dets: dict[str, dict[str, float]] = {}
    for rid in rows[0]["detectors"]:
        vals = [r["detectors"][rid] for r in rows if rid in r["detectors"]]
        dets[rid] = {
            "fetch_p50_s": pct([v["fetch_s"] for v in vals], 50),
            "assess_p50_s": pct([v["assess_s"] for v in vals], 50),
            "assess_p95_s": pct([v["assess_s"] for v in vals], 95),
            "queries": max(v["queries"] for v in vals),
            "wire_bytes_p50": pct([v["wire_bytes"] for v in vals], 50),
            "body_bytes_p50": pct([v["body_bytes"] for v in vals], 50),
        }
    return {
        "series": info.get("series"),
        "simulated_days": info.get("days"),
        "cycles": len(rows),
        "cycles_with_breaching_slices": sum(1 for r in rows if r["breaching_slices"]),
        "warmup_wall_s": cyc["warmup_wall_s"],
        "wall_p50_s": pct(wall, 50),
        "wall_p95_s": pct(wall, 95),
        "wall_max_s": max(wall),
        "own_p50_s": pct(own, 50),
        "own_p95_s": pct(own, 95),
        "own_share_p95": pct(own, 95) / pct(wall, 95),
        "cpu_share_p95": pct(cpu, 95) / pct(wall, 95),
        "own_share_max": max(shares),
        "cpu_p50_s": pct(cpu, 50),
        "cpu_p95_s": pct(cpu, 95),
        "prometheus_cpu_p50_s": pct([r["prometheus_cpu_s"] for r in rows], 50),
        "queries_min": min(r["queries"] for r in rows),
        "queries_max": max(r["queries"] for r in rows),
        "wire_bytes_p50": pct([r["wire_bytes"] for r in rows], 50),
        "body_bytes_p50": pct([r["body_bytes"] for r in rows], 50),
        "hour_wall_p50_s": pct([r["wall_s"] for r in cyc["hour"]], 50),
        "hour_wall_p95_s": pct([r["wall_s"] for r in cyc["hour"]], 95),
        "hour_wall_max_s": max(r["wall_s"] for r in cyc["hour"]),
        "hour_queries_p50": pct([r["queries"] for r in cyc["hour"]], 50),
        "hour_queries_max": max(r["queries"] for r in cyc["hour"]),
        "peak_rss_mb": cyc["peak_rss_mb"],
        "history_blocks_with_data": cyc["history_blocks_with_data"],
        "errors": cyc["errors"],
        "detectors": dets,
        "backtest": bt,
    }


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


MB = 1e6
Get = Callable[[dict[str, Any]], float]
# (figure, target, value, format, target check or None); a value is read from a scale's summary
ROWS: list[tuple[str, str, Get, str, Callable[[dict[str, Any]], bool] | None]] = [
    ("series in Prometheus", "", lambda r: r["series"], "{:,.0f}", None),
    ("live cycle wall p50", "", lambda r: r["wall_p50_s"], "{:.2f} s", None),
    (
        "live cycle wall p95",
        f"< {TARGET_P95:g} s",
        lambda r: r["wall_p95_s"],
        "{:.2f} s",
        lambda r: r["wall_p95_s"] < TARGET_P95,
    ),
    ("  bot's own time p50 (wall - waiting)", "", lambda r: r["own_p50_s"], "{:.2f} s", None),
    ("  bot's own time p95", "", lambda r: r["own_p95_s"], "{:.2f} s", None),
    (
        "  bot's own share of wall p95",
        f"< {100 * TARGET_OWN_SHARE:.0f} %",
        lambda r: 100 * r["own_share_p95"],
        "{:.0f} %",
        lambda r: r["own_share_p95"] < TARGET_OWN_SHARE,
    ),
    ("  bot CPU time per cycle p50", "", lambda r: r["cpu_p50_s"], "{:.2f} s", None),
    ("  bot CPU time per cycle p95", "", lambda r: r["cpu_p95_s"], "{:.2f} s", None),
    # Shown, not judged: CPU time overlaps the waiting (fetch threads parse answers while
    # other requests are in flight), and at 1x a cycle is mostly the per-request overhead of
    # 37 small queries. The "own share" is the wall time the bot adds (above).
    (
        "  bot CPU p95 as a share of wall p95",
        "",
        lambda r: 100 * r["cpu_share_p95"],
        "{:.0f} %",
        None,
    ),
    (
        "  Prometheus CPU time per cycle p50",
        "",
        lambda r: r["prometheus_cpu_p50_s"],
        "{:.2f} s",
        None,
    ),
    ("queries per cycle", "same at all scales", lambda r: r["queries_max"], "{:.0f}", None),
    (
        "an hour of consecutive cycles: wall p95",
        f"< {TARGET_P95:g} s",
        lambda r: r["hour_wall_p95_s"],
        "{:.2f} s",
        lambda r: r["hour_wall_p95_s"] < TARGET_P95,
    ),
    ("  its slowest cycle", "", lambda r: r["hour_wall_max_s"], "{:.2f} s", None),
    ("  its queries per cycle, p50", "", lambda r: r["hour_queries_p50"], "{:.0f}", None),
    ("  its queries per cycle, max", "", lambda r: r["hour_queries_max"], "{:.0f}", None),
    (
        "bytes fetched per cycle, gzip (p50)",
        "",
        lambda r: r["wire_bytes_p50"] / MB,
        "{:.2f} MB",
        None,
    ),
    (
        "bytes fetched per cycle, JSON (p50)",
        "",
        lambda r: r["body_bytes_p50"] / MB,
        "{:.1f} MB",
        None,
    ),
    (
        "peak RSS, live cycles process",
        f"< {TARGET_RSS_MB:g} MB",
        lambda r: r["peak_rss_mb"],
        "{:.0f} MB",
        lambda r: r["peak_rss_mb"] < TARGET_RSS_MB,
    ),
    (
        # A detector cut off (its timeout) or failing is missing from a cycle's work: the
        # cycle would look faster than it is.
        "  every detector ran in every cycle",
        "none failed or cut off",
        lambda r: len(r["errors"]),
        "{:.0f} failed",
        lambda r: not r["errors"],
    ),
    ("two-day backtest wall (60 s step)", "", lambda r: r["backtest"]["wall_s"], "{:.1f} s", None),
    ("  its CPU time", "", lambda r: r["backtest"]["cpu_s"], "{:.1f} s", None),
    ("  Prometheus CPU time", "", lambda r: r["backtest"]["prometheus_cpu_s"], "{:.1f} s", None),
    ("  its queries", "", lambda r: r["backtest"]["queries"], "{:.0f}", None),
    ("  its bytes, gzip", "", lambda r: r["backtest"]["wire_bytes"] / MB, "{:.0f} MB", None),
    (
        "  its signals all readable",
        "no timeouts",
        lambda r: len(r["backtest"]["unreadable"]),
        "{:.0f} failed",
        lambda r: not r["backtest"]["unreadable"],
    ),
    (
        "peak RSS, backtest process",
        f"< {TARGET_RSS_MB:g} MB",
        lambda r: r["backtest"]["peak_rss_mb"],
        "{:.0f} MB",
        lambda r: r["backtest"]["peak_rss_mb"] < TARGET_RSS_MB,
    ),
]


def report(res: dict[str, dict[str, Any]]) -> dict[str, dict[str, bool]]:
    """Print the side-by-side table; return every target check per scale."""
    names = list(res)
    checks: dict[str, dict[str, bool]] = {}
    head = f"{'figure':<40}{'target':<20}" + "".join(f"{n:>12}" for n in names)
    lines = [head + "  growth  result", "-" * (len(head) + 16)]
    for label, target, get, fmt, check in ROWS:
        vals = [get(res[n]) for n in names]
        cells = "".join(f"{fmt.format(v):>12}" for v in vals)
        grow = f"x{vals[-1] / vals[0]:.1f}" if len(vals) > 1 and vals[0] else ""
        result = ""
        if check is not None:
            checks[label.strip()] = {n: bool(check(res[n])) for n in names}
            result = " ".join(f"{verdict(v)}" for v in checks[label.strip()].values())
        elif label == "queries per cycle":
            same = all(r["queries_min"] == r["queries_max"] for r in res.values())
            same = same and len({r["queries_max"] for r in res.values()}) == 1
            checks["queries per cycle independent of cardinality"] = {"all": same}
            result = verdict(same)
        lines.append(f"{label:<40}{target:<20}{cells}  {grow:<6}  {result}")
    print("\n".join(lines))
    print()
    print("per detector, p50 (fetch: wall time of its queries; assess: its own work after them):")
    for n in names:
        for rid, d in res[n]["detectors"].items():
            print(
                f"  {n:>4} {rid:<17} {d['queries']:>3} queries  fetch {d['fetch_p50_s']:.2f} s  "
                f"assess {d['assess_p50_s']:.3f} s (p95 {d['assess_p95_s']:.3f})  "
                f"{d['wire_bytes_p50'] / MB:.2f} MB gzip, {d['body_bytes_p50'] / MB:.1f} MB JSON"
            )
    for n in names:
        r = res[n]
        print(
            f"  {n}: {r['cycles']} cycles ({r['cycles_with_breaching_slices']} with a breaching "
            f"slice), first cycle after start {r['warmup_wall_s']:.2f} s, slowest "
            f"{r['wall_max_s']:.2f} s; "
            f"history blocks with data {r['history_blocks_with_data']}; backtest "
            f"{r['backtest']['incidents']} incidents"
        )
        if r["errors"] or r["backtest"]["unreadable"]:
            print(f"  {n}: ERRORS {r['errors']} {r['backtest']['unreadable']}")
    return checks


# --- main -----------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--cycles", type=int, default=30, help="measured live cycles (30)")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--countries", type=int, default=60, help="countries at 10x (60)")
    ap.add_argument(
        "--methods", default="card,apple_pay,google_pay,paypal", help="methods at 10x (reference)"
    )
    ap.add_argument("--scales", default="1x,10x", help="which to run (1x,10x)")
    ap.add_argument("--work", type=Path, default=ROOT / ".bench" / "scale")
    ap.add_argument("--keep-up", action="store_true", help="leave the two Prometheus running")
    ap.add_argument("--load-only", action="store_true", help="simulate and backfill, no figures")
    ap.add_argument("--profile", type=Path, default=None, help="cProfile the cycles here")
    ap.add_argument("--child", choices=("cycles", "backtest"), help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--child-tmp", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--prom-pid", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child:
        if args.child == "cycles":
            doc = child_cycles(args.url, args.cycles, args.child_tmp, args.profile, args.prom_pid)
        else:
            doc = child_backtest(args.url, args.child_tmp, args.prom_pid)
        args.child_out.write_text(json.dumps(doc, indent=1, default=str))
        return 0

    from paytriage.lab.simulate.spec import COUNTRIES, METHODS

    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    all_scales = {
        "1x": Scale("1x", len(COUNTRIES), METHODS, 19193),
        "10x": Scale("10x", args.countries, methods, 19194),
    }
    scales = [all_scales[s.strip()] for s in args.scales.split(",")]
    args.work.mkdir(parents=True, exist_ok=True)
    infos = {s.name: ensure_loaded(args.work, s, args.seed, args.cycles) for s in scales}
    if args.load_only:
        return 0
    res: dict[str, dict[str, Any]] = {}
    loads = []
    try:
        for s in scales:
            wait_settled(args.work, s)
            loads.append(os.getloadavg()[0])
            cyc = run_child("cycles", s, args)
            bt = run_child("backtest", s, args)
            loads.append(os.getloadavg()[0])
            res[s.name] = summarise(cyc, bt, infos[s.name])
    finally:
        if not args.keep_up:
            for s in scales:
                subprocess.run(
                    [str(ROOT / "scripts" / "stack"), "down"], env=stack_env(args.work, s)
                )
    print()
    print(
        f"{args.cycles} live cycles at times spread over {DAY0:%Y-%m-%d} + 2 days, seed "
        f"{args.seed}; {os.cpu_count()} cores shared with other work (1-min load average "
        f"{min(loads):.1f}-{max(loads):.1f} around the runs): wall times are noisy."
    )
    checks = report(res)
    doc = {
        "generated": datetime.now(UTC).isoformat(),
        "cycles": args.cycles,
        "seed": args.seed,
        "cores": os.cpu_count(),
        "load_average": loads,
        "targets": {
            "live_cycle_p95_s": TARGET_P95,
            "own_share_of_p95": TARGET_OWN_SHARE,
            "peak_rss_mb": TARGET_RSS_MB,
            "queries_per_cycle": "independent of cardinality",
        },
        "checks": checks,
        "scales": {
            s.name: {"countries": s.countries, "methods": list(s.methods), **res[s.name]}
            for s in scales
        },
    }
    out = args.work / "results.json"
    out.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    print(f"\nwritten to {out}")
    failed = [k for k, v in checks.items() if not all(v.values())]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
