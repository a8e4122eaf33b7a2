"""Two `paytriage run` replicas on one real PostgreSQL: one leads (it sends the outbox and
runs the detectors), both answer Slack; the leader is killed with SIGKILL mid-way and the
follower takes over within the configured time; every notification reaches the local Slack
server exactly once."""

from __future__ import annotations

import hashlib
import hmac
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode

import pytest
from sqlalchemy import create_engine, text

from paytriage.domain.incidents import Grouper
from paytriage.domain.notifications import Outgoing
from paytriage.store import Entry, Store
from tests.conftest import Stack
from tests.support.factories import T0
from tests.support.factories import stored_finding as finding
from tests.support.http import free_port, get
from tests.support.slack_api import SlackApiServer

pytestmark = pytest.mark.integration
SECRET = "replica-signing-secret-0123456789abcdef"
CHANNEL = "#payments-oncall"
OFF = ("decline_spike", "webhook_lag", "refund_sla", "capture_failures", "traffic_drop")


def seed(store: Store, n: int) -> list[str]:
    """n open incidents, each with its "opened" Slack notification due."""
    g = Grouper(timedelta(minutes=10), timedelta(minutes=30))
    ids = []
    for k in range(n):
        f = replace(finding(title=f"Technical errors up #{k}"), dimensions={"psp": f"p{k:02d}"})
        inc = g.raised(f, T0 + timedelta(minutes=k))
        with store.begin() as tx:
            tx.save_incident(inc, T0)
            tx.timeline(inc.id, Entry(T0, "opened", "detector:decline_spike", inc.title))
            tx.enqueue(
                Outgoing(
                    f"{inc.id}:opened",
                    f"slack:{CHANNEL}",
                    "incident.opened",
                    {"change": "opened"},
                    inc.id,
                ),
                T0,
            )
        ids.append(inc.id)
    return ids


def start(cfg: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "paytriage.cli", "run", "--config", str(cfg)],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        env=env,
    )


def replica(port: int) -> dict[str, object]:
    try:
        _, body = get(f"http://127.0.0.1:{port}/readyz")
    except OSError:
        return {}
    return body.get("replica") or {}  # type: ignore[return-value]


def wait(cond, timeout: float, what: str) -> float:  # type: ignore[no-untyped-def]
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if cond():
            return time.monotonic() - began
        time.sleep(0.2)
    raise AssertionError(f"{what} not within {timeout} s")


def slash(port: int, text_: str) -> int:
    body = urlencode(
        {
            "command": "/triage",
            "text": text_,
            "user_id": "U0ANA00001",
            "channel_id": "C0PAYMENTS",
            "team_id": "T0PAYTRIAGE",
            "trigger_id": "1.2",
            "response_url": "http://127.0.0.1:9/unused",
        }
    ).encode()
    ts = str(int(time.time()))
    sig = "v0=" + hmac.new(SECRET.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/slack/events",
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": sig,
        },
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status


def test_two_replicas_one_leader_takeover_after_kill_and_nothing_posted_twice(
    stack: Stack, postgres_url: str, tmp_path: Path
) -> None:
    engine = create_engine(postgres_url)
    with engine.begin() as conn:  # a clean database for this test
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    store = Store.open(postgres_url)
    ids = seed(store, 12)
    ttl = 4
    with SlackApiServer() as slack:
        slack.delay("chat.postMessage", 0.4)  # a slow Slack: the kill lands mid-drain
        ports = {}
        procs = {}
        env = {**os.environ, "SLACK_BOT_TOKEN": slack.token, "SLACK_SIGNING_SECRET": SECRET}
        for name in ("a", "b"):
            ports[name] = (free_port(), free_port())
            cfg = tmp_path / f"{name}.yaml"
            cfg.write_text(
                f"sources:\n  prometheus: {{url: '{stack.prometheus_url}', timeout: 2s}}\n"
                f"  opensearch: {{hosts: ['{stack.opensearch_url}'], timeout: 2s}}\n"
                "detectors: {" + ", ".join(f"{d}: {{enabled: false}}" for d in OFF) + "}\n"
                f"slack: {{enabled: true, mode: http, bot_token: '${{SLACK_BOT_TOKEN}}', "
                f"signing_secret: '${{SLACK_SIGNING_SECRET}}', base_url: '{slack.base_url}', "
                f"http_port: {ports[name][1]}, default_channel: '{CHANNEL}'}}\n"
                f"server: {{port: {ports[name][0]}}}\n"
                f"store: {{url: '{postgres_url}'}}\n"
                f"replicas: {{lease_ttl: {ttl}s, renew_every: 1s}}\n"
                f"evidence: {{chart_dir: '{tmp_path / 'charts'}'}}\n"
            )
            procs[name] = start(cfg, env, tmp_path / f"{name}.log")
            if name == "a":  # a first, so that it leads
                wait(lambda: replica(ports["a"][0]).get("leader") is True, 30, "a leading")
        try:
            wait(lambda: replica(ports["b"][0]).get("id") is not None, 30, "b serving")
            assert replica(ports["b"][0])["leader"] is False
            # both serve Slack: the follower answers a signed command
            assert slash(ports["b"][1], "help") == 200
            wait(lambda: len(slack.messages(CHANNEL)) >= 3, 40, "a sending")
            procs["a"].send_signal(signal.SIGKILL)
            procs["a"].wait(10)
            seen: list[object] = []

            def b_leads() -> bool:
                seen.append(replica(ports["b"][0]))
                return seen[-1].get("leader") is True  # type: ignore[union-attr]

            try:
                took = wait(b_leads, 3 * ttl, "take-over")
            except AssertionError:
                raise AssertionError(f"b never led: {seen[-3:]}") from None
            assert took <= ttl + 2  # the lease ttl, one renewal and polling
            wait(lambda: store.outbox_depth() == 0, 60, "b draining the rest")
        finally:
            for p in procs.values():
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
                    p.wait(15)
        roots = list(slack.messages(CHANNEL))
        posted = sorted(m["metadata"]["event_payload"]["incident_id"] for m in roots)
        assert posted == sorted(ids)  # every incident once: none lost, none twice
        for m in roots:
            keys = [
                r["metadata"]["event_payload"]["key"]
                for r in slack.thread(CHANNEL, m["ts"])
                if r.get("thread_ts") and "metadata" in r
            ]
            assert len(keys) == len(set(keys))  # no thread reply twice
        assert slack.spec_violations == []
    logs = (tmp_path / "a.log").read_text() + (tmp_path / "b.log").read_text()
    assert slack.token not in logs and SECRET not in logs
    store.close()
