"""capture_failures: capture failure ratio per PSP against the 99.5 % success target.

Configuration only so far; evaluation lands with the detectors issue.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from bot.config.types import Duration, EnvStr, StrictModel
from detectors.base import DetectorConfig, Severity


class Queries(StrictModel):
    attempts: EnvStr = "sum by (psp) (increase(payment_captures_total[{window}]))"
    failures: EnvStr = (
        'sum by (psp) (increase(payment_captures_total{{outcome="failed"}}[{window}]))'
    )


class Config(DetectorConfig):
    id: Literal["capture_failures"] = "capture_failures"
    severity: Severity = Severity.critical
    queries: Queries = Queries()
    window: Duration = "15m"  # type: ignore[assignment]
    objective: float = Field(default=0.995, gt=0, lt=1, description="capture success target")
    min_attempts: int = Field(default=100, ge=1)
    false_alarm_rate: float = Field(default=1e-6, gt=0, lt=0.5)
