"""Static alerting rules against the real Prometheus and promtool: what a team's rules raise."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from paytriage.config.models import PrometheusConfig
from paytriage.lab.rules import alert_periods, evaluate, load_rules
from paytriage.sources import PrometheusSource
from tests.conftest import (
    BACKLOG,
    BACKLOG_START,
    CAPTURE,
    CAPTURE_START,
    DATA_END,
    DATA_START,
    OUTAGE,
    OUTAGE_START,
    ROOT,
    Stack,
)

pytestmark = pytest.mark.integration
M = timedelta(minutes=1)
STATIC_RULES = ROOT / "bench" / "static-rules.yml"
# promtool runs Prometheus' own rule checker and rule manager on its own data: no query
# reaches the PromQL API under test, so a VictoriaMetrics run would only repeat them.
PROMTOOL_ONLY = pytest.mark.prometheus_only(reason="promtool, not the PromQL API under test")


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool not on PATH (scripts/stack up installs Debian's prometheus)"
    return path


def when(iso: str) -> datetime:
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


@PROMTOOL_ONLY
def test_static_rules_pass_promtool(stack: Stack) -> None:
    res = subprocess.run(
        [promtool(), "check", "rules", str(STATIC_RULES)], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout
    assert len(load_rules(STATIC_RULES)) == 12


# Presence patterns ('#' present, '.' absent, one per minute) and rule timings chosen to hit
# every transition: pending cleared by a gap, firing exactly at `for`, keep_firing_for
# bridging a gap and being reset, resolution, re-firing, still firing at the end.
PATTERNS = {
    "a": "##.####..#####.#.##...###########..#..####",
    "b": "#.#.#.####....#######.....##.##.##########",
    "c": "....###############...#....#...#######....",
}
TIMINGS = {"F0": ("0s", "0s"), "F3": ("3m", "0s"), "K2": ("2m", "2m"), "K3": ("0s", "3m")}


@PROMTOOL_ONLY
def test_state_machine_agrees_with_prometheus_rule_evaluation(stack: Stack, tmp_path: Path) -> None:
    """promtool runs Prometheus' own rule manager; its firing alerts must be ours, minute by minute."""
    rules = {
        "groups": [
            {
                "name": "state-machine",
                "interval": "1m",
                "rules": [
                    {"alert": name, "expr": "cond == 1", "for": f, "keep_firing_for": k}
                    for name, (f, k) in TIMINGS.items()
                ]
                # a NaN sample is present: the selector returns it and the alert fires
                + [{"alert": "NaNs", "expr": "nanny"}],
            }
        ]
    }
    (tmp_path / "rules.yml").write_text(json.dumps(rules))
    n = len(PATTERNS["a"])
    series = [
        {
            "series": f'cond{{id="{sid}"}}',
            "values": " ".join("1" if c == "#" else "0" for c in pattern),
        }
        for sid, pattern in PATTERNS.items()
    ]
    series.append({"series": 'nanny{id="n"}', "values": "NaN NaN NaN stale"})
    parsed = {r.name: r for r in load_rules(tmp_path / "rules.yml")}
    times = [60.0 * i for i in range(n)]
    cases = []
    for name in TIMINGS:
        rule = parsed[name]
        firing: dict[int, list[str]] = {i: [] for i in range(n)}
        for sid, pattern in PATTERNS.items():
            present = [c == "#" for c in pattern]
            for p in alert_periods(times, present, rule.for_, rule.keep_firing_for):
                end = n if p.resolved_at is None else round(p.resolved_at / 60)
                for i in range(round(p.fired_at / 60), end):
                    firing[i].append(sid)
        cases += [
            {
                "eval_time": f"{i}m",
                "alertname": name,
                "exp_alerts": [{"exp_labels": {"id": sid}} for sid in sids],
            }
            for i, sids in firing.items()
        ]
    nan_periods = alert_periods(times[:4], [True, True, True, False], timedelta(0))
    assert [(p.fired_at, p.resolved_at) for p in nan_periods] == [(0.0, 180.0)]
    cases += [
        {
            "eval_time": f"{i}m",
            "alertname": "NaNs",
            "exp_alerts": [{"exp_labels": {"id": "n"}}] if i < 3 else [],
        }
        for i in range(5)
    ]
    test = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series, "alert_rule_test": cases}],
    }
    (tmp_path / "test.yml").write_text(json.dumps(test))
    res = subprocess.run(
        [promtool(), "test", "rules", "test.yml"], capture_output=True, text=True, cwd=tmp_path
    )
    assert res.returncode == 0, res.stdout + res.stderr
    # the patterns do exercise every path
    assert any(c["exp_alerts"] for c in cases) and any(not c["exp_alerts"] for c in cases)


def test_static_rules_on_the_day_catch_the_big_incidents(stack: Stack) -> None:
    prom = PrometheusSource(PrometheusConfig(url=stack.prometheus_url))
    result = evaluate(prom, load_rules(STATIC_RULES), DATA_START, DATA_END, M)
    assert result.errors == {} and result.skipped == [] and result.notes == []
    for a in result.alerts:
        assert set(a) == {
            "id",
            "detector",
            "opened_at",
            "resolved_at",
            "severity",
            "dimensions",
            "title",
        }
        assert a["opened_at"].endswith("Z") and "{{" not in a["title"]
    assert [a["opened_at"] for a in result.alerts] == sorted(a["opened_at"] for a in result.alerts)
    assert len({a["id"] for a in result.alerts}) == len(result.alerts)

    def fired(detector: str) -> list[dict[str, Any]]:
        return [a for a in result.alerts if a["detector"] == detector]

    # The stripe outage: technical errors far above 5 %, once, for stripe only.
    [psp] = fired("PaymentPSPErrorRateHigh")
    assert psp["dimensions"] == {"psp": "stripe"} and psp["severity"] == "critical"
    opened = when(psp["opened_at"])
    assert OUTAGE_START < opened <= OUTAGE_START + OUTAGE + 5 * M
    # `for: 5m` after the 5m rate crosses the threshold: not before 5 minutes in
    assert opened >= OUTAGE_START + 5 * M
    assert psp["resolved_at"] is not None
    assert when(psp["resolved_at"]) <= OUTAGE_START + OUTAGE + 10 * M
    assert psp["title"].startswith("stripe: ") and "%" in psp["title"]

    # The adyen webhook backlog: the oldest delivery passes 300 s, then `for: 5m`.
    [stuck] = fired("PaymentWebhookBacklogStuck")
    assert stuck["dimensions"] == {"psp": "adyen"}
    assert BACKLOG_START + 10 * M <= when(stuck["opened_at"]) <= BACKLOG_START + BACKLOG
    assert [a["dimensions"] for a in fired("PaymentWebhookLagHigh")] == [{"psp": "adyen"}]

    # The braintree capture failures (4 % against a 0.5 % threshold).
    capture = [
        a for a in fired("PaymentCaptureFailuresHigh") if a["dimensions"] == {"psp": "braintree"}
    ]
    assert len(capture) == 1
    assert CAPTURE_START < when(capture[0]["opened_at"]) <= CAPTURE_START + CAPTURE

    # Comparisons with last week need a week of history: on six hours of data, nothing.
    assert fired("PaymentTrafficDropCountry") == fired("PaymentTrafficDropPSP") == []
    assert fired("PaymentAuthorizationsStopped") == []


def test_a_rule_the_server_rejects_is_reported_and_the_rest_still_run(
    stack: Stack, tmp_path: Path
) -> None:
    path = tmp_path / "rules.yml"
    path.write_text(
        "groups:\n"
        "  - name: g\n"
        "    rules:\n"
        "      - alert: Broken\n"
        "        expr: sum by (psp) (rate(payment_authorizations_total[5m])\n"
        "      - alert: Stuck\n"
        "        expr: max by (psp) (webhook_backlog_oldest_age_seconds) > 300\n"
        "        for: 5m\n"
    )
    prom = PrometheusSource(PrometheusConfig(url=stack.prometheus_url))
    result = evaluate(prom, load_rules(path), BACKLOG_START, BACKLOG_START + BACKLOG, M)
    assert list(result.errors) == ["Broken"] and "query" in result.errors["Broken"]
    assert [a["dimensions"] for a in result.alerts] == [{"psp": "adyen"}]
