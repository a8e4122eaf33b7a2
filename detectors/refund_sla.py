"""refund_sla: refunds completed outside / pending past the 24 h SLA, with burn-rate windows.

Configuration only so far; evaluation lands with the detectors issue.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import Field

from bot.config.types import Duration, EnvStr, StrictModel
from detectors.base import DetectorConfig


class Queries(StrictModel):
    completed: EnvStr = "sum by (psp) (increase(refunds_completed_total[{window}]))"
    completed_late: EnvStr = (
        'sum by (psp) (increase(refunds_completed_total{{within_sla="false"}}[{window}]))'
    )
    requested: EnvStr = "sum by (psp) (increase(refunds_requested_total[{window}]))"
    pending_over_sla: EnvStr = "sum by (psp) (refunds_pending_over_sla)"


class BurnWindow(StrictModel):
    """One multi-window, multi-burn-rate alert (SRE workbook): long and short window."""

    long: Duration
    short: Duration
    burn_rate: float = Field(gt=0)
    severity: str = "page"


def _default_windows() -> list[BurnWindow]:
    return [
        BurnWindow(long=timedelta(hours=1), short=timedelta(minutes=5), burn_rate=14.4),
        BurnWindow(long=timedelta(hours=6), short=timedelta(minutes=30), burn_rate=6),
        BurnWindow(
            long=timedelta(days=3), short=timedelta(hours=6), burn_rate=1, severity="ticket"
        ),
    ]


class Config(DetectorConfig):
    id: Literal["refund_sla"] = "refund_sla"
    queries: Queries = Queries()
    objective: float = Field(default=0.95, gt=0, lt=1, description="share completed within SLA")
    sla: Duration = "24h"  # type: ignore[assignment]
    burn_windows: list[BurnWindow] = Field(default_factory=_default_windows)
    min_bad_events: int = Field(default=5, ge=0, description="bad events in the long window")
