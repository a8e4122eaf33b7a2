"""OpenSearchSource against the real single-node OpenSearch, bulk-loaded with simulator logs."""

from __future__ import annotations

from datetime import timedelta

import pytest

from paytriage.config.models import OpenSearchConfig
from paytriage.sources import ErrorKind, OpenSearchSource, SourceError
from tests.conftest import DATA_END, DATA_START, OUTAGE, OUTAGE_START, Stack

pytestmark = pytest.mark.integration

LOGS = "payments-logs-*"


@pytest.fixture(scope="module")
def osrc(stack: Stack) -> OpenSearchSource:
    return OpenSearchSource(OpenSearchConfig(hosts=[stack.opensearch_url]))


def test_search_is_time_bounded_filtered_and_sorted(osrc: OpenSearchSource) -> None:
    start, end = OUTAGE_START, OUTAGE_START + OUTAGE
    res = osrc.search(LOGS, start, end, {"psp": "stripe", "level": "ERROR"}, size=50)
    assert res.total > 20
    assert len(res.hits) == 50
    stamps = [h["@timestamp"] for h in res.hits]
    assert stamps == sorted(stamps, reverse=True)
    assert all(h["psp"] == "stripe" and h["level"] == "ERROR" for h in res.hits)
    lo = start.isoformat().replace("+00:00", "")
    hi = end.isoformat().replace("+00:00", "")
    assert all(lo <= s[:19] < hi for s in stamps)


def test_error_codes_rise_during_the_outage(osrc: OpenSearchSource) -> None:
    during = osrc.terms(LOGS, "error_code", OUTAGE_START, OUTAGE_START + OUTAGE, {"psp": "stripe"})
    before = osrc.terms(LOGS, "error_code", OUTAGE_START - OUTAGE, OUTAGE_START, {"psp": "stripe"})
    assert during and during[0].key in {"psp_timeout", "psp_5xx"}
    top_before = {b.key: b.count for b in before}
    assert during[0].count > 5 * max(1, top_before.get(str(during[0].key), 0))


def test_date_histogram_counts_match_search(osrc: OpenSearchSource) -> None:
    start, end = OUTAGE_START - timedelta(minutes=10), OUTAGE_START + OUTAGE
    flt = {"psp": "stripe", "level": ["ERROR", "WARN"]}
    buckets = osrc.date_histogram(
        LOGS, start, end, timedelta(minutes=1), flt, split_by="error_code"
    )
    assert len(buckets) == 30  # empty minutes are kept, so charts have no holes
    assert buckets[0].key == start.timestamp()
    total = osrc.search(LOGS, start, end, flt, size=0).total
    assert sum(b.count for b in buckets) == total
    assert all(sum(s.count for s in b.sub) <= b.count for b in buckets)
    quiet = sum(b.count for b in buckets[:10])
    loud = sum(b.count for b in buckets[15:])
    assert loud > 3 * quiet


def test_change_events_are_searchable(osrc: OpenSearchSource) -> None:
    res = osrc.search("changes-*", DATA_START, DATA_END, size=100)
    assert res.total >= 1
    assert {"service", "kind", "@timestamp"} <= set(res.hits[0])


def test_filter_values_are_never_query_syntax(osrc: OpenSearchSource) -> None:
    sneaky = osrc.search(LOGS, DATA_START, DATA_END, {"psp": 'stripe" OR psp:*'}, size=1)
    assert sneaky.total == 0
    sneaky2 = osrc.search(LOGS, DATA_START, DATA_END, {"psp": "*"}, size=1)
    assert sneaky2.total == 0


def test_missing_index_pattern_is_empty_not_an_error(osrc: OpenSearchSource) -> None:
    assert osrc.search("no-such-index-*", DATA_START, DATA_END).total == 0
    assert osrc.terms("no-such-index-*", "error_code", DATA_START, DATA_END) == []


def test_bad_aggregation_is_a_query_error(osrc: OpenSearchSource) -> None:
    with pytest.raises(SourceError) as info:
        osrc.terms(LOGS, "message", DATA_START, DATA_END)  # a text field: no terms aggregation
    err = info.value
    assert err.kind is ErrorKind.query and err.status == 400 and not err.retryable
    assert "payments-logs-*" in err.query and "message" in err.query


def test_check_passes_on_a_live_cluster(osrc: OpenSearchSource) -> None:
    osrc.check()
