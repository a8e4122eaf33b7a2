"""The outbox drained into Slack, against the local Slack Web API server (checked against
Slack's spec; Slack itself cannot be reached from here): one root message per incident,
edited in place, details and chart in its thread, escaping, limits, 429 and failures."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from slack_sdk import WebClient

from paytriage.detection.run import Event
from paytriage.detectors.signals import Frame
from paytriage.domain.evidence import Evidence
from paytriage.domain.findings import Finding, QueryRef, Severity
from paytriage.domain.incidents import Incident
from paytriage.evidence.gather import Gathered
from paytriage.incidents.pipeline import IncidentPipeline
from paytriage.incidents.runbooks import load_runbooks
from paytriage.notify.slack import ids
from paytriage.notify.slack.sender import slack_worker
from paytriage.notify.worker import OutboxWorker
from paytriage.store import Store
from tests.support.factories import T0, Clock, M
from tests.support.slack_api import SlackApiServer

ROOT = Path(__file__).resolve().parents[3]
CHANNEL = "#payments-oncall"
EVIL = "<!channel> <https://evil.example|click> & 4111 1111 1111 1111"


def finding(at: datetime = T0, title: str = "Technical errors up at psp=stripe") -> Finding:
    return Finding(
        detector="decline_spike",
        severity=Severity.critical,
        dimensions={"psp": "stripe"},
        title=title,
        observed=0.3,
        expected=0.05,
        band=(0.0, 0.08),
        onset=at - 3 * M,
        at=at,
        queries=(
            QueryRef(
                "prometheus", 'sum by (psp) (increase(x{outcome="error"}[5m]))', at - 5 * M, at
            ),
        ),
        details={"cause": "technical"},
    )


class HostileGatherer:
    """Evidence with data-borne hostility: mentions, links, a card number, a huge line."""

    def __init__(self, chart: Path) -> None:
        self.chart = chart

    def gather(
        self,
        inc: Incident,
        at: datetime,
        frames: Mapping[str, Frame] | None = None,
        active: Sequence[Finding] = (),
    ) -> Gathered:
        return Gathered(
            Evidence.from_json(
                {
                    "gathered_at": at.isoformat(),
                    "findings": [
                        {
                            "queries": [
                                {
                                    "source": "prometheus",
                                    "query": q.query,
                                    "start": q.start.isoformat() if q.start else None,
                                    "end": q.end.isoformat() if q.end else None,
                                }
                                for q in f.queries
                            ]
                        }
                        for f in inc.active.values()
                    ],
                    "impact": {"lines": ["679 payments failed of 2,502 in 28 min."]},
                    "breakdown": {
                        "lines": ["psp=stripe: 8.0 % → 27 % failures"],
                        "dimensions": [
                            {
                                "dimension": "country",
                                "top": [{"text": "DE: 6.6 % → 25 % failures; 44 % of the excess"}],
                            }
                        ],
                    },
                    "logs": {
                        "patterns": [
                            {
                                "template": f"authorization failed {EVIL}",
                                "count_now": 303,
                                "count_before": 5,
                                "error_code": "psp_timeout",
                                "example": f"payment pay_1 {EVIL}",
                            },
                            {
                                "template": "x" * 9000,
                                "count_now": 50,
                                "count_before": 0,
                                "example": "y" * 9000,
                            },
                        ],
                        "error_codes": [
                            {"code": "psp_timeout", "count_now": 312, "count_before": 5}
                        ],
                        "window": [(at - 10 * M).isoformat(), at.isoformat()],
                    },
                    "changes": {
                        "items": [
                            {
                                "kind": "deploy",
                                "service": "payment-orchestrator",
                                "version": "2.3.1",
                                "description": f"retry tweak {EVIL}",
                                "minutes_before_onset": 4.0,
                            }
                        ]
                    },
                    "chart": {"rendered": True},
                }
            ),
            self.chart.read_bytes(),
        )


@pytest.fixture
def slack() -> Iterator[SlackApiServer]:
    with SlackApiServer() as server:
        yield server


@pytest.fixture
def setup(
    slack: SlackApiServer, tmp_path: Path
) -> tuple[IncidentPipeline, OutboxWorker, Clock, Store]:
    chart = tmp_path / "src.png"
    chart.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 6000)
    store = Store.open(f"sqlite:///{tmp_path / 'p.db'}")
    pipeline = IncidentPipeline(
        store=store,
        gatherer=HostileGatherer(chart),
        runbooks=load_runbooks(ROOT / "runbooks"),
        correlation_window=15 * M,
        reopen_within=120 * M,
        chart_dir=tmp_path / "charts",
        runbook_base_url="https://git.example.com/paytriage/runbooks",
        channel=lambda inc: f"slack:{CHANNEL}",
    )
    clock = Clock()
    sender = slack_worker(
        store,
        WebClient(token=slack.token, base_url=slack.base_url),
        graph_url="http://prometheus.example:9090",
        clock=clock,
    )
    return pipeline, sender, clock, store


def mrkdwn_objects(slack: SlackApiServer) -> list[str]:
    out: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "mrkdwn":
                out.append(node["text"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    for c in slack.calls:
        walk(c.params.get("blocks"))
    assert out
    return out


def texts(blocks: list[Any]) -> str:
    import json

    return json.dumps(blocks)


def test_an_incident_from_post_to_resolve_is_one_root_message(
    slack: SlackApiServer, setup: tuple[IncidentPipeline, OutboxWorker, Clock, Store]
) -> None:
    pipeline, sender, clock, store = setup
    f = finding()
    [inc_id] = pipeline.step([Event("raised", f, T0)], [f], T0).ids("opened")
    assert sender.drain().sent == [f"{inc_id}:opened"]

    [root] = slack.messages(CHANNEL)
    body = texts(root["blocks"])
    assert "[CRITICAL] [OPEN] Technical errors up at psp=stripe" in body
    assert "679 payments failed" in body and "DE: 6.6 %" in body and "psp_timeout" in body
    buttons = {
        e["action_id"]: e for b in root["blocks"] if b["type"] == "actions" for e in b["elements"]
    }
    assert set(buttons) == {
        ids.RUNBOOK,
        ids.ACK,
        ids.MITIGATE,
        ids.ESCALATE,
        ids.SILENCE,
        ids.RESOLVE,
        ids.POSTMORTEM,
    }
    assert buttons[ids.RUNBOOK]["url"] == "https://git.example.com/paytriage/runbooks/psp-outage.md"
    assert buttons[ids.ACK]["value"] == inc_id
    assert "http://prometheus.example:9090/graph?g0.expr=sum%20by%20%28psp%29" in body

    thread = slack.thread(CHANNEL, root["ts"])
    assert any("Next steps (runbook)" in m.get("text", "") for m in thread), [
        m.get("text", "")[-300:] for m in thread
    ]
    [chart] = slack.files.values()
    assert chart.shares and chart.shares[0].thread_ts == root["ts"] and chart.length > 5000
    stored = store.incident(inc_id)
    assert stored is not None and stored.slack_ts == root["ts"]

    # Resolution edits the root and says so in the thread; no second root message.
    clock.now = T0 + 30 * M
    pipeline.step([Event("cleared", f, T0 + 30 * M)], [], T0 + 30 * M)
    sender.drain()
    [root] = slack.messages(CHANNEL)
    assert "RESOLVED after 33 min" in texts(root["blocks"])
    assert ids.ACK not in texts(root["blocks"])  # nothing left to acknowledge
    assert any(
        "Resolved after 33 min" in m.get("text", "") for m in slack.thread(CHANNEL, root["ts"])
    )
    assert slack.spec_violations == []


def test_data_cannot_mention_channel_forge_links_or_leak_card_numbers(
    slack: SlackApiServer, setup: tuple[IncidentPipeline, OutboxWorker, Clock, Store]
) -> None:
    pipeline, sender, _, _ = setup
    f = finding(title=f"Technical errors {EVIL}")
    pipeline.step([Event("raised", f, T0)], [f], T0)
    sender.drain()
    everything = texts([c.params for c in slack.calls])
    # Whatever Slack parses as mrkdwn (message texts, mrkdwn text objects) is escaped;
    # plain_text (the header) is shown literally by Slack and never parsed.
    parsed = texts([c.params.get("text") for c in slack.calls] + mrkdwn_objects(slack))
    assert "<!channel>" not in parsed and "<https://evil" not in parsed
    assert "&lt;!channel&gt;" in everything and "&amp;" in everything
    assert "4111 1111 1111 1111" not in everything and "4111111111111111" not in everything
    # The 9000-character pattern was cut with a note instead of being refused by Slack.
    assert "(cut;" in everything
    assert not [c for c in slack.calls_to("chat.postMessage") if c.params.get("error")]
    assert slack.spec_violations == []


def test_rate_limited_posts_wait_for_retry_after_and_are_not_duplicated(
    slack: SlackApiServer, setup: tuple[IncidentPipeline, OutboxWorker, Clock, Store]
) -> None:
    pipeline, sender, clock, store = setup
    f = finding()
    pipeline.step([Event("raised", f, T0)], [f], T0)
    slack.fail_next("chat.postMessage", status=429, retry_after=20)
    report = sender.drain()
    assert report.retried and not report.sent and slack.messages(CHANNEL) == []
    clock.now = T0 + timedelta(seconds=10)
    assert sender.drain().sent == []  # Retry-After is honoured
    clock.now = T0 + timedelta(seconds=21)
    assert len(sender.drain().sent) == 1
    sender.drain()
    assert len(slack.messages(CHANNEL)) == 1
    assert store.outbox_depth() == 0


def test_a_failed_update_holds_back_the_incidents_later_messages_in_order(
    slack: SlackApiServer, setup: tuple[IncidentPipeline, OutboxWorker, Clock, Store]
) -> None:
    pipeline, sender, clock, _ = setup
    f = finding()
    pipeline.step([Event("raised", f, T0)], [f], T0)
    sender.drain()
    clock.now = T0 + 30 * M
    pipeline.step([Event("cleared", f, T0 + 30 * M)], [], T0 + 30 * M)
    slack.fail_next("chat.update", status=503)
    report = sender.drain()
    assert report.retried and report.sent == []
    clock.now = T0 + 40 * M
    assert len(sender.drain().sent) == 1
    [root] = slack.messages(CHANNEL)
    replies = [
        m["text"] for m in slack.thread(CHANNEL, root["ts"]) if "Resolved" in m.get("text", "")
    ]
    assert len(replies) == 1


def test_a_missing_channel_is_given_up_with_its_error(
    tmp_path: Path, setup: tuple[IncidentPipeline, OutboxWorker, Clock, Store]
) -> None:
    pipeline, _, clock, store = setup
    with SlackApiServer(missing_channels=[CHANNEL]) as gone:
        sender = slack_worker(
            store, WebClient(token=gone.token, base_url=gone.base_url), clock=clock
        )
        f = finding()
        pipeline.step([Event("raised", f, T0)], [f], T0)
        report = sender.drain()
        assert report.given_up and not report.retried
        clock.now = T0 + 60 * M
        assert sender.drain().sent == [] and store.outbox_depth() == 0


def test_a_post_that_timed_out_but_reached_slack_is_not_posted_again(
    slack: SlackApiServer, setup: tuple[IncidentPipeline, OutboxWorker, Clock, Store]
) -> None:
    pipeline, sender, clock, store = setup
    sender.notifier.client = WebClient(token=slack.token, base_url=slack.base_url, timeout=1)
    f = finding()
    pipeline.step([Event("raised", f, T0)], [f], T0)
    slack.delay("chat.postMessage", 2.5, count=1)  # Slack posts it; we never hear back
    report = sender.drain()
    assert report.retried and not report.sent
    import time

    time.sleep(2)  # the delayed post lands
    assert len(slack.messages(CHANNEL)) == 1
    clock.now = T0 + 10 * M  # past the backoff: the retry looks before it posts
    assert len(sender.drain().sent) == 1
    [root] = slack.messages(CHANNEL)
    assert store.incident(f"{root['metadata']['event_payload']['incident_id']}") is not None
    [inc] = store.incidents()
    assert inc.slack_ts == root["ts"]
    details = [m for m in slack.thread(CHANNEL, root["ts"]) if "Next steps" in m.get("text", "")]
    assert len(details) == 1 and len(slack.files) == 1  # and its details once
    assert slack.calls_to("conversations.history")  # it did look
    assert slack.spec_violations == []


class Crash(BaseException):
    """The process dying at that line (nothing after it runs, nothing is recorded)."""


def test_a_sender_that_died_between_posting_and_recording_finds_its_message(
    slack: SlackApiServer, setup: tuple[IncidentPipeline, OutboxWorker, Clock, Store]
) -> None:
    pipeline, sender, clock, store = setup
    f = finding()
    pipeline.step([Event("raised", f, T0)], [f], T0)
    real_begin = store.begin
    calls = {"n": 0}

    def dying_begin() -> Any:
        calls["n"] += 1
        if calls["n"] == 2:  # after the claim, at recording the message's ts
            raise Crash
        return real_begin()

    store.begin = dying_begin  # type: ignore[method-assign]
    with pytest.raises(Crash):
        sender.drain()
    store.begin = real_begin  # type: ignore[method-assign]
    assert len(slack.messages(CHANNEL)) == 1 and store.incidents()[0].slack_ts is None

    # A new process (another replica, or this one restarted) once the claim has lapsed.
    fresh = slack_worker(store, sender.notifier.client, clock=clock, holder="replica-b")
    clock.now = T0 + 3 * M
    assert fresh.drain().sent == [f"{store.incidents()[0].id}:opened"]
    [root] = slack.messages(CHANNEL)  # still one message, now known to the store
    assert store.incidents()[0].slack_ts == root["ts"]
    thread = slack.thread(CHANNEL, root["ts"])
    assert sum("Next steps" in m.get("text", "") for m in thread) == 1
    # A later update edits it: a thread reply that died half-way is not repeated either.
    clock.now = T0 + 30 * M
    pipeline.step([Event("cleared", f, clock.now)], [], clock.now)
    real_send = fresh.notifier._reply

    def reply_then_die(inc: Any, text: str, key: str) -> None:
        real_send(inc, text, key)
        raise Crash

    fresh.notifier._reply = reply_then_die  # type: ignore[method-assign]
    with pytest.raises(Crash):
        fresh.drain()
    fresh.notifier._reply = real_send  # type: ignore[method-assign]
    clock.now = T0 + 33 * M
    assert len(fresh.drain().sent) == 1
    resolved = [m for m in slack.thread(CHANNEL, root["ts"]) if "Resolved" in m.get("text", "")]
    assert len(resolved) == 1
    assert slack.spec_violations == []


def test_news_in_a_thread_keeps_its_pace_across_a_change_of_leader(
    slack: SlackApiServer, setup: tuple[IncidentPipeline, OutboxWorker, Clock, Store]
) -> None:
    """A finding joining is news: at most one such reply per ``thread_min_interval`` (5 min)
    in a thread, however many join, even when another replica has taken over sending."""
    from dataclasses import replace

    pipeline, first, clock, store = setup
    second = slack_worker(  # the replica that becomes leader: nothing of the first in memory
        store, WebClient(token=slack.token, base_url=slack.base_url), clock=clock
    )
    f = finding()
    [inc_id] = pipeline.step([Event("raised", f, T0)], [f], T0).ids("opened")
    first.drain()
    [root] = slack.messages(CHANNEL)
    active = [f]

    def join(at: datetime, detector: str, sender: OutboxWorker) -> list[str]:
        g = replace(f, detector=detector, title=f"{detector} at psp=stripe", at=at)
        active.append(g)
        clock.now = at
        report = pipeline.step([Event("raised", g, at)], list(active), at)
        assert report.ids("opened") == []  # it joins the open incident
        before = len(slack.thread(CHANNEL, root["ts"]))
        assert sender.drain().sent
        return [m.get("text", "") for m in slack.thread(CHANNEL, root["ts"])[before:]]

    assert any("capture_failures" in t for t in join(T0 + M, "capture_failures", first))
    # two minutes later, the second replica sends the next one: the root message shows it,
    # the thread does not (the first replica's reply was 2 minutes ago)
    assert join(T0 + 3 * M, "webhook_lag", second) == []
    root_now = slack.messages(CHANNEL)[0]
    assert "webhook_lag" in texts(root_now["blocks"])
    # five minutes after the last reply the thread hears of the next
    assert any("refund_sla" in t for t in join(T0 + 6 * M, "refund_sla", second))
    assert inc_id and slack.spec_violations == []


def test_a_revoked_token_or_an_unreachable_slack_holds_messages_until_slack_answers(
    slack: SlackApiServer, setup: tuple[IncidentPipeline, OutboxWorker, Clock, Store]
) -> None:
    """Issue 19, finding 4: a token refused or Slack away is not a message failing. Its
    messages wait (past ``max_attempts``), the worker says why, and all go out after."""
    pipeline, sender, clock, store = setup
    for psp in ("stripe", "adyen"):
        f = finding(title=f"Technical errors up at psp={psp}")
        f = Finding(**{**f.__dict__, "dimensions": {"psp": psp}})
        pipeline.step([Event("raised", f, T0)], [f], T0)
    depth = store.outbox_depth()
    attempts = sender.backoff.max_attempts + 3
    slack.fail_next("chat.postMessage", "token_revoked", status=200, count=attempts)
    for _ in range(attempts):
        report = sender.drain()
        assert report.given_up == [] and report.sent == []
        assert len(report.retried) == 1  # the drain stops at the first: Slack takes nothing
        assert sender.status()["ok"] is False and sender.status()["error"] == "token_revoked"
        clock.now += timedelta(minutes=1)  # a receiver that is down is tried every minute
    assert store.outbox_depth() == depth and slack.messages(CHANNEL) == []
    for _ in range(depth):
        sender.drain()
    assert len(slack.messages(CHANNEL)) == 2 and sender.status()["ok"] is True


def test_an_unreachable_slack_is_a_receiver_down_not_a_failed_message(
    tmp_path: Path, setup: tuple[IncidentPipeline, OutboxWorker, Clock, Store]
) -> None:
    from tests.support.faults import closed_port_url

    pipeline, _, clock, store = setup
    client = WebClient(token="xoxb-1", base_url=f"{closed_port_url()}/api/", retry_handlers=[])
    away = slack_worker(store, client, clock=clock)
    f = finding()
    pipeline.step([Event("raised", f, T0)], [f], T0)
    for _ in range(away.backoff.max_attempts + 2):
        report = away.drain()
        assert report.retried and not report.given_up
        clock.now += timedelta(minutes=1)
    assert "Connection refused" in str(away.status()["error"])
