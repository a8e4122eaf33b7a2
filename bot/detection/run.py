"""One detector stepping through a Frame, with persistence and hysteresis."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from paytriage.detectors import REGISTRY
from paytriage.detectors.base import Assessment, Detector, DetectorConfig
from paytriage.detectors.signals import Frame, LabelKey, Offset
from paytriage.detectors.stats import Debouncer, Transition
from paytriage.domain.findings import Finding


class EventKind(StrEnum):
    RAISED = "raised"
    CLEARED = "cleared"


@dataclass(frozen=True)
class Event:
    """A finding raised (persisted for ``for``) or cleared (quiet for ``clear_after``).

    A cleared event's ``recovered_at`` is when the finding's signal went back within its
    band: the start of the quiet period that cleared it (its finding carries the same time
    as ``details["recovered_at"]``, ISO 8601, for whoever reads only the finding). It is
    None for a raised event.
    """

    kind: EventKind
    finding: Finding
    at: datetime
    recovered_at: datetime | None = None


class DetectorRun:
    """One detector stepping through a frame, with persistence and hysteresis."""

    def __init__(self, cfg: DetectorConfig, detector: Detector[Any], step: timedelta) -> None:
        self.cfg = cfg
        self.detector = detector
        self.debouncer = Debouncer(
            for_=cfg.for_, clear_after=cfg.clear_after, max_gap=max(step * 3, cfg.interval * 3)
        )
        self.active: dict[LabelKey, Finding] = {}
        self._tracked: set[LabelKey] = set()
        # Keys cleared within the detector's ``remembers``: handed to ``assess`` with the
        # raised ones (their problem still shows in its long windows).
        self._recent: dict[LabelKey, datetime] = {}
        fn = detector.remembers
        self._remember = fn(cfg) if fn is not None else timedelta(0)

    def signals(self) -> dict[str, str]:
        return dict(self.detector.signals(self.cfg))

    def offsets(self) -> tuple[Offset, ...]:
        return tuple(self.detector.offsets(self.cfg))

    def history(self) -> Collection[str] | None:
        fn = self.detector.history_signals
        return None if fn is None else set(fn(self.cfg))

    def lookback(self) -> timedelta:
        return self.detector.lookback(self.cfg)

    def step(self, frame: Frame, i: int) -> list[Event]:
        at = frame.when(i)
        events: list[Event] = []
        # The keys it has raised (or cleared so recently that its windows still hold their
        # problem): such a finding may explain failures that would otherwise page a second
        # slice.
        self._recent = {k: t for k, t in self._recent.items() if at - t <= self._remember}
        assessments: list[Assessment] = self.detector.assess(
            self.cfg, frame, i, frozenset(self.active).union(self._recent)
        )
        seen: set[LabelKey] = set()
        for a in assessments:
            if a.key in seen:
                continue
            seen.add(a.key)
            was_active = self.debouncer.active(a.key)
            # A finding is raised when it breaches (``for`` long) with its signal out of its
            # band now, and holds while its signal stays out of its band (``holding``, read
            # on the recent past): windows that still remember a problem that ended neither
            # keep a finding open nor raise it again.
            cond = a.holding if was_active else a.breach and a.holding
            if cond:
                self._tracked.add(a.key)
            since = (a.recovered_since if not cond else None) if was_active else a.since
            transition = self.debouncer.update(a.key, cond, at, since=since)
            if transition is Transition.RAISED:
                finding = replace(a.finding, onset=self.detector.onset(self.cfg, frame, a, i))
                self.active[a.key] = finding
                events.append(Event(EventKind.RAISED, finding, at))
            elif was_active:
                prev = self.active.get(a.key)
                onset = prev.onset if prev else None
                self.active[a.key] = replace(a.finding, onset=onset)
            if transition is Transition.CLEARED:
                events.append(self._cleared(self.active.pop(a.key, a.finding), a.key, at))
        for key in list(self._tracked - seen):
            transition = self.debouncer.update(key, False, at)
            if transition is Transition.CLEARED:
                events.append(self._cleared(self.active.pop(key), key, at))
            if not self.debouncer.active(key) and self.debouncer.pending_since(key) is None:
                self._tracked.discard(key)
        return events

    def _cleared(self, finding: Finding, key: LabelKey, at: datetime) -> Event:
        """The cleared event of ``key``, with when its signal went back (the start of the
        quiet period that cleared it), on the event and in the finding's details."""
        back = self.debouncer.recovered_at(key) or at
        if self._remember > timedelta(0):
            self._recent[key] = at
        stamp = back.astimezone(UTC).isoformat().replace("+00:00", "Z")
        finding = replace(finding, details={**finding.details, "recovered_at": stamp})
        return Event(EventKind.CLEARED, finding, at, recovered_at=back)


def runs_for(configs: Iterable[DetectorConfig], step: timedelta) -> list[DetectorRun]:
    """DetectorRuns for the configured detectors (each config names a registered detector:
    the ``detectors:`` section has one field per entry of the registry)."""
    return [DetectorRun(cfg, REGISTRY[cfg.id], step) for cfg in configs]
