"""What every detector shares: its config base, the Finding it returns, and its registry entry.

A detector is one module in this package with a ``Config`` model (its PromQL and thresholds,
defaults written for the reference schema of TELEMETRY.md) and, once implemented,
``evaluate(signals, now) -> list[Finding]``. It is registered by one line in
``detectors/__init__.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import Field, ValidationInfo, field_validator

from bot.config.types import Duration, LabelName, StrictModel


class Severity(StrEnum):
    """PagerDuty's severities, used everywhere for one vocabulary."""

    critical = "critical"
    error = "error"
    warning = "warning"
    info = "info"

    @property
    def rank(self) -> int:
        return ["info", "warning", "error", "critical"].index(self.value)


class DetectorConfig(StrictModel):
    """Settings every detector has."""

    id: str
    enabled: bool = True
    interval: Duration = Field(default=timedelta(minutes=1), description="how often it runs")
    timeout: Duration = Field(
        default=timedelta(seconds=30),
        description="how long one run may wait for its queries (at most its interval): past "
        "it the live cycle cuts the detector off for that run, reports it and goes on",
    )
    severity: Severity = Severity.error
    for_: Duration = Field(
        default=timedelta(minutes=3),
        alias="for",
        description="the condition must hold this long before a finding is raised",
    )
    clear_after: Duration = Field(
        default=timedelta(minutes=10),
        description="quiet time before a raised finding clears (hysteresis)",
    )
    runbook: str | None = Field(
        default=None, description="runbook id; default: matched by front matter"
    )

    @field_validator("interval", "timeout")
    @classmethod
    def _long_enough(cls, v: timedelta, info: ValidationInfo) -> timedelta:
        least = {"interval": 5, "timeout": 1}[str(info.field_name)]
        if v < timedelta(seconds=least):
            raise ValueError(f"{info.field_name} must be at least {least}s")
        return v


class BaselineConfig(StrictModel):
    """Seasonal baseline: the same time of week over past weeks, robust to past incidents."""

    weeks: int = Field(default=4, ge=1, le=12, description="past weeks compared")
    min_weeks: int = Field(default=1, ge=1, description="weeks of history needed to judge")
    days: int = Field(
        default=3,
        ge=1,
        le=6,
        description="past days compared (median) when there are not enough weeks of history",
    )


def default_dimensions() -> list[str]:
    return ["psp", "country", "method"]


DimensionList = list[LabelName]


@dataclass(frozen=True)
class QueryRef:
    """The query and window behind a number, so evidence and postmortems can cite it."""

    source: str  # "prometheus" | "opensearch"
    query: str
    start: datetime | None = None
    end: datetime | None = None
    step: timedelta | None = None


@dataclass(frozen=True)
class Finding:
    """One detector's conclusion at one evaluation: pure data."""

    detector: str
    severity: Severity
    dimensions: dict[str, str]
    title: str
    observed: float
    expected: float
    band: tuple[float, float]
    onset: datetime | None
    at: datetime
    unit: str = ""
    queries: tuple[QueryRef, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Assessment:
    """A detector's verdict on one key (dimensions) at one step, before persistence.

    ``breach`` is the strict condition that must hold for ``for`` before a finding is raised;
    ``holding`` the looser one that keeps a raised finding open (hysteresis). ``finding`` is
    what is reported while it is raised. ``since`` is when the data shows the breach began,
    when the detector checked that itself (it counts towards ``for``).
    """

    key: tuple[tuple[str, str], ...]
    breach: bool
    holding: bool
    finding: Finding
    since: datetime | None = None
