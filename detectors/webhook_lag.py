"""webhook_lag: P95 processing lag, oldest backlog age and first-try failures per PSP.

Configuration only so far; evaluation lands with the detectors issue.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from bot.config.types import Duration, EnvStr, StrictModel
from detectors.base import BaselineConfig, DetectorConfig


class Queries(StrictModel):
    lag_p95: EnvStr = (
        "histogram_quantile(0.95, sum by (psp, le) "
        "(rate(webhook_processing_lag_seconds_bucket[{window}])))"
    )
    backlog_oldest_age: EnvStr = "max by (psp) (webhook_backlog_oldest_age_seconds)"
    received: EnvStr = "sum by (psp) (increase(webhook_events_received_total[{window}]))"
    failed: EnvStr = (
        'sum by (psp) (increase(webhook_events_processed_total{{outcome="failed"}}[{window}]))'
    )
    processed: EnvStr = "sum by (psp) (increase(webhook_events_processed_total[{window}]))"


class Config(DetectorConfig):
    id: Literal["webhook_lag"] = "webhook_lag"
    queries: Queries = Queries()
    window: Duration = "5m"  # type: ignore[assignment]
    slo_p95_seconds: float = Field(default=60.0, gt=0, description="P95 lag objective")
    max_backlog_age_seconds: float = Field(default=300.0, gt=0)
    max_first_try_failure_ratio: float = Field(default=0.02, gt=0, lt=1)
    min_events: int = Field(default=50, ge=1)
    baseline: BaselineConfig = BaselineConfig()
