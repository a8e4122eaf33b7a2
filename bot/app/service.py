"""``paytriage run``: the long-running process.

Every minute the live cycle (``paytriage.incidents.cycle``) evaluates the detectors that are
due and turns what they find into incidents in the store, with evidence, runbook and
notifications in the outbox, and probes the data sources (once more at start, for
readiness); every ten seconds each outbox worker (``paytriage.notify``) drains its
receiver's messages; /healthz, /readyz and /metrics tell whether it works.

Several replicas may share one (PostgreSQL) store: every replica serves Slack, only the
holder of the scheduler lease (``paytriage.store.lease``) runs the detectors and drains the
outbox. A replica that takes the lead rebuilds its cycle from the store, as a restarted
process does.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NoReturn

from apscheduler.schedulers.background import BackgroundScheduler

from paytriage.app import compose
from paytriage.app.server import serve
from paytriage.app.slack_link import SlackLink
from paytriage.config import Settings
from paytriage.core.logs import setup_logging
from paytriage.core.metrics import CONTENT_TYPE, BotMetrics
from paytriage.domain.notifications import Receiver
from paytriage.incidents.cycle import Checkable, probe
from paytriage.notify.worker import OutboxWorker
from paytriage.store.lease import Lease

log = logging.getLogger("paytriage")


@dataclass
class SourceHealth:
    """The last probe of each source: what the health endpoints and later App Home show.

    ``expected`` names the sources the bot reads: it is ready once each of them has answered
    its last probe (one answering while the other is still being probed is not enough).
    """

    expected: frozenset[str] = frozenset()
    last_ok: dict[str, datetime] = field(default_factory=dict)
    last_error: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def probe(self, sources: list[Checkable]) -> None:
        for src in sources:
            self.record(src.name, probe(src))

    def record(self, name: str, error: str | None) -> None:
        """One probe's outcome (the live cycle probes every minute and reports here)."""
        with self.lock:
            if error is None:
                self.last_ok[name] = datetime.now(UTC)
                self.last_error.pop(name, None)
            else:
                self.last_error[name] = error
        if error is not None:
            log.warning("data source %s is failing: %s", name, error)

    def snapshot(self) -> dict[str, Any]:
        return self.state()[1]

    def state(self) -> tuple[bool, dict[str, Any]]:
        """Whether every source answered its last probe, and what ``snapshot`` shows, read
        together (a probe between two reads would report ready with no source in the body)."""
        with self.lock:
            names = sorted(self.expected | set(self.last_ok) | set(self.last_error))
            ok = bool(names) and all(n in self.last_ok and n not in self.last_error for n in names)
            return ok, {
                "sources": {
                    name: {
                        "last_ok": self.last_ok.get(name),
                        "error": self.last_error.get(name)
                        or (None if name in self.last_ok else "not probed yet"),
                    }
                    for name in names
                }
            }


class Service:
    """``paytriage run`` as one object: what it runs and what it serves, built by the
    composition root (``paytriage.app.compose``).

    ``start`` takes or waits for the lease, schedules the minute cycle, the lease renewal and
    each outbox worker's drain, starts the Slack app and the health server; ``stop`` undoes
    it in reverse, releasing the lease so a follower takes over at once.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = BotMetrics()
        self.cycle, self.store = compose.build(settings, metrics=self.metrics)
        self.detector_health = self.cycle.health
        self.health = SourceHealth(expected=frozenset(c.name for c in self.cycle.checks))
        self.cycle.on_check = self.health.record
        self.lease = Lease(
            self.store.engine, ttl=settings.replicas.lease_ttl, on_change=self._leadership
        )
        self.workers = compose.outbox_workers(settings, self.store, self.lease.holder)
        for worker in self.workers:  # fenced: each message is sent by a replica that leads
            worker.may_send, worker.claim_ttl = self.lease.valid, settings.replicas.lease_ttl
        self.last_cycle: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._starting = True
        self.scheduler = BackgroundScheduler(
            timezone=UTC, job_defaults={"coalesce": True, "max_instances": 1}
        )
        self.slack = SlackLink(
            lambda: compose.start_slack_app(
                settings, self.store, detectors=self.detector_health, sources=self.health
            )
        )
        self.server: Any = None

    # -- what the scheduler runs ------------------------------------------------------------

    def _leadership(self, lead: bool) -> None:
        self.metrics.leader.set(1 if lead else 0)
        log.info("replica %s %s", self.lease.holder, "leads" if lead else "follows")
        if lead and not self._starting:  # pick the incidents up from the store, as after a restart
            with self._lock:
                cycle, _ = compose.build(
                    self.settings, metrics=self.metrics, store=self.store,
                    health=self.detector_health,
                )  # fmt: skip
                cycle.on_check = self.health.record
                self.cycle.close()  # a follower's cycle runs nothing
                self.cycle = cycle

    def run_cycle(self) -> None:
        if not self.lease.valid():
            return  # a follower: the leader runs the detectors
        with self._lock:
            cycle = self.cycle
        try:
            report = cycle.run_once()
        except Exception as exc:  # logged and shown on /readyz; the next cycle tries again
            log.exception("the detection cycle failed")
            self.last_cycle.update(at=datetime.now(UTC), error=f"{type(exc).__name__}: {exc}")
        else:
            self.last_cycle.update(at=datetime.now(UTC), error=None, changes=report.changes)

    def drain(self, worker: OutboxWorker) -> None:
        if not self.lease.valid():
            return
        r = worker.drain()
        self.metrics.count_sends(worker.receiver, len(r.sent), len(r.retried), len(r.given_up))

    # -- what it serves ---------------------------------------------------------------------

    def ready(self) -> tuple[bool, dict[str, Any]]:
        sources_ok, sources = self.health.state()
        lease = self.lease
        body = {
            **sources,
            "replica": {"id": lease.holder, "leader": lease.valid(), "epoch": lease.epoch},
            "detectors": self.detector_health.snapshot(),
            "last_cycle": {k: v for k, v in self.last_cycle.items() if k != "changes"},
            "outbox_depth": self.store.outbox_depth(),
            # Slack or PagerDuty down is told here, but leaves the replica ready: detection
            # goes on, and their messages wait in the outbox.
            "receivers": {str(w.receiver): w.status() for w in self.workers},
        }
        if self.settings.slack.enabled:
            body["slack_app"] = self.slack.status()
        return sources_ok and not self.last_cycle.get("error"), body

    def exposition(self) -> tuple[bytes, str]:
        self.metrics.outbox_depth.set(self.store.outbox_depth())
        return self.metrics.exposition(), CONTENT_TYPE

    # -- start and stop ---------------------------------------------------------------------

    def start(self) -> None:
        settings, lease, scheduler = self.settings, self.lease, self.scheduler
        self.metrics.leader.set(0)
        if not lease.hold():  # lead at once when nobody else does
            held = lease.current()
            log.info("replica %s follows %s", lease.holder, held[0] if held else "nobody yet")
        self._starting = False
        renew = settings.replicas.renew_every.total_seconds()
        scheduler.add_job(lease.hold, "interval", seconds=renew, id="lease", max_instances=1)
        # Probed once now (readiness at start); then by the live cycle every minute.
        scheduler.add_job(
            self.health.probe, "date", args=[list(self.cycle.checks)], id="probe-sources"
        )
        scheduler.add_job(
            self.run_cycle, "cron", second=5, id="detect", misfire_grace_time=30, max_instances=1
        )
        for worker in self.workers:
            scheduler.add_job(
                self.drain,
                "interval",
                args=[worker],
                seconds=10,
                id=f"{worker.receiver}-outbox",
                max_instances=1,
            )
        self.server = serve(
            settings.server.host,
            settings.server.port,
            healthy=lambda: (scheduler.running, {}),
            ready=self.ready,
            metrics=self.exposition,
        )
        scheduler.start()
        self.slack.start()  # tried now, and again in the background while Slack is away
        log.info(
            "paytriage run: %d detector(s) every minute, store %s, serving /healthz, /readyz "
            "and /metrics on %s:%d",
            len(self.cycle.runs),
            self.store.engine.url.render_as_string(hide_password=True),
            settings.server.host,
            settings.server.port,
        )
        if not any(w.receiver == Receiver.SLACK for w in self.workers):
            log.warning("slack is disabled: incidents are recorded in the store, nothing is posted")

    def stop(self) -> None:
        log.info("shutting down")
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        self.cycle.close()
        self.lease.release()  # a follower takes over at once
        self.slack.close()
        if self.server is not None:
            self.server.shutdown()
        self.store.close()


def run_forever(settings: Settings) -> NoReturn:
    """Run until SIGTERM or SIGINT, then stop and exit at once.

    A detection cycle or a send still running is abandoned rather than waited for (the
    interpreter would join its worker threads, which may be waiting on a slow source for
    up to a detector's timeout): the lease is released, the store closed and the logs
    flushed first, and the outbox makes an abandoned send safe (claimed and not marked, it
    is retried as uncertain and never posted twice)."""
    setup_logging()
    service = Service(settings)
    try:
        service.start()
    except BaseException:
        service.stop()  # the lease released, the store closed: then the error is told
        raise
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    service.stop()
    logging.shutdown()
    os._exit(0)
