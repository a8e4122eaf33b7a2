"""Incident lifecycle, silences and maintenance windows: pure rules over data.

States move ``open -> acknowledged -> mitigated -> resolved``; people may skip ahead (resolve
an open incident) but never move back, except that a relapse re-opens a resolved incident
(``reopen``). Every change names who or what made it (``slack:U123``, ``detector:...``,
``paytriage``) so the timeline can say so.

Silences and maintenance windows suppress notifications, never recording: the store keeps
every incident and finding; the sender asks ``suppressed_by`` before it pages or posts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum


class State(StrEnum):
    open = "open"
    acknowledged = "acknowledged"
    mitigated = "mitigated"
    resolved = "resolved"

    @property
    def rank(self) -> int:
        return list(State).index(self)


class Action(StrEnum):
    acknowledge = "acknowledge"
    mitigate = "mitigate"
    resolve = "resolve"
    reopen = "reopen"


TARGET = {
    Action.acknowledge: State.acknowledged,
    Action.mitigate: State.mitigated,
    Action.resolve: State.resolved,
    Action.reopen: State.open,
}


class TransitionError(ValueError):
    """An action that does not apply to the incident's current state."""


def transition(state: State, action: Action) -> State:
    """The state after ``action``; raises TransitionError naming both when it does not apply.

    Forward moves may skip states (resolving an open incident is fine); going back is not
    allowed, except ``reopen`` of a resolved incident.
    """
    target = TARGET[action]
    if action is Action.reopen:
        if state is not State.resolved:
            raise TransitionError(f"cannot reopen an incident that is {state.value}")
        return target
    if state is State.resolved:
        raise TransitionError(f"cannot {action.value} a resolved incident")
    if target.rank <= state.rank:
        raise TransitionError(f"cannot {action.value} an incident that is already {state.value}")
    return target


def matches(selector: Mapping[str, str], dimensions: Mapping[str, str]) -> bool:
    """A selector matches an incident whose dimensions contain all of it ({} matches all)."""
    return all(dimensions.get(k) == v for k, v in selector.items())


@dataclass(frozen=True)
class Silence:
    """Suppress notifications for a detector (or all: None) on matching dimensions."""

    id: str
    detector: str | None
    dimensions: Mapping[str, str]
    reason: str
    created_by: str
    created_at: datetime
    expires_at: datetime | None = None  # None: until the incident it names resolves
    incident_id: str | None = None
    ended_at: datetime | None = None

    def active(self, at: datetime, resolved_incidents: Iterable[str] = ()) -> bool:
        if self.ended_at is not None and self.ended_at <= at:
            return False
        if at < self.created_at:
            return False
        if self.expires_at is not None:
            return at < self.expires_at
        return self.incident_id is not None and self.incident_id not in set(resolved_incidents)

    def covers(self, detector: str, dimensions: Mapping[str, str], incident_id: str) -> bool:
        if self.incident_id is not None and self.expires_at is None:
            return incident_id == self.incident_id
        if self.detector is not None and self.detector != detector:
            return False
        return matches(self.dimensions, dimensions)


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class Maintenance:
    """A maintenance window: once (``start``..``end``) or weekly (``weekday`` at ``start_time``
    UTC for ``duration``), for matching dimensions (a PSP's announced maintenance)."""

    name: str
    dimensions: Mapping[str, str]
    detectors: tuple[str, ...] = ()  # empty: every detector
    start: datetime | None = None
    end: datetime | None = None
    weekday: str | None = None
    start_time: time | None = None
    duration: timedelta | None = None

    def __post_init__(self) -> None:
        once = self.start is not None and self.end is not None
        weekly = (
            self.weekday is not None and self.start_time is not None and self.duration is not None
        )
        if once == weekly:
            raise ValueError(
                f"maintenance {self.name!r}: give either start and end, or weekday, "
                "start_time and duration"
            )
        if self.weekday is not None and self.weekday not in WEEKDAYS:
            raise ValueError(f"maintenance {self.name!r}: weekday must be one of {WEEKDAYS}")
        if self.duration is not None and not timedelta(0) < self.duration <= timedelta(days=7):
            raise ValueError(f"maintenance {self.name!r}: duration must be within a week")
        if once and self.end <= self.start:  # type: ignore[operator]
            raise ValueError(f"maintenance {self.name!r}: end must be after start")

    def active(self, at: datetime) -> bool:
        at = at.astimezone(UTC)
        if self.start is not None and self.end is not None:
            return self.start <= at < self.end
        assert self.weekday is not None and self.start_time is not None
        assert self.duration is not None
        day = WEEKDAYS.index(self.weekday)
        # The window that began most recently at or before ``at`` (it may span midnight).
        monday = (at - timedelta(days=at.weekday())).date()
        for weeks_back in (0, 1):
            begin = datetime.combine(
                monday + timedelta(days=day - 7 * weeks_back), self.start_time, UTC
            )
            if begin <= at < begin + self.duration:
                return True
        return False

    def covers(self, detector: str, dimensions: Mapping[str, str]) -> bool:
        if self.detectors and detector not in self.detectors:
            return False
        return matches(self.dimensions, dimensions)


def suppressed_by(
    detector: str,
    dimensions: Mapping[str, str],
    incident_id: str,
    at: datetime,
    silences: Iterable[Silence] = (),
    maintenance: Iterable[Maintenance] = (),
    resolved_incidents: Iterable[str] = (),
) -> str | None:
    """Why notifications for this incident are suppressed at ``at`` (None: they are not)."""
    resolved = set(resolved_incidents)
    for s in silences:
        if s.active(at, resolved) and s.covers(detector, dimensions, incident_id):
            return f"silenced by {s.created_by}: {s.reason}"
    for m in maintenance:
        if m.active(at) and m.covers(detector, dimensions):
            return f"maintenance window {m.name}"
    return None
