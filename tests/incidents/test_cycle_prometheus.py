"""The live cycle against the real Prometheus and OpenSearch, with the clock set on the
simulated morning: each ``run_once`` reads the signals up to "now" only, as ``paytriage run``
does every minute. A restart in the middle of an incident picks it up again."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from paytriage.app.compose import build
from paytriage.config import Settings
from paytriage.core.metrics import BotMetrics
from tests.conftest import OUTAGE, OUTAGE_START, ROOT, Stack

pytestmark = pytest.mark.integration
M = timedelta(minutes=1)


def settings(stack: Stack, tmp_path: Path) -> Settings:
    return Settings.model_validate(
        {
            "sources": {
                "prometheus": {"url": stack.prometheus_url},
                "opensearch": {"hosts": [stack.opensearch_url]},
            },
            "detectors": {
                name: {"enabled": False}
                for name in ("webhook_lag", "refund_sla", "capture_failures", "traffic_drop")
            },
            "slack": {"enabled": False},
            "runbooks": {"dir": str(ROOT / "runbooks")},
            "store": {"url": f"sqlite:///{tmp_path / 'paytriage.db'}"},
            "evidence": {"chart_dir": str(tmp_path / "charts")},
        }
    )


def test_the_live_cycle_opens_the_outage_and_a_restart_does_not_open_it_again(
    stack: Stack, tmp_path: Path
) -> None:
    cfg = settings(stack, tmp_path)
    metrics = BotMetrics()
    cycle, store = build(cfg, now=OUTAGE_START - 2 * M, metrics=metrics)
    opened_at = None
    for k in range(-2, 6):
        report = cycle.run_once(OUTAGE_START + k * M + timedelta(seconds=17))
        if report.ids("opened"):
            opened_at = OUTAGE_START + k * M
            break
    assert opened_at is not None and opened_at <= OUTAGE_START + 5 * M
    [inc] = store.incidents()
    assert inc.dimensions == {"psp": "stripe"} and inc.runbook == "psp-outage"
    b, chart = inc.evidence.breakdown, inc.evidence.chart
    assert b is not None and b.failures is not None and b.failures > 0
    assert chart is not None and chart.path is not None and Path(chart.path).exists()
    health = cycle.health.snapshot()["decline_spike"]
    assert health["error"] is None
    assert opened_at - health["newest_sample"] <= timedelta(minutes=1)  # fresh data
    text = metrics.exposition().decode()
    assert 'paytriage_incidents_total{change="opened"} 1.0' in text
    assert 'paytriage_detector_cycle_seconds_count{detector="decline_spike"}' in text
    assert 'paytriage_source_query_seconds_count{op="query_range",source="prometheus"}' in text
    assert 'paytriage_source_query_seconds_count{op="search",source="opensearch"}' in text
    store.close()

    # A new process while the outage goes on: nothing opened twice; it resolves after.
    cycle, store = build(cfg, now=opened_at + 3 * M)
    for k in range(3, 7):
        assert cycle.run_once(opened_at + k * M).ids("opened") == []
    resolved = None
    t = OUTAGE_START + OUTAGE
    while resolved is None and t < OUTAGE_START + OUTAGE + 30 * M:
        if cycle.run_once(t).ids("resolved"):
            resolved = t
        t += M
    assert resolved is not None
    assert [i.id for i in store.incidents()] == [inc.id]
    assert store.incident(inc.id).state.value == "resolved"  # type: ignore[union-attr]
