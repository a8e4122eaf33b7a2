"""What many tests build: the reference Monday morning, a settable clock, findings and the
detector events that carry them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from paytriage.detection.run import Event, EventKind
from paytriage.domain.findings import Finding, QueryRef, Severity
from paytriage.domain.incidents import Grouper
from paytriage.domain.notifications import Outgoing
from paytriage.store import Entry, Store

T0 = datetime(2026, 11, 16, 9, 0, tzinfo=UTC)  # a Monday morning
M = timedelta(minutes=1)


class Clock:
    """A clock a test sets (``clock.now = ...``); with ``tick``, each reading is ``tick``
    later than the one before (distinct, ordered timestamps)."""

    def __init__(self, start: datetime = T0, tick: timedelta = timedelta(0)) -> None:
        self.now = start
        self.tick = tick

    def __call__(self) -> datetime:
        self.now += self.tick
        return self.now


def ticking(start: datetime = T0 + 5 * M) -> Clock:
    """A clock one second later at every reading (people acting on an open incident)."""
    return Clock(start, tick=timedelta(seconds=1))


def finding(
    detector: str = "decline_spike",
    *,
    at: datetime = T0,
    severity: Severity = Severity.error,
    dimensions: Mapping[str, str] | None = None,
    title: str | None = None,
    onset: datetime | bool | None = True,
    observed: float = 0.3,
    expected: float = 0.05,
    band: tuple[float, float] = (0.0, 0.08),
    unit: str = "",
    queries: Sequence[QueryRef] = (),
    details: Mapping[str, Any] | None = None,
) -> Finding:
    """A finding at ``at``; its onset three minutes before unless given (None: unknown)."""
    dims = dict(dimensions or {})
    return Finding(
        detector=detector,
        severity=severity,
        dimensions=dims,
        title=title if title is not None else f"{detector} on {dims}",
        observed=observed,
        expected=expected,
        band=band,
        onset=at - 3 * M if onset is True else (onset or None),
        at=at,
        unit=unit,
        queries=tuple(queries),
        details=dict(details or {}),
    )


def raised(f: Finding, at: datetime | None = None) -> Event:
    return Event(EventKind.RAISED, f, at or f.at)


def cleared(f: Finding, at: datetime) -> Event:
    return Event(EventKind.CLEARED, f, at)


def stored_finding(
    detector: str = "decline_spike", at: datetime = T0, title: str = "Technical errors up"
) -> Finding:
    """A decline finding as the store keeps it: critical, with its query and counts."""
    return finding(
        detector,
        at=at,
        severity=Severity.critical,
        dimensions={"psp": "stripe"},
        title=title,
        observed=0.31,
        expected=0.041,
        band=(0.02, 0.06),
        unit="ratio",
        queries=(QueryRef("prometheus", "sum(increase(x[5m]))", at - 5 * M, at),),
        details={"cause": "technical", "attempts": 5870.0, "failures": 1820.0},
    )


def open_one(store: Store, title: str = "Technical errors up") -> str:
    """An open incident in the store, with a timeline entry and a message in the outbox."""
    g = Grouper(timedelta(minutes=10), timedelta(minutes=30))
    inc = g.raised(stored_finding(title=title), T0)
    with store.begin() as tx:
        tx.save_incident(inc, T0)
        tx.timeline(inc.id, Entry(T0, "opened", "detector:decline_spike", inc.title))
        tx.enqueue(Outgoing(f"{inc.id}:post", "slack", "post", {"title": inc.title}, inc.id), T0)
    return inc.id
