"""Paging through the outbox against the local PagerDuty Events API v2 server (bodies checked
against PagerDuty's published schema; PagerDuty itself cannot be reached from here)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from slack_sdk import WebClient

from paytriage.detection.run import Event
from paytriage.domain.evidence import Evidence
from paytriage.domain.findings import Finding, Severity
from paytriage.domain.lifecycle import Silence
from paytriage.evidence.gather import Gathered
from paytriage.incidents.pipeline import IncidentPipeline
from paytriage.incidents.runbooks import load_runbooks
from paytriage.notify.pagerduty.events import PagerDutyEvents
from paytriage.notify.pagerduty.sender import pagerduty_worker
from paytriage.notify.slack.sender import slack_worker
from paytriage.notify.worker import OutboxWorker
from paytriage.store import Store
from tests.support.factories import T0, Clock, M
from tests.support.pagerduty_api import PagerDutyEventsServer
from tests.support.slack_api import SlackApiServer

ROOT = Path(__file__).resolve().parents[3]
KEY = "R0UTINGKEY0123456789abcdef012345"  # 32 characters, as PagerDuty's are


def finding(sev: Severity = Severity.critical, at: datetime = T0, **dims: str) -> Finding:
    return Finding(
        detector="decline_spike",
        severity=sev,
        dimensions=dims or {"psp": "stripe"},
        title="Technical errors up at psp=stripe: card 4111 1111 1111 1111 in a log",
        observed=0.3,
        expected=0.05,
        band=(0.0, 0.08),
        onset=at - 3 * M,
        at=at,
    )


class WithChart:
    """Evidence with only a chart (the page links it once it is in the Slack thread)."""

    def gather(self, inc: Any, at: datetime, frames: Any = None, active: Any = ()) -> Gathered:
        return Gathered(Evidence(gathered_at=at), b"\x89PNG\r\n\x1a\n" + b"\0" * 100)


@pytest.fixture
def pd() -> Iterator[PagerDutyEventsServer]:
    with PagerDutyEventsServer() as server:
        yield server


@pytest.fixture
def slack() -> Iterator[SlackApiServer]:
    with SlackApiServer() as server:
        yield server


@pytest.fixture
def parts(
    tmp_path: Path, pd: PagerDutyEventsServer, slack: SlackApiServer
) -> tuple[IncidentPipeline, OutboxWorker, OutboxWorker, Clock, Store]:
    store = Store.open(f"sqlite:///{tmp_path / 'p.db'}")
    pipeline = IncidentPipeline(
        store=store,
        gatherer=WithChart(),
        chart_dir=tmp_path / "charts",
        runbooks=load_runbooks(ROOT / "runbooks"),
        correlation_window=15 * M,
        reopen_within=120 * M,
        channel=lambda inc: "slack:#payments-oncall",
        page=lambda inc: inc.severity is Severity.critical,
    )
    clock = Clock()
    pager = pagerduty_worker(store, PagerDutyEvents(pd.url), KEY, clock=clock)
    sender = slack_worker(store, WebClient(token=slack.token, base_url=slack.base_url), clock=clock)
    return pipeline, pager, sender, clock, store


def test_a_critical_incident_pages_once_and_resolves_in_step(
    pd: PagerDutyEventsServer,
    parts: tuple[IncidentPipeline, OutboxWorker, OutboxWorker, Clock, Store],
) -> None:
    pipeline, pager, sender, clock, _ = parts
    f = finding()
    [inc_id] = pipeline.step([Event("raised", f, T0)], [f], T0).ids("opened")
    sender.drain()  # the Slack root first: the page links its thread
    assert pager.drain().sent == [f"{inc_id}:pd:trigger:0"]
    assert pager.drain().sent == []  # nothing twice
    [page] = pd.incidents
    assert page.dedup_key == inc_id and page.status == "triggered" and page.severity == "critical"
    [trigger] = pd.accepted
    assert "4111 1111 1111 1111" not in str(trigger)  # redacted
    assert trigger["payload"]["custom_details"]["incident"] == inc_id
    assert trigger["links"][0]["text"] == "Slack thread"
    assert trigger["links"][0]["href"].startswith("https://slack.com/archives/C")
    assert trigger["links"][1]["text"] == "Chart (Slack)"  # the chart uploaded to the thread

    clock.now = T0 + 30 * M
    pipeline.step([Event("cleared", f, T0 + 30 * M)], [], T0 + 30 * M)
    assert pager.drain().sent == [f"{inc_id}:pd:resolve:0"]
    assert [i.status for i in pd.incidents] == ["resolved"]
    assert KEY not in str(pager)  # the routing key is not in any repr


def test_a_warning_does_not_page_and_a_silence_suppresses_the_page(
    pd: PagerDutyEventsServer,
    parts: tuple[IncidentPipeline, OutboxWorker, OutboxWorker, Clock, Store],
) -> None:
    pipeline, pager, _, _, store = parts
    w = finding(Severity.warning, psp="adyen")
    pipeline.step([Event("raised", w, T0)], [w], T0)
    store.add_silence(
        Silence("s1", None, {"psp": "stripe"}, "PSP maintenance", "slack:U1", T0 - M, T0 + 60 * M)
    )
    c = finding(psp="stripe")
    pipeline.step([Event("raised", c, T0 + M)], [w, c], T0 + M)
    pager.drain()
    assert pd.requests == []


def test_pagerduty_errors_are_retried_and_still_page_once(
    pd: PagerDutyEventsServer,
    parts: tuple[IncidentPipeline, OutboxWorker, OutboxWorker, Clock, Store],
) -> None:
    pipeline, pager, _, clock, store = parts
    f = finding()
    pipeline.step([Event("raised", f, T0)], [f], T0)
    pd.fail_next(status=503, count=1)
    assert pager.drain().retried
    pd.fail_next(status=429, count=1, retry_after=40)
    clock.now = T0 + timedelta(seconds=30)  # past the first backoff (15 s)
    assert pager.drain().retried
    clock.now += timedelta(seconds=20)
    assert pager.drain().sent == []  # Retry-After (40 s) honoured
    clock.now += timedelta(seconds=25)
    assert len(pager.drain().sent) == 1
    assert len(pd.incidents) == 1 and pd.incidents[0].alerts == 1
    assert store.outbox_depth() == 1  # the Slack root, not sent in this test


def test_a_page_pagerduty_refuses_is_reported_in_the_incident_thread(
    slack: SlackApiServer,
    parts: tuple[IncidentPipeline, OutboxWorker, OutboxWorker, Clock, Store],
    tmp_path: Path,
) -> None:
    pipeline, _, sender, clock, store = parts
    with PagerDutyEventsServer() as strict:
        bad = pagerduty_worker(store, PagerDutyEvents(strict.url), "too-short-key", clock=clock)
        f = finding()
        pipeline.step([Event("raised", f, T0)], [f], T0)
        sender.drain()
        report = bad.drain()
        assert report.given_up and not report.retried
        sender.drain()
    [root] = slack.messages("#payments-oncall")
    notes = [m["text"] for m in slack.thread("#payments-oncall", root["ts"])]
    assert any("PagerDuty page could not be sent" in n for n in notes), notes
    assert not any("too-short-key" in n for n in notes)
