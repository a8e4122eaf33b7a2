"""The sources' pure parts and their error discipline against misbehaving endpoints."""

from __future__ import annotations

import json
import math
import time
from datetime import UTC, datetime, timedelta

import pytest

from paytriage.config.models import OpenSearchConfig, PrometheusConfig
from paytriage.sources import ErrorKind, OpenSearchSource, PrometheusSource, SourceError
from paytriage.sources.prometheus import _parse_result
from tests.support.faults import closed_port_url, silent_server, status_server

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def prom(url: str, **kw: object) -> PrometheusSource:
    return PrometheusSource(PrometheusConfig.model_validate({"url": url, **kw}))


def osrc(url: str, **kw: object) -> OpenSearchSource:
    return OpenSearchSource(OpenSearchConfig.model_validate({"hosts": [url], **kw}))


def test_parse_vector_matrix_scalar_and_special_values() -> None:
    vec = [
        {"metric": {"psp": "stripe"}, "value": [1700000000.5, "NaN"]},
        {"metric": {}, "value": [1700000000.5, "+Inf"]},
    ]
    a, b = _parse_result(vec, "q")
    assert a.labels == {"psp": "stripe"} and math.isnan(a.last)
    assert b.labels == {} and b.last == math.inf
    mat = [{"metric": {"psp": "adyen"}, "values": [[1, "1"], [2, "2.5"], [3, "-Inf"]]}]
    [m] = _parse_result(mat, "q")
    assert list(m.timestamps) == [1, 2, 3] and m.values[1] == 2.5 and m.values[2] == -math.inf
    [s] = _parse_result([1700000000, "4"], "q")
    assert s.labels == {} and s.last == 4.0
    assert _parse_result([], "q") == []


def test_parse_rejects_garbage_naming_query() -> None:
    with pytest.raises(SourceError) as info:
        _parse_result({"oops": 1}, "sum(x)")
    assert info.value.kind is ErrorKind.response and "sum(x)" in str(info.value)


def test_prometheus_timeout_is_one_typed_error() -> None:
    with silent_server() as url:
        src = prom(url, timeout="1s", retries=3)
        t = time.monotonic()
        with pytest.raises(SourceError) as info:
            src.query("up")
        elapsed = time.monotonic() - t
    err = info.value
    assert err.kind is ErrorKind.timeout and err.query == "up" and err.retryable
    assert elapsed < 3, "a read timeout must not be retried"


def test_prometheus_down_is_a_connection_error() -> None:
    with pytest.raises(SourceError) as info:
        prom(closed_port_url(), retries=1).query_range(
            "sum(rate(x[5m]))", T0, T0 + timedelta(hours=1), timedelta(minutes=1)
        )
    assert info.value.kind is ErrorKind.connection
    assert "sum(rate(x[5m]))" in str(info.value)


def test_prometheus_gateway_errors_are_retried_then_reported() -> None:
    with status_server(503, b"upstream down") as (url, seen):
        with pytest.raises(SourceError) as info:
            prom(url, retries=2).query("up")
    assert len(seen) == 3, "one try and two retries"
    assert info.value.kind in (ErrorKind.connection, ErrorKind.http) and info.value.retryable


def test_prometheus_non_json_reply() -> None:
    with status_server(200, b"<html>login</html>", "text/html") as (url, _):
        with pytest.raises(SourceError) as info:
            prom(url).query("up")
    assert info.value.kind is ErrorKind.response


def test_prometheus_forbidden_is_http_not_retryable() -> None:
    with status_server(403, b'{"status":"error","error":"forbidden"}', "application/json") as (
        url,
        seen,
    ):
        with pytest.raises(SourceError) as info:
            prom(url, retries=3).query("up")
    assert info.value.kind is ErrorKind.http and info.value.status == 403
    assert not info.value.retryable and len(seen) == 1


def test_prometheus_bearer_token_not_in_error() -> None:
    cfg = PrometheusConfig.model_validate(
        {"url": closed_port_url(), "bearer_token": "${TOK}", "retries": 0},
        context={"env": {"TOK": "very-secret-token"}},
    )
    with pytest.raises(SourceError) as info:
        PrometheusSource(cfg).query("up")
    assert "very-secret-token" not in str(info.value)


def test_opensearch_query_is_structured_not_text() -> None:
    src = osrc("http://127.0.0.1:9")
    q = src.build_query(
        T0, T0 + timedelta(minutes=10), {"psp": "stripe OR *", "level": ["ERROR", "WARN"]}
    )
    filters = q["bool"]["filter"]
    assert filters[0] == {
        "range": {"@timestamp": {"gte": "2026-11-24T12:00:00Z", "lt": "2026-11-24T12:10:00Z"}}
    }
    assert {"term": {"psp": "stripe OR *"}} in filters  # an exact value, never parsed as syntax
    assert {"terms": {"level": ["ERROR", "WARN"]}} in filters
    with pytest.raises(ValueError, match="end must not be before start"):
        src.build_query(T0, T0 - timedelta(seconds=1), None)


def test_opensearch_timeout_and_down() -> None:
    with silent_server() as url:
        with pytest.raises(SourceError) as info:
            osrc(url, timeout="1s").terms(
                "payments-logs-*", "error_code", T0, T0 + timedelta(hours=1)
            )
    assert info.value.kind is ErrorKind.timeout and "payments-logs-*" in info.value.query
    with pytest.raises(SourceError) as info2:
        osrc(closed_port_url(), retries=0).search("payments-logs-*", T0, T0 + timedelta(hours=1))
    assert info2.value.kind is ErrorKind.connection


def test_opensearch_server_error_names_reason() -> None:
    body = b'{"error":{"root_cause":[{"type":"cluster_block_exception","reason":"index read-only"}]},"status":503}'
    with status_server(503, body, "application/json") as (url, seen):
        with pytest.raises(SourceError) as info:
            osrc(url, retries=1).search("payments-logs-*", T0, T0 + timedelta(hours=1))
    assert info.value.status == 503 and "cluster_block_exception" in str(info.value)
    assert len(seen) == 2


def vector(result: object, result_type: str = "vector") -> bytes:
    return json.dumps(
        {"status": "success", "data": {"resultType": result_type, "result": result}}
    ).encode()


MALFORMED = {
    "a value that is not a pair": [{"metric": {}, "value": "zz"}],
    "labels that are not an object": [{"metric": ["a"], "value": [1700000000, "1"]}],
    "values that are not pairs": [{"metric": {}, "values": [1, 2, 3]}],
    "a timestamp that is not a number": [{"metric": {}, "values": [["x", "1"]]}],
    "a label value that is not a string": [{"metric": {"psp": 7}, "value": [1, "1"]}],
    "a scalar of the wrong shape": ["a", "b"],
}


@pytest.mark.parametrize("answer", MALFORMED.values(), ids=list(MALFORMED))
def test_a_malformed_answer_is_a_response_error_naming_the_query(answer: object) -> None:
    """Valid JSON of the wrong shape is the source failing, never an exception of the
    caller's (it used to escape as ValueError, AttributeError or TypeError)."""
    with status_server(200, vector(answer), "application/json") as (url, _):
        src = prom(url, retries=0)
        for call in (
            lambda: src.query("sum(x)"),
            lambda: src.query_range("sum(x)", T0, T0 + timedelta(minutes=5), timedelta(minutes=1)),
        ):
            with pytest.raises(SourceError) as info:
                call()
            assert info.value.kind is ErrorKind.response and "sum(x)" in str(info.value)
            assert "malformed answer" in str(info.value)


def test_a_password_in_the_source_url_never_reaches_an_error() -> None:
    """``backtest --prometheus-url http://user:pw@host`` printed the password on every error
    line and wrote it into its JSON: the error names the URL with its userinfo masked."""
    url = closed_port_url().replace("http://", "http://reader:hunter2pw@")
    # as the CLI's --prometheus-url sets it (the config file refuses such a URL)
    cfg = PrometheusConfig(retries=0).model_copy(update={"url": url})
    with pytest.raises(SourceError) as info:
        PrometheusSource(cfg).query("up")
    assert info.value.kind is ErrorKind.connection
    assert "hunter2pw" not in str(info.value) and "hunter2pw" not in info.value.detail
    assert "cannot reach http://" in str(info.value)
