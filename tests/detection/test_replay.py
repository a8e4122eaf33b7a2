"""Detectors against the real Prometheus holding the simulated day: what the live bot would see."""

from __future__ import annotations

from datetime import timedelta

import pytest
from typer.testing import CliRunner

from paytriage.cli import app
from paytriage.config.models import PrometheusConfig
from paytriage.detection.replay import replay
from paytriage.detection.run import runs_for
from paytriage.detectors import DetectorsConfig
from paytriage.sources import PrometheusSource
from tests.conftest import (
    BACKLOG_START,
    CAPTURE_START,
    DATA_END,
    DATA_START,
    DROP_START,
    GAP_START,
    OUTAGE,
    OUTAGE_START,
    STALL_START,
    Stack,
)

pytestmark = pytest.mark.integration
M = timedelta(minutes=1)


def test_replay_finds_the_psp_outage_once_and_explains_it(stack: Stack) -> None:
    prom = PrometheusSource(PrometheusConfig(url=stack.prometheus_url))
    runs = runs_for([DetectorsConfig().decline_spike], M)
    result = replay(prom, runs, OUTAGE_START - timedelta(hours=1), DATA_END, M)
    assert result.failed == {}
    raised = [e for e in result.events if e.kind == "raised"]
    assert [e.finding.dimensions for e in raised] == [{"psp": "stripe"}]
    [r] = raised
    assert OUTAGE_START < r.at <= OUTAGE_START + 4 * M
    assert r.finding.onset is not None and abs(r.finding.onset - OUTAGE_START) <= 2 * M
    assert r.finding.details["cause"] == "technical"
    [cleared] = [e for e in result.events if e.kind == "cleared"]
    assert OUTAGE_START + OUTAGE < cleared.at <= OUTAGE_START + OUTAGE + 25 * M


def test_detect_once_prints_the_finding(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-test")
    monkeypatch.setenv("SLACK_APP_TOKEN", "xapp-test")
    at = (OUTAGE_START + 8 * M).isoformat()
    res = CliRunner().invoke(
        app, ["detect", "--once", "--at", at, "--prometheus-url", stack.prometheus_url]
    )
    assert res.exit_code == 0, res.output
    assert "1 finding(s)" in res.output
    assert "decline_spike psp=stripe since 09:0" in res.output
    assert "xoxb-test" not in res.output
    quiet = CliRunner().invoke(
        app,
        [
            "detect",
            "--once",
            "--at",
            (OUTAGE_START - 30 * M).isoformat(),
            "--prometheus-url",
            stack.prometheus_url,
        ],
    )
    assert quiet.exit_code == 0 and "0 finding(s)" in quiet.output


def test_every_detector_on_the_day_finds_each_incident_once_and_nothing_else(
    stack: Stack,
) -> None:
    prom = PrometheusSource(PrometheusConfig(url=stack.prometheus_url))
    runs = runs_for(DetectorsConfig().enabled(), M)
    result = replay(prom, runs, DATA_START + timedelta(hours=1), DATA_END, M)
    assert result.failed == {}
    raised = {
        (e.finding.detector, tuple(sorted(e.finding.dimensions.items()))): e
        for e in result.events
        if e.kind == "raised"
    }
    assert len(raised) == len([e for e in result.events if e.kind == "raised"]), "a duplicate"
    expected_at = {
        ("decline_spike", (("psp", "stripe"),)): OUTAGE_START,
        ("webhook_lag", (("psp", "adyen"),)): BACKLOG_START,
        ("capture_failures", (("psp", "braintree"),)): CAPTURE_START,
        ("traffic_drop", (("country", "GB"),)): DROP_START,
        ("traffic_drop", (("psp", "worldpay"),)): GAP_START,  # reported as a data problem
        ("refund_sla", (("psp", "adyen"),)): STALL_START,
    }
    assert set(raised) == set(expected_at)
    # Capture failures at this PSP's volume (about 70 captures a minute, 4 % failing) take
    # longer to tell from noise at a 1e-6 false-alarm rate than the big slices do.
    # A refund SLA is a day long: a stalled refund worker is caught within half an hour.
    slow = {
        ("capture_failures", (("psp", "braintree"),)): 10 * M,
        ("refund_sla", (("psp", "adyen"),)): 30 * M,
    }
    for key, onset in expected_at.items():
        assert onset < raised[key].at <= onset + slow.get(key, 6 * M), key
    gap = raised[("traffic_drop", (("psp", "worldpay"),))].finding
    assert gap.details["kind"] == "data_problem" and gap.severity.value == "warning"
    drop = raised[("traffic_drop", (("country", "GB"),))].finding
    assert drop.observed < 0.5 * drop.expected
    refunds = raised[("refund_sla", (("psp", "adyen"),))].finding
    # raised on the last 15 minutes' completions, while the 30-minute ratio is still falling
    assert (
        refunds.details["drain_ratio"] < 0.75 and refunds.details["forecast_breaches_per_hour"] > 0
    )
    assert "will miss the 1d SLA" in refunds.title


def test_a_replay_in_segments_sees_what_one_in_a_single_frame_sees(stack: Stack) -> None:
    """A backtest fetches each detector's signals a few hours at a time (its memory is one
    segment's, not the range's); detector state runs on across segments, and each segment
    brings its own lookback, so no detector sees less, or more, than it would live."""
    prom = PrometheusSource(PrometheusConfig(url=stack.prometheus_url))
    start = DATA_START + timedelta(hours=1)

    def events(segment: timedelta) -> list[tuple[str, str, str, str, float]]:
        runs = runs_for(DetectorsConfig().enabled(), M)
        result = replay(prom, runs, start, DATA_END, M, segment=segment)
        assert result.failed == {}
        return [
            (e.kind, e.at.isoformat(), e.finding.detector, e.finding.title, e.finding.observed)
            for e in result.events
        ]

    whole = events(DATA_END - start + M)
    assert {kind for kind, *_ in whole} == {"raised", "cleared"}
    # segments of 37 minutes: boundaries fall inside every incident of the day, during
    # its persistence wait, while it is open and while it clears
    assert events(37 * M) == whole


def test_anomaly_on_a_user_signal_finds_the_latency_jump(stack: Stack) -> None:
    from paytriage.detectors.anomaly import Config as AnomalyConfig
    from paytriage.detectors.anomaly import Signal

    cfg = AnomalyConfig(
        enabled=True,
        signals=[
            Signal(
                name="auth-latency-p95",
                query=(
                    "histogram_quantile(0.95, sum by (psp, le) "
                    "(rate(payment_authorization_duration_seconds_bucket[5m])))"
                ),
                direction="up",
                unit="s",
            )
        ],
    )
    prom = PrometheusSource(PrometheusConfig(url=stack.prometheus_url))
    runs = runs_for([cfg], M)
    result = replay(prom, runs, DATA_START + timedelta(hours=2), DATA_END, M)
    raised = [e for e in result.events if e.kind == "raised"]
    assert [e.finding.dimensions for e in raised] == [
        {"signal": "auth-latency-p95", "psp": "stripe"}
    ]
    assert OUTAGE_START < raised[0].at <= OUTAGE_START + 6 * M
    assert raised[0].finding.observed > 3 * raised[0].finding.expected
