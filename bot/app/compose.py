"""The composition root: sources, store, pipeline, senders and the Slack app built from
the settings."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from slack_bolt import App
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_sdk import WebClient

from paytriage.config import Settings
from paytriage.core.metrics import BotMetrics
from paytriage.detection.run import DetectorRun, runs_for
from paytriage.detectors import REGISTRY
from paytriage.domain.incidents import Incident
from paytriage.domain.lifecycle import Maintenance
from paytriage.domain.notifications import BOT
from paytriage.evidence.gather import EvidenceGatherer
from paytriage.evidence.impact import TicketSize
from paytriage.incidents.cycle import (
    SOURCE_DOWN,
    STEP,
    Checkable,
    DetectorHealth,
    LiveCycle,
    SourceWatch,
    floor_time,
)
from paytriage.incidents.pipeline import IncidentPipeline
from paytriage.incidents.runbooks import load_runbooks
from paytriage.notify.pagerduty.events import PagerDutyEvents
from paytriage.notify.pagerduty.sender import pagerduty_worker
from paytriage.notify.slack.routing import slack_router
from paytriage.notify.slack.sender import slack_worker
from paytriage.notify.worker import OutboxWorker
from paytriage.slack_app.app import HealthSource, create_app
from paytriage.slack_app.options import AppOptions
from paytriage.slack_app.run import HttpServer, start
from paytriage.sources import OpenSearchSource, PrometheusSource
from paytriage.sources.base import LogSource, MetricsSource
from paytriage.sources.metered import MeteredLogs, MeteredMetrics
from paytriage.store import Store
from paytriage.store.url import store_url

log = logging.getLogger(__name__)


def pages(settings: Settings) -> Callable[[Incident], bool]:
    """Incidents at or above ``pagerduty.min_severity`` page. Data problems (a slice's
    stale metrics) do not, except the bot's own "data source down" incident: while a
    source does not answer, detection is blind and nothing else would page."""
    floor = settings.pagerduty.min_severity.rank

    def page(inc: Incident) -> bool:
        blind = inc.detector == SOURCE_DOWN
        return (blind or not inc.data_problem) and inc.severity.rank >= floor

    return page


def pipeline_for(
    settings: Settings,
    store: Store,
    prom: MetricsSource,
    logs: LogSource | None,
    *,
    chart_dir: Path | None = None,
    notify: bool | None = None,
) -> tuple[list[DetectorRun], IncidentPipeline]:
    """The enabled detectors and the incident pipeline (evidence from ``prom`` and ``logs``,
    runbooks, routing, paging) as the settings describe them. ``notify`` routes to Slack and
    pages whether or not they are enabled (the demo shows what would be sent)."""
    configs = list(settings.detectors.enabled())
    runs = runs_for(configs, STEP)
    inc_cfg, ev_cfg = settings.incidents, settings.evidence
    ticket = (
        TicketSize(inc_cfg.average_ticket, inc_cfg.currency)
        if inc_cfg.average_ticket is not None
        else None
    )
    gatherer = EvidenceGatherer(
        prom,
        logs,
        ev_cfg,
        logs_index=settings.sources.opensearch.logs_index,
        changes_index=settings.sources.opensearch.changes_index,
        log_fields=settings.sources.opensearch.fields,
        ticket=ticket,
    )
    slack = settings.slack.enabled if notify is None else notify
    paging = settings.pagerduty.enabled if notify is None else notify
    pipeline = IncidentPipeline(
        store=store,
        gatherer=gatherer,
        runbooks=load_runbooks(Path(settings.runbooks.dir)),
        correlation_window=inc_cfg.correlation_window,
        reopen_within=inc_cfg.reopen_within,
        refresh_every=ev_cfg.refresh_every,
        chart_dir=chart_dir or Path(ev_cfg.chart_dir),
        runbook_base_url=settings.runbooks.base_url,
        pinned_runbooks={c.id: c.runbook for c in configs},
        quiet_after_restart={c.id: c.for_ + c.clear_after for c in configs},
        maintenance=maintenance_windows(settings),
        channel=slack_router(settings.slack) if slack else None,
        page=pages(settings) if paging else None,
    )
    return runs, pipeline


def build(
    settings: Settings,
    *,
    now: datetime | None = None,
    metrics: BotMetrics | None = None,
    store: Store | None = None,
    health: DetectorHealth | None = None,
) -> tuple[LiveCycle, Store]:
    """The live cycle and its store from the settings; open incidents restored. With
    ``metrics``, the sources are metered and the cycle reports to it. A replica that takes
    the lead builds a fresh cycle on its open store (as after a restart), keeping ``health``."""
    prom: MetricsSource = PrometheusSource(settings.sources.prometheus)
    logs: LogSource | None = (
        OpenSearchSource(settings.sources.opensearch)
        if settings.sources.opensearch.enabled
        else None
    )
    if metrics is not None:
        prom = MeteredMetrics(prom, metrics)
        logs = MeteredLogs(logs, metrics) if logs is not None else None
    store = store or Store.open(store_url(settings.store))
    runs, pipeline = pipeline_for(settings, store, prom, logs)
    pipeline.restore(floor_time(now or datetime.now(UTC)))
    checks: list[Checkable] = [PrometheusSource(settings.sources.prometheus)]
    if settings.sources.opensearch.enabled:
        checks.append(OpenSearchSource(settings.sources.opensearch))
    cycle = LiveCycle(
        prom,
        runs,
        pipeline,
        metrics=metrics,
        checks=checks,
        watch=SourceWatch(settings.sources.down_after),
        health=health or DetectorHealth(),
    )
    return cycle, store


def slack_sender(settings: Settings, store: Store, holder: str = BOT) -> OutboxWorker | None:
    """The outbox worker for Slack, or None when Slack is disabled."""
    if not settings.slack.enabled or settings.slack.bot_token is None:
        return None
    client = WebClient(
        token=settings.slack.bot_token.reveal(),
        timeout=10,
        base_url=settings.slack.base_url or WebClient.BASE_URL,
    )
    return slack_worker(
        store,
        client,
        thread_min_interval=settings.slack.thread_update_min_interval,
        graph_url=settings.sources.prometheus.graph_url,
        dashboards_url=settings.sources.opensearch.dashboards_url,
        holder=holder,
        maintenance=maintenance_windows(settings),
    )


def pagerduty_sender(settings: Settings, store: Store, holder: str = BOT) -> OutboxWorker | None:
    """The outbox worker for PagerDuty, or None when paging is disabled."""
    pd = settings.pagerduty
    if not pd.enabled or pd.routing_key is None:
        return None
    return pagerduty_worker(
        store,
        PagerDutyEvents(pd.events_url),
        pd.routing_key.reveal(),
        source=pd.source,
        holder=holder,
        maintenance=maintenance_windows(settings),
    )


def outbox_workers(settings: Settings, store: Store, holder: str = BOT) -> list[OutboxWorker]:
    """One outbox worker per enabled receiver."""
    workers = (slack_sender(settings, store, holder), pagerduty_sender(settings, store, holder))
    return [w for w in workers if w is not None]


def start_slack_app(
    settings: Settings,
    store: Store,
    *,
    detectors: DetectorHealth | None = None,
    sources: HealthSource | None = None,
) -> HttpServer | SocketModeHandler | None:
    """The interactive Slack app, started (None when Slack is disabled)."""
    if not settings.slack.enabled:
        return None
    slack_app = create_slack_app(settings, store, health=detectors, sources=sources)
    started = start(slack_app, settings.slack, host=settings.server.host, block=False)
    log.info("slack app started in %s mode", settings.slack.mode.value)
    return started


def slack_app_options(settings: Settings) -> AppOptions:
    """What the Slack app needs of the settings."""
    return AppOptions(
        command=settings.slack.command,
        timezone=settings.timezone,
        detectors=frozenset(REGISTRY) | {c.id for c in settings.detectors.enabled()},
        permissions=settings.slack.permissions,
        route=slack_router(settings.slack),
        pagerduty_enabled=settings.pagerduty.enabled,
        postmortem_template=Path(settings.postmortem.template),
        export_dir=Path(settings.postmortem.export_dir),
    )


def create_slack_app(
    settings: Settings, store: Store, *, client: WebClient | None = None, **kw: Any
) -> App:
    """The Slack app (``paytriage.slack_app.app.create_app``) as the settings describe it;
    ``client`` defaults to one with the configured bot token and ``base_url``."""
    slack = settings.slack
    if client is None:
        if slack.bot_token is None or not slack.bot_token.is_set:
            raise ValueError("slack.bot_token is not set")
        client = WebClient(
            token=slack.bot_token.reveal(), base_url=slack.base_url or WebClient.BASE_URL
        )
    secret = slack.signing_secret
    signing_secret = secret.reveal() if secret is not None and secret.is_set else None
    options = slack_app_options(settings)
    return create_app(options, store, client=client, signing_secret=signing_secret, **kw)


def maintenance_windows(settings: Settings) -> list[Maintenance]:
    """The configured maintenance windows, for the pipeline and the outbox workers alike."""
    return [m.window() for m in settings.incidents.maintenance]
