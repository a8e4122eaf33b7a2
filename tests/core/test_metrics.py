"""The bot's own metrics: metered sources time calls and count errors by kind; the
exposition carries what paytriage run serves on /metrics."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from paytriage.core.metrics import BotMetrics
from paytriage.sources.base import ErrorKind, SearchResult, Series, SourceError
from paytriage.sources.metered import MeteredLogs, MeteredMetrics
from tests.support.factories import T0


class Flaky:
    name = "prometheus"

    def __init__(self) -> None:
        self.calls = 0

    def query(self, promql: str, at: datetime | None = None) -> list[Series]:
        self.calls += 1
        if self.calls == 2:
            raise SourceError("prometheus", ErrorKind.timeout, promql, "took too long")
        return []

    def query_range(
        self, promql: str, start: datetime, end: datetime, step: timedelta
    ) -> list[Series]:
        raise SourceError("prometheus", ErrorKind.connection, promql, "refused")


class Logs:
    name = "opensearch"

    def search(self, index, start, end, filters=None, size=100, newest_first=True):  # type: ignore[no-untyped-def]
        return SearchResult(total=3)

    def terms(self, index, field, start, end, filters=None, size=10):  # type: ignore[no-untyped-def]
        return []

    def date_histogram(self, index, start, end, interval, filters=None, split_by=None):  # type: ignore[no-untyped-def]
        return []


def samples(m: BotMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(m.exposition().decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metered_sources_time_every_call_and_count_errors_by_kind() -> None:
    m = BotMetrics()
    prom = MeteredMetrics(Flaky(), m)
    prom.query("up")
    with pytest.raises(SourceError):  # the error goes on unchanged
        prom.query("up")
    with pytest.raises(SourceError):
        prom.query_range("up", T0, T0, timedelta(minutes=1))
    assert MeteredLogs(Logs(), m).search("logs-*", T0, T0).total == 3
    got = samples(m)
    q = (("op", "query"), ("source", "prometheus"))
    assert got[("paytriage_source_query_seconds_count", q)] == 2
    assert (
        got[
            ("paytriage_source_query_errors_total", (("kind", "timeout"), ("source", "prometheus")))
        ]
        == 1
    )
    assert (
        got[
            (
                "paytriage_source_query_errors_total",
                (("kind", "connection"), ("source", "prometheus")),
            )
        ]
        == 1
    )
    assert (
        got[("paytriage_source_query_seconds_count", (("op", "search"), ("source", "opensearch")))]
        == 1
    )


def test_freshness_and_notifications() -> None:
    m = BotMetrics()
    m.observe_age("decline_spike", T0 - timedelta(minutes=2), T0)
    m.observe_age("traffic_drop", None, T0)  # no data: no made-up age
    m.count_sends("slack", 3, 1, 0)
    got = samples(m)
    assert got[("paytriage_data_age_seconds", (("detector", "decline_spike"),))] == 120
    assert ("paytriage_data_age_seconds", (("detector", "traffic_drop"),)) not in got
    assert got[("paytriage_notifications_total", (("channel", "slack"), ("outcome", "sent")))] == 3
    assert (
        "paytriage_notifications_total",
        (("channel", "slack"), ("outcome", "given_up")),
    ) not in got
