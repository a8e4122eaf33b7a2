"""Detectors: one module each, declared by its ``DETECTOR`` and registered here.

``REGISTRY`` maps each detector's id to its declaration; ``DetectorsConfig`` is the
``detectors:`` section of the configuration, one field per detector (its ``Config``).
Adding a detector is its module plus one line in each of the two.
"""

from __future__ import annotations

from typing import Any

from paytriage.core.types import StrictModel
from paytriage.detectors import (
    anomaly,
    capture_failures,
    decline_spike,
    refund_sla,
    traffic_drop,
    webhook_lag,
)
from paytriage.detectors.anomaly import Config as AnomalyConfig
from paytriage.detectors.base import Detector, DetectorConfig
from paytriage.detectors.capture_failures import Config as CaptureFailuresConfig
from paytriage.detectors.decline_spike import Config as DeclineSpikeConfig
from paytriage.detectors.refund_sla import Config as RefundSlaConfig
from paytriage.detectors.traffic_drop import Config as TrafficDropConfig
from paytriage.detectors.webhook_lag import Config as WebhookLagConfig

REGISTRY: dict[str, Detector[Any]] = {
    d.id: d
    for d in (
        decline_spike.DETECTOR,
        webhook_lag.DETECTOR,
        refund_sla.DETECTOR,
        capture_failures.DETECTOR,
        traffic_drop.DETECTOR,
        anomaly.DETECTOR,
    )
}


class DetectorsConfig(StrictModel):
    """The ``detectors:`` section: each detector's settings under its id."""

    decline_spike: DeclineSpikeConfig = DeclineSpikeConfig()
    webhook_lag: WebhookLagConfig = WebhookLagConfig()
    refund_sla: RefundSlaConfig = RefundSlaConfig()
    capture_failures: CaptureFailuresConfig = CaptureFailuresConfig()
    traffic_drop: TrafficDropConfig = TrafficDropConfig()
    anomaly: AnomalyConfig = AnomalyConfig()

    def enabled(self) -> list[DetectorConfig]:
        return [c for c in (getattr(self, n) for n in type(self).model_fields) if c.enabled]


def detector(detector_id: str) -> Detector[Any] | None:
    """The declaration of a detector by id (None for the bot's own, e.g. ``source_down``)."""
    return REGISTRY.get(detector_id)


__all__ = ["REGISTRY", "DetectorsConfig", "detector"]
