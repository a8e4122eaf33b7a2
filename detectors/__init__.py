"""Detectors: one module each. ``DetectorsConfig`` is the registry: one line per detector."""

from __future__ import annotations

from bot.config.types import StrictModel
from detectors.anomaly import Config as AnomalyConfig
from detectors.base import DetectorConfig, Finding, QueryRef, Severity
from detectors.capture_failures import Config as CaptureFailuresConfig
from detectors.decline_spike import Config as DeclineSpikeConfig
from detectors.refund_sla import Config as RefundSlaConfig
from detectors.traffic_drop import Config as TrafficDropConfig
from detectors.webhook_lag import Config as WebhookLagConfig


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


REGISTRY: dict[str, type[DetectorConfig]] = {
    name: field.annotation  # type: ignore[misc]
    for name, field in DetectorsConfig.model_fields.items()
}

__all__ = ["REGISTRY", "DetectorConfig", "DetectorsConfig", "Finding", "QueryRef", "Severity"]
