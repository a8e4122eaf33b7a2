"""An incident pipeline over a real store with the shipped runbooks, findings made by hand,
and a gatherer that counts its calls (or fails)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path

from paytriage.config.models import EvidenceConfig, OpenSearchConfig, PrometheusConfig
from paytriage.detectors.signals import Frame
from paytriage.domain.evidence import Evidence, LogsSection
from paytriage.domain.findings import Finding, Severity
from paytriage.domain.incidents import Incident
from paytriage.evidence.gather import EvidenceGatherer, Gathered
from paytriage.incidents.pipeline import IncidentPipeline
from paytriage.incidents.runbooks import load_runbooks
from paytriage.sources import OpenSearchSource, PrometheusSource
from paytriage.store import Store
from tests.conftest import Stack
from tests.support import factories
from tests.support.factories import T0, M

ROOT = Path(__file__).resolve().parents[2]


def finding(
    detector: str, at: datetime = T0, sev: Severity = Severity.error, **dims: str
) -> Finding:
    """A finding on a slice; a decline spike's cause is technical errors."""
    details = {"cause": "technical"} if detector == "decline_spike" else None
    return factories.finding(detector, at=at, severity=sev, dimensions=dims, details=details)


class Counting:
    """A gatherer that counts its calls (or fails, to show nothing is lost)."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[str, datetime]] = []
        self.fail = fail

    def gather(
        self,
        inc: Incident,
        at: datetime,
        frames: Mapping[str, Frame] | None = None,
        active: Sequence[Finding] = (),
    ) -> Gathered:
        self.calls.append((inc.id, at))
        if self.fail:
            raise RuntimeError("opensearch exploded")
        return Gathered(
            Evidence(gathered_at=at, logs=LogsSection(missing="card 4111 1111 1111 1111")), None
        )


def pipeline(store: Store, gatherer: Counting | None = None, **kw: object) -> IncidentPipeline:
    return IncidentPipeline(
        store=store,
        gatherer=gatherer or Counting(),
        runbooks=load_runbooks(ROOT / "runbooks"),
        correlation_window=15 * M,
        reopen_within=2 * 60 * M,
        channel=lambda inc: "slack:#payments-oncall",
        **kw,  # type: ignore[arg-type]
    )


def stack_pipeline(stack: Stack, store: Store, charts: Path) -> IncidentPipeline:
    """The pipeline over the real stack, as the end-to-end tests replay it."""
    prom = PrometheusSource(PrometheusConfig(url=stack.prometheus_url))
    logs = OpenSearchSource(OpenSearchConfig(hosts=[stack.opensearch_url]))
    return IncidentPipeline(
        store=store,
        gatherer=EvidenceGatherer(prom, logs, EvidenceConfig()),
        runbooks=load_runbooks(ROOT / "runbooks"),
        correlation_window=timedelta(minutes=15),
        reopen_within=timedelta(hours=2),
        # Open incidents' evidence is still refreshed (the refund stall lasts two hours), a
        # third as often as by default: every gather draws a chart, and at 5 min the two
        # replays took more than twice as long for the same checks.
        refresh_every=timedelta(minutes=15),
        chart_dir=charts,
        channel=lambda inc: "slack:#payments-oncall",
    )
