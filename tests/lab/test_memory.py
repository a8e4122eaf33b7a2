"""The in-memory sources on tiny hand-made data, with the answers Prometheus 2 and OpenSearch
give worked out by hand (see the comments): what the demo relies on when no server runs."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from paytriage.lab.memory import InMemoryLogs, InMemoryMetrics
from paytriage.sources import ErrorKind, Series, SourceError

T0 = 1_800_000_000 - 1_800_000_000 % 3600  # an hour boundary
M = 60


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(T0 + seconds, UTC)


def series(name: str, points: Mapping[Any, float], **labels: str) -> tuple[Any, Any, Any]:
    ts = np.array([T0 + t for t in points], dtype=float)
    return ({"__name__": name, **labels}, ts, np.array(list(points.values()), dtype=float))


def every_minute(name: str, values: Sequence[float], start: float = 0, **labels: str) -> Any:
    return series(name, {start + i * M: v for i, v in enumerate(values)}, **labels)


def by_labels(result: list[Series]) -> dict[tuple[tuple[str, str], ...], Series]:
    return {tuple(sorted(s.labels.items())): s for s in result}


def one(result: list[Series]) -> float:
    assert len(result) == 1, result
    return float(result[0].values[0])


def values(result: list[Series]) -> dict[tuple[tuple[str, str], ...], float]:
    return {k: float(s.values[0]) for k, s in by_labels(result).items()}


# --- rate / increase ------------------------------------------------------------------------


@pytest.fixture
def counters() -> InMemoryMetrics:
    return InMemoryMetrics(
        [
            every_minute("x", [10 * i for i in range(11)]),  # 0, 10, ... 100 at 0..600 s
            every_minute("late", [100, 110, 120], start=600),  # starts inside the range
            every_minute("zero", [2, 12, 22], start=600),  # extrapolates to its zero point
            every_minute("c", [100, 110, 5, 15, 25]),  # a counter reset at 120 s
        ]
    )


def test_increase_needs_no_extrapolation_when_samples_sit_on_the_range_edges(
    counters: InMemoryMetrics,
) -> None:
    # [0, 300] holds 0..50 at both edges: 50, exactly (ranges are closed in Prometheus 2).
    assert one(counters.query("increase(x[5m])", at(300))) == 50
    assert one(counters.query("rate(x[5m])", at(300))) == pytest.approx(50 / 300, rel=1e-15)


def test_rate_extrapolates_to_the_range_edges(counters: InMemoryMetrics) -> None:
    # [30, 330] holds 60..300 s (10..50): 40 over 240 s, 30 s short at each edge, both under
    # 1.1 x the 60 s spacing: extrapolated to the full 300 s -> 40 * 300 / 240 = 50.
    assert one(counters.query("increase(x[5m])", at(330))) == pytest.approx(50, rel=1e-15)
    assert one(counters.query("rate(x[5m])", at(330))) == pytest.approx(50 / 300, rel=1e-15)


def test_a_series_starting_inside_the_range_extrapolates_half_a_step(
    counters: InMemoryMetrics,
) -> None:
    # [420, 720] holds 600..720 s (100..120): 20 over 120 s; the start is 180 s away (more
    # than 66 s) so only half a step (30 s) is added there; the zero point (600 s back) is
    # farther: 20 * (120 + 30) / 120 = 25.
    assert one(counters.query("increase(late[5m])", at(720))) == pytest.approx(25, rel=1e-15)


def test_a_counter_is_not_extrapolated_below_zero(counters: InMemoryMetrics) -> None:
    # 2, 12, 22: the line through them reaches 0 at 12 s before the first sample, closer than
    # the 180 s to the range start, so 20 * (120 + 12) / 120 = 22. delta() has no zero point:
    # 20 * (120 + 30) / 120 = 25.
    assert one(counters.query("increase(zero[5m])", at(720))) == pytest.approx(22, rel=1e-15)
    assert one(counters.query("delta(zero[5m])", at(720))) == pytest.approx(25, rel=1e-15)


def test_a_counter_reset_adds_the_value_before_it(counters: InMemoryMetrics) -> None:
    # 100, 110, 5, 15, 25 over [0, 240]: 25 - 100 + 110 (the value before the reset) = 35.
    assert one(counters.query("increase(c[4m])", at(240))) == 35
    assert one(counters.query("rate(c[4m])", at(240))) == pytest.approx(35 / 240, rel=1e-15)
    assert one(counters.query("resets(c[4m])", at(240))) == 1
    assert one(counters.query("changes(c[4m])", at(240))) == 4
    # irate: the last two samples (15, 25) over 60 s; across the reset it is the new value.
    assert one(counters.query("irate(c[4m])", at(240))) == pytest.approx(10 / 60)
    assert one(counters.query("irate(c[2m])", at(120))) == pytest.approx(5 / 60)


def test_fewer_than_two_samples_give_no_rate(counters: InMemoryMetrics) -> None:
    assert counters.query("rate(late[1m])", at(600)) == []  # one sample in [540, 600]
    assert counters.query("rate(late[5m])", at(1200)) == []  # none
    assert counters.query("increase(nothing[5m])", at(300)) == []


# --- missing samples, lookback, timestamps --------------------------------------------------


@pytest.fixture
def gappy() -> InMemoryMetrics:
    # Samples at 0, 60, 120 s, nothing until 600 s, then 600..900 s.
    pts = {**{t: t / 60 for t in (0, 60, 120)}, **{t: t / 60 for t in range(600, 901, 60)}}
    return InMemoryMetrics([series("g", pts, job="a")])


def test_an_instant_selector_looks_back_five_minutes_inclusive(gappy: InMemoryMetrics) -> None:
    [s] = gappy.query("g", at(420))  # 120 + 300: still the sample at 120 s
    assert s.labels == {"__name__": "g", "job": "a"} and s.last == 2
    assert gappy.query("g", at(421)) == []  # 301 s after the last sample: stale


def test_missing_samples_leave_gaps_in_range_results(gappy: InMemoryMetrics) -> None:
    [s] = gappy.query_range("g", at(0), at(900), timedelta(minutes=1))
    expected = [*range(0, 421, 60), *range(600, 901, 60)]
    assert (s.timestamps - T0).tolist() == expected
    assert s.values.tolist() == [min(t, 120) / 60 if t <= 420 else t / 60 for t in expected]
    [r] = gappy.query_range("rate(g[1m])", at(0), at(900), timedelta(minutes=1))
    # Two samples in [t - 60, t] only at 60, 120 and from 660 on.
    assert (r.timestamps - T0).tolist() == [60, 120, 660, 720, 780, 840, 900]
    assert "__name__" not in r.labels


def test_timestamp_gives_the_sample_time_and_time_the_evaluation_time(
    gappy: InMemoryMetrics,
) -> None:
    assert one(gappy.query("timestamp(g)", at(300))) == T0 + 120
    assert one(gappy.query("time() - timestamp(g)", at(300))) == 180
    assert one(gappy.query("timestamp(sum(g))", at(300))) == T0 + 300
    assert one(gappy.query("time()", at(12.5))) == T0 + 12.5


def test_offset_shifts_the_selection_back(gappy: InMemoryMetrics) -> None:
    assert one(gappy.query("g offset 5m", at(900))) == 10  # as g at 600 s
    assert one(gappy.query("g offset 10m", at(900))) == 2  # at 300 s: the sample at 120 s
    assert gappy.query("g offset 10m", at(1021)) == []  # at 421 s: 301 s since 120 s


def test_absent_names_the_equality_matchers(gappy: InMemoryMetrics) -> None:
    [s] = gappy.query('absent(nope{job="x", env=~"p.*"})', at(0))
    assert s.labels == {"job": "x"} and s.last == 1
    assert gappy.query("absent(g)", at(0)) == []
    assert one(gappy.query('absent_over_time(g{job="a"}[2m])', at(400))) == 1


# --- histogram_quantile --------------------------------------------------------------------


@pytest.fixture
def buckets() -> InMemoryMetrics:
    def b(le: str, v: float, group: str = "a") -> Any:
        return series("h_bucket", {0: v}, le=le, g=group)

    return InMemoryMetrics(
        [
            b("0.1", 10),
            b("0.5", 30),
            b("1", 40),
            b("+Inf", 50),
            b("1", 10, "b"),  # not monotonic: 2 reads 8, taken as 10
            b("2", 8, "b"),
            b("+Inf", 20, "b"),
        ]
    )


@pytest.mark.parametrize(
    ("q", "a", "b"),
    [
        # a: rank 25 falls in (0.1, 0.5] holding 20 (10..30): 0.1 + 0.4 * 15 / 20.
        # b: rank 10 is reached by the first bucket: 0 + 1 * 10 / 10.
        (0.5, 0.4, 1.0),
        (0.05, 0.025, 0.1),  # a: inside the first bucket, from 0: 0.1 * 2.5 / 10
        # a: rank 45 is only reached in +Inf: the highest finite bound. b: rank 15 too.
        (0.9, 1.0, 2.0),
        (0.75, 0.875, 2.0),  # a: rank 37.5 in (0.5, 1] holding 10: 0.5 + 0.5 * 7.5 / 10
        (1.5, math.inf, math.inf),
        (-1, -math.inf, -math.inf),
    ],
)
def test_histogram_quantile_interpolates_within_the_bucket(
    buckets: InMemoryMetrics, q: float, a: float, b: float
) -> None:
    got = values(buckets.query(f"histogram_quantile({q}, h_bucket)", at(0)))
    assert got.keys() == {(("g", "a"),), (("g", "b"),)}  # le and the name are dropped
    assert got[(("g", "a"),)] == pytest.approx(a, rel=1e-12)
    assert got[(("g", "b"),)] == pytest.approx(b, rel=1e-12)


def test_histogram_quantile_without_an_inf_bucket_is_nan(buckets: InMemoryMetrics) -> None:
    got = values(buckets.query('histogram_quantile(0.5, h_bucket{le!="+Inf"})', at(0)))
    assert all(math.isnan(v) for v in got.values()) and len(got) == 2


# --- aggregation ---------------------------------------------------------------------------


@pytest.fixture
def slices() -> InMemoryMetrics:
    return InMemoryMetrics(
        [
            series("m", {0: 1}, a="1", b="x"),
            series("m", {0: 2}, a="1", b="y"),
            series("m", {0: 4}, a="2", b="x"),
        ]
    )


def test_sum_by_and_without_group_and_drop_the_name(slices: InMemoryMetrics) -> None:
    assert values(slices.query("sum by (a) (m)", at(0))) == {(("a", "1"),): 3, (("a", "2"),): 4}
    assert values(slices.query("sum without (b) (m)", at(0))) == {
        (("a", "1"),): 3,
        (("a", "2"),): 4,
    }
    assert values(slices.query("sum(m)", at(0))) == {(): 7}
    assert values(slices.query("sum by (nope) (m)", at(0))) == {(): 7}
    assert values(slices.query("count by (b) (m)", at(0))) == {(("b", "x"),): 2, (("b", "y"),): 1}
    assert values(slices.query("max by (b) (m)", at(0))) == {(("b", "x"),): 4, (("b", "y"),): 2}
    assert one(slices.query("avg(m)", at(0))) == pytest.approx(7 / 3)
    assert one(slices.query("stdvar(m)", at(0))) == pytest.approx(14 / 9)  # mean 7/3
    assert one(slices.query("quantile(0.5, m)", at(0))) == 2
    assert (
        by_labels(slices.query("m", at(0)))[(("__name__", "m"), ("a", "1"), ("b", "x"))].last == 1
    )


def test_topk_ties_are_broken_as_prometheus_heap_does() -> None:
    # In label order a=5, b=3, c=1, d=3, e=4. Prometheus 2's heap keeps the first three,
    # then d pops c, e pops b (the root by then, not d): a, d, e. A sort would keep b.
    src = InMemoryMetrics(
        [series("t", {0: v}, s=name) for name, v in zip("abcde", [5, 3, 1, 3, 4], strict=True)]
    )
    assert {s.labels["s"] for s in src.query("topk(3, t)", at(0))} == {"a", "d", "e"}
    assert {s.labels["s"] for s in src.query("bottomk(2, t)", at(0))} == {"b", "c"}
    assert all("__name__" in s.labels for s in src.query("topk(1, t)", at(0)))


# --- binary operators ----------------------------------------------------------------------


@pytest.fixture
def matching() -> InMemoryMetrics:
    return InMemoryMetrics(
        [
            series("req", {0: 4}, psp="a", code="500"),
            series("req", {0: 6}, psp="b", code="500"),
            series("tot", {0: 8}, psp="a"),
            series("tot", {0: 0}, psp="b"),
            series("tot", {0: 5}, psp="c"),
            series("info", {0: 1}, psp="a", region="eu"),
        ]
    )


def test_one_to_one_matching_on_and_ignoring(matching: InMemoryMetrics) -> None:
    expected = {(("psp", "a"),): 0.5, (("psp", "b"),): math.inf}  # c has no match: dropped
    assert values(matching.query("req / ignoring(code) tot", at(0))) == expected
    assert values(matching.query("req / on(psp) tot", at(0))) == expected
    assert matching.query("req / tot", at(0)) == []  # code differs: nothing matches


def test_group_left_keeps_the_many_side_and_copies_included_labels(
    matching: InMemoryMetrics,
) -> None:
    got = values(matching.query("req / on(psp) group_left tot", at(0)))
    assert got == {(("code", "500"), ("psp", "a")): 0.5, (("code", "500"), ("psp", "b")): math.inf}
    got = values(matching.query("req * on(psp) group_left(region) info", at(0)))
    assert got == {(("code", "500"), ("psp", "a"), ("region", "eu")): 4}


def test_many_to_many_matching_is_refused(matching: InMemoryMetrics) -> None:
    with pytest.raises(SourceError) as err:
        matching.query("req + on() tot", at(0))
    assert err.value.kind is ErrorKind.query and "many-to-many" in err.value.detail


def test_comparisons_filter_or_return_bool(matching: InMemoryMetrics) -> None:
    assert values(matching.query("req > bool on(psp) tot", at(0))) == {
        (("psp", "a"),): 0,
        (("psp", "b"),): 1,
    }
    # A filter keeps the left value (and, with on(), only the matching labels).
    assert values(matching.query("req > on(psp) tot", at(0))) == {(("psp", "b"),): 6}
    [s] = matching.query("tot > 6", at(0))
    assert s.labels == {"__name__": "tot", "psp": "a"} and s.last == 8
    assert values(matching.query("tot > bool 6", at(0))) == {
        (("psp", "a"),): 1,
        (("psp", "b"),): 0,
        (("psp", "c"),): 0,
    }


def test_division_by_zero_gives_inf_and_nan(matching: InMemoryMetrics) -> None:
    assert one(matching.query("vector(1) / 0", at(0))) == math.inf
    assert one(matching.query("vector(-1) / 0", at(0))) == -math.inf
    assert math.isnan(one(matching.query("vector(0) / 0", at(0))))
    got = values(matching.query("tot / tot", at(0)))  # b is 0/0: a NaN sample, not a gap
    assert got[(("psp", "a"),)] == 1 and math.isnan(got[(("psp", "b"),)])


def test_set_operators_match_on_label_sets(matching: InMemoryMetrics) -> None:
    assert {s.labels["psp"] for s in matching.query("tot and on(psp) req", at(0))} == {"a", "b"}
    assert {s.labels["psp"] for s in matching.query("tot unless on(psp) req", at(0))} == {"c"}
    # or: the right side only where the left has nothing with the same labels.
    got = values(matching.query("sum by (psp) (req) or sum by (psp) (tot)", at(0)))
    assert got == {(("psp", "a"),): 4, (("psp", "b"),): 6, (("psp", "c"),): 5}


def test_or_falls_back_to_a_longer_window_step_by_step() -> None:
    # Samples every 2 minutes: [1m] never holds two, so increase over 2m is used.
    src = InMemoryMetrics([series("x", {t: t / 60 for t in range(0, 1201, 120)})])
    q = "(sum(increase(x[1m]))) or (sum(increase(x[5m])))"
    [s] = src.query_range(q, at(600), at(900), timedelta(minutes=1))
    assert len(s.timestamps) == 6 and s.labels == {}
    # [t-300, t] holds 3 samples (2 min apart, 4 in 240 s): extrapolated to 300 s -> 5.
    assert s.values[0] == pytest.approx(5)


def test_the_same_labelset_twice_is_refused() -> None:
    src = InMemoryMetrics(
        [every_minute("a", [1, 2, 3], j="1"), every_minute("b", [1, 2, 3], j="1")]
    )
    with pytest.raises(SourceError, match="same labelset"):
        src.query('rate({__name__=~"a|b"}[2m])', at(120))
    assert len(src.query('{__name__=~"a|b"}', at(120))) == 2  # names keep them apart


# --- query API ----------------------------------------------------------------------------


def test_scalars_and_range_layout(gappy: InMemoryMetrics) -> None:
    [s] = gappy.query("vector(2.5) * 2", at(0))
    assert s.labels == {} and s.last == 5 and s.timestamps.tolist() == [T0]
    [sc] = gappy.query("scalar(g) + 1", at(60))
    assert sc.labels == {} and sc.last == 2
    [r] = gappy.query_range("time()", at(0.4), at(119.6), timedelta(minutes=1))
    # Whole seconds, as prometheus-api-client sends them: 0 .. 120 at 60 s.
    assert (r.timestamps - T0).tolist() == [0, 60, 120]
    with pytest.raises(ValueError, match="end"):
        gappy.query_range("g", at(10), at(0), timedelta(minutes=1))
    with pytest.raises(SourceError, match="11,000"):
        gappy.query_range("g", at(0), at(20_000), timedelta(seconds=1))
    with pytest.raises(SourceError, match="step"):
        gappy.query_range("g", at(0), at(20), timedelta(seconds=0.5))
    with pytest.raises(SourceError, match="range query"):
        gappy.query_range("g[5m]", at(0), at(20), timedelta(seconds=10))
    raw = gappy.query("g[2m]", at(120))  # an instant range selector: the raw samples
    assert [s.timestamps.tolist() for s in raw] == [[T0, T0 + 60, T0 + 120]]


def test_now_is_the_clock(gappy: InMemoryMetrics) -> None:
    assert one(gappy.query("time()")) == T0 + 900  # default: the last sample's time
    clocked = InMemoryMetrics([series("g", {0: 1.0})], clock=lambda: at(200))
    assert one(clocked.query("time()")) == T0 + 200
    assert one(clocked.query("g")) == 1
    clocked.check()
    clocked.close()


@pytest.mark.parametrize(
    ("query", "construct"),
    [
        ("max_over_time(rate(x[5m])[30m:1m])", "subquer"),
        ("x @ 100", "@ modifier"),
        ('label_replace(x, "a", "$1", "b", "(.*)")', "label_replace"),
        ('count_values("v", x)', "count_values"),
        ("sort(x)", "sort"),
        ("predict_linear(x[5m], 60)", "predict_linear"),
    ],
)
def test_unsupported_constructs_are_named(
    counters: InMemoryMetrics, query: str, construct: str
) -> None:
    with pytest.raises(SourceError) as err:
        counters.query(query, at(300))
    assert err.value.kind is ErrorKind.query and not err.value.retryable
    assert construct in err.value.detail and "not supported" in err.value.detail


def test_parse_errors_are_query_errors(counters: InMemoryMetrics) -> None:
    with pytest.raises(SourceError) as err:
        counters.query("sum(", at(0))
    assert err.value.kind is ErrorKind.query and "parse error" in err.value.detail


# --- InMemoryLogs --------------------------------------------------------------------------

DAY = datetime(2026, 1, 1, tzinfo=UTC)
TEMPLATE = {
    "index_patterns": ["logs-*"],
    "template": {
        "mappings": {
            "properties": {
                "@timestamp": {"type": "date"},
                "psp": {"type": "keyword"},
                "level": {"type": "keyword"},
                "code": {"type": "keyword"},
                "status": {"type": "integer"},
                "message": {"type": "text", "fields": {"keyword": {"type": "keyword"}}},
                "http": {"properties": {"route": {"type": "keyword"}}},
            }
        }
    },
}


def doc(seconds: float, **fields: Any) -> dict[str, Any]:
    stamp = (DAY + timedelta(seconds=seconds)).isoformat(timespec="milliseconds")
    return {"@timestamp": stamp.replace("+00:00", "Z"), **fields}


@pytest.fixture
def logs() -> InMemoryLogs:
    return InMemoryLogs(
        {
            "logs-2026.01.01": [
                doc(10, psp="a", level="ERROR", code="timeout", status=504, message="Boom x"),
                doc(70, psp="a", level="WARN", code="timeout", status=504),
                doc(75, psp="b", level="ERROR", code="5xx", status=502),
                doc(130, psp="b", level="INFO", http={"route": "/pay"}, **{"k8s.pod": "p-1"}),
                doc(190, psp="a", level="ERROR", code="5xx", status=502),
            ],
            "logs-2026.01.02": [doc(86_400 + 5, psp="a", level="ERROR", code="5xx")],
            "other-x": [doc(10, psp="a")],
        },
        [TEMPLATE],
    )


def test_search_is_time_bounded_filtered_and_sorted(logs: InMemoryLogs) -> None:
    res = logs.search("logs-*", DAY, DAY + timedelta(seconds=190), {"psp": "a"})
    assert res.total == 2  # [start, end): the 190 s document is out
    assert [h["@timestamp"] for h in res.hits] == [
        "2026-01-01T00:01:10.000Z",
        "2026-01-01T00:00:10.000Z",
    ]
    old = logs.search("logs-*", DAY, DAY + timedelta(days=2), newest_first=False, size=2)
    assert old.total == 6 and [h["@timestamp"][14:19] for h in old.hits] == ["00:10", "01:10"]
    lvl = logs.search("logs-*", DAY, DAY + timedelta(days=1), {"level": ["ERROR", "WARN"]})
    assert lvl.total == 4
    assert logs.search("logs-*", DAY, DAY + timedelta(days=1), {"status": "502"}).total == 2
    assert logs.search("logs-*", DAY, DAY + timedelta(days=1), {"status": "x"}).total == 0
    assert logs.search("other-*,logs-2026.01.02", DAY, DAY + timedelta(days=2)).total == 2
    assert logs.search("nope-*", DAY, DAY + timedelta(days=2)).total == 0
    hit = logs.search("logs-*", DAY, DAY + timedelta(days=2), {"level": "INFO"}).hits[0]
    hit["psp"] = "changed"  # a copy: the store is untouched
    assert logs.search("logs-*", DAY, DAY + timedelta(days=2), {"psp": "changed"}).total == 0


def test_fields_are_looked_up_by_dotted_path(logs: InMemoryLogs) -> None:
    span = (DAY, DAY + timedelta(days=1))
    assert logs.search("logs-*", *span, {"http.route": "/pay"}).total == 1  # nested object
    # Unmapped strings are mapped dynamically: text (term queries match one token) with an
    # exact ``.keyword``.
    assert logs.search("logs-*", *span, {"k8s.pod.keyword": "p-1"}).total == 1  # dotted key
    assert logs.search("logs-*", *span, {"k8s.pod": "p-1"}).total == 0
    assert logs.search("logs-*", *span, {"k8s.pod": "p"}).total == 1
    assert logs.search("logs-*", *span, {"message.keyword": "Boom x"}).total == 1
    assert logs.search("logs-*", *span, {"message": "boom"}).total == 1  # a token of the text


def test_terms_are_ordered_by_count_then_key(logs: InMemoryLogs) -> None:
    span = (DAY, DAY + timedelta(days=2))
    codes = logs.terms("logs-*", "code", *span)
    assert [(b.key, b.count) for b in codes] == [("5xx", 3), ("timeout", 2)]
    assert [b.key for b in logs.terms("logs-*", "status", *span)] == ["502", "504"]
    assert [b.key for b in logs.terms("logs-*", "psp", *span, size=1)] == ["a"]
    assert logs.terms("logs-*", "nope", *span) == []
    with pytest.raises(SourceError) as err:
        logs.terms("logs-*", "message", *span)
    assert err.value.kind is ErrorKind.query


def test_date_histogram_is_epoch_aligned_with_empty_buckets(logs: InMemoryLogs) -> None:
    start, end = DAY + timedelta(seconds=30), DAY + timedelta(minutes=4)
    buckets = logs.date_histogram("logs-*", start, end, timedelta(minutes=1), split_by="code")
    # Buckets start on the minute (00:00, not 00:00:30) and run to end - 1 s; the 10 s
    # document is before the start, so the first bucket is empty.
    assert [float(b.key) - DAY.timestamp() for b in buckets] == [0, 60, 120, 180]
    assert [b.count for b in buckets] == [0, 2, 1, 1]
    assert [(s.key, s.count) for s in buckets[1].sub] == [("5xx", 1), ("timeout", 1)]
    assert buckets[2].sub == ()  # the INFO line has no code
    filtered = logs.date_histogram(
        "logs-*", DAY, DAY + timedelta(minutes=2), timedelta(minutes=1), {"psp": "a"}
    )
    assert [b.count for b in filtered] == [1, 1]
    assert logs.date_histogram("nope-*", start, end, timedelta(minutes=1)) == []
    with pytest.raises(SourceError):  # OpenSearch cannot parse "1m30s" as a fixed interval
        logs.date_histogram("logs-*", start, end, timedelta(seconds=90))
    with pytest.raises(ValueError, match="interval"):
        logs.date_histogram("logs-*", start, end, timedelta(milliseconds=500))


def test_bad_arguments_raise_value_error(logs: InMemoryLogs) -> None:
    with pytest.raises(ValueError, match="end"):
        logs.search("logs-*", DAY + timedelta(1), DAY)
    with pytest.raises(ValueError, match="filter"):
        logs.search("logs-*", DAY, DAY + timedelta(1), {"psp": 3})  # type: ignore[dict-item]
    logs.check()
    logs.close()
