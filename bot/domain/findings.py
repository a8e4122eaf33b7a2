"""What a detector concludes: a Finding (pure data, with the queries behind its numbers) and
its Severity (PagerDuty's four, one vocabulary everywhere)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any


class Severity(StrEnum):
    """PagerDuty's severities, used everywhere for one vocabulary."""

    critical = "critical"
    error = "error"
    warning = "warning"
    info = "info"

    @property
    def rank(self) -> int:
        return ["info", "warning", "error", "critical"].index(self.value)


def slice_text(dimensions: Mapping[str, str], everything: str = "all payments") -> str:
    """A slice as people read it: ``country=GB, psp=stripe`` (sorted by label), or
    ``everything`` for the whole platform."""
    return ", ".join(f"{k}={v}" for k, v in sorted(dimensions.items())) or everything


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
