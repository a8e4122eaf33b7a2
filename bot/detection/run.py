"""One detector stepping through a Frame, with persistence and hysteresis."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
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
    """A finding raised (persisted for ``for``) or cleared (quiet for ``clear_after``)."""

    kind: EventKind
    finding: Finding
    at: datetime


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
        # The keys it has raised: an open finding may explain failures that would otherwise
        # page a second slice.
        assessments: list[Assessment] = self.detector.assess(
            self.cfg, frame, i, frozenset(self.active)
        )
        seen: set[LabelKey] = set()
        for a in assessments:
            if a.key in seen:
                continue
            seen.add(a.key)
            was_active = self.debouncer.active(a.key)
            cond = a.holding if was_active else a.breach
            if cond:
                self._tracked.add(a.key)
            transition = self.debouncer.update(
                a.key, cond, at, since=None if was_active else a.since
            )
            if transition is Transition.RAISED:
                finding = replace(a.finding, onset=self.detector.onset(self.cfg, frame, a, i))
                self.active[a.key] = finding
                events.append(Event(EventKind.RAISED, finding, at))
            elif was_active:
                prev = self.active.get(a.key)
                onset = prev.onset if prev else None
                self.active[a.key] = replace(a.finding, onset=onset)
            if transition is Transition.CLEARED:
                events.append(Event(EventKind.CLEARED, self.active.pop(a.key, a.finding), at))
        for key in list(self._tracked - seen):
            transition = self.debouncer.update(key, False, at)
            if transition is Transition.CLEARED:
                events.append(Event(EventKind.CLEARED, self.active.pop(key), at))
            if not self.debouncer.active(key) and self.debouncer.pending_since(key) is None:
                self._tracked.discard(key)
        return events


def runs_for(configs: Iterable[DetectorConfig], step: timedelta) -> list[DetectorRun]:
    """DetectorRuns for the configured detectors (each config names a registered detector:
    the ``detectors:`` section has one field per entry of the registry)."""
    return [DetectorRun(cfg, REGISTRY[cfg.id], step) for cfg in configs]
