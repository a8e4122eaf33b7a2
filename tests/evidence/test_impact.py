"""Impact evidence: excess failed payments and the amount at risk, never negative, clear when
unknown."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest

from paytriage.domain.findings import QueryRef
from paytriage.evidence.impact import (
    TicketSize,
    estimate_impact,
    excess_failures,
    format_count,
    format_money,
    format_percent,
    format_window,
)

TEN_MIN = timedelta(minutes=10)


def test_excess_per_minute_and_amount_at_risk_with_a_ticket_size() -> None:
    ref = QueryRef("prometheus", "sum(increase(x[10m]))")
    imp = estimate_impact(1820, 5870, 0.041, TEN_MIN, TicketSize(50.0, "EUR"), queries=[ref])
    assert imp.failed == 1820 and imp.attempts == 5870
    assert imp.expected_failed == pytest.approx(240.67)
    assert imp.excess == pytest.approx(1579.33)
    assert imp.per_minute == pytest.approx(157.933)
    assert imp.amount_so_far == pytest.approx(78966.5)
    assert imp.amount_per_minute == pytest.approx(7896.65)
    assert imp.queries == (ref,)
    assert imp.lines() == [
        "1,820 payments failed of 5,870 in 10 min.",
        "1,579 more than usual (expected 241), 158 a minute.",
        "Amount at risk so far: about 78,967 EUR, 7,897 EUR a minute (at 50.00 EUR a payment).",
    ]


def test_without_a_ticket_size_the_amount_is_unknown_not_zero() -> None:
    imp = estimate_impact(1820, 5870, 0.041, TEN_MIN)
    assert imp.excess == pytest.approx(1579.33)
    assert imp.amount_so_far is None and imp.amount_per_minute is None
    assert "Amount at risk: unknown (no average ticket size configured)." in imp.lines()


def test_a_slice_below_its_baseline_has_no_excess_and_nothing_at_risk() -> None:
    imp = estimate_impact(100, 5870, 0.041, TEN_MIN, TicketSize(80.0, "USD"))
    assert imp.excess == 0.0 and imp.per_minute == 0.0
    assert imp.amount_so_far == 0.0 and imp.amount_per_minute == 0.0
    assert "0 more than usual" in imp.describe()


def test_an_unknown_baseline_makes_the_excess_and_amount_unknown() -> None:
    imp = estimate_impact(1820, 5870, None, TEN_MIN, TicketSize(50.0, "EUR"))
    assert imp.failed == 1820
    assert imp.excess is None and imp.per_minute is None and imp.amount_so_far is None
    text = imp.describe()
    assert "unknown (no baseline to compare with)" in text
    assert "unknown (the excess of failed payments is unknown)" in text
    nan_rate = estimate_impact(1820, 5870, math.nan, TEN_MIN)
    assert nan_rate.excess is None


def test_unknown_or_negative_counts() -> None:
    imp = estimate_impact(math.nan, None, 0.04, TEN_MIN, TicketSize(50.0, "EUR"))
    assert imp.failed is None and imp.excess is None and imp.amount_so_far is None
    assert imp.lines()[0] == "Failed payments in the last 10 min: unknown (no data)."
    # a counter reset read through increase() can go negative: it is no failure at all
    reset = estimate_impact(-5, 100, 0.04, TEN_MIN)
    assert reset.failed == 0.0 and reset.excess == 0.0


def test_zero_duration_has_no_per_minute_rate() -> None:
    imp = estimate_impact(300, 1000, 0.1, timedelta(0), TicketSize(10.0, "GBP"))
    assert imp.excess == pytest.approx(200.0) and imp.per_minute is None
    assert imp.amount_so_far == pytest.approx(2000.0) and imp.amount_per_minute is None
    assert "a minute" not in imp.describe()


def test_excess_failures_is_never_negative_and_refuses_bad_rates() -> None:
    assert excess_failures(10, 1000, 0.05) == 0.0
    assert excess_failures(100, 1000, 0.05) == pytest.approx(50.0)
    assert excess_failures(100, 1000, 1.5) is None
    assert excess_failures(100, math.inf, 0.05) is None


@pytest.mark.parametrize(
    ("amount", "currency"),
    [
        (-1.0, "EUR"),
        (0.0, "EUR"),
        (math.nan, "EUR"),
        (math.inf, "EUR"),
        (10.0, "eur"),
        (10.0, "EURO"),
        (10.0, "€"),
    ],
)
def test_a_ticket_size_must_be_a_positive_amount_and_a_currency_code(
    amount: float, currency: str
) -> None:
    with pytest.raises(ValueError, match=r"ticket size|currency"):
        TicketSize(amount, currency)


def test_formatting_uses_thousands_separators_and_says_unknown() -> None:
    assert format_count(1234567.4) == "1,234,567"
    assert format_count(None) == "unknown" and format_count(math.nan) == "unknown"
    assert format_money(1234567.8, "EUR") == "1,234,568 EUR"
    assert format_money(45.5, "EUR") == "45.50 EUR"
    assert format_money(None, "EUR") == "unknown"
    assert [format_percent(x) for x in (0.31, 0.041, 0.0025, 0.0, math.nan)] == [
        "31 %",
        "4.1 %",
        "0.25 %",
        "0 %",
        "unknown",
    ]
    assert format_window(timedelta(seconds=45)) == "45 s"
    assert format_window(timedelta(minutes=90)) == "1 h 30 min"
    assert format_window(timedelta(hours=2)) == "2 h"
    assert format_window(timedelta(days=3, hours=4, minutes=5)) == "3 d 4 h"
