"""decline_spike: failed authorizations over attempts per slice, volume-aware, seasonal.

Configuration only so far; evaluation lands with the detectors issue.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from bot.config.types import Duration, EnvStr, StrictModel
from detectors.base import (
    BaselineConfig,
    DetectorConfig,
    DimensionList,
    Severity,
    default_dimensions,
)


class Queries(StrictModel):
    """PromQL templates. ``{by}`` becomes the grouping labels, ``{window}`` the rate window."""

    attempts: EnvStr = "sum by ({by}) (increase(payment_authorizations_total[{window}]))"
    failures: EnvStr = (
        "sum by ({by}) "
        '(increase(payment_authorizations_total{{outcome=~"declined|error"}}[{window}]))'
    )
    errors: EnvStr = (
        'sum by ({by}) (increase(payment_authorizations_total{{outcome="error"}}[{window}]))'
    )
    declines_by_reason: EnvStr = (
        "sum by ({by}, reason) (increase(payment_declines_total[{window}]))"
    )


class Config(DetectorConfig):
    id: Literal["decline_spike"] = "decline_spike"
    severity: Severity = Severity.critical
    queries: Queries = Queries()
    dimensions: DimensionList = Field(default_factory=default_dimensions)
    window: Duration = "10m"  # type: ignore[assignment]
    baseline: BaselineConfig = BaselineConfig()
    min_attempts: int = Field(
        default=200, ge=1, description="attempts in the window to judge a slice"
    )
    min_rise_points: float = Field(default=2.0, ge=0, description="rise in percentage points")
    min_rise_ratio: float = Field(default=1.25, ge=1, description="rise as a ratio of baseline")
    false_alarm_rate: float = Field(default=1e-6, gt=0, lt=0.5, description="per-test alpha")
