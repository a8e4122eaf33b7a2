"""Detectors: one module each. The registry maps a detector id to its module's Config model."""

from __future__ import annotations

from detectors import (
    anomaly,
    capture_failures,
    decline_spike,
    refund_sla,
    traffic_drop,
    webhook_lag,
)
from detectors.base import DetectorConfig, Finding, QueryRef, Severity

REGISTRY: dict[str, type[DetectorConfig]] = {
    "decline_spike": decline_spike.Config,
    "webhook_lag": webhook_lag.Config,
    "refund_sla": refund_sla.Config,
    "capture_failures": capture_failures.Config,
    "traffic_drop": traffic_drop.Config,
    "anomaly": anomaly.Config,
}

__all__ = ["REGISTRY", "DetectorConfig", "Finding", "QueryRef", "Severity"]
