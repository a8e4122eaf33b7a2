"""``paytriage backtest``: replay history through the detectors and the incident grouping.

Every signal is fetched once for the whole period (plus each detector's lookback and
history offsets) and the detectors then step through it in memory, each step seeing only
what the live bot would have seen at that moment. Nothing is posted.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from paytriage.core.types import iso
from paytriage.detection.replay import replay
from paytriage.detection.run import Event, runs_for
from paytriage.detectors.base import DetectorConfig
from paytriage.domain.incidents import Grouper, Incident
from paytriage.sources.base import MetricsSource


@dataclass
class BacktestResult:
    start: datetime
    end: datetime
    step: timedelta
    incidents: list[Incident]
    data_problems: list[Incident]
    failed: dict[str, str]
    detectors: list[str]
    seconds: float
    nothing_read: bool = False  # every signal failed: no result, not "no incidents"

    def as_dict(self) -> dict[str, Any]:
        return {
            "period": {
                "start": iso(self.start),
                "end": iso(self.end),
                "step_seconds": self.step.total_seconds(),
            },
            "detectors": self.detectors,
            "incidents": [i.as_dict() for i in self.incidents],
            # Stale or missing metrics: reported, never paged as a payment incident.
            "data_problems": [i.as_dict() for i in self.data_problems],
            "unreadable_signals": dict(sorted(self.failed.items())),
        }


def group(
    events: Sequence[Event], correlation_window: timedelta, reopen_within: timedelta
) -> list[Incident]:
    """Incidents from time-ordered raise/clear events (see ``paytriage.domain.incidents``)."""
    grouper = Grouper(correlation_window, reopen_within)
    for e in events:
        if e.kind == "raised":
            grouper.raised(e.finding, e.at)
        elif e.kind == "cleared":
            grouper.cleared(e.finding, e.at, e.recovered_at)
    return grouper.incidents


def backtest(
    source: MetricsSource,
    detectors: Sequence[DetectorConfig],
    start: datetime,
    end: datetime,
    step: timedelta,
    *,
    correlation_window: timedelta,
    reopen_within: timedelta,
) -> BacktestResult:
    if end <= start:
        raise ValueError(f"the end ({iso(end)}) must come after the start ({iso(start)})")
    if step <= timedelta(0):
        raise ValueError("the step must be positive")
    t0 = time.monotonic()
    runs = runs_for(detectors, step)
    result = replay(source, runs, start, end, step)
    incidents = group(result.events, correlation_window, reopen_within)
    return BacktestResult(
        start=start,
        end=end,
        step=step,
        incidents=[i for i in incidents if not i.data_problem],
        data_problems=[i for i in incidents if i.data_problem],
        failed=result.failed,
        detectors=[r.cfg.id for r in runs],
        seconds=time.monotonic() - t0,
        nothing_read=result.nothing_read,
    )
