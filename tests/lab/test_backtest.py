"""`paytriage backtest` against the real Prometheus holding the simulated morning."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from paytriage.cli import app
from tests.conftest import DATA_END, DATA_START, Stack

pytestmark = pytest.mark.integration
M = timedelta(minutes=1)
ROOT = Path(__file__).resolve().parents[2]


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _backtest(stack: Stack, out: Path, *extra: str) -> Result:
    """`paytriage backtest` over the dataset after its first hour (history for baselines)."""
    return CliRunner().invoke(
        app,
        [
            "backtest",
            "--prometheus-url",
            stack.prometheus_url,
            "--start",
            (DATA_START + timedelta(hours=1)).isoformat(),
            "--end",
            DATA_END.isoformat(),
            "--output",
            str(out),
            *extra,
        ],
    )


def test_backtest_writes_one_incident_per_injected_problem_and_scores_them(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A backtest posts nothing: it must run without Slack tokens.
    monkeypatch.delenv("SLACK_BOT_TOKEN", raising=False)
    monkeypatch.delenv("SLACK_APP_TOKEN", raising=False)
    out = tmp_path / "bt" / "incidents.json"
    res = _backtest(
        stack,
        out,
        "--labels",
        str(stack.data_dir / "labels.json"),
        "--compare-rules",
        str(ROOT / "bench" / "static-rules.yml"),
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    scenarios = {s["kind"]: s for s in stack.labels["scenarios"]}  # type: ignore[attr-defined]
    got = {(i["detector"], tuple(i["dimensions"].items())): i for i in doc["incidents"]}
    expected = {
        ("decline_spike", (("psp", "stripe"),)): "psp_outage",
        ("capture_failures", (("psp", "braintree"),)): "capture_failures",
        ("refund_sla", (("psp", "adyen"),)): "refund_stall",
        ("webhook_lag", (("psp", "adyen"),)): "webhook_backlog",
        ("traffic_drop", (("country", "GB"),)): "traffic_drop",
    }
    assert set(got) == set(expected)
    for key, kind in expected.items():
        inc, s = got[key], scenarios[kind]
        assert set(inc) >= {"id", "detector", "opened_at", "resolved_at", "severity", "title"}
        assert _t(s["start"]) < _t(inc["opened_at"]) <= _t(s["start"]) + 30 * M, key
        assert inc["opened_at"].endswith("Z")
        if inc["resolved_at"] is not None:
            assert _t(inc["resolved_at"]) > _t(s["end"]) - 5 * M, key
    # the scrape gap is a data problem, not a page
    [gap] = doc["data_problems"]
    assert gap["dimensions"] == {"psp": "worldpay"}
    s, static = doc["scores"]
    assert (s["name"], static["name"]) == ("paytriage", "static rules")
    assert (s["recall"], s["precision"], s["duplicates"], s["false_pages"]) == (1.0, 1.0, 0, 0)
    assert s["attribution"] == 1.0
    # the static rules ran over the same range with for: semantics, side by side
    alerts = doc["static_rules"]["alerts"]
    assert any(a["detector"] == "PaymentPSPErrorRateHigh" for a in alerts)
    assert static["incidents"] == len(alerts)
    assert static["recall"] < 1.0 or static["duplicates"] > 0 or static["false_pages"] > 0
    assert s["median_ttd_seconds"] < static["median_ttd_seconds"]
    assert "static rules" in res.output and "recall" in res.output
    # the same history gives the same incidents, ids included
    again = tmp_path / "again.json"
    res2 = _backtest(stack, again)
    assert res2.exit_code == 0, res2.output
    assert json.loads(again.read_text())["incidents"] == doc["incidents"]
