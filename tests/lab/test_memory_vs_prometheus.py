"""The in-memory sources (``paytriage demo``) against the real Prometheus and OpenSearch
holding the same simulated data: every query the bot can issue with the default
configuration gets the same answer from both.

Queries are built from the code that issues them (each enabled detector's ``signals``, the
evidence breakdown's templates with the configured dimensions, windows and offsets), so a
new or changed query is covered without touching this file. Answers must have the same label
sets and timestamps, and values equal within 1e-9 relative (NaN where NaN).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pytest

from paytriage.config.loader import DEFAULT_CONFIG, load_settings
from paytriage.config.models import OpenSearchConfig, PrometheusConfig, Settings
from paytriage.core.promql import build_query
from paytriage.detectors import REGISTRY
from paytriage.detectors.signals import label_key
from paytriage.evidence.breakdown import gather_breakdown
from paytriage.evidence.changes import gather_changes
from paytriage.evidence.logs import gather_logs
from paytriage.lab.memory import InMemoryLogs, InMemoryMetrics, from_simulation
from paytriage.sources import OpenSearchSource, PrometheusSource, Series, SourceError
from tests.conftest import (
    BACKLOG_START,
    CAPTURE_START,
    DATA_END,
    DATA_START,
    DAY2_END,
    DAY2_START,
    DROP_START,
    GAP,
    GAP_START,
    ISSUER_START,
    METHOD_START,
    OUTAGE,
    OUTAGE_START,
    Stack,
    day2_spec,
    simulation_spec,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.prometheus_only(
        reason="pins the in-memory engine to Prometheus' exact answers (extrapolated "
        "increase, 5 min staleness); VictoriaMetrics differs there by design"
    ),
]

M = timedelta(minutes=1)
RTOL = 1e-9
LOGS = "payments-logs-*"
CHANGES = "changes-*"


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load_settings(DEFAULT_CONFIG, env={}, secrets_for=("sources",))


@pytest.fixture(scope="module")
def memory() -> tuple[InMemoryMetrics, InMemoryLogs]:
    """The same two datasets the stack holds, regenerated in process (same seed, same data)."""
    from paytriage.lab.simulate import generate

    return from_simulation(generate(simulation_spec()), generate(day2_spec()))


@pytest.fixture(scope="module")
def mem(memory: tuple[InMemoryMetrics, InMemoryLogs]) -> InMemoryMetrics:
    return memory[0]


@pytest.fixture(scope="module")
def mem_logs(memory: tuple[InMemoryMetrics, InMemoryLogs]) -> InMemoryLogs:
    return memory[1]


@pytest.fixture(scope="module")
def prom(stack: Stack) -> PrometheusSource:
    return PrometheusSource(
        PrometheusConfig(url=stack.prometheus_url, timeout=timedelta(seconds=60))
    )


@pytest.fixture(scope="module")
def osrc(stack: Stack) -> OpenSearchSource:
    return OpenSearchSource(OpenSearchConfig(hosts=[stack.opensearch_url]))


# --- the queries the bot issues -------------------------------------------------------------


def detector_queries(settings: Settings) -> dict[str, str]:
    """Every signal of every enabled detector, as the detection loop fetches them."""
    out: dict[str, str] = {}
    for cfg in settings.detectors.enabled():
        out.update({f"{cfg.id}.{k}": q for k, q in REGISTRY[cfg.id].signals(cfg).items()})
    return out


def breakdown_queries(settings: Settings) -> list[str]:
    """The evidence breakdown's instant queries (``gather_breakdown``): the totals and each
    configured dimension, now, ``baseline_offset`` earlier and in the fallback window before,
    for incidents on the platform, one PSP and one PSP in one country."""
    ev = settings.evidence
    fallback = inspect.signature(gather_breakdown).parameters["fallback_window"].default
    out: set[str] = set()
    for ratio in (d.ratio for d in REGISTRY.values() if d.ratio is not None):
        labels = ratio.labels
        for dims in ({}, {"psp": "stripe"}, {"country": "GB", "psp": "adyen"}):
            by = [d for d in ev.breakdown_by if d not in dims and (labels is None or d in labels)]
            for window in (ev.min_window, timedelta(minutes=37)):
                periods = [(window, None), (window, ev.baseline_offset), (fallback, window)]
                for length, offset in periods:
                    for group in [(), *((d,) for d in by)]:
                        shared = ratio.shared.get(group[0]) if group else None
                        templates = [shared] if shared else [ratio.numerator, ratio.denominator]
                        for t in templates:
                            out.add(
                                build_query(t, by=group, window=length, dims=dims, offset=offset)
                            )
    return sorted(out)


# Other constructs the engine implements, checked the same way (not issued by the default
# configuration, but by anomaly signals and rules a team may write).
CONSTRUCTS = [
    "vector(1)",
    "scalar(vector(2.5))",
    "time()",
    "1 + 2 * 3 - 4 / 2 ^ 2",
    "(1 > bool 2) + (2 >= bool 2)",
    "histogram_quantile(0.95, sum by (psp, le) (rate(payment_authorization_duration_seconds_bucket[5m])))",
    "histogram_quantile(0.5, rate(webhook_processing_lag_seconds_bucket[5m]))",
    "histogram_quantile(1, sum by (le) (increase(payment_authorization_duration_seconds_bucket[2m])))",
    'histogram_quantile(0.9, payment_authorization_duration_seconds_bucket{le!="+Inf"})',
    "avg by (psp) (rate(payment_captures_total[5m]))",
    "min by (psp) (webhook_backlog_oldest_age_seconds)",
    "max without (outcome) (rate(payment_captures_total[5m]))",
    "count by (psp) (payment_authorizations_total)",
    "group by (country) (payment_authorizations_total)",
    "stddev by (psp) (rate(payment_authorizations_total[5m]))",
    "stdvar(rate(payment_captures_total[10m]))",
    "quantile by (psp) (0.9, rate(payment_authorizations_total[5m]))",
    "topk(3, rate(payment_authorizations_total[5m]))",
    "bottomk by (psp) (2, rate(payment_captures_total[5m]))",
    'sum by (__name__) ({__name__=~"refunds_.*"})',
    "abs(-webhook_backlog_oldest_age_seconds)",
    "clamp_min(webhook_backlog_oldest_age_seconds, 100)",
    "clamp_max(webhook_backlog_oldest_age_seconds, 100)",
    "clamp(webhook_backlog_oldest_age_seconds, 10, 100)",
    "round(rate(payment_captures_total[5m]), 0.1)",
    "ln(webhook_backlog_oldest_age_seconds)",
    'absent(payment_authorizations_total{psp="worldpay"})',
    'absent(nonexistent_metric{job="a",x=~"y"})',
    'absent_over_time(payment_authorizations_total{psp="worldpay",country="US",method="card",outcome="error"}[5m])',
    "avg_over_time(webhook_backlog_oldest_age_seconds[10m])",
    "sum_over_time(webhook_backlog_oldest_age_seconds[10m])",
    "max_over_time(webhook_backlog_oldest_age_seconds[10m])",
    "count_over_time(payment_captures_total[7m])",
    "last_over_time(payment_captures_total[7m])",
    "stddev_over_time(webhook_backlog_oldest_age_seconds[10m])",
    "quantile_over_time(0.9, webhook_backlog_oldest_age_seconds[15m])",
    "irate(payment_captures_total[5m])",
    "idelta(webhook_backlog_oldest_age_seconds[5m])",
    "delta(webhook_backlog_oldest_age_seconds[5m])",
    "changes(webhook_backlog_oldest_age_seconds[15m])",
    "resets(payment_authorizations_total[1h])",
    "rate(payment_declines_total[3m] offset 10m)",
    "payment_captures_total offset 1h",
    "timestamp(payment_captures_total)",
    "-rate(payment_captures_total[5m])",
    'rate(payment_captures_total{outcome="failed"}[5m]) / ignoring(outcome) rate(payment_captures_total{outcome="succeeded"}[5m])',
    "payment_captures_total / ignoring(outcome) group_left sum without (outcome) (payment_captures_total)",
    "sum without (outcome) (payment_captures_total) / ignoring(outcome) group_right payment_captures_total",
    "rate(payment_authorizations_total[5m]) / on(psp) group_left sum by (psp) (rate(payment_authorizations_total[5m]))",
    "webhook_backlog_oldest_age_seconds > 60",
    "60 < bool webhook_backlog_oldest_age_seconds",
    "webhook_backlog_oldest_age_seconds >= bool on(psp) refunds_pending_over_sla",
    "sum by (psp) (rate(payment_captures_total[5m])) / 0",
    'sum by (psp) (increase(payment_captures_total{outcome="failed"}[1m])) / sum by (psp) (increase(payment_captures_total{outcome="failed"}[1m]))',
    "webhook_backlog_oldest_age_seconds % 7",
    "webhook_backlog_oldest_age_seconds atan2 refunds_pending_over_sla",
    "webhook_backlog_oldest_age_seconds and on(psp) (refunds_pending_over_sla > 3)",
    "webhook_backlog_oldest_age_seconds unless on(psp) (refunds_pending_over_sla > 3)",
    "(webhook_backlog_oldest_age_seconds > 100) or refunds_pending_over_sla",
    "(webhook_backlog_oldest_age_seconds > 100) or ignoring(psp) vector(5)",
    'payment_captures_total{psp=~"ad.*|str.pe", outcome!="failed"}',
]

# Queries both must refuse (Prometheus answers 422).
REFUSED = [
    'rate({__name__=~"refunds_requested_total|refunds_pending_over_sla"}[5m])',
    "payment_captures_total + on(psp) payment_captures_total",
    "sum by (psp) (payment_captures_total) + on() webhook_backlog_oldest_age_seconds",
]


# --- when -----------------------------------------------------------------------------------


def counter_resets(stack: Stack) -> list[datetime]:
    resets: Any = stack.labels["counter_resets"]
    return [datetime.fromisoformat(r["at"].replace("Z", "+00:00")) for r in resets]


def instants(stack: Stack) -> list[datetime]:
    """Data edges (extrapolation, lookback), inside each incident and the scrape gap, around
    the counter reset, off the minute grid, after the data ends and on the second day."""
    out = [
        DATA_START + timedelta(seconds=30),
        DATA_START + 2 * M,
        DATA_START + timedelta(minutes=4, seconds=30),
        GAP_START + M,
        GAP_START + 5 * M,
        GAP_START + timedelta(minutes=7, seconds=30.5),
        GAP_START + 14 * M,
        GAP_START + GAP + M,
        GAP_START + GAP + 2 * M,
        OUTAGE_START + 5 * M,
        OUTAGE_START + OUTAGE - timedelta(seconds=1.25),
        CAPTURE_START + 10 * M,
        BACKLOG_START + 10 * M,
        DROP_START + 3 * M,
        DATA_END,
        DATA_END + 4 * M,
        DATA_END + 6 * M,
        DAY2_START + M,
        ISSUER_START + 10 * M,
        METHOD_START + 5 * M,
        DAY2_END + 2 * M,
    ]
    for at in counter_resets(stack):
        out += [at - M, at, at + M, at + 3 * M]
    return out


RANGES = [
    ("day 1", DATA_START - 10 * M, DATA_END + 10 * M, M),
    ("day 2", DAY2_START - 10 * M, DAY2_END + 10 * M, M),
    (
        "scrape gap at 30s",
        GAP_START - timedelta(minutes=10, seconds=-17),
        GAP_START + GAP + 10 * M,
        M / 2,
    ),
    (
        "both days at 7m",
        DATA_START - timedelta(hours=1, seconds=-7),
        DAY2_END + timedelta(hours=1),
        7 * M,
    ),
]


# --- comparing ------------------------------------------------------------------------------


def difference(mem: list[Series], real: list[Series]) -> str | None:
    """Why two answers differ, or None when they are the same."""
    m = {label_key(s.labels): s for s in mem}
    r = {label_key(s.labels): s for s in real}
    if len(m) != len(mem):
        return "the in-memory answer repeats a label set"
    if m.keys() != r.keys():
        only_m, only_r = sorted(m.keys() - r.keys()), sorted(r.keys() - m.keys())
        return f"label sets differ: only in memory {only_m[:3]}, only in Prometheus {only_r[:3]}"
    for key, a in m.items():
        b = r[key]
        if not np.array_equal(a.timestamps, b.timestamps):
            extra = np.setdiff1d(a.timestamps, b.timestamps)[:3].tolist()
            missing = np.setdiff1d(b.timestamps, a.timestamps)[:3].tolist()
            return f"{dict(key)}: timestamps differ (extra {extra}, missing {missing})"
        same = np.isclose(a.values, b.values, rtol=RTOL, atol=0.0, equal_nan=True)
        if not same.all():
            i = int(np.flatnonzero(~same)[0])
            return (
                f"{dict(key)} at {a.timestamps[i]}: memory {a.values[i]!r}, "
                f"Prometheus {b.values[i]!r}"
            )
    return None


Ask = Callable[[Any], list[Series]]


def ranged(q: str, start: datetime, end: datetime, step: timedelta) -> Ask:
    return lambda src: src.query_range(q, start, end, step)


def instant(q: str, at: datetime) -> Ask:
    return lambda src: src.query(q, at)


def compare_all(cases: Iterable[tuple[str, Ask]], mem: Any, real: Any) -> None:
    problems = []
    for what, ask in cases:
        diff = difference(ask(mem), ask(real))
        if diff is not None:
            problems.append(f"{what}: {diff}")
    assert not problems, f"{len(problems)} answer(s) differ:\n" + "\n".join(problems[:15])


# --- metrics --------------------------------------------------------------------------------


def test_the_bot_issues_the_queries_this_file_checks(settings: Settings) -> None:
    queries = detector_queries(settings)
    assert {q.split(".")[0] for q in queries} >= {
        "decline_spike",
        "webhook_lag",
        "refund_sla",
        "capture_failures",
        "traffic_drop",
    }
    assert len(breakdown_queries(settings)) > 50


@pytest.mark.parametrize(("name", "start", "end", "step"), RANGES, ids=[r[0] for r in RANGES])
def test_detector_range_queries_match_prometheus(
    settings: Settings,
    mem: InMemoryMetrics,
    prom: PrometheusSource,
    name: str,
    start: datetime,
    end: datetime,
    step: timedelta,
) -> None:
    compare_all(
        (
            (f"{signal} = {q}", ranged(q, start, end, step))
            for signal, q in detector_queries(settings).items()
        ),
        mem,
        prom,
    )


def test_detector_instant_queries_match_prometheus(
    settings: Settings, mem: InMemoryMetrics, prom: PrometheusSource, stack: Stack
) -> None:
    compare_all(
        (
            (f"{signal} @ {at:%d %H:%M:%S.%f}", instant(q, at))
            for signal, q in detector_queries(settings).items()
            for at in instants(stack)
        ),
        mem,
        prom,
    )


def test_breakdown_queries_match_prometheus(
    settings: Settings, mem: InMemoryMetrics, prom: PrometheusSource
) -> None:
    # Evaluated at the incident window's end, as gather_breakdown does.
    ends = [
        OUTAGE_START + 12 * M,
        ISSUER_START + 20 * M,
        DAY2_START + timedelta(days=7, minutes=30),
    ]
    compare_all(
        (
            (f"{q} @ {at:%d %H:%M}", instant(q, at))
            for q in breakdown_queries(settings)
            for at in ends
        ),
        mem,
        prom,
    )


def test_other_constructs_match_prometheus(
    mem: InMemoryMetrics, prom: PrometheusSource, stack: Stack
) -> None:
    ats = [DATA_START + 2 * M, GAP_START + timedelta(minutes=7, seconds=30.5), DATA_END + 4 * M]
    cases: list[tuple[str, Ask]] = []
    for q in CONSTRUCTS:
        for name, start, end, step in RANGES[:2]:
            cases.append((f"{q} over {name}", ranged(q, start, end, step)))
        cases += [(f"{q} @ {at:%H:%M:%S}", instant(q, at)) for at in ats]
    compare_all(cases, mem, prom)


def test_detectors_raise_the_same_findings_on_both(
    mem: InMemoryMetrics, prom: PrometheusSource
) -> None:
    """The bot's replay (its fetches run in threads) sees the same incidents on both."""
    from paytriage.detection.replay import replay
    from paytriage.detection.run import runs_for
    from paytriage.detectors import DetectorsConfig

    results = []
    for source in (mem, prom):
        runs = runs_for(DetectorsConfig().enabled(), M)
        results.append(replay(source, runs, DATA_START + timedelta(hours=1), DATA_END, M))
    ours, real = results
    assert ours.failed == real.failed == {}

    def key(e: Any) -> tuple[Any, ...]:
        f = e.finding
        return (e.kind, e.at, f.detector, f.dimensions, f.severity, f.onset, f.title)

    assert [key(e) for e in ours.events] == [key(e) for e in real.events]
    assert len(ours.events) >= 5
    for a, b in zip(ours.events, real.events, strict=True):
        for x, y in (
            (a.finding.observed, b.finding.observed),
            (a.finding.expected, b.finding.expected),
        ):
            assert math.isclose(x, y, rel_tol=RTOL) or (math.isnan(x) and math.isnan(y))


@pytest.mark.parametrize("query", REFUSED)
def test_both_refuse_the_same_queries(
    mem: InMemoryMetrics, prom: PrometheusSource, query: str
) -> None:
    at = OUTAGE_START
    with pytest.raises(SourceError) as real:
        prom.query(query, at)
    with pytest.raises(SourceError) as ours:
        mem.query(query, at)
    assert ours.value.kind is real.value.kind


# --- logs -----------------------------------------------------------------------------------

SPANS = [
    (OUTAGE_START, OUTAGE_START + OUTAGE),
    (DATA_START, DATA_END),
    (OUTAGE_START - timedelta(seconds=30.25), OUTAGE_START + timedelta(minutes=3, seconds=1.5)),
    (ISSUER_START, DAY2_END),
    (DATA_START - timedelta(days=1), DAY2_END + timedelta(days=1)),
]
FILTERS: list[dict[str, Any] | None] = [
    None,
    {"psp": "stripe"},
    {"psp": "stripe", "level": ["ERROR", "WARN"]},
    {"country": "BR", "method": "card"},
    {"http_status": ["502", "504"]},
    {"event_type": "payment.failed"},
    {"level": []},
]


def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except SourceError as exc:
        return ("refused", exc.kind)


def test_log_searches_match_opensearch(mem_logs: InMemoryLogs, osrc: OpenSearchSource) -> None:
    problems = []
    for start, end in SPANS:
        for flt in FILTERS:
            for size, newest in ((50, True), (10_000, False), (0, True)):
                ours = mem_logs.search(LOGS, start, end, flt, size=size, newest_first=newest)
                real = osrc.search(LOGS, start, end, flt, size=size, newest_first=newest)
                if ours != real:
                    problems.append(f"search {start:%d %H:%M:%S} {flt} size={size}")
    for flt in (None, {"kind": ["deploy", "config"]}, {"service": "risk-engine"}):
        for index in (CHANGES, "changes-2026.11.16", "nonexistent-*"):
            args = (index, DATA_START - timedelta(hours=3), DAY2_END, flt)
            if mem_logs.search(*args) != osrc.search(*args):
                problems.append(f"search {index} {flt}")
    assert not problems, problems[:10]


def test_log_aggregations_match_opensearch(mem_logs: InMemoryLogs, osrc: OpenSearchSource) -> None:
    problems = []
    fields = [
        "error_code",
        "psp",
        "level",
        "http_status",
        "latency_ms",
        "decline_reason",
        "message",
        "nonexistent",
    ]
    intervals = [M, 5 * M, timedelta(hours=1), timedelta(seconds=90)]
    for start, end in SPANS[:4]:
        for flt in FILTERS:
            for fld in fields:
                ours = call(mem_logs.terms, LOGS, fld, start, end, flt, size=5)
                real = call(osrc.terms, LOGS, fld, start, end, flt, size=5)
                if ours != real:
                    problems.append(f"terms {fld} {start:%d %H:%M:%S} {flt}: {ours} != {real}")
            for iv in intervals:
                for split in (None, "error_code"):
                    ours = call(mem_logs.date_histogram, LOGS, start, end, iv, flt, split)
                    real = call(osrc.date_histogram, LOGS, start, end, iv, flt, split)
                    if ours != real:
                        problems.append(f"date_histogram {iv} {start:%d %H:%M:%S} {flt} {split}")
    assert not problems, problems[:10]


def test_log_evidence_is_the_same_on_both(
    mem_logs: InMemoryLogs, osrc: OpenSearchSource, settings: Settings
) -> None:
    """What the bot makes of the logs and changes of an incident: the same on both."""
    fields = settings.sources.opensearch.fields
    ev = settings.evidence
    for dims, start, end in (
        ({"psp": "stripe"}, OUTAGE_START, OUTAGE_START + OUTAGE),
        ({"country": "BR"}, ISSUER_START, ISSUER_START + 30 * M),
        ({}, CAPTURE_START, CAPTURE_START + 15 * M),
    ):
        ours = gather_logs(
            mem_logs, LOGS, fields, dims, start, end, max_messages=ev.log_max_messages
        )
        real = gather_logs(osrc, LOGS, fields, dims, start, end, max_messages=ev.log_max_messages)
        assert ours == real and not ours.missing
        ours_c = gather_changes(
            mem_logs, CHANGES, start, ev.changes_lookback, ev.changes_after, dimensions=dims
        )
        real_c = gather_changes(
            osrc, CHANGES, start, ev.changes_lookback, ev.changes_after, dimensions=dims
        )
        assert ours_c == real_c and not ours_c.missing


def test_simulated_values_are_what_the_stack_holds(
    mem: InMemoryMetrics, prom: PrometheusSource
) -> None:
    """The raw samples, as written for promtool (non-integers rounded to 6 decimals)."""
    for q in (
        "payment_authorization_duration_seconds_sum[10m]",
        "webhook_backlog_oldest_age_seconds[10m]",
    ):
        for at in (OUTAGE_START + 10 * M, DAY2_END):
            assert difference(mem.query(q, at), prom.query(q, at)) is None
    assert mem.first_sample_time == DATA_START and mem.last_sample_time == DAY2_END
    assert not math.isnan(mem.query("time()")[0].last)
