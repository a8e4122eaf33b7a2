"""``paytriage run``: the long-running process.

Every minute the live cycle (``bot.live``) evaluates the detectors that are due and turns
what they find into incidents in the store, with evidence, runbook and notifications in the
outbox, and probes the data sources (once more at start, for readiness); every ten seconds
the Slack and PagerDuty senders drain the outbox (``bot.notify``); /healthz, /readyz and
/metrics tell whether it works.

Several replicas may share one (PostgreSQL) store: every replica serves Slack, only the
holder of the scheduler lease (``bot.lease``) runs the detectors and drains the outbox. A
replica that takes the lead rebuilds its cycle from the store, as a restarted process does.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler

from bot.config import Settings
from bot.lease import Lease
from bot.live import Checkable
from bot.metrics import CONTENT_TYPE, BotMetrics
from bot.sources import SourceError

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
            try:
                src.check()
            except SourceError as exc:
                self.record(src.name, str(exc))
            else:
                self.record(src.name, None)

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


def slack_sender(settings: Settings, store: Any, holder: str = "paytriage") -> Any:
    """The outbox sender for Slack, or None when Slack is disabled."""
    if not settings.slack.enabled or settings.slack.bot_token is None:
        return None
    from slack_sdk import WebClient

    from bot.notify.slack.sender import SlackSender

    client = WebClient(
        token=settings.slack.bot_token.reveal(),
        timeout=10,
        base_url=settings.slack.base_url or WebClient.BASE_URL,
    )
    return SlackSender(
        store,
        client,
        thread_min_interval=settings.slack.thread_update_min_interval,
        graph_url=settings.sources.prometheus.graph_url,
        dashboards_url=settings.sources.opensearch.dashboards_url,
        holder=holder,
    )


def pagerduty_sender(settings: Settings, store: Any, holder: str = "paytriage") -> Any:
    """The outbox sender for PagerDuty, or None when paging is disabled."""
    pd = settings.pagerduty
    if not pd.enabled or pd.routing_key is None:
        return None
    from bot.notify.pagerduty import PagerDutyEvents
    from bot.notify.paging import PagerDutySender

    return PagerDutySender(
        store,
        PagerDutyEvents(pd.events_url),
        pd.routing_key.reveal(),
        source=pd.source,
        holder=holder,
    )


def run_forever(settings: Settings) -> int:
    from bot.live import build
    from bot.logs import setup_logging
    from bot.server import serve

    setup_logging()
    metrics = BotMetrics()
    first, store = build(settings, metrics=metrics)
    health = SourceHealth(expected=frozenset(c.name for c in first.checks))
    first.on_check = health.record
    current = {"cycle": first}  # replaced by a fresh one each time this replica takes the lead
    last_cycle: dict[str, Any] = {}
    lock = threading.Lock()
    starting = [True]

    def leadership(lead: bool) -> None:
        metrics.leader.set(1 if lead else 0)
        log.info("replica %s %s", lease.holder, "leads" if lead else "follows")
        if lead and not starting[0]:  # pick the incidents up from the store, as after a restart
            with lock:
                cycle, _ = build(settings, metrics=metrics, store=store, health=first.health)
                cycle.on_check = health.record
                current["cycle"].close()  # a follower's cycle runs nothing
                current["cycle"] = cycle

    lease = Lease(store.engine, ttl=settings.replicas.lease_ttl, on_change=leadership)
    metrics.leader.set(0)

    def run_cycle() -> None:
        if not lease.valid():
            return  # a follower: the leader runs the detectors
        with lock:
            cycle = current["cycle"]
        try:
            report = cycle.run_once()
        except Exception as exc:  # logged and shown on /readyz; the next cycle tries again
            log.exception("the detection cycle failed")
            last_cycle.update(at=datetime.now(UTC), error=f"{type(exc).__name__}: {exc}")
        else:
            last_cycle.update(at=datetime.now(UTC), error=None, changes=report.changes)

    def leader_only(job: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            if lease.valid():
                job()

        return run

    scheduler = BackgroundScheduler(
        timezone=UTC, job_defaults={"coalesce": True, "max_instances": 1}
    )
    if not lease.hold():  # lead at once when nobody else does
        held = lease.current()
        log.info("replica %s follows %s", lease.holder, held[0] if held else "nobody yet")
    starting[0] = False
    renew = settings.replicas.renew_every.total_seconds()
    scheduler.add_job(lease.hold, "interval", seconds=renew, id="lease", max_instances=1)
    # Probed once now (readiness at start); then by the live cycle every minute.
    scheduler.add_job(health.probe, "date", args=[list(first.checks)], id="probe-sources")
    scheduler.add_job(
        run_cycle, "cron", second=5, id="detect", misfire_grace_time=30, max_instances=1
    )
    sender = slack_sender(settings, store, lease.holder)
    pager = pagerduty_sender(settings, store, lease.holder)
    for out in (sender, pager):  # fenced: each message is sent by a replica that leads
        if out is not None:
            out.may_send, out.claim_ttl = lease.valid, settings.replicas.lease_ttl
    if sender is not None:

        def drain_slack() -> None:
            r = sender.drain()
            metrics.count_sends("slack", len(r.sent), len(r.retried), len(r.given_up))

        scheduler.add_job(
            leader_only(drain_slack), "interval", seconds=10, id="slack-outbox", max_instances=1
        )
    if pager is not None:

        def drain_pages() -> None:
            r = pager.drain()
            metrics.count_sends("pagerduty", len(r.sent), len(r.retried), len(r.given_up))

        scheduler.add_job(
            leader_only(drain_pages), "interval", seconds=10, id="pagerduty-outbox", max_instances=1
        )
    scheduler.start()

    def ready() -> tuple[bool, dict[str, Any]]:
        sources_ok, sources = health.state()
        body = {
            **sources,
            "replica": {"id": lease.holder, "leader": lease.valid(), "epoch": lease.epoch},
            "detectors": first.health.snapshot(),
            "last_cycle": {k: v for k, v in last_cycle.items() if k != "changes"},
            "outbox_depth": store.outbox_depth(),
        }
        return sources_ok and not last_cycle.get("error"), body

    interactive = None
    if settings.slack.enabled:
        from bot.slack_app.app import create_app
        from bot.slack_app.run import start

        slack_app = create_app(settings, store, health=first.health, sources=health)
        interactive = start(slack_app, settings.slack, host=settings.server.host, block=False)
        log.info("slack app started in %s mode", settings.slack.mode.value)

    def exposition() -> tuple[bytes, str]:
        metrics.outbox_depth.set(store.outbox_depth())
        return metrics.exposition(), CONTENT_TYPE

    server = serve(
        settings.server.host,
        settings.server.port,
        healthy=lambda: (scheduler.running, {}),
        ready=ready,
        metrics=exposition,
    )
    log.info(
        "paytriage run: %d detector(s) every minute, store %s, serving /healthz, /readyz and "
        "/metrics "
        "on %s:%d",
        len(first.runs),
        store.engine.url.render_as_string(hide_password=True),
        settings.server.host,
        settings.server.port,
    )
    if sender is None:
        log.warning("slack is disabled: incidents are recorded in the store, nothing is posted")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    log.info("shutting down")
    scheduler.shutdown(wait=False)
    current["cycle"].close()
    lease.release()  # a follower takes over at once
    if interactive is not None:
        interactive.close()
    server.shutdown()
    store.close()
    return 0
