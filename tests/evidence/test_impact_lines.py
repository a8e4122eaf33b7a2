"""What an incident cost for detectors without a failure ratio: lost traffic, late webhooks,
refunds past SLA (issue 20: the summary said "Impact: unknown" for them)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from paytriage.config.models import EvidenceConfig
from paytriage.detectors import REGISTRY
from paytriage.domain.evidence import ImpactSection
from paytriage.evidence.gather import EvidenceGatherer
from paytriage.evidence.impact import TicketSize
from paytriage.sources.base import ErrorKind, Series, SourceError

END = datetime(2026, 11, 16, 10, 0, tzinfo=UTC)
START = END - timedelta(minutes=30)


TIMEOUT = -1.0  # an answer that is a timeout


class Answers:
    """An instant-query source answering by the first needle the query holds."""

    def __init__(self, answers: dict[str, float | None]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    def query(self, promql: str, at: datetime | None = None) -> list[Series]:
        self.asked.append(promql)
        for needle, value in self.answers.items():
            if needle in promql:
                if value == TIMEOUT:
                    raise SourceError("prometheus", ErrorKind.timeout, promql, "slow")
                if value is None:
                    return []
                return [Series({}, np.array([0.0]), np.array([value]))]
        return []


def impact_of(
    detector: str, answers: dict[str, float | None], ticket: TicketSize | None = None
) -> tuple[ImpactSection, Answers]:
    src = Answers(answers)
    g = EvidenceGatherer(src, None, EvidenceConfig(), ticket=ticket)  # type: ignore[arg-type]
    return g._impact(REGISTRY[detector].impact, {"country": "GB"}, START, END), src


def test_a_traffic_drop_counts_the_attempts_that_did_not_come() -> None:
    sec, src = impact_of(
        "traffic_drop",
        {"offset 1w": None, "offset 1d": 1500.0, "payment_authorizations_total": 900.0},
        TicketSize(40.0, "EUR"),
    )
    assert sec.lines[0] == (
        "600 payment attempts that did not come in 30 min "
        "(900 came, against 1,500 the same window 1 d earlier)"
    )
    assert sec.lines[1] == "About 24,000 EUR of payments at the average ticket"
    assert all('country="GB"' in q for q in src.asked)  # the incident's slice only
    assert [q.start for q in sec.queries] == [START, START - timedelta(days=1)]


def test_a_webhook_backlog_counts_late_and_failed_deliveries() -> None:
    sec, _ = impact_of(
        "webhook_lag", {"webhook_processing_lag_seconds": 6554.0, 'outcome="failed"': 208.0}
    )
    assert sec.lines == (
        "6,554 webhook deliveries processed after 60 s in 30 min",
        "208 webhook deliveries that failed (the PSP sends them again) in 30 min",
    )


def test_a_figure_that_cannot_be_read_says_so() -> None:
    sec, _ = impact_of("refund_sla", {"within_sla": 12.0, "max_over_time": TIMEOUT})
    assert sec.lines[0] == "12 refunds completed past the 24 h SLA in 30 min"
    assert "could not be read (timeout error)" in sec.lines[1]
    nothing, _ = impact_of("traffic_drop", {})
    assert nothing.lines == (
        "payment attempts that did not come: unknown (no data to compare with)",
    )
