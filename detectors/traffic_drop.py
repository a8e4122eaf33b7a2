"""traffic_drop: attempts far below their seasonal baseline (checkout silently broken).

Configuration only so far; evaluation lands with the detectors issue.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from bot.config.types import Duration, EnvStr, StrictModel
from detectors.base import BaselineConfig, DetectorConfig, DimensionList, Severity


class Queries(StrictModel):
    attempts: EnvStr = "sum by ({by}) (increase(payment_authorizations_total[{window}]))"
    freshness: EnvStr = "time() - max(timestamp(payment_authorizations_total))"


class Config(DetectorConfig):
    id: Literal["traffic_drop"] = "traffic_drop"
    severity: Severity = Severity.critical
    queries: Queries = Queries()
    dimensions: DimensionList = Field(default_factory=lambda: ["country", "psp"])
    window: Duration = "10m"  # type: ignore[assignment]
    baseline: BaselineConfig = BaselineConfig()
    max_drop_ratio: float = Field(
        default=0.5, gt=0, lt=1, description="page below this share of expected"
    )
    min_expected: float = Field(
        default=100, ge=1, description="expected events in the window to judge"
    )
    false_alarm_rate: float = Field(default=1e-6, gt=0, lt=0.5)
    max_staleness: Duration = "5m"  # type: ignore[assignment]
