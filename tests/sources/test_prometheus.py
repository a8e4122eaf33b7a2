"""PrometheusSource against the real Prometheus, backfilled with the simulator's data."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from paytriage.config.models import PrometheusConfig
from paytriage.sources import ErrorKind, PrometheusSource, SourceError
from tests.conftest import (
    BACKLOG,
    BACKLOG_START,
    DATA_END,
    DATA_START,
    OUTAGE,
    OUTAGE_START,
    PROMQL_BACKEND,
    Stack,
)

pytestmark = pytest.mark.integration

ERROR_RATIO = (
    'sum by (psp) (rate(payment_authorizations_total{{psp="{psp}",outcome="error"}}[5m]))'
    ' / sum by (psp) (rate(payment_authorizations_total{{psp="{psp}"}}[5m]))'
)


@pytest.fixture(scope="module")
def prom(stack: Stack) -> PrometheusSource:
    return PrometheusSource(PrometheusConfig(url=stack.prometheus_url))


def window_mean(series_ts: np.ndarray, values: np.ndarray, start: float, end: float) -> float:
    mask = (series_ts >= start) & (series_ts < end) & np.isfinite(values)
    assert mask.any(), "no samples in the window"
    return float(values[mask].mean())


def test_instant_query_returns_labelled_series(prom: PrometheusSource, stack: Stack) -> None:
    at = DATA_END - timedelta(minutes=10)
    series = prom.query("sum by (psp) (increase(payment_authorizations_total[10m]))", at=at)
    psps = {s.labels["psp"] for s in series}
    assert psps == set(stack.labels["dimensions"]["psp"])  # type: ignore[index]
    assert all(s.last > 0 and len(s.timestamps) == 1 for s in series)
    assert all(s.timestamps[0] == at.timestamp() for s in series)


def test_scalar_and_empty_results(prom: PrometheusSource) -> None:
    [s] = prom.query("scalar(vector(2.5))", at=DATA_END)
    assert s.labels == {} and s.last == 2.5
    assert prom.query("no_such_metric_total", at=DATA_END) == []


def test_range_query_sees_the_injected_psp_outage(prom: PrometheusSource) -> None:
    start, end, step = DATA_START + timedelta(hours=1), DATA_END, timedelta(minutes=1)
    [stripe] = prom.query_range(ERROR_RATIO.format(psp="stripe"), start, end, step)
    [adyen] = prom.query_range(ERROR_RATIO.format(psp="adyen"), start, end, step)
    assert stripe.labels == {"psp": "stripe"}
    assert len(stripe.timestamps) == int((end - start) / step) + 1
    o0 = (OUTAGE_START + timedelta(minutes=6)).timestamp()
    o1 = (OUTAGE_START + OUTAGE).timestamp()
    b1 = (OUTAGE_START - timedelta(minutes=10)).timestamp()
    stripe_before = window_mean(stripe.timestamps, stripe.values, start.timestamp(), b1)
    stripe_during = window_mean(stripe.timestamps, stripe.values, o0, o1)
    adyen_before = window_mean(adyen.timestamps, adyen.values, start.timestamp(), b1)
    adyen_during = window_mean(adyen.timestamps, adyen.values, o0, o1)
    assert stripe_during > 10 * stripe_before
    assert adyen_during < 2 * adyen_before + 0.005


def test_histogram_quantile_shows_webhook_backlog(prom: PrometheusSource) -> None:
    q = (
        "histogram_quantile(0.95, sum by (psp, le) "
        '(rate(webhook_processing_lag_seconds_bucket{psp="adyen"}[5m])))'
    )
    [lag] = prom.query_range(q, DATA_START + timedelta(hours=1), DATA_END, timedelta(minutes=1))
    before = window_mean(
        lag.timestamps,
        lag.values,
        (DATA_START + timedelta(hours=1)).timestamp(),
        (BACKLOG_START - timedelta(minutes=10)).timestamp(),
    )
    during = window_mean(
        lag.timestamps,
        lag.values,
        (BACKLOG_START + BACKLOG / 2).timestamp(),
        (BACKLOG_START + BACKLOG).timestamp(),
    )
    assert before < 60 < during


def test_bad_promql_is_a_query_error_naming_the_query(prom: PrometheusSource) -> None:
    bad = "sum(rate(payment_authorizations_total[5m])"
    with pytest.raises(SourceError) as info:
        prom.query(bad, at=DATA_END)
    err = info.value
    assert err.kind is ErrorKind.query and not err.retryable
    assert err.query == bad and bad in str(err)
    if PROMQL_BACKEND == "victoriametrics":  # its parser's answer: 422, errorType "422"
        assert err.status == 422 and "unexpected token" in err.detail
    else:
        assert err.status == 400 and "parse error" in err.detail


def test_range_query_validates_its_arguments(prom: PrometheusSource) -> None:
    with pytest.raises(ValueError, match="end must not be before start"):
        prom.query_range("up", DATA_END, DATA_START, timedelta(minutes=1))


def test_get_and_post_agree(stack: Stack) -> None:
    q = 'sum(increase(payment_captures_total{outcome="failed"}[1h]))'
    get = PrometheusSource(PrometheusConfig(url=stack.prometheus_url, method="GET"))
    post = PrometheusSource(PrometheusConfig(url=stack.prometheus_url, method="POST"))
    [a] = get.query(q, at=DATA_END)
    [b] = post.query(q, at=DATA_END)
    assert a.last == b.last and a.last > 0
