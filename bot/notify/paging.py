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
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.notify.pagerduty import PagerDutyEvents, SendResult, build_event
from bot.pipeline import PAGERDUTY
from bot.store import CLAIM_TTL, OutboxMessage, Outgoing, Store, StoredIncident

log = logging.getLogger(__name__)

ACTIONS = {"page.trigger": "trigger", "page.acknowledge": "acknowledge", "page.resolve": "resolve"}


def slack_permalink(inc: StoredIncident) -> str | None:
    if not inc.slack_channel or not inc.slack_ts:
        return None
    return f"https://slack.com/archives/{inc.slack_channel}/p{inc.slack_ts.replace('.', '')}"


def custom_details(inc: StoredIncident) -> dict[str, Any]:
    """The evidence an on-call engineer reads on the phone before opening Slack."""
    ev = inc.evidence or {}
    logs = ev.get("logs") or {}
    changes = (ev.get("changes") or {}).get("items") or []
    return {
        "incident": inc.id,
        "where": inc.dimensions or "all payments",
        "detectors": sorted({m.split("|")[0] for m in inc.members}) or [inc.detector],
        "onset": (ev.get("onset") or {}).get("at"),
        "impact": (ev.get("impact") or {}).get("lines", []),
        "breakdown": (ev.get("breakdown") or {}).get("lines", [])[:6],
        "log_patterns": [
            f"{p.get('count_now')}x {p.get('template')}" for p in (logs.get("patterns") or [])[:3]
        ],
        "changes": [
            f"{c.get('kind')} {c.get('service')} {c.get('version')}: {c.get('description')}"
            for c in changes[:3]
        ],
        "runbook": (ev.get("runbook") or {}).get("id"),
    }


@dataclass
class PageReport:
    sent: list[str] = field(default_factory=list)
    retried: list[str] = field(default_factory=list)
    given_up: list[str] = field(default_factory=list)


@dataclass
class PagerDutySender:
    store: Store
    events: PagerDutyEvents
    routing_key: str = field(repr=False)
    source: str = "paytriage"
    max_attempts: int = 8
    base_backoff: timedelta = timedelta(seconds=15)
    max_backoff: timedelta = timedelta(minutes=10)
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    holder: str = "paytriage"  # this replica, for outbox claims
    claim_ttl: timedelta = CLAIM_TTL  # a claim left by a dead sender lapses after this
    may_send: Callable[[], bool] = field(default=lambda: True)  # still the leader?

    def drain(self, limit: int = 50) -> PageReport:
        now = self.clock()
        report = PageReport()
        blocked: set[str] = set()
        for msg in self.store.due(now, limit=limit, channel=PAGERDUTY, claim_ttl=self.claim_ttl):
            if msg.incident_id is None or msg.incident_id in blocked:
                continue
            if not self.may_send():
                break  # no longer the leader: the new one carries on
            if not self.store.claim(msg, self.holder, now, self.claim_ttl):
                blocked.add(msg.incident_id)  # another replica is sending it
                continue
            inc = self.store.incident(msg.incident_id)
            try:
                body = self._body(msg, inc)
            except ValueError as exc:  # a body PagerDuty would refuse: never retried
                self._give_up(msg, inc, now, str(exc), report)
                blocked.add(msg.incident_id)
                continue
            result = self.events.send(body)
            if result.ok:
                self.store.mark_sent(msg.id, now, {"dedup_key": result.dedup_key})
                report.sent.append(msg.key)
                continue
            blocked.add(msg.incident_id)  # in order per incident
            error = result.error or f"HTTP {result.status}"
            if result.retryable and msg.attempts + 1 < self.max_attempts:
                self.store.mark_failed(msg.id, now, error, self._retry_at(msg, result, now))
                report.retried.append(msg.key)
            else:
                self._give_up(msg, inc, now, error, report)
        return report

    def _body(self, msg: OutboxMessage, inc: StoredIncident | None) -> dict[str, Any]:
        action = ACTIONS.get(msg.kind)
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
        charts = [e for e in self.store.timeline(inc.id) if e.kind == "chart"]
        if charts and isinstance(charts[-1].data.get("permalink"), str):
            links.append({"href": charts[-1].data["permalink"], "text": "Chart (Slack)"})
        rb = (inc.evidence or {}).get("runbook") or {}
        link = rb.get("link")
        if isinstance(link, str) and link.startswith(("http://", "https://")):
            links.append({"href": link, "text": f"Runbook: {rb.get('title') or rb.get('id')}"})
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

    def _retry_at(self, msg: OutboxMessage, result: SendResult, now: datetime) -> datetime:
        if result.retry_after is not None:
            return now + timedelta(seconds=result.retry_after)
        return now + min(self.max_backoff, self.base_backoff * (2**msg.attempts))

    def _give_up(
        self,
        msg: OutboxMessage,
        inc: StoredIncident | None,
        now: datetime,
        error: str,
        report: PageReport,
    ) -> None:
        self.store.mark_failed(msg.id, now, error, None)
        report.given_up.append(msg.key)
        log.error("PagerDuty %s for %s given up: %s", msg.kind, msg.incident_id, error)
        if inc is None or not inc.slack_channel:
            return
        what = {"page.trigger": "page", "page.acknowledge": "acknowledgement"}.get(
            msg.kind, "resolution"
        )
        with self.store.begin() as tx:
            tx.enqueue(
                Outgoing(
                    key=f"{msg.key}:failed",
                    channel=f"slack:{inc.slack_channel}",
                    kind="incident.note",
                    payload={
                        "incident_id": inc.id,
                        "text": f":warning: The PagerDuty {what} could not be sent after "
                        f"{msg.attempts + 1} attempt(s): {error}. Page the on-call by hand.",
                    },
                    incident_id=inc.id,
                ),
                now,
            )


__all__ = ["PageReport", "PagerDutySender", "custom_details", "slack_permalink"]
