"""One simulated incident end to end: the stripe outage in the real Prometheus and OpenSearch,
through detectors, pipeline and store, posted to the local Slack Web API and paged through
the local PagerDuty Events API; acknowledged from Slack, resolved by the data; then the
incident commander's summary and the postmortem with their real figures and queries, and
the postmortem's review round trip.

Slack and PagerDuty are the local servers in tests/support (checked against their specs),
not the real services."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from slack_sdk import WebClient

from paytriage.app.compose import slack_app_options
from paytriage.config import Settings
from paytriage.detection.replay import replay_steps
from paytriage.detection.run import runs_for
from paytriage.detectors import DetectorsConfig
from paytriage.domain.findings import Severity
from paytriage.evidence.impact import format_count
from paytriage.incidents.pipeline import IncidentPipeline
from paytriage.notify.pagerduty.events import PagerDutyEvents
from paytriage.notify.pagerduty.sender import pagerduty_worker
from paytriage.notify.slack.sender import slack_worker
from paytriage.reports.postmortem import export_postmortem, render_postmortem
from paytriage.reports.summary import build_summary
from paytriage.slack_app.operations import Operations
from paytriage.slack_app.permissions import Permissions
from paytriage.sources import PrometheusSource
from paytriage.store import Store
from tests.conftest import OUTAGE, OUTAGE_START, Stack
from tests.support.factories import Clock
from tests.support.pagerduty_api import PagerDutyEventsServer
from tests.support.pipeline import stack_pipeline
from tests.support.slack_api import SlackApiServer

pytestmark = pytest.mark.integration
M = timedelta(minutes=1)
KEY = "R0UTINGKEY0123456789abcdef012345"
ONCALL, LEAD = "U0ONCALL001", "U0LEAD0001"
CHANNEL = "#payments-oncall"


def test_an_outage_is_paged_once_acked_from_slack_resolved_summarised_and_written_up(
    stack: Stack, tmp_path: Path
) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'p.db'}")
    base: IncidentPipeline = stack_pipeline(stack, store, tmp_path / "charts")
    base.page = lambda inc: inc.severity is Severity.critical
    clock = Clock(OUTAGE_START - 60 * M)
    settings = Settings.model_validate(
        {
            "slack": {"enabled": False, "permissions": {"review": [LEAD]}},
            "pagerduty": {"enabled": True, "routing_key": "${PD}"},
            "postmortem": {"export_dir": str(tmp_path / "approved")},
        },
        context={"env": {"PD": KEY}},
    )
    ops = Operations(
        slack_app_options(settings),
        store,
        Permissions(settings.slack.permissions, lambda g: []),
        clock,
    )
    prom = PrometheusSource(
        settings.sources.prometheus.model_copy(update={"url": stack.prometheus_url})
    )
    runs = runs_for([DetectorsConfig().decline_spike], M)

    with SlackApiServer() as slack, PagerDutyEventsServer() as pd:
        sender = slack_worker(
            store, WebClient(token=slack.token, base_url=slack.base_url), clock=clock
        )
        pager = pagerduty_worker(store, PagerDutyEvents(pd.url), KEY, clock=clock)
        acked = False
        end = OUTAGE_START + OUTAGE + 40 * M
        for step in replay_steps(prom, runs, clock.now, end, M):
            clock.now = step.at
            base.step(step.events, step.active, step.at, step.frames)
            sender.drain()
            pager.drain()
            opened = store.incidents()
            if opened and not acked and step.at >= opened[0].opened_at + 2 * M:
                out = ops.acknowledge(opened[0].id, ONCALL, "button")  # pressed in Slack
                assert out.ok, out.reply
                acked = True
        [inc] = store.incidents()
        assert inc.dimensions == {"psp": "stripe"} and inc.state.value == "resolved"

        # PagerDuty: paged once, acknowledged and resolved in step with Slack and the data.
        [page] = pd.incidents
        assert page.dedup_key == inc.id and page.alerts == 1
        assert page.history == ["trigger", "acknowledge", "resolve"]
        # Slack: one root message, edited to resolved; the thread tells the story.
        [root] = slack.messages(CHANNEL)
        assert "RESOLVED after" in json.dumps(root["blocks"])
        thread = slack.thread(CHANNEL, root["ts"])
        assert slack.spec_violations == []

        # The incident commander's summary: the real figures of this incident.
        ev = inc.evidence.to_json()  # as stored
        failed = ev["impact"]["failed"]
        summary = json.dumps(
            build_summary(
                inc, store.timeline(inc.id), store.audit_log(inc.id), thread, clock.now
            ).block_dicts(),
            ensure_ascii=False,
        )
        assert f"{format_count(failed)} payments failed" in summary
        assert f"acknowledge by <@{ONCALL}>" in summary and "resolved after" in summary

        # The postmortem: the same figures, each citing its query and window.
        draft = render_postmortem(inc, store.timeline(inc.id), store.audit_log(inc.id), clock.now)
        assert format_count(failed) in draft
        for q in ev["impact"]["queries"]:
            assert q["query"] in draft  # verbatim, in a code fence of the appendix
        assert "payment_authorizations_total" in draft and f"`{inc.ref}`" in draft

        # Review round trip: changes requested, a new version, approved, exported.
        v1 = ops.postmortem(inc.id, ONCALL).postmortem
        assert v1 is not None
        assert ops.review(inc.id, 1, "approved", ONCALL, "button").ok is False  # not a reviewer
        assert ops.review(inc.id, 1, "changes_requested", LEAD, "button").ok
        v2 = store.add_postmortem(
            inc.id, v1.body + "\nRoot cause: stripe API outage.\n", "cli", clock.now
        )
        assert ops.review(inc.id, v2.version, "approved", LEAD, "button").ok
        approved = store.postmortems(inc.id)[-1]
        exported = tmp_path / "approved" / f"{inc.id}-v2.md"
        assert exported.read_text() == approved.body
        assert export_postmortem(approved, tmp_path / "again").read_text() == approved.body
