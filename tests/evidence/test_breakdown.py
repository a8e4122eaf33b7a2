"""Breakdown evidence: contributions to the excess ranked by count, the PromQL behind them, and a
source that fails giving ``missing`` instead of an exception."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from paytriage.core.promql import build_query, check_label_name, label_matchers, promql_string
from paytriage.detectors.base import RatioQueries
from paytriage.detectors.capture_failures import CAPTURES
from paytriage.detectors.decline_spike import AUTHORIZATIONS
from paytriage.detectors.signals import LabelKey
from paytriage.domain.findings import QueryRef
from paytriage.evidence.breakdown import (
    BEFORE,
    EARLIER,
    NOW,
    Breakdown,
    Contribution,
    Counts,
    breakdown,
    gather_breakdown,
)
from paytriage.sources.base import ErrorKind, Series, SourceError

END = datetime(2026, 11, 16, 9, 10, tzinfo=UTC)
START = END - timedelta(minutes=10)


def psp(name: str) -> LabelKey:
    return (("psp", name),)


def by_value(rows: list[Contribution]) -> dict[str, Contribution]:
    return {c.value: c for c in rows}


# --- the pure core ----------------------------------------------------------------------------

NOW_COUNTS = {
    psp("stripe"): (1820.0, 5870.0),
    psp("adyen"): (415.0, 6000.0),
    psp("braintree"): (90.0, 3000.0),
}
WEEK_COUNTS = {
    psp("stripe"): (240.0, 5850.0),
    psp("adyen"): (240.0, 6000.0),
    psp("braintree"): (90.0, 3000.0),
}


def test_the_psp_carrying_ninety_percent_of_the_excess_ranks_first_with_its_share() -> None:
    refs = {NOW: (QueryRef("prometheus", "q-now", START, END),)}
    rows = breakdown(NOW_COUNTS, WEEK_COUNTS, "psp", queries=refs)

    assert [c.value for c in rows] == ["stripe", "adyen", "braintree"]
    stripe = rows[0]
    assert (stripe.failures, stripe.attempts) == (1820.0, 5870.0)
    assert stripe.baseline_rate == pytest.approx(240 / 5850)
    assert stripe.baseline_kind == EARLIER and not stripe.baseline_pooled
    assert stripe.excess == pytest.approx(1820 - 5870 * 240 / 5850)
    # the slice's excess: 2,325 failed of 14,870 against 570 of 14,850 a week earlier
    total = 2325 - 14870 * 570 / 14850
    assert stripe.share == pytest.approx(stripe.excess / total)
    assert stripe.share == pytest.approx(0.90, abs=0.005)
    assert stripe.significant and stripe.p_value < 1e-12
    assert rows[1].share == pytest.approx(175 / total)
    assert rows[2].excess == pytest.approx(0.0) and not rows[2].significant
    assert stripe.describe() == (
        "stripe: 4.1 % → 31 % failures, 1,820 failed of 5,870 in 10 min; 90 % of the excess"
    )
    assert stripe.queries == refs[NOW]


def test_a_tiny_value_with_a_huge_ratio_does_not_outrank_a_big_contributor() -> None:
    now = {**NOW_COUNTS, psp("tiny"): (2.0, 2.0)}
    week = {**WEEK_COUNTS, psp("tiny"): (1.0, 40.0)}
    rows = breakdown(now, week, "psp")
    tiny = by_value(rows)["tiny"]

    assert tiny.rate == 1.0 and tiny.rate > max(c.rate for c in rows if c is not tiny)
    assert [c.value for c in rows] == ["stripe", "adyen", "tiny", "braintree"]
    assert tiny.excess == pytest.approx(2 - 2 / 40)
    assert not tiny.significant and tiny.p_value > 1e-3
    assert "(not significant)" in tiny.describe()
    assert by_value(rows)["stripe"].significant and by_value(rows)["adyen"].significant


def test_a_value_without_its_own_baseline_uses_the_fallback_then_the_slice_rate() -> None:
    now = {**NOW_COUNTS, psp("newpsp"): (30.0, 100.0), psp("rare"): (3.0, 10.0)}
    hour = {psp("newpsp"): (5.0, 400.0), psp("rare"): (0.0, 4.0)}
    rows = by_value(breakdown(now, WEEK_COUNTS, "psp", fallback=hour))

    assert rows["newpsp"].baseline_kind == BEFORE and not rows["newpsp"].baseline_pooled
    assert rows["newpsp"].baseline_rate == pytest.approx(5 / 400)
    # too few attempts in either baseline: the slice's rate a week earlier stands in
    assert rows["rare"].baseline_pooled and rows["rare"].baseline_kind == EARLIER
    assert rows["rare"].baseline_rate == pytest.approx(570 / 14850)
    assert "whole slice" in rows["rare"].describe()


def test_no_baseline_at_all_is_said_and_ranked_last() -> None:
    rows = breakdown({psp("stripe"): (10.0, 100.0)}, {}, "psp")
    [c] = rows
    assert math.isnan(c.baseline_rate) and math.isnan(c.excess) and math.isnan(c.share)
    assert not c.significant
    assert c.describe().startswith("stripe: 10 % (no baseline) failures")


def test_keys_are_summed_by_the_dimension_and_bad_counts_read_as_zero() -> None:
    now: dict[LabelKey, Counts] = {
        (("country", "DE"), ("psp", "stripe")): (100.0, 1000.0),
        (("country", "DE"), ("psp", "adyen")): (50.0, 1000.0),
        (("country", "FR"), ("psp", "stripe")): (float("nan"), 500.0),
        (("country", "FR"), ("psp", "adyen")): (-3.0, 500.0),
    }
    week: dict[LabelKey, Counts] = {
        (("country", "DE"),): (40.0, 2000.0),
        (("country", "FR"),): (20.0, 1000.0),
    }
    rows = by_value(breakdown(now, week, "country"))
    assert (rows["DE"].failures, rows["DE"].attempts) == (150.0, 2000.0)
    assert (rows["FR"].failures, rows["FR"].attempts) == (0.0, 1000.0)
    assert rows["FR"].excess == pytest.approx(-20.0)
    assert "not above its baseline" in rows["FR"].describe()


def test_shared_denominator_gives_each_reason_the_slice_attempts() -> None:
    now: dict[LabelKey, Counts] = {(("reason", "do_not_honor"),): (900.0, 10000.0)}
    week: dict[LabelKey, Counts] = {(("reason", "insufficient_funds"),): (100.0, 10000.0)}
    rows = by_value(breakdown(now, week, "reason", shared_denominator=True))
    # do_not_honor had no declines a week earlier, out of the same 10,000 attempts
    assert rows["do_not_honor"].baseline_rate == 0.0
    assert rows["do_not_honor"].excess == pytest.approx(900.0)
    assert rows["do_not_honor"].share == pytest.approx(1.0)


def test_many_large_values_with_noise_level_excess_are_none_significant() -> None:
    now = {psp(f"p{i}"): (2000.0 + i, 200000.0) for i in range(40)}
    week = {psp(f"p{i}"): (2000.0, 200000.0) for i in range(40)}
    rows = breakdown(now, week, "psp")
    assert len(rows) == 40 and rows[0].value == "p39"
    assert not any(c.significant for c in rows)


# --- PromQL -----------------------------------------------------------------------------------


def test_queries_escape_quotes_backslashes_and_newlines_exactly() -> None:
    q = build_query(
        AUTHORIZATIONS.numerator,
        by=("country",),
        window=timedelta(minutes=10),
        dims={"psp": 'str"ipe\\x\ny', "method": "card"},
        offset=timedelta(weeks=1),
    )
    assert q == (
        "sum by (country) (increase(payment_authorizations_total"
        '{outcome=~"declined|error",method="card",psp="str\\"ipe\\\\x\\ny"}[10m] offset 1w))'
    )
    assert build_query(
        AUTHORIZATIONS.denominator, by=(), window=timedelta(minutes=10), dims={}
    ) == ("sum by () (increase(payment_authorizations_total{}[10m]))")
    assert build_query(
        CAPTURES.numerator,
        by=("psp",),
        window=timedelta(hours=1),
        dims={},
        offset=timedelta(minutes=10),
    ) == ('sum by (psp) (increase(payment_captures_total{outcome="failed"}[1h] offset 10m))')


def test_a_value_cannot_end_the_string_or_the_selector() -> None:
    hostile = '"} or vector(1) or x{a="'
    matchers = label_matchers({"psp": hostile})
    assert matchers == 'psp="\\"} or vector(1) or x{a=\\""'
    assert promql_string("a\x01b\tc\rd") == '"a\\x01b\\tc\\rd"'
    # every quote inside the literal is escaped: one unescaped quote at each end only
    body = promql_string(hostile)
    assert len(re.findall(r'(?<!\\)"', body)) == 2


@pytest.mark.parametrize("name", ["", "1psp", "psp-name", "psp\n", 'psp"}', "ps p", "é"])
def test_bad_label_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="not a valid label name"):
        check_label_name(name)
    with pytest.raises(ValueError, match="not a valid label name"):
        label_matchers({name: "x"})
    with pytest.raises(ValueError, match="not a valid label name"):
        build_query(AUTHORIZATIONS.denominator, by=(name,), window=timedelta(minutes=5), dims={})
    with pytest.raises(ValueError, match="not a valid label name"):
        gather_breakdown(FakeSource({}), AUTHORIZATIONS, {name: "x"}, START, END)


def test_templates_without_the_needed_placeholders_are_refused() -> None:
    ok = "sum by ({by}) (increase(m{{{matchers}}}[{window}]{offset}))"
    RatioQueries(ok, ok)
    with pytest.raises(ValueError, match="offset"):
        RatioQueries("sum by ({by}) (increase(m{{{matchers}}}[{window}]))", ok)
    with pytest.raises(ValueError, match="restricted"):
        RatioQueries("sum by ({by}) (increase(m[{window}]{offset}))", ok)
    with pytest.raises(ValueError, match="unknown placeholders"):
        RatioQueries(ok, "sum by ({by}) (increase(m{{{matchers}}}[{window}]{offset}{user}))")


# --- gathering through a MetricsSource --------------------------------------------------------


class FakeSource:
    """Answers the breakdown's instant queries from tables, as Prometheus would.

    ``tables[period][metric]`` maps a label dict (as a sorted tuple) to a count, where the
    period is read from the query's offset and metric is "attempts", "failures" or
    "declines". ``sum by (...)`` is applied here, so the test checks what is asked for.
    """

    name = "fake"

    def __init__(
        self,
        tables: Mapping[str, Mapping[str, Mapping[LabelKey, float]]],
        fail_on: str | None = None,
    ) -> None:
        self.tables = tables
        self.fail_on = fail_on
        self.calls: list[tuple[str, datetime | None]] = []

    def query(self, promql: str, at: datetime | None = None) -> list[Series]:
        self.calls.append((promql, at))
        if self.fail_on is not None and re.search(self.fail_on, promql):
            raise SourceError("prometheus", ErrorKind.connection, promql, "connection refused")
        period = "earlier" if "offset 1w" in promql else "before" if "offset " in promql else "now"
        if "payment_declines_total" in promql:
            metric = "declines"
        elif 'outcome=~"declined|error"' in promql:
            metric = "failures"
        else:
            metric = "attempts"
        m = re.match(r"sum by \(([^)]*)\)", promql)
        assert m is not None
        by = [b.strip() for b in m.group(1).split(",") if b.strip()]
        fixed = dict(re.findall(r'(\w+)="([^"]*)"', promql))
        sums: dict[tuple[tuple[str, str], ...], float] = {}
        for key, v in self.tables.get(period, {}).get(metric, {}).items():
            labels = dict(key)
            if any(labels.get(k) != val for k, val in fixed.items()):
                continue
            out = tuple((b, labels[b]) for b in by if b in labels)
            sums[out] = sums.get(out, 0.0) + v
        ts = np.array([at.timestamp() if at else 0.0])
        return [Series(dict(k), ts, np.array([v])) for k, v in sums.items()]

    def query_range(
        self, promql: str, start: datetime, end: datetime, step: timedelta
    ) -> list[Series]:
        raise AssertionError("the breakdown uses instant queries only")


def fine(psp_: str, country: str, method: str) -> LabelKey:
    return (("country", country), ("method", method), ("psp", psp_))


def stripe_tables() -> dict[str, dict[str, dict[LabelKey, float]]]:
    """Stripe's failures jump in DE (cards), a little in FR; adyen is untouched."""
    now_a = {
        fine("stripe", "DE", "card"): 3000.0,
        fine("stripe", "DE", "paypal"): 1000.0,
        fine("stripe", "FR", "card"): 2000.0,
        fine("stripe", "PL", "card"): 300.0,  # new this week: no attempts a week earlier
        fine("adyen", "DE", "card"): 5000.0,
    }
    now_f = {
        fine("stripe", "DE", "card"): 1500.0,
        fine("stripe", "DE", "paypal"): 20.0,
        fine("stripe", "FR", "card"): 160.0,
        fine("stripe", "PL", "card"): 12.0,
        fine("adyen", "DE", "card"): 200.0,
    }
    week_a = {
        fine("stripe", "DE", "card"): 3000.0,
        fine("stripe", "DE", "paypal"): 1000.0,
        fine("stripe", "FR", "card"): 2000.0,
        fine("adyen", "DE", "card"): 5000.0,
    }
    week_f = {
        fine("stripe", "DE", "card"): 120.0,
        fine("stripe", "DE", "paypal"): 40.0,
        fine("stripe", "FR", "card"): 80.0,
        fine("adyen", "DE", "card"): 200.0,
    }
    hour_a = {fine("stripe", "PL", "card"): 1800.0, fine("stripe", "DE", "card"): 18000.0}
    hour_f = {fine("stripe", "PL", "card"): 72.0, fine("stripe", "DE", "card"): 720.0}

    def reasons(base: float, dnh: float) -> dict[LabelKey, float]:
        return {
            (("psp", "stripe"), ("reason", "do_not_honor")): dnh,
            (("psp", "stripe"), ("reason", "insufficient_funds")): base,
        }

    return {
        "now": {"attempts": now_a, "failures": now_f, "declines": reasons(150.0, 1300.0)},
        "earlier": {"attempts": week_a, "failures": week_f, "declines": reasons(150.0, 50.0)},
        "before": {"attempts": hour_a, "failures": hour_f, "declines": {}},
    }


def test_gather_breaks_a_psp_incident_down_by_the_other_dimensions() -> None:
    src = FakeSource(stripe_tables())
    b = gather_breakdown(src, AUTHORIZATIONS, {"psp": "stripe"}, START, END)

    assert isinstance(b, Breakdown) and b.complete and b.missing == ()
    # the fixed dimension is excluded, and nothing is grouped by it
    assert [d.dimension for d in b.breakdowns] == ["country", "method", "reason"]
    assert b.dimension("psp") is None
    assert not any("by (psp)" in q for q, _ in src.calls)
    assert all('psp="stripe"' in q for q, _ in src.calls)
    assert all(at == END for _, at in src.calls)

    assert (b.failures, b.attempts) == (1692.0, 6300.0)
    assert b.baseline_kind == EARLIER and b.baseline_rate == pytest.approx(240 / 6000)
    assert b.excess == pytest.approx(1692 - 6300 * 0.04)

    country = b.dimension("country")
    assert country is not None
    assert [c.value for c in country.contributions] == ["DE", "FR", "PL"]
    de = country.contributions[0]
    assert (de.failures, de.attempts) == (1520.0, 4000.0)
    assert de.baseline_rate == pytest.approx(160 / 4000)
    assert de.excess == pytest.approx(1520 - 160)
    assert de.share == pytest.approx(1360 / 1440)
    assert de.significant
    # PL has no week-earlier traffic: the hour before the window is its baseline
    pl = country.contributions[2]
    assert pl.baseline_kind == BEFORE and pl.baseline_rate == pytest.approx(72 / 1800)
    assert pl.excess == pytest.approx(0.0)

    # every number keeps the exact queries and windows behind it
    now_num = (
        "sum by (country) (increase(payment_authorizations_total"
        '{outcome=~"declined|error",psp="stripe"}[10m]))'
    )
    assert de.queries[0] == QueryRef("prometheus", now_num, START, END)
    assert de.queries[2] == QueryRef(
        "prometheus",
        now_num.replace("[10m]", "[10m] offset 1w"),
        START - timedelta(weeks=1),
        END - timedelta(weeks=1),
    )
    assert pl.queries[2] == QueryRef(
        "prometheus",
        now_num.replace("[10m]", "[1h] offset 10m"),
        START - timedelta(hours=1),
        START,
    )
    assert {q.source for c in country.contributions for q in c.queries} == {"prometheus"}

    method = b.dimension("method")
    assert method is not None and method.contributions[0].value == "card"
    assert method.contributions[0].share == pytest.approx((1672 - 5300 * 200 / 5000) / b.excess)

    reason = b.dimension("reason")
    assert reason is not None
    dnh, funds = reason.contributions
    assert dnh.value == "do_not_honor" and dnh.attempts == 6300.0
    assert dnh.baseline_rate == pytest.approx(50 / 6000)
    assert dnh.share == pytest.approx((1300 - 6300 * 50 / 6000) / b.excess)
    assert dnh.significant and not funds.significant
    assert any("payment_declines_total" in q.query for q in dnh.queries)

    text = "\n".join(b.lines())
    assert "psp=stripe: 4.0 % → 27 % failures, 1,692 failed of 6,300 in 10 min" in text
    assert "the same 10 min a week earlier" in text
    assert (
        "  DE: 4.0 % → 38 % failures, 1,520 failed of 4,000 in 10 min; 94 % of the excess" in text
    )


def test_no_history_a_week_earlier_falls_back_to_the_hour_before() -> None:
    tables = stripe_tables()
    tables["earlier"] = {}
    src = FakeSource(tables)
    b = gather_breakdown(src, AUTHORIZATIONS, {"psp": "stripe"}, START, END, by=("country",))
    assert b.baseline_kind == BEFORE
    assert b.baseline_rate == pytest.approx(792 / 19800)
    assert any(q.query.endswith("[1h] offset 10m))") for q in b.queries)
    country = b.dimension("country")
    assert country is not None
    kinds = {c.value: c.baseline_kind for c in country.contributions}
    assert kinds == {"DE": BEFORE, "PL": BEFORE, "FR": BEFORE}
    assert next(c for c in country.contributions if c.value == "FR").baseline_pooled
    assert "the 1 h before" in "\n".join(b.lines())


def test_platform_wide_incident_breaks_down_by_every_dimension() -> None:
    src = FakeSource(stripe_tables())
    b = gather_breakdown(src, AUTHORIZATIONS, {}, START, END, by=("psp", "country"))
    psps = b.dimension("psp")
    assert psps is not None and psps.contributions[0].value == "stripe"
    assert any(
        q.startswith("sum by () (increase(payment_authorizations_total{}[10m]))")
        for q, _ in src.calls
    )


def test_a_failing_source_gives_missing_not_an_exception() -> None:
    src = FakeSource(stripe_tables(), fail_on=".")
    b = gather_breakdown(src, AUTHORIZATIONS, {"psp": "stripe"}, START, END)
    assert not b.complete
    assert len(b.missing) == 1 and "connection refused" in b.missing[0]
    assert b.failures is None and b.breakdowns == ()
    assert len(src.calls) == 1, "a source that is down is not asked again and again"
    assert "failures unknown" in "\n".join(b.lines())


def test_one_failing_dimension_leaves_the_others() -> None:
    src = FakeSource(stripe_tables(), fail_on="payment_declines_total")
    b = gather_breakdown(src, AUTHORIZATIONS, {"psp": "stripe"}, START, END)
    reason = b.dimension("reason")
    assert reason is not None and reason.missing is not None and not reason.contributions
    assert len(b.missing) == 1 and b.missing[0].startswith("reason: ")
    country = b.dimension("country")
    assert country is not None and country.missing is None and len(country.contributions) == 3
    assert "By reason: unavailable" in "\n".join(b.lines())


def test_captures_by_psp_use_the_same_machinery() -> None:
    class Captures(FakeSource):
        def query(self, promql: str, at: datetime | None = None) -> list[Series]:
            self.calls.append((promql, at))
            failed = 'outcome="failed"' in promql
            week = "offset 1w" in promql
            rows = {"stripe": (4.0, 1000.0), "adyen": (60.0, 1000.0)}
            if week:
                rows = {"stripe": (4.0, 1000.0), "adyen": (5.0, 1000.0)}
            ts = np.array([0.0])
            if promql.startswith("sum by () "):
                total = sum(r[0 if failed else 1] for r in rows.values())
                return [Series({}, ts, np.array([total]))]
            return [
                Series({"psp": k}, ts, np.array([v[0] if failed else v[1]]))
                for k, v in rows.items()
            ]

    src = Captures({})
    b = gather_breakdown(src, CAPTURES, {}, START, END, by=("psp",))
    psps = b.dimension("psp")
    assert psps is not None
    assert [c.value for c in psps.contributions] == ["adyen", "stripe"]
    assert psps.contributions[0].share == pytest.approx(1.0)
    assert all("payment_captures_total" in q for q, _ in src.calls)


def test_a_window_that_does_not_end_after_it_starts_is_refused() -> None:
    with pytest.raises(ValueError, match="must end after it starts"):
        gather_breakdown(FakeSource({}), AUTHORIZATIONS, {}, END, END)


def method(name: str) -> LabelKey:
    return (("method", name),)


def test_a_value_is_specific_only_when_it_rose_beyond_the_others() -> None:
    """Issue 20, finding 6: "specific to method=card" when every method rose fourfold
    (card only carries the most volume)."""
    week = {method("card"): (80.0, 8000.0), method("paypal"): (20.0, 2000.0)}
    alike = {method("card"): (320.0, 8000.0), method("paypal"): (80.0, 2000.0)}
    rows = by_value(breakdown(alike, week, "method"))
    assert rows["card"].significant and rows["paypal"].significant
    assert not rows["card"].specific and not rows["paypal"].specific
    card_only = {method("card"): (800.0, 8000.0), method("paypal"): (22.0, 2000.0)}
    rows = by_value(breakdown(card_only, week, "method"))
    assert rows["card"].specific and not rows["paypal"].specific
    # One value is the whole slice: nothing to compare it with, nothing specific.
    [only] = breakdown(
        {method("card"): (800.0, 8000.0)}, {method("card"): (80.0, 8000.0)}, "method"
    )
    assert only.significant and not only.specific


def test_only_the_values_that_stand_out_are_listed_and_the_rest_counted() -> None:
    from paytriage.evidence.breakdown import DimensionBreakdown
    from paytriage.evidence.gather import dimension_item

    week = {(("country", c),): (40.0, 1000.0) for c in "ABCDEFG"}
    now = {**week, **{(("country", c),): (400.0, 1000.0) for c in "ABCDE"}}
    rows = tuple(breakdown(now, week, "country"))
    item = dimension_item(DimensionBreakdown("country", rows))
    assert [t.value for t in item.top] == ["A", "B", "C"] and all(t.significant for t in item.top)
    assert (item.standing_out, item.values, item.alike) == (5, 7, True)
    assert item.heading == ("top 3 of the 5 that stand out, of 7 values; they all rose about alike")
    quiet = dimension_item(DimensionBreakdown("country", tuple(breakdown(week, week, "country"))))
    assert quiet.top == () and quiet.heading == "none of 7 values stands out"
