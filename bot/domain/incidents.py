"""Findings become incidents: one page per problem, not one per detector or slice.

Pure logic over the detectors' raise/clear events, used alike by the backtest and the live
bot. The rules, in the order they are tried when a finding is raised:

1. **Relapse**: the same detector and slice raised again while its incident is open, or
   within ``reopen_within`` of the incident resolving, re-opens that incident.
2. **Correlation**: a finding whose dimensions are related to an open incident's (equal, or
   one a subset of the other: ``{"psp": "stripe"}`` and ``{"psp": "stripe", "country":
   "DE"}``; ``{}`` platform-wide relates to all) and that was raised within
   ``correlation_window`` of the incident opening joins it: a PSP's declines and its
   capture failures, a country's declines and its traffic drop are one incident. Problems
   that start far apart stay apart, even on the same PSP.
3. Otherwise it opens a new incident.

Data problems (a slice whose metrics went stale) are grouped the same way among themselves
but never joined with payment incidents: missing data is not a payment problem.

An incident resolves when the last of its findings clears (each detector clears only after
its own quiet period, ``clear_after``). Its impact ended earlier: when the last of those
findings went back within its band, the start of the quiet period that cleared it
(``Incident.impact_ended_at``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from paytriage.core.types import iso
from paytriage.domain.findings import Finding, Severity, slice_text


@dataclass(frozen=True)
class MemberKey:
    """A finding's place in its incident: its detector and slice (a data problem on a slice
    is apart from a payment finding on it). ``str`` is how the store keys its members."""

    detector: str
    dimensions: tuple[tuple[str, str], ...]
    data_problem: bool = False

    @classmethod
    def of(cls, finding: Finding) -> MemberKey:
        return cls(
            finding.detector, tuple(sorted(finding.dimensions.items())), is_data_problem(finding)
        )

    def __str__(self) -> str:
        suffix = "/data" if self.data_problem else ""
        dims = ",".join(f"{k}={v}" for k, v in self.dimensions)
        return f"{self.detector}{suffix}|{dims}"

    @staticmethod
    def detector_of(stored: str) -> str:
        """The detector of a member as the store keys it (``str`` of a key)."""
        return stored.split("|", 1)[0].removesuffix("/data")


def related(a: Mapping[str, str], b: Mapping[str, str]) -> bool:
    """Whether two slices can describe the same problem: one contains the other."""
    shared = a.keys() & b.keys()
    if any(a[k] != b[k] for k in shared):
        return False
    return shared == a.keys() or shared == b.keys()


def is_data_problem(finding: Finding) -> bool:
    return finding.details.get("kind") == "data_problem"


class TimelineKind(StrEnum):
    """What happened to an incident, as its stored timeline records it (a person's action
    is recorded under the action's name, ``paytriage.domain.lifecycle.Action``)."""

    OPENED = "opened"
    REOPENED = "re-opened"
    RAISED_AGAIN = "raised"
    JOINED = "joined"
    CLEARED = "cleared"
    NOT_RAISED_AGAIN = "not-raised-again"  # after a restart
    RESOLVED = "resolved"
    SUPPRESSED = "suppressed"  # a notification a silence or maintenance held back
    CHART = "chart"  # a chart posted in the thread (its permalink in the entry's data)
    ESCALATED = "escalated"
    DECLARED = "declared"  # opened by a person, not a detector


MANUAL = "manual"  # the detector of an incident a person declared


@dataclass
class TimelineEntry:
    at: datetime
    kind: TimelineKind
    what: str
    by: str = "paytriage"


@dataclass
class Incident:
    """One problem as people see it: its first finding names it (title, detector, the
    figures it was paged with, which runbook applies); later ones add to it and are told
    in the timeline, but never rename it."""

    id: str
    detector: str
    dimensions: dict[str, str]
    title: str
    severity: Severity
    opened_at: datetime
    onset: datetime | None
    data_problem: bool
    resolved_at: datetime | None = None
    #: When the signal of its last active finding went back within its band (the start of
    #: the quiet period after which that finding cleared); None while any finding is active.
    impact_ended_at: datetime | None = None
    active: dict[MemberKey, Finding] = field(default_factory=dict)
    members: dict[MemberKey, Finding] = field(default_factory=dict)
    timeline: list[TimelineEntry] = field(default_factory=list)
    reopened: int = 0
    first: Finding | None = None  # the finding it was opened (and paged) with, as it was
    # The latest recovery among the findings cleared since it last had none active.
    _recovered: datetime | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None

    @property
    def declared(self) -> bool:
        """Opened by a person: no finding will clear it, a person resolves it."""
        return self.detector == MANUAL

    @property
    def detectors(self) -> list[str]:
        return sorted({f.detector for f in self.members.values()})

    def as_dict(self) -> dict[str, object]:
        """The backtest's output record (UTC ISO 8601 times)."""
        return {
            "id": self.id,
            "detector": self.detector,
            "opened_at": iso(self.opened_at),
            "resolved_at": iso(self.resolved_at) if self.resolved_at else None,
            "impact_ended_at": iso(self.impact_ended_at) if self.impact_ended_at else None,
            "severity": self.severity.value,
            "dimensions": dict(self.dimensions),
            "title": self.title,
            "onset": iso(self.onset) if self.onset else None,
            "detectors": self.detectors,
            "reopened": self.reopened,
        }


def _recovered_at(finding: Finding) -> datetime | None:
    """The recovery time a cleared finding carries in its details (ISO 8601), if any: the
    detectors' runner puts it there so that whoever hands the grouper only the finding
    (the live pipeline) records it too."""
    raw = finding.details.get("recovered_at")
    if isinstance(raw, datetime):
        return raw
    if isinstance(raw, str):
        try:
            return datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None


def fingerprint(detector: str, dimensions: Mapping[str, str], opened_at: datetime) -> str:
    """A stable id: the same problem replayed over the same history gets the same id."""
    dims = ",".join(f"{k}={v}" for k, v in sorted(dimensions.items()))
    digest = hashlib.sha256(f"{detector}|{dims}|{iso(opened_at)}".encode()).hexdigest()
    return f"inc-{digest[:12]}"


class Grouper:
    """Feeds raise/clear events in time order; keeps every incident it has seen."""

    def __init__(self, correlation_window: timedelta, reopen_within: timedelta) -> None:
        self.correlation_window = correlation_window
        self.reopen_within = reopen_within
        self.incidents: list[Incident] = []
        self._by_member: dict[MemberKey, Incident] = {}

    def incident_of(self, finding: Finding) -> Incident | None:
        """The incident this detector and slice last belonged to, if any."""
        return self._by_member.get(MemberKey.of(finding))

    def adopt(self, inc: Incident) -> None:
        """Take over an incident kept elsewhere (the store, after a restart): its findings
        relapse, join and clear it as if this grouper had opened it."""
        if any(i.id == inc.id for i in self.incidents):
            return
        self.incidents.append(inc)
        for key in inc.members:
            self._by_member[key] = inc

    def prune(self, at: datetime) -> list[Incident]:
        """Forget incidents resolved longer than ``reopen_within`` ago (they can no longer
        re-open); returns them. Keeps a long-running bot's memory flat."""
        gone = [
            i
            for i in self.incidents
            if i.resolved_at is not None and at - i.resolved_at > self.reopen_within
        ]
        if gone:
            ids = {i.id for i in gone}
            self.incidents = [i for i in self.incidents if i.id not in ids]
            self._by_member = {k: i for k, i in self._by_member.items() if i.id not in ids}
        return gone

    def raised(self, finding: Finding, at: datetime) -> Incident:
        key = MemberKey.of(finding)
        data = is_data_problem(finding)
        inc = self._by_member.get(key)
        if inc is not None and (
            inc.is_open or (inc.resolved_at and at - inc.resolved_at <= self.reopen_within)
        ):
            if not inc.is_open:
                inc.resolved_at = None
                inc.reopened += 1
                inc.timeline.append(
                    TimelineEntry(at, TimelineKind.REOPENED, f"re-opened: {finding.title}")
                )
            else:
                inc.timeline.append(
                    TimelineEntry(at, TimelineKind.RAISED_AGAIN, f"raised again: {finding.title}")
                )
            self._add(inc, key, finding)
            return inc
        for inc in self.incidents:
            if (
                inc.is_open
                and inc.data_problem == data
                and at - inc.opened_at <= self.correlation_window
                and related(inc.dimensions, finding.dimensions)
            ):
                inc.timeline.append(
                    TimelineEntry(
                        at, TimelineKind.JOINED, f"joined by {finding.detector}: {finding.title}"
                    )
                )
                self._add(inc, key, finding)
                return inc
        inc = Incident(
            id=fingerprint(finding.detector, finding.dimensions, at),
            detector=finding.detector,
            dimensions=dict(finding.dimensions),
            title=finding.title,
            severity=finding.severity,
            opened_at=at,
            onset=finding.onset,
            data_problem=data,
            first=finding,
        )
        inc.timeline.append(TimelineEntry(at, TimelineKind.OPENED, f"opened: {finding.title}"))
        self.incidents.append(inc)
        self._add(inc, key, finding)
        return inc

    def updated(self, finding: Finding) -> None:
        """The latest numbers of a still-raised finding."""
        key = MemberKey.of(finding)
        inc = self._by_member.get(key)
        if inc is not None and key in inc.active:
            inc.active[key] = finding
            if finding.severity.rank > inc.severity.rank:
                inc.severity = finding.severity

    def cleared(
        self, finding: Finding, at: datetime, recovered_at: datetime | None = None
    ) -> Incident | None:
        """The finding cleared at ``at``; its signal went back within its band at
        ``recovered_at`` (the start of the quiet period that cleared it; default: the
        finding's ``details["recovered_at"]``, else ``at``). When it was the incident's last
        active finding, the incident resolves, its impact ended at the latest recovery of
        the findings cleared since it last had none active."""
        key = MemberKey.of(finding)
        inc = self._by_member.get(key)
        if inc is None or key not in inc.active:
            return None
        back = min(recovered_at or _recovered_at(finding) or at, at)
        inc._recovered = back if inc._recovered is None else max(inc._recovered, back)
        del inc.active[key]
        # Not the finding's latest title: a recovering slice's last reading may call the
        # problem something else ("Issuer declines up" as a PSP outage ends).
        where = slice_text(finding.dimensions)
        what = f"{finding.detector} cleared on {where}: back within its expected range"
        inc.timeline.append(TimelineEntry(at, TimelineKind.CLEARED, what))
        if not inc.active:
            inc.resolved_at = at
            inc.impact_ended_at = inc._recovered
            inc.timeline.append(
                TimelineEntry(at, TimelineKind.RESOLVED, "resolved: every finding cleared")
            )
        return inc

    def _add(self, inc: Incident, key: MemberKey, finding: Finding) -> None:
        if not inc.active:  # (re-)opened: its impact is on again
            inc._recovered = inc.impact_ended_at = None
        inc.active[key] = finding
        inc.members[key] = finding
        self._by_member[key] = inc
        if finding.severity.rank > inc.severity.rank:
            inc.severity = finding.severity
        if finding.onset is not None and (inc.onset is None or finding.onset < inc.onset):
            inc.onset = finding.onset
