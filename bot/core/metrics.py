"""The bot's own metrics, served on ``/metrics`` (prometheus_client, its own registry).

Cycle duration per detector, query latency and errors per source, incidents opened and
resolved, notifications sent / retried / given up per channel, outbox depth, data
freshness per detector, and whether this process runs the schedules. Sources are metered
by wrapping them (``paytriage.sources.metered``).
"""

from __future__ import annotations

from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

CONTENT_TYPE = CONTENT_TYPE_LATEST


class BotMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.cycle_seconds = Histogram(
            "paytriage_detector_cycle_seconds",
            "Wall time of one detector's evaluation (fetch and assess).",
            ["detector"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
            registry=r,
        )
        self.detector_failures = Counter(
            "paytriage_detector_failures_total",
            "Detector evaluations that raised or could not read a signal.",
            ["detector"],
            registry=r,
        )
        self.detector_cutoffs = Counter(
            "paytriage_detector_cutoffs_total",
            "Detector runs cut off because their queries took longer than the detector's "
            "timeout (also counted in paytriage_detector_failures_total).",
            ["detector"],
            registry=r,
        )
        self.query_seconds = Histogram(
            "paytriage_source_query_seconds",
            "Latency of queries to a data source.",
            ["source", "op"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10),
            registry=r,
        )
        self.query_errors = Counter(
            "paytriage_source_query_errors_total",
            "Failed queries to a data source, by kind (connection, timeout, http, query...).",
            ["source", "kind"],
            registry=r,
        )
        self.incidents = Counter(
            "paytriage_incidents_total",
            "Incident changes: opened, reopened, resolved.",
            ["change"],
            registry=r,
        )
        self.notifications = Counter(
            "paytriage_notifications_total",
            "Notifications by channel and outcome: sent, retried, given_up.",
            ["channel", "outcome"],
            registry=r,
        )
        self.outbox_depth = Gauge(
            "paytriage_outbox_depth", "Notifications waiting to be sent.", registry=r
        )
        self.data_age = Gauge(
            "paytriage_data_age_seconds",
            "Age of the newest sample each detector read (data freshness).",
            ["detector"],
            registry=r,
        )
        self.leader = Gauge(
            "paytriage_leader",
            "1 when this process runs the schedules (a single process always does).",
            registry=r,
        )

    def observe_age(self, detector: str, newest: datetime | None, now: datetime) -> None:
        if newest is not None:
            self.data_age.labels(detector).set(max(0.0, (now - newest).total_seconds()))

    def count_sends(self, channel: str, sent: int, retried: int, given_up: int) -> None:
        for outcome, n in (("sent", sent), ("retried", retried), ("given_up", given_up)):
            if n:
                self.notifications.labels(channel, outcome).inc(n)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
