"""Drains the outbox's PagerDuty events: trigger, acknowledge and resolve, keyed by the
incident's id as ``dedup_key`` so a retry or a second trigger never pages twice.

The routing key is added at send time (it is never stored). A trigger carries a summary
within PagerDuty's limits, the severity, the Slack thread and runbook links and the key
evidence as ``custom_details`` (redacted by ``build_event``). A failure PagerDuty may
recover from (429, 5xx, timeouts) is retried with backoff, at ``Retry-After`` when given;
one it will not (400) or one that still fails after ``max_attempts`` is given up and reported
in the incident's Slack thread, so nobody believes a page went out that did not.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from paytriage.core.types import iso
from paytriage.domain.incidents import TimelineKind
from paytriage.domain.notifications import (
    PAGE_ACTIONS,
    Channel,
    Kind,
    Receiver,
    note_message,
)
from paytriage.notify.pagerduty.events import PagerDutyEvents, build_event
from paytriage.notify.worker import Backoff, OutboxWorker, SendFailure
from paytriage.store import OutboxMessage, Store, StoredIncident

log = logging.getLogger(__name__)


def slack_permalink(inc: StoredIncident) -> str | None:
    if not inc.slack_channel or not inc.slack_ts:
        return None
    return f"https://slack.com/archives/{inc.slack_channel}/p{inc.slack_ts.replace('.', '')}"


def custom_details(inc: StoredIncident) -> dict[str, Any]:
    """The evidence an on-call engineer reads on the phone before opening Slack."""
    ev = inc.evidence
    onset = ev.onset.at if ev.onset is not None else None
    patterns = ev.logs.patterns if ev.logs is not None else ()
    changes = ev.changes.items if ev.changes is not None else ()
    return {
        "incident": inc.id,
        "where": inc.dimensions or "all payments",
        "detectors": inc.detectors,
        "onset": iso(onset) if onset is not None else None,
        "impact": list(ev.impact.lines) if ev.impact is not None else [],
        "breakdown": list(ev.breakdown.lines[:6]) if ev.breakdown is not None else [],
        "log_patterns": [f"{p.count_now}x {p.template}" for p in patterns[:3]],
        "changes": [f"{c.kind} {c.service} {c.version}: {c.description}" for c in changes[:3]],
        "runbook": ev.runbook.id if ev.runbook is not None else None,
    }


@dataclass
class PagerDutyNotifier:
    """Delivers the outbox's PagerDuty events (see the module's docstring)."""

    store: Store
    events: PagerDutyEvents
    routing_key: str = field(repr=False)
    source: str = "paytriage"
    receiver: Receiver = field(default=Receiver.PAGERDUTY, init=False)

    def send(self, msg: OutboxMessage, now: datetime) -> dict[str, Any]:
        inc = self.store.incident(msg.incident_id) if msg.incident_id is not None else None
        try:
            body = self._body(msg, inc)
        except ValueError as exc:  # a body PagerDuty would refuse: never retried
            raise SendFailure(str(exc), permanent=True) from exc
        result = self.events.send(body)
        if result.ok:
            return {"dedup_key": result.dedup_key}
        error = result.error or f"HTTP {result.status}"
        # Unreachable or 5xx: PagerDuty is down, and the page waits for it, never given up.
        down = result.retryable and result.status != 429
        raise SendFailure(
            error,
            retry_after=result.retry_after,
            permanent=not result.retryable,
            unavailable=down,
        )

    def _body(self, msg: OutboxMessage, inc: StoredIncident | None) -> dict[str, Any]:
        action = PAGE_ACTIONS.get(msg.kind)
        if action is None:
            raise ValueError(f"unknown PagerDuty outbox kind {msg.kind!r}")
        if inc is None:
            raise ValueError(f"incident {msg.incident_id} is not in the store")
        if action != "trigger":
            return build_event(action, routing_key=self.routing_key, dedup_key=inc.id)
        where = ", ".join(f"{k}={v}" for k, v in sorted(inc.dimensions.items()))
        links = []
        if permalink := slack_permalink(inc):
            links.append({"href": permalink, "text": "Slack thread"})
        charts = [e for e in self.store.timeline(inc.id) if e.kind == TimelineKind.CHART]
        if charts and isinstance(charts[-1].data.get("permalink"), str):
            links.append({"href": charts[-1].data["permalink"], "text": "Chart (Slack)"})
        rb = inc.evidence.runbook
        if rb is not None and rb.link is not None and rb.link.startswith(("http://", "https://")):
            links.append({"href": rb.link, "text": f"Runbook: {rb.title or rb.id}"})
        return build_event(
            "trigger",
            routing_key=self.routing_key,
            dedup_key=inc.id,
            summary=f"[paytriage] {inc.title} ({where or 'all payments'})",
            severity=inc.severity,
            source=self.source,
            component=inc.detector,
            group=where or "platform",
            class_=inc.detector,
            links=links,
            custom_details=custom_details(inc),
            timestamp=inc.opened_at,
        )

    def given_up(self, msg: OutboxMessage, error: str, now: datetime) -> None:
        """Said in the incident's Slack thread, so nobody believes a page went out."""
        inc = self.store.incident(msg.incident_id) if msg.incident_id is not None else None
        if inc is None or not inc.slack_channel:
            return
        what = {Kind.PAGE_TRIGGER: "page", Kind.PAGE_ACKNOWLEDGE: "acknowledgement"}.get(
            Kind(msg.kind), "resolution"
        )
        text = (
            f":warning: The PagerDuty {what} could not be sent after {msg.attempts + 1} "
            f"attempt(s): {error}. Page the on-call by hand."
        )
        note = note_message(f"{msg.key}:failed", inc.id, Channel.slack(inc.slack_channel), text)
        with self.store.begin() as tx:
            tx.enqueue(note, now)


PAGERDUTY_BACKOFF = Backoff(max_attempts=8, base=timedelta(seconds=15), cap=timedelta(minutes=10))


def pagerduty_worker(
    store: Store,
    events: PagerDutyEvents,
    routing_key: str,
    *,
    source: str = "paytriage",
    backoff: Backoff = PAGERDUTY_BACKOFF,
    **worker: Any,
) -> OutboxWorker:
    """The outbox worker for PagerDuty (``worker``: its other settings, e.g. ``clock``)."""
    notifier = PagerDutyNotifier(store, events, routing_key, source)
    return OutboxWorker(store, notifier, backoff, **worker)


__all__ = [
    "PAGERDUTY_BACKOFF",
    "PagerDutyNotifier",
    "custom_details",
    "pagerduty_worker",
    "slack_permalink",
]
