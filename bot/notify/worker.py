"""One outbox worker for every receiver: it drains the receiver's due messages oldest first,
in order per incident, and hands each to the receiver's notifier (``notify/slack``,
``notify/pagerduty``).

For each message the worker:

1. asks the store for its own receiver's messages only (``Store.due(receiver=...)``), so one
   receiver's backlog never starves another's;
2. claims it (another replica, or a sender that died, may hold it);
3. asks silences and maintenance windows again, at send time: a silence set while the
   message waited (in backoff, or behind the incident's earlier messages) holds it back,
   as Alertmanager's MuteStage does at every flush. A held message is closed with the
   reason, and the incident's timeline says so;
4. sends it; on failure it retries with exponential backoff, or at the time the receiver
   asked for (``Retry-After``), and gives up on an error no retry can fix or after
   ``max_attempts``. When one message of an incident fails, the incident's later ones wait
   for the next drain.

A receiver that cannot take any message (unreachable, answering 5xx, its token revoked) is
not a message failing: the message waits ``Backoff.unavailable`` without counting towards
giving up, the drain stops there, and ``down`` says why until a message goes through. The
outbox holds the receiver's messages for as long as that lasts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from paytriage.core.logs import log_context
from paytriage.core.redact import redact
from paytriage.domain.incidents import TimelineKind
from paytriage.domain.lifecycle import Maintenance, Silence, suppressed_by
from paytriage.domain.notifications import BOT, Receiver, mutable
from paytriage.store import CLAIM_TTL, Entry, OutboxMessage, Store

log = logging.getLogger(__name__)


class SendFailure(Exception):
    """A notifier could not deliver a message. ``retry_after``: the receiver said when to
    come back (rate limited); ``permanent``: no retry can fix it; ``unavailable``: the
    receiver takes no message at all now (down, unreachable, credentials refused)."""

    def __init__(
        self,
        error: str,
        *,
        retry_after: float | None = None,
        permanent: bool = False,
        unavailable: bool = False,
    ) -> None:
        super().__init__(error)
        self.error = error
        self.retry_after = retry_after
        self.permanent = permanent
        self.unavailable = unavailable


class Notifier(Protocol):
    """Delivers one receiver's messages."""

    receiver: Receiver

    def send(self, msg: OutboxMessage, now: datetime) -> Mapping[str, Any]:
        """Deliver ``msg``; what the receiver answered (kept with the message). Raises
        ``SendFailure``."""
        ...

    def given_up(self, msg: OutboxMessage, error: str, now: datetime) -> None:
        """Called once when ``msg`` is given up (e.g. say so where people will see it)."""
        ...


@dataclass(frozen=True)
class Backoff:
    """How often and how long a receiver's failed messages are retried."""

    max_attempts: int = 10
    base: timedelta = timedelta(seconds=15)
    cap: timedelta = timedelta(minutes=15)
    unavailable: timedelta = timedelta(minutes=1)  # at most this long between tries when down

    def retry_at(
        self, failure: SendFailure, attempts: int, now: datetime
    ) -> tuple[datetime | None, str]:
        """When to try again after the ``attempts``-th failed attempt (None: give up), and
        the error to record. A time the receiver asked for is kept without counting towards
        giving up: it is the receiver pacing us, not the message failing."""
        if failure.permanent:
            return None, failure.error
        if failure.unavailable:  # backs off as usual, but only up to a minute, and never gives up
            after = min(self.unavailable, self.base * (2 ** min(attempts - 1, 16))).total_seconds()
            if failure.retry_after is not None:
                after = max(after, failure.retry_after)
            return now + timedelta(seconds=after), failure.error
        if failure.retry_after is not None:
            return now + timedelta(seconds=max(0.0, failure.retry_after)), failure.error
        if attempts >= self.max_attempts:
            return None, f"{failure.error} (gave up after {attempts} attempts)"
        return now + min(self.cap, self.base * (2 ** (attempts - 1))), failure.error


@dataclass
class DrainReport:
    sent: list[str] = field(default_factory=list)  # idempotency keys
    retried: list[str] = field(default_factory=list)
    given_up: list[str] = field(default_factory=list)
    suppressed: list[str] = field(default_factory=list)


@dataclass
class OutboxWorker:
    store: Store
    notifier: Notifier
    backoff: Backoff = field(default_factory=Backoff)
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    holder: str = BOT  # this replica, for outbox claims
    claim_ttl: timedelta = CLAIM_TTL  # a claim left by a dead sender lapses after this
    may_send: Callable[[], bool] = field(default=lambda: True)  # still the leader?
    maintenance: Sequence[Maintenance] = ()
    down: str | None = field(default=None, init=False)  # why the receiver takes nothing now
    down_since: datetime | None = field(default=None, init=False)

    @property
    def receiver(self) -> Receiver:
        return self.notifier.receiver

    def drain(self, limit: int = 100) -> DrainReport:
        now = self.clock()
        report = DrainReport()
        blocked: set[str] = set()
        silences: list[Silence] | None = None  # read once a drain, when first needed
        due = self.store.due(now, limit=limit, receiver=self.receiver, claim_ttl=self.claim_ttl)
        for msg in due:
            if not self.may_send():
                break  # no longer the leader: the new one carries on
            if msg.incident_id is not None and msg.incident_id in blocked:
                continue  # in order per incident: an earlier one failed or waits
            if not self.store.claim(msg, self.holder, now, self.claim_ttl):
                if msg.incident_id is not None:
                    blocked.add(msg.incident_id)  # another replica is sending it
                continue
            with log_context(incident_id=msg.incident_id, correlation_id=msg.key):
                if mutable(msg.kind, msg.payload) and msg.incident_id is not None:
                    if silences is None:
                        silences = self.store.silences(now)
                    why = self._muted(msg.incident_id, now, silences)
                    if why is not None:
                        self._suppress(msg, why, now)
                        report.suppressed.append(msg.key)
                        continue
                try:
                    result = self.notifier.send(msg, now)
                except SendFailure as failure:
                    self._failed(msg, failure, now, report)
                    if failure.unavailable:
                        self._went_down(failure, now)
                        break  # the others would fail alike: the next drain tries again
                    if msg.incident_id is not None:
                        blocked.add(msg.incident_id)
                    continue
            self.store.mark_sent(msg.id, now, result)
            report.sent.append(msg.key)
            if self.down is not None:
                log.info("%s answers again (was down: %s)", self.receiver, self.down)
                self.down = self.down_since = None
        return report

    def _went_down(self, failure: SendFailure, now: datetime) -> None:
        if self.down is None:
            self.down_since = now
            log.error(
                "%s takes no message: %s; its messages wait in the outbox",
                self.receiver,
                redact(failure.error),
            )
        self.down = redact(failure.error)[:300]

    def status(self) -> dict[str, Any]:
        """For the health endpoints: whether the receiver takes messages, and why not."""
        return {"ok": self.down is None, "error": self.down, "since": self.down_since}

    def _muted(self, incident_id: str, now: datetime, silences: Sequence[Silence]) -> str | None:
        if not silences and not self.maintenance:
            return None
        inc = self.store.incident(incident_id)
        if inc is None:
            return None
        return suppressed_by(inc.detector, inc.dimensions, inc.id, now, silences, self.maintenance)

    def _suppress(self, msg: OutboxMessage, why: str, now: datetime) -> None:
        """Closed unsent: the reason kept with the message and told in the timeline."""
        self.store.mark_sent(msg.id, now, {"suppressed": why})
        assert msg.incident_id is not None
        with self.store.begin() as tx:
            text = f"{msg.kind} not sent: {why}"
            tx.timeline(msg.incident_id, Entry(now, TimelineKind.SUPPRESSED, BOT, text))
        log.info("%s %s for %s held back: %s", self.receiver, msg.kind, msg.incident_id, why)

    def _failed(
        self, msg: OutboxMessage, failure: SendFailure, now: datetime, report: DrainReport
    ) -> None:
        attempts = msg.attempts + 1
        retry_at, error = self.backoff.retry_at(failure, attempts, now)
        error = redact(error)[:500]
        self.store.mark_failed(msg.id, now, error, retry_at)
        if retry_at is not None:
            report.retried.append(msg.key)
            log.warning(
                "%s %s for %s will be retried: %s", self.receiver, msg.kind, msg.incident_id, error
            )
            return
        report.given_up.append(msg.key)
        log.error("%s %s for %s given up: %s", self.receiver, msg.kind, msg.incident_id, error)
        self.notifier.given_up(msg, error, now)


__all__ = ["Backoff", "DrainReport", "Notifier", "OutboxWorker", "SendFailure"]
