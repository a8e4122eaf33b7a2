"""What an incident costs: failed payments above the usual level and, with an average ticket
size configured, the amount at risk per minute and so far.

Pure functions over counts and durations. Nothing is ever negative (a slice running better
than its baseline has no excess) and what cannot be known is ``None`` and said so in words,
never shown as 0. The small formatters here (``format_count``, ``format_percent``,
``format_money``, ``format_window``) are shared by the other evidence modules.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from paytriage.domain.findings import QueryRef

_CURRENCY = re.compile(r"[A-Z]{3}")


def _known(x: float | None) -> bool:
    return x is not None and isinstance(x, int | float) and math.isfinite(x)


def _round(x: float) -> int:
    """Halves away from zero, as people round (``round`` would give 78,966 for 78,966.5)."""
    return math.floor(x + 0.5) if x >= 0 else -math.floor(-x + 0.5)


def format_count(x: float | None) -> str:
    """A count with thousands separators, rounded to a whole number ("1,820"); "unknown"
    for None or NaN. ``increase()`` counts are extrapolated, so decimals would be noise."""
    if x is None or not _known(x):
        return "unknown"
    return f"{_round(x):,}"


def format_percent(x: float | None) -> str:
    """A ratio as a percentage, with the precision its size deserves: "31 %", "4.1 %",
    "0.25 %", "0 %"; "unknown" for None or NaN."""
    if x is None or not _known(x):
        return "unknown"
    pct = x * 100
    if pct == 0:
        return "0 %"
    if abs(pct) >= 10:
        return f"{pct:,.0f} %"
    if abs(pct) >= 1:
        return f"{pct:.1f} %"
    return f"{pct:.2f} %"


def format_money(amount: float | None, currency: str) -> str:
    """An amount with thousands separators and its ISO 4217 code: "79,000 EUR" (no cents at
    or above 100), "45.50 EUR" below; "unknown" for None or NaN."""
    if amount is None or not _known(amount):
        return "unknown"
    if abs(amount) >= 100:
        return f"{_round(amount):,} {currency}"
    return f"{amount:,.2f} {currency}"


def format_measure(value: float | None, unit: str) -> str:
    """A detector's reading for people: a ratio in percent, seconds as a duration, anything
    else with its unit; "unknown" for None or NaN."""
    if value is None or not _known(value):
        return "unknown"
    if unit == "ratio":
        return format_percent(value)
    if unit == "seconds":
        return format_window(timedelta(seconds=value))
    return f"{value:,.4g}{' ' + unit if unit else ''}"


def format_window(d: timedelta) -> str:
    """A duration for people: "45 s", "10 min", "2 h", "1 h 30 min", "3 d 4 h"."""
    total = max(0, round(d.total_seconds()))
    if total < 60:
        return f"{total} s"
    minutes = round(total / 60)
    if minutes < 60:
        return f"{minutes} min"
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    parts = ([f"{days} d"] if days else []) + ([f"{hours} h"] if hours else [])
    if mins and not days:
        parts.append(f"{mins} min")
    return " ".join(parts)


@dataclass(frozen=True)
class TicketSize:
    """The average value of one payment, as configured: an amount and an ISO 4217 code."""

    amount: float
    currency: str

    def __post_init__(self) -> None:
        if (
            isinstance(self.amount, bool)
            or not isinstance(self.amount, int | float)
            or not math.isfinite(self.amount)
            or self.amount <= 0
        ):
            raise ValueError(f"ticket size must be a positive number, got {self.amount!r}")
        if not isinstance(self.currency, str) or not _CURRENCY.fullmatch(self.currency):
            raise ValueError(
                f"currency must be an ISO 4217 code of three capital letters, got {self.currency!r}"
            )


@dataclass(frozen=True)
class Impact:
    """Failed payments over ``duration`` and what they are worth.

    ``failed`` is every failed payment in the window; ``excess`` those above what the baseline
    rate predicts for the same attempts (``None`` without a baseline); ``per_minute`` the
    excess per minute of ``duration``. Amounts are ``None`` unless a ticket size is configured
    and the excess known (``ticket`` tells which of the two is missing).
    """

    failed: float | None
    attempts: float | None
    expected_failed: float | None
    excess: float | None
    duration: timedelta
    per_minute: float | None
    ticket: TicketSize | None
    amount_so_far: float | None
    amount_per_minute: float | None
    queries: tuple[QueryRef, ...] = ()

    def lines(self) -> list[str]:
        """The impact in sentences, each saying plainly what is unknown and why."""
        window = format_window(self.duration)
        out: list[str] = []
        if self.failed is None:
            out.append(f"Failed payments in the last {window}: unknown (no data).")
        else:
            of = f" of {format_count(self.attempts)}" if _known(self.attempts) else ""
            out.append(f"{format_count(self.failed)} payments failed{of} in {window}.")
        if self.excess is None:
            out.append("Failed above the usual level: unknown (no baseline to compare with).")
        else:
            rate = (
                f", {format_count(self.per_minute)} a minute" if self.per_minute is not None else ""
            )
            out.append(
                f"{format_count(self.excess)} more than usual "
                f"(expected {format_count(self.expected_failed)}){rate}."
            )
        if self.ticket is None:
            out.append("Amount at risk: unknown (no average ticket size configured).")
        elif self.amount_so_far is None:
            out.append("Amount at risk: unknown (the excess of failed payments is unknown).")
        else:
            per_min = (
                f", {format_money(self.amount_per_minute, self.ticket.currency)} a minute"
                if self.amount_per_minute is not None
                else ""
            )
            out.append(
                f"Amount at risk so far: about "
                f"{format_money(self.amount_so_far, self.ticket.currency)}{per_min} "
                f"(at {format_money(self.ticket.amount, self.ticket.currency)} a payment)."
            )
        return out

    def describe(self) -> str:
        return " ".join(self.lines())


def excess_failures(failed: float, attempts: float, baseline_rate: float) -> float | None:
    """Failures above ``attempts * baseline_rate``, never below 0; None when any input is not
    a finite number or the rate is outside [0, 1]."""
    if not (_known(failed) and _known(attempts) and _known(baseline_rate)):
        return None
    if not 0.0 <= baseline_rate <= 1.0:
        return None
    failed, attempts = max(failed, 0.0), max(attempts, 0.0)
    return max(0.0, failed - attempts * baseline_rate)


def estimate_impact(
    failed: float | None,
    attempts: float | None,
    baseline_rate: float | None,
    duration: timedelta,
    ticket: TicketSize | None = None,
    *,
    queries: Sequence[QueryRef] = (),
) -> Impact:
    """The impact of ``failed`` failures out of ``attempts`` over ``duration`` (the incident
    so far), against ``baseline_rate`` (the usual failure ratio, 0..1).

    Unknown inputs (None, NaN, a negative duration) give None for what depends on them, never
    0. Negative counts (a counter reset read through ``increase()``) are taken as 0.
    """
    f = max(0.0, float(failed)) if failed is not None and _known(failed) else None
    a = max(0.0, float(attempts)) if attempts is not None and _known(attempts) else None
    rate = float(baseline_rate) if baseline_rate is not None and _known(baseline_rate) else None
    expected = a * rate if a is not None and rate is not None and 0 <= rate <= 1 else None
    excess = None
    if f is not None and a is not None and rate is not None:
        excess = excess_failures(f, a, rate)
    minutes = duration.total_seconds() / 60
    per_minute = excess / minutes if excess is not None and minutes > 0 else None
    so_far = per_min_amount = None
    if ticket is not None and excess is not None:
        so_far = excess * ticket.amount
        per_min_amount = per_minute * ticket.amount if per_minute is not None else None
    return Impact(
        failed=f,
        attempts=a,
        expected_failed=expected,
        excess=excess,
        duration=max(duration, timedelta(0)),
        per_minute=per_minute,
        ticket=ticket,
        amount_so_far=so_far,
        amount_per_minute=per_min_amount,
        queries=tuple(queries),
    )
