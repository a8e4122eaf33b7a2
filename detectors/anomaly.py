"""anomaly: a generic seasonal anomaly detector on any PromQL expression a user configures.

Configuration only so far; evaluation lands with the detectors issue.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from bot.config.types import EnvStr, StrictModel
from detectors.base import BaselineConfig, DetectorConfig


class Signal(StrictModel):
    """One user-defined signal: a PromQL expression returning one or more series."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_\-]*$")
    query: EnvStr
    direction: Literal["up", "down", "both"] = "both"
    min_value: float | None = None
    threshold_sigmas: float = Field(default=6.0, gt=0)
    unit: str = ""


class Config(DetectorConfig):
    id: Literal["anomaly"] = "anomaly"
    signals: list[Signal] = Field(default_factory=list)
    baseline: BaselineConfig = BaselineConfig()
