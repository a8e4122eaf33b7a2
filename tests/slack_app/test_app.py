"""The Slack app end to end, as Slack drives it, against the local Slack Web API server.

HTTP mode: the bolt app is served on 127.0.0.1 and receives slash commands, button clicks
and events signed like Slack signs them (``X-Slack-Signature`` v0 with the signing secret);
wrong and stale signatures are refused. Socket Mode: ``apps.connections.open`` on the local
Slack server hands out the URL of a small WebSocket server in this file that speaks the
Socket Mode envelope protocol (hello, envelopes, acknowledgements), and the app connects to
it with slack_sdk's built-in client.

A real SQLite store holds the incidents. Answers to slash commands go to their
``response_url``, served here by a recorder. Every Web API call is checked against Slack's
published spec (``server.spec_violations``).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import itertools
import json
import os
import socket
import struct
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from slack_bolt import App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from paytriage.app.compose import create_slack_app
from paytriage.app.service import SourceHealth
from paytriage.config import Settings
from paytriage.domain.evidence import Evidence
from paytriage.domain.findings import Finding, Severity
from paytriage.domain.incidents import Incident, MemberKey, fingerprint
from paytriage.domain.lifecycle import State
from paytriage.incidents.cycle import DetectorHealth
from paytriage.notify.slack import ids
from paytriage.slack_app.run import HttpServer, start_http, start_socket_mode
from paytriage.store import Store, StoredIncident
from tests.support.executors import TrackedPool, app_pools, wait_idle
from tests.support.factories import T0, ticking
from tests.support.slack_api import APP_TOKEN, BOT_USER_ID, TEAM_ID, SlackApiServer

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
CHANNEL = "#payments-oncall"
ROOT = Path(__file__).resolve().parents[2]
ANA, BEN, LEAD = "U0ANA00001", "U0BEN00001", "U0LEAD0001"
ONCALL_GROUP = "S0ONCALL01"
ACK_LIMIT = 3.0  # seconds: Slack's deadline for an acknowledgement
HOSTILE_TITLE = "Stripe <!channel> declines <https://evil.example|click here> & more"


# --- helpers ------------------------------------------------------------------------------


# Postmortem exports of every test here, removed when the run ends.
_EXPORTS = tempfile.TemporaryDirectory(prefix="postmortems-")


def settings(mode: str = "http", pagerduty: bool = False, **permissions: list[str]) -> Settings:
    data: dict[str, Any] = {
        "slack": {
            "enabled": True,
            "mode": mode,
            "bot_token": "${SLACK_BOT_TOKEN}",
            "signing_secret": "${SLACK_SIGNING_SECRET}",
            "app_token": "${SLACK_APP_TOKEN}",
            "default_channel": CHANNEL,
            "permissions": permissions,
        },
        "pagerduty": {"enabled": pagerduty, "routing_key": "${PD_KEY}"},
        "postmortem": {
            "template": str(ROOT / "templates" / "postmortem.md.j2"),
            "export_dir": tempfile.mkdtemp(dir=_EXPORTS.name),
        },
    }
    env = {
        "SLACK_BOT_TOKEN": "xoxb-paytriage-test",
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_APP_TOKEN": APP_TOKEN,
        "PD_KEY": "k" * 32,
    }
    return Settings.model_validate(data, context={"env": env})


class ResponseUrls:
    """Slack's response_url endpoints: records what the app posts to them."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, Any]]] = []
        lock = self.lock = threading.Lock()
        posts = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with lock:
                    posts.append((self.path, json.loads(body or b"{}")))
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True).start()

    def url(self, name: str) -> str:
        return f"{self.base}/commands/{TEAM_ID}/{name}"

    def to(self, name: str) -> list[dict[str, Any]]:
        with self.lock:
            return [body for path, body in self.posts if path.endswith(f"/{name}")]

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def wait_for(check: Callable[[], Any], timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the app")
        time.sleep(0.02)


def text_of(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False)


def sign(body: bytes, timestamp: str, secret: str = SECRET) -> str:
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


@dataclass
class Harness:
    slack: SlackApiServer
    store: Store
    http: HttpServer
    responses: ResponseUrls
    client: WebClient
    pools: tuple[TrackedPool, TrackedPool]
    answers: Iterator[int] = field(default_factory=itertools.count)
    timings: list[float] = field(default_factory=list)

    def settle(self) -> None:
        """Until the app has finished everything it was asked (nothing is left to happen)."""
        wait_idle(*self.pools)

    # what Slack sends

    def post(
        self,
        body: bytes,
        content_type: str,
        *,
        timestamp: str | None = None,
        signature: str | None = None,
    ) -> tuple[int, bytes]:
        ts = timestamp or str(int(time.time()))
        headers = {
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": signature or sign(body, ts),
        }
        req = urllib.request.Request(self.http.url, data=body, headers=headers, method="POST")
        start = time.perf_counter()
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                status, out = resp.status, resp.read()
        except urllib.error.HTTPError as err:
            status, out = err.code, err.read()
        self.timings.append(time.perf_counter() - start)
        return status, out

    def command(
        self, text: str, user: str = ANA, channel_id: str | None = None
    ) -> tuple[dict[str, Any], str]:
        """POST /triage <text>; returns the acknowledgement (JSON or {}) and the name of its
        response_url."""
        name = f"r{next(self.answers)}"
        form = {
            "token": "deprecated-verification-token",
            "team_id": TEAM_ID,
            "team_domain": "paytriage-test",
            "channel_id": channel_id or self.slack.channel_id(CHANNEL),
            "channel_name": "payments-oncall",
            "user_id": user,
            "user_name": user.lower(),
            "command": "/triage",
            "text": text,
            "api_app_id": "A0PAYBOT01",
            "is_enterprise_install": "false",
            "response_url": self.responses.url(name),
            "trigger_id": "13345224609.738474920.8088930838d88f008e0",
        }
        body = urllib.parse.urlencode(form).encode()
        status, out = self.post(body, "application/x-www-form-urlencoded")
        assert status == 200, out
        assert self.timings[-1] < ACK_LIMIT
        return (json.loads(out) if out else {}), name

    def reply(self, name: str, timeout: float = 5.0) -> dict[str, Any]:
        replies = wait_for(lambda: self.responses.to(name), timeout)
        assert len(replies) == 1
        return dict(replies[0])

    def click(
        self,
        action_id: str,
        incident: StoredIncident,
        user: str = ANA,
        option: str | None = None,
        value: str | None = None,
    ) -> None:
        assert incident.slack_channel and incident.slack_ts
        action: dict[str, Any] = {
            "action_id": action_id,
            "block_id": ids.ACTIONS_BLOCK + incident.id,
            "action_ts": f"{time.time():.6f}",
        }
        if option is None:
            action |= {
                "type": "button",
                "value": value or incident.id,
                "text": {"type": "plain_text", "text": "x"},
            }
        else:
            action |= {
                "type": "static_select",
                "selected_option": {
                    "value": option,
                    "text": {"type": "plain_text", "text": option},
                },
            }
        payload = {
            "type": "block_actions",
            "team": {"id": TEAM_ID, "domain": "paytriage-test"},
            "user": {"id": user, "username": user.lower(), "team_id": TEAM_ID},
            "api_app_id": "A0PAYBOT01",
            "container": {
                "type": "message",
                "message_ts": incident.slack_ts,
                "channel_id": incident.slack_channel,
                "is_ephemeral": False,
            },
            "trigger_id": "13345224609.738474920.8088930838d88f008e0",
            "channel": {"id": incident.slack_channel, "name": "payments-oncall"},
            "message": {"type": "message", "ts": incident.slack_ts, "text": incident.title},
            "response_url": self.responses.url(f"a{next(self.answers)}"),
            "actions": [action],
        }
        body = urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()
        status, out = self.post(body, "application/x-www-form-urlencoded")
        assert status == 200, out
        assert self.timings[-1] < ACK_LIMIT

    def submit(self, view: dict[str, Any], reason: str, user: str = ANA) -> None:
        """Submit the silence form as Slack does (a view_submission with the form's state)."""
        values = {"reason": {"reason": {"type": "plain_text_input", "value": reason}}}
        self.submit_values(view, values, user)

    def submit_values(
        self, view: dict[str, Any], values: dict[str, Any], user: str = ANA
    ) -> dict[str, Any]:
        """Submit an opened modal with ``values`` (its state); returns the acknowledgement."""
        payload = {
            "type": "view_submission",
            "team": {"id": TEAM_ID, "domain": "paytriage-test"},
            "user": {"id": user, "username": user.lower(), "team_id": TEAM_ID},
            "api_app_id": "A0PAYBOT01",
            "trigger_id": "13345224609.738474920.8088930838d88f008e1",
            "view": {**view, "state": {"values": values}},
        }
        body = urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()
        status, out = self.post(body, "application/x-www-form-urlencoded")
        assert status == 200, out
        assert self.timings[-1] < ACK_LIMIT
        return json.loads(out) if out else {}

    def event(self, event: dict[str, Any]) -> None:
        envelope = {
            "token": "deprecated-verification-token",
            "team_id": TEAM_ID,
            "api_app_id": "A0PAYBOT01",
            "event": event,
            "type": "event_callback",
            "event_id": f"Ev{next(self.answers):08d}",
            "event_time": int(time.time()),
            "authorizations": [{"team_id": TEAM_ID, "user_id": BOT_USER_ID, "is_bot": True}],
        }
        status, out = self.post(json.dumps(envelope).encode(), "application/json")
        assert status == 200, out
        assert self.timings[-1] < ACK_LIMIT

    # the incident side

    def incident(
        self, title: str = "Stripe declines up", posted: bool = True, **dims: str
    ) -> StoredIncident:
        return make_incident(self.store, self.client if posted else None, title, **dims)

    def thread(self, inc: StoredIncident) -> list[str]:
        assert inc.slack_channel and inc.slack_ts
        return [m["text"] for m in self.slack.thread(inc.slack_channel, inc.slack_ts)[1:]]

    def ephemeral_to(self, user: str) -> list[str]:
        return [e["message"]["text"] for e in self.slack.ephemeral if e["user"] == user]

    def outbox(self) -> list[tuple[str, str]]:
        return [(m.kind, m.key) for m in self.store.due(T0 + timedelta(days=1), limit=100)]


def make_incident(
    store: Store, client: WebClient | None, title: str, **dims: str
) -> StoredIncident:
    """An open incident in the store (and its root message in the local Slack, as the sender
    would have posted it)."""
    dims = dims or {"psp": "stripe"}
    f = Finding("decline_spike", Severity.critical, dims, title, 0.3, 0.05, (0.0, 0.08), T0, T0)
    inc = Incident(
        fingerprint("decline_spike", dims, T0),
        "decline_spike",
        dims,
        title,
        f.severity,
        T0,
        T0,
        False,
    )
    inc.members[MemberKey.of(f)] = inc.active[MemberKey.of(f)] = f
    evidence = {
        "gathered_at": "2026-11-16T09:01:00Z",
        "breakdown": {"lines": ["psp=stripe: 2.0 % → 31 % failures, 1,240 failed of 4,000"]},
        "impact": {"lines": ["1,240 payments failed of 4,000 in 10 min."]},
        "logs": {
            "patterns": [{"template": "card declined <*>", "count_now": 812, "count_before": 3}]
        },
        "runbook": {
            "id": "psp-outage",
            "title": "PSP outage",
            "steps": ["Check the PSP status page"],
        },
    }
    with store.begin() as tx:
        tx.save_incident(inc, T0)
        tx.set_evidence(inc.id, Evidence.from_json(evidence))
        if client is not None:
            root = client.chat_postMessage(channel=CHANNEL, text=f"P1 {title}")
            tx.set_message(inc.id, root["channel"], root["ts"])
    stored = store.incident(inc.id)
    assert stored is not None
    return stored


@pytest.fixture
def slack() -> Iterator[SlackApiServer]:
    with SlackApiServer() as server:
        for user in (ANA, BEN, LEAD):
            server.add_user(user, user.lower())
        server.add_usergroup(ONCALL_GROUP, [BEN])
        yield server


@pytest.fixture
def responses() -> Iterator[ResponseUrls]:
    r = ResponseUrls()
    yield r
    r.close()


def run_http(
    slack: SlackApiServer,
    store: Store,
    responses: ResponseUrls,
    s: Settings,
    health: DetectorHealth | None = None,
    sources: SourceHealth | None = None,
) -> Harness:
    client = WebClient(token=slack.token, base_url=slack.base_url, timeout=5)
    pools = app_pools()
    app = create_slack_app(
        s, store, client=client, health=health, sources=sources, clock=ticking(), executors=pools
    )
    http = start_http(app, 0, host="127.0.0.1", block=False)
    return Harness(slack, store, http, responses, client, pools)


@pytest.fixture
def h(slack: SlackApiServer, store: Store, responses: ResponseUrls) -> Iterator[Harness]:
    harness = run_http(slack, store, responses, settings(resolve=[LEAD, ONCALL_GROUP]))
    yield harness
    harness.http.close()


# --- HTTP mode: request verification -------------------------------------------------------


def test_wrong_or_stale_signatures_are_refused(h: Harness) -> None:
    inc = h.incident()
    form = {"command": "/triage", "text": f"ack {inc.id}", "user_id": ANA, "team_id": TEAM_ID}
    body = urllib.parse.urlencode(form).encode()
    ctype = "application/x-www-form-urlencoded"
    now = str(int(time.time()))
    assert h.post(body, ctype, signature=sign(body, now, "not-the-secret"))[0] == 401
    assert h.post(body, ctype, signature="v0=" + "0" * 64)[0] == 401
    assert (
        h.post(body + b"&text=resolve", ctype, signature=sign(body, now), timestamp=now)[0] == 401
    )
    stale = str(int(time.time()) - 6 * 60)
    assert h.post(body, ctype, timestamp=stale, signature=sign(body, stale))[0] == 401
    h.settle()
    stored = h.store.incident(inc.id)
    assert stored is not None and stored.state is State.open
    assert h.store.audit_log() == [] and h.outbox() == []
    # The same request correctly signed and fresh is taken.
    assert h.post(body, ctype)[0] == 200
    wait_for(lambda: h.store.audit_log())
    assert h.slack.spec_violations == []


# --- HTTP mode: buttons ----------------------------------------------------------------------


def test_a_permitted_acknowledge_updates_store_audit_and_enqueues_one_update(h: Harness) -> None:
    inc = h.incident()
    h.click(ids.ACK, inc, user=ANA)
    stored = wait_for(
        lambda: (i := h.store.incident(inc.id)) and i.state is State.acknowledged and i
    )
    assert stored.acknowledged_by == f"slack:{ANA}"
    [audit] = h.store.audit_log(inc.id)
    assert (audit.actor, audit.action, audit.allowed) == (f"slack:{ANA}", "acknowledge", True)
    [(kind, key)] = h.outbox()
    assert kind == "incident.updated" and key.startswith(f"{inc.id}:action:acknowledge:")
    [msg] = h.store.due(T0 + timedelta(days=1))
    assert msg.channel == f"slack:{inc.slack_channel}" and msg.payload["by"] == f"slack:{ANA}"
    assert wait_for(lambda: h.thread(inc)) == [f":eyes: <@{ANA}> acknowledged this incident."]
    # A second click (someone else, a moment later) changes nothing and says why, privately.
    h.click(ids.ACK, inc, user=BEN)
    [said] = wait_for(lambda: h.ephemeral_to(BEN))
    assert f"already acknowledged by <@{ANA}>" in said
    assert len(h.outbox()) == 1 and len(h.thread(inc)) == 1
    assert h.slack.spec_violations == []


def test_a_refused_resolve_changes_nothing_and_is_audited(h: Harness) -> None:
    inc = h.incident()
    h.click(ids.RESOLVE, inc, user=ANA)
    [said] = wait_for(lambda: h.ephemeral_to(ANA))
    assert "Sorry, only the people and user groups set in" in said
    stored = h.store.incident(inc.id)
    assert stored is not None and stored.state is State.open
    [audit] = h.store.audit_log(inc.id)
    assert (audit.actor, audit.action, audit.allowed) == (f"slack:{ANA}", "resolve", False)
    assert h.outbox() == [] and h.thread(inc) == [] and h.store.timeline(inc.id) == []
    # BEN is in the on-call user group: allowed. Group members are read once, then cached.
    h.click(ids.RESOLVE, inc, user=BEN)
    wait_for(lambda: (i := h.store.incident(inc.id)) and i.state is State.resolved)
    assert wait_for(lambda: h.thread(inc)) == [
        f":white_check_mark: <@{BEN}> resolved this incident."
    ]
    h.click(ids.RESOLVE, inc, user=BEN)
    wait_for(lambda: h.ephemeral_to(BEN))
    assert "already resolved" in h.ephemeral_to(BEN)[0]
    assert len(h.slack.calls_to("usergroups.users.list")) == 1
    assert [(a.action, a.allowed) for a in h.store.audit_log(inc.id)] == [
        ("resolve", False),
        ("resolve", True),
    ]
    assert h.slack.spec_violations == []


def test_acknowledging_is_guarded_and_the_silence_form_never_opens_for_who_may_not(
    slack: SlackApiServer, store: Store, responses: ResponseUrls
) -> None:
    """Issue 19, finding 10: anyone could acknowledge (which also stops the PagerDuty
    page's escalation), and the silence form opened for people refused only on submit."""
    g = run_http(slack, store, responses, settings(acknowledge=[LEAD], silence=[LEAD]))
    try:
        inc = g.incident()
        g.click(ids.SILENCE, inc, user=ANA, option="4h")
        g.click(ids.ACK, inc, user=ANA)
        said = wait_for(lambda: len(g.ephemeral_to(ANA)) == 2 and g.ephemeral_to(ANA))
        assert any("slack.permissions.silence" in s for s in said)
        assert any("slack.permissions.acknowledge" in s for s in said)
        assert g.slack.opened_views == [] and g.store.silences() == []
        stored = g.store.incident(inc.id)
        assert stored is not None and stored.state is State.open
        refused = {(a.action, a.allowed) for a in g.store.audit_log(inc.id)}
        assert refused == {("silence", False), ("acknowledge", False)}
        g.click(ids.ACK, inc, user=LEAD)
        wait_for(lambda: (i := g.store.incident(inc.id)) and i.state is State.acknowledged)
        g.click(ids.SILENCE, inc, user=LEAD, option="4h")
        assert wait_for(lambda: g.slack.opened_views)[0]["callback_id"] == ids.SILENCE_MODAL
    finally:
        g.http.close()


def test_silence_menu_escalate_postmortem_and_runbook(h: Harness) -> None:
    inc = h.incident()
    h.click(ids.SILENCE, inc, option="4h")
    [form] = wait_for(lambda: h.slack.opened_views)  # why? is asked before silencing
    assert form["callback_id"] == ids.SILENCE_MODAL and h.store.silences() == []
    h.submit(form, "PSP confirmed <!channel> maintenance")
    note = wait_for(lambda: h.thread(inc))[0]
    assert note.startswith(f":mute: <@{ANA}> silenced this incident for 4 h (until 13:05 UTC)")
    assert "PSP confirmed &lt;!channel&gt; maintenance" in note
    [sil] = h.store.silences(T0 + timedelta(hours=1))
    assert sil.incident_id == inc.id and sil.created_by == f"slack:{ANA}"
    assert sil.reason.startswith("PSP confirmed")
    assert [k for k, _ in h.outbox()] == ["incident.updated"]

    h.click(ids.ESCALATE, inc)  # PagerDuty is not configured here: say so, page nobody
    h.click(ids.POSTMORTEM, inc)
    said = wait_for(lambda: len(h.ephemeral_to(ANA)) == 2 and h.ephemeral_to(ANA))
    assert any("PagerDuty is not configured" in s for s in said)
    assert any("Draft v1 of the postmortem" in s for s in said)
    calls = len(h.slack.calls)
    h.click(ids.RUNBOOK, inc)  # a link button: acknowledged, nothing else
    h.settle()
    assert len(h.slack.calls) == calls
    assert [k for k, _ in h.outbox()] == ["incident.updated"]
    assert h.slack.spec_violations == []


def test_escalate_enqueues_one_page_when_pagerduty_is_on(
    slack: SlackApiServer, store: Store, responses: ResponseUrls
) -> None:
    h = run_http(slack, store, responses, settings(pagerduty=True, escalate=[ONCALL_GROUP]))
    try:
        inc = h.incident()
        h.click(ids.ESCALATE, inc, user=ANA)  # not in the group
        wait_for(lambda: h.ephemeral_to(ANA))
        h.click(ids.ESCALATE, inc, user=BEN)
        wait_for(lambda: h.thread(inc))
        h.click(ids.ESCALATE, inc, user=BEN)
        wait_for(lambda: h.ephemeral_to(BEN))
        assert sorted(k for k, _ in h.outbox()) == ["incident.updated", "page.trigger"]
        page = store.due(T0 + timedelta(days=1), receiver="pagerduty")[0]
        assert page.key == f"{inc.id}:escalate" and page.payload["by"] == f"slack:{BEN}"
        assert h.thread(inc) == [f":rotating_light: <@{BEN}> escalated this incident to PagerDuty."]
        assert "already escalated" in h.ephemeral_to(BEN)[0]
        assert [(a.action, a.allowed) for a in store.audit_log(inc.id)] == [
            ("escalate", False),
            ("escalate", True),
        ]
        assert slack.spec_violations == []
    finally:
        h.http.close()


def test_a_failed_thread_post_falls_back_to_a_private_answer(h: Harness) -> None:
    inc = h.incident()
    h.slack.fail_next("chat.postMessage", status=429, retry_after=1)
    h.click(ids.ACK, inc, user=ANA)
    [said] = wait_for(lambda: h.ephemeral_to(ANA))
    assert said.startswith(f"You acknowledged `{inc.ref}`")
    stored = h.store.incident(inc.id)
    assert stored is not None and stored.state is State.acknowledged
    assert len(h.outbox()) == 1  # the root message is still updated by the sender
    assert h.slack.spec_violations == []


def test_a_full_incident_from_post_to_resolve_keeps_one_root_message(h: Harness) -> None:
    """With the outbox sender (paytriage.notify.slack): the buttons Slack sends back are the ones
    the rendered message carries, and every action edits the one root message in place."""
    from paytriage.domain.notifications import Outgoing
    from paytriage.notify.slack.sender import slack_worker

    sender = slack_worker(h.store, h.client, clock=lambda: T0 + timedelta(minutes=10))
    inc = h.incident(posted=False)
    with h.store.begin() as tx:
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
    assert sender.drain().sent == [f"{inc.id}:opened"]
    [root] = h.slack.messages(CHANNEL)
    posted = h.store.incident(inc.id)
    assert posted is not None and posted.slack_ts == root["ts"]

    def element(action_id: str) -> dict[str, Any]:
        [actions] = [b for b in h.slack.messages(CHANNEL)[0]["blocks"] if b["type"] == "actions"]
        assert actions["block_id"] == ids.ACTIONS_BLOCK + inc.id
        return next(e for e in actions["elements"] if e["action_id"] == action_id)

    assert element(ids.ACK)["value"] == inc.id
    h.click(ids.ACK, posted, user=ANA)
    wait_for(lambda: h.thread(posted)[-1:] == [f":eyes: <@{ANA}> acknowledged this incident."])
    assert [o["value"] for o in element(ids.SILENCE)["options"]] == ["1h", "4h", "resolved"]
    h.click(ids.SILENCE, posted, user=ANA, option="resolved")
    h.submit(wait_for(lambda: h.slack.opened_views)[-1], "")  # no reason given
    wait_for(lambda: "until it resolves" in h.thread(posted)[-1])
    assert len(sender.drain().sent) == 2
    assert element(ids.RESOLVE)["value"] == inc.id
    h.click(ids.RESOLVE, posted, user=LEAD)
    wait_for(lambda: "resolved this incident" in h.thread(posted)[-1])
    assert len(sender.drain().sent) == 1
    assert len(h.slack.messages(CHANNEL)) == 1  # one root message, edited in place
    assert len(h.slack.calls_to("chat.update")) == 3
    thread = h.thread(posted)
    assert not any("every finding cleared" in t for t in thread)  # a person resolved it
    assert thread[-3:] == [
        f":eyes: <@{ANA}> acknowledged this incident.",
        f":mute: <@{ANA}> silenced this incident until it resolves: no reason given",
        f":white_check_mark: <@{LEAD}> resolved this incident.",
    ]
    assert h.outbox() == []
    assert h.slack.spec_violations == []


# --- HTTP mode: the slash command ------------------------------------------------------------


def test_every_slash_subcommand_answers_within_the_deadline(h: Harness) -> None:
    inc = h.incident()
    other = h.incident("Adyen declines up", psp="adyen")

    ack, _ = h.command("")
    assert "/triage status" in ack["text"] and ack["response_type"] == "ephemeral"
    ack, _ = h.command("help silence")
    assert "Usage: `/triage silence" in ack["text"]
    ack, _ = h.command("frobnicate <!channel>")
    assert ack["text"].startswith(":warning: unknown command 'frobnicate'")
    ack, _ = h.command('silence decline_spike psp="x" or 1 1h')
    assert "is not a label value for psp" in ack["text"] and "<!channel>" not in text_of(ack)

    ack, name = h.command("status")
    assert ack == {}
    status = text_of(h.reply(name))
    assert "2 open incidents" in status and inc.ref in status and other.ref in status
    assert inc.ref == "INC-1" and other.ref == "INC-2"  # numbered in the order they opened

    _, name = h.command(f"summary {inc.ref.lower()}")  # as people type it
    summary = text_of(h.reply(name))
    assert (
        "31 % failures" in summary
        and "card declined" in summary
        and "Check the PSP status page" in summary
    )

    _, name = h.command("summary")  # two open incidents in this channel: which one?
    assert "Which incident?" in h.reply(name)["text"]

    _, name = h.command(f"ack {inc.id}")
    assert h.reply(name)["text"].startswith(f"You acknowledged `{inc.ref}`")
    assert wait_for(lambda: h.thread(inc)) == [f":eyes: <@{ANA}> acknowledged this incident."]

    _, name = h.command(f"silence {other.id} 30m flapping <!here>")
    assert "for 30 min" in h.reply(name)["text"]
    assert "flapping @here" in wait_for(lambda: h.thread(other))[0]

    _, name = h.command("silence decline_spike country=BR 1h issuer")
    assert "`decline_spike` on country=BR for 1 h" in h.reply(name)["text"]

    _, name = h.command(f"postmortem {inc.id}")
    assert "is in the incident's thread for review" in h.reply(name)["text"]

    _, name = h.command(f"resolve {inc.id} rolled back", user=ANA)  # not permitted
    assert "Sorry" in h.reply(name)["text"]
    _, name = h.command(f"resolve {inc.id} rolled back", user=LEAD)
    assert h.reply(name)["text"].startswith(f"You resolved `{inc.ref}`")

    _, name = h.command("ack inc-000000000000")
    assert "I know no incident `inc-000000000000`" in h.reply(name)["text"]

    _, name = h.command("ack")  # one open incident left in the channel: implied
    assert "You acknowledged" in h.reply(name)["text"] and other.ref in h.reply(name)["text"]

    assert max(h.timings) < ACK_LIMIT, h.timings
    assert [(a.action, a.allowed) for a in h.store.audit_log(inc.id)] == [
        ("acknowledge", True),
        ("postmortem.version", True),
        ("resolve", False),
        ("resolve", True),
    ]
    assert h.slack.spec_violations == []


def test_channel_mentions_in_incident_titles_come_out_escaped(h: Harness) -> None:
    inc = h.incident(HOSTILE_TITLE)
    _, name = h.command("status")
    status = h.reply(name)
    _, name = h.command(f"summary {inc.id}")
    summary = h.reply(name)
    h.event(
        {
            "type": "app_mention",
            "user": ANA,
            "text": f"<@{BOT_USER_ID}> summary",
            "ts": "1700000099.000100",
            "channel": inc.slack_channel,
            "thread_ts": inc.slack_ts,
            "event_ts": "1700000099.000100",
        }
    )
    [posted] = wait_for(
        lambda: h.thread(inc) and h.slack.thread(inc.slack_channel or "", inc.slack_ts or "")[1:]
    )
    for out in (status, summary, posted):
        text = text_of(out)
        assert "<!channel>" not in text and "<https://evil" not in text
        assert "&lt;!channel&gt;" in text and "&amp; more" in text
    assert h.slack.spec_violations == []


# --- HTTP mode: mentions and App Home -------------------------------------------------------


def test_a_mention_in_the_incident_thread_implies_the_incident(h: Harness) -> None:
    inc = h.incident()
    h.incident("Adyen declines up", psp="adyen")  # a second open incident in the channel
    mention = {
        "type": "app_mention",
        "user": ANA,
        "ts": "1700000099.000200",
        "channel": inc.slack_channel,
        "thread_ts": inc.slack_ts,
        "event_ts": "1700000099.000200",
    }
    h.event(mention | {"text": f"<@{BOT_USER_ID}> ack"})
    assert wait_for(lambda: h.thread(inc)) == [f":eyes: <@{ANA}> acknowledged this incident."]
    h.event(mention | {"text": f"<@{BOT_USER_ID}> frobnicate", "ts": "1700000099.000300"})
    [said] = wait_for(lambda: h.slack.ephemeral)
    assert said["user"] == ANA and "unknown command 'frobnicate'" in said["message"]["text"]
    assert len(h.thread(inc)) == 1
    assert h.slack.spec_violations == []


def test_app_home_shows_incidents_silences_and_detector_health(
    slack: SlackApiServer, store: Store, responses: ResponseUrls
) -> None:
    health = DetectorHealth()
    health.ok("decline_spike", T0 + timedelta(minutes=5))
    health.failed("webhook_lag", T0 + timedelta(minutes=5), "prometheus: read timeout <after 10s>")
    sources = SourceHealth()
    sources.last_ok["prometheus"] = T0 + timedelta(minutes=5)
    sources.last_error["opensearch"] = "connection refused"
    h = run_http(slack, store, responses, settings(), health, sources)
    try:
        inc = h.incident(HOSTILE_TITLE)
        _, name = h.command(f"silence {inc.id} 1h PSP maintenance")
        h.reply(name)
        h.event(
            {
                "type": "app_home_opened",
                "user": ANA,
                "channel": "D0ANA00001",
                "tab": "home",
                "event_ts": "1",
            }
        )
        view = wait_for(lambda: slack.home_views.get(ANA))
        text = text_of(view)
        assert (
            "Open incidents (1)" in text and "&lt;!channel&gt;" in text and "<!channel>" not in text
        )
        assert "Active silences (1)" in text and "PSP maintenance" in text
        assert "`decline_spike` :white_check_mark: ok" in text
        assert (
            "failing: prometheus: read timeout &lt;after 10s&gt;" in text and "1 failed run" in text
        )
        assert "`prometheus` :white_check_mark: ok; last good probe 09:05 UTC" in text
        assert "`opensearch` :x: failing: connection refused; no good probe yet" in text
        h.event(
            {
                "type": "app_home_opened",
                "user": BEN,
                "channel": "D0BEN00001",
                "tab": "messages",
                "event_ts": "2",
            }
        )
        h.settle()
        assert BEN not in slack.home_views
        assert slack.spec_violations == []
    finally:
        h.http.close()


def test_acknowledgements_stay_fast_under_20_concurrent_requests(h: Harness) -> None:
    incs = [h.incident(f"PSP {i} down", psp=f"psp{i}") for i in range(10)]
    threads = [threading.Thread(target=h.click, args=(ids.ACK, inc)) for inc in incs]
    threads += [threading.Thread(target=h.command, args=("status",)) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(h.timings) == 20 and max(h.timings) < ACK_LIMIT, h.timings
    wait_for(
        lambda: all((i := h.store.incident(x.id)) and i.state is State.acknowledged for x in incs)
    )
    assert len(h.outbox()) == 10
    assert h.slack.spec_violations == []


# --- Socket Mode -------------------------------------------------------------------------------


class SocketModeServer:
    """A WebSocket server (RFC 6455, no extensions) speaking Slack's Socket Mode protocol:
    after the handshake it sends ``hello``, then the envelopes a test asks for, and collects
    the app's acknowledgements (``{"envelope_id": …, "payload": …}``) with the number of the
    connection each came on. It takes new connections as Slack does: ``disconnect`` asks the
    app to reconnect (Slack's ``{"type": "disconnect", "reason": …}`` message), ``drop`` cuts
    the current connection with no close frame, as a network failure would."""

    GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"ws://127.0.0.1:{self.port}/link/?ticket=t-{os.getpid()}&app_id=A0PAYBOT01"
        self.connected = threading.Event()
        self.paths: list[str] = []
        self.acks: dict[str, dict[str, Any]] = {}
        self.ack_connection: dict[str, int] = {}  # envelope id -> connection it was acked on
        self.connections = 0
        self.pings = 0
        self._cond = threading.Condition()
        self._conn: socket.socket | None = None
        self._going: socket.socket | None = None
        self._send_lock = threading.Lock()
        self._ids = itertools.count(1)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        request = b""
        while b"\r\n\r\n" not in request:
            chunk = conn.recv(1024)
            if not chunk:
                return
            request += chunk
        lines = request.decode().split("\r\n")
        headers = {
            k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)
        }
        accept = base64.b64encode(
            hashlib.sha1((headers["sec-websocket-key"] + self.GUID).encode()).digest()  # noqa: S324
        ).decode()
        conn.sendall(
            (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Accept: {accept}\r\n\r\n"
            ).encode()
        )
        with self._cond:
            self.paths.append(lines[0].split(" ")[1])
            self.connections += 1
            number = self.connections
            going, self._going = self._going, None
            self._conn = conn
            self._cond.notify_all()
        if going is not None:  # the connection told to go is closed once its successor is up
            with contextlib.suppress(OSError), self._send_lock:
                going.sendall(self._frame(0x8, struct.pack("!H", 1001)))
        self._send_text(
            {
                "type": "hello",
                "num_connections": 1,
                "debug_info": {"host": "applink-local", "approximate_connection_time": 18060},
                "connection_info": {"app_id": "A0PAYBOT01"},
            }
        )
        self.connected.set()
        self._read(conn, number)

    def wait_connections(self, n: int, timeout: float) -> bool:
        """True once the app has opened ``n`` connections in all."""
        with self._cond:
            return self._cond.wait_for(lambda: self.connections >= n, timeout)

    def disconnect(self, reason: str) -> None:
        """Slack's notice that this connection is going away (``refresh_requested``, ...):
        Slack keeps it open until the app has connected again, then closes it."""
        self._going = self._conn
        self._send_text(
            {"type": "disconnect", "reason": reason, "debug_info": {"host": "applink-local"}}
        )

    def drop(self) -> None:
        """Cut the current connection: no close frame, as when the network fails."""
        assert self._conn is not None
        with contextlib.suppress(OSError):
            self._conn.shutdown(socket.SHUT_RDWR)
        self._conn.close()

    def _frame(self, opcode: int, payload: bytes) -> bytes:
        head = bytes([0x80 | opcode])
        n = len(payload)
        if n < 126:
            head += bytes([n])
        elif n < 1 << 16:
            head += bytes([126]) + struct.pack("!H", n)
        else:
            head += bytes([127]) + struct.pack("!Q", n)
        return head + payload

    def _send(self, opcode: int, payload: bytes) -> None:
        assert self._conn is not None
        with self._send_lock:
            self._conn.sendall(self._frame(opcode, payload))

    def _send_text(self, message: dict[str, Any]) -> None:
        self._send(0x1, json.dumps(message).encode())

    def _read(self, conn: socket.socket, number: int) -> None:
        def exact(n: int) -> bytes:
            data = b""
            while len(data) < n:
                chunk = conn.recv(n - len(data))
                if not chunk:
                    raise ConnectionError("closed")
                data += chunk
            return data

        try:
            while True:
                b1, b2 = exact(2)
                opcode, masked, n = b1 & 0x0F, b2 & 0x80, b2 & 0x7F
                if n == 126:
                    (n,) = struct.unpack("!H", exact(2))
                elif n == 127:
                    (n,) = struct.unpack("!Q", exact(8))
                assert masked, "client frames must be masked (RFC 6455 5.1)"
                mask = exact(4)
                data = bytes(b ^ mask[i % 4] for i, b in enumerate(exact(n)))
                if opcode == 0x9:  # ping -> pong
                    self.pings += 1
                    with self._send_lock:
                        conn.sendall(self._frame(0xA, data))
                elif opcode == 0x1:
                    message = json.loads(data)
                    with self._cond:
                        self.acks[message["envelope_id"]] = message
                        self.ack_connection[message["envelope_id"]] = number
                        self._cond.notify_all()
                elif opcode == 0x8:
                    with self._send_lock:
                        conn.sendall(self._frame(0x8, data[:2]))
                    return
        except (ConnectionError, OSError):
            return

    def send(
        self, kind: str, payload: dict[str, Any], accepts_response_payload: bool = False
    ) -> str:
        envelope_id = f"env-{next(self._ids)}"
        envelope = {
            "envelope_id": envelope_id,
            "type": kind,
            "payload": payload,
            "accepts_response_payload": accepts_response_payload,
        }
        if kind == "events_api":
            envelope["retry_attempt"] = 0
            envelope["retry_reason"] = ""
        self._send_text(envelope)
        return envelope_id

    def ack_of(self, envelope_id: str, timeout: float = ACK_LIMIT) -> dict[str, Any]:
        with self._cond:
            if not self._cond.wait_for(lambda: envelope_id in self.acks, timeout):
                raise AssertionError(f"no acknowledgement of {envelope_id} within {timeout} s")
            return self.acks[envelope_id]

    def close(self) -> None:
        self._listener.close()
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._send(0x8, struct.pack("!H", 1000))
            self._conn.close()


def test_apps_connections_open_takes_only_the_app_token(slack: SlackApiServer) -> None:
    client = WebClient(base_url=slack.base_url)
    with pytest.raises(SlackApiError) as exc:
        client.apps_connections_open(app_token=slack.token)
    assert exc.value.response["error"] == "not_allowed_token_type"
    with pytest.raises(SlackApiError) as exc:
        client.apps_connections_open(app_token=APP_TOKEN)  # no server yet
    assert exc.value.response["error"] == "not_implemented"
    with pytest.raises(SlackApiError) as exc:
        WebClient(token=APP_TOKEN, base_url=slack.base_url).chat_postMessage(
            channel=CHANNEL, text="x"
        )
    assert exc.value.response["error"] == "not_allowed_token_type"
    slack.socket_mode_url = "ws://127.0.0.1:1/link/"
    assert client.apps_connections_open(app_token=APP_TOKEN)["url"] == "ws://127.0.0.1:1/link/"
    assert slack.spec_violations == []


def test_socket_mode_needs_the_app_level_token(slack: SlackApiServer, store: Store) -> None:
    client = WebClient(token=slack.token, base_url=slack.base_url)
    app = create_slack_app(settings("socket"), store, client=client)
    with pytest.raises(ValueError, match="app-level token"):
        start_socket_mode(app, slack.token, block=False)
    assert slack.calls_to("apps.connections.open") == []


def test_socket_mode_commands_buttons_and_mentions(
    slack: SlackApiServer, store: Store, responses: ResponseUrls
) -> None:
    ws = SocketModeServer()
    slack.socket_mode_url = ws.url
    client = WebClient(token=slack.token, base_url=slack.base_url, timeout=5)
    app: App = create_slack_app(
        settings("socket", resolve=[LEAD]), store, client=client, clock=ticking()
    )
    handler = start_socket_mode(app, APP_TOKEN, block=False)
    try:
        assert ws.connected.wait(5)
        [opened] = slack.calls_to("apps.connections.open")
        assert (
            opened.token == APP_TOKEN and opened.headers["Authorization"] == f"Bearer {APP_TOKEN}"
        )
        assert ws.paths[0].startswith("/link/?ticket=")
        inc = make_incident(store, client, "Stripe declines up")
        command = {
            "token": "x",
            "team_id": TEAM_ID,
            "channel_id": inc.slack_channel,
            "user_id": ANA,
            "command": "/triage",
            "api_app_id": "A0PAYBOT01",
            "trigger_id": "t",
        }

        start = time.perf_counter()
        env = ws.send(
            "slash_commands", command | {"text": "help", "response_url": responses.url("s1")}, True
        )
        help_ack = ws.ack_of(env)
        assert time.perf_counter() - start < ACK_LIMIT
        assert "/triage status" in help_ack["payload"]["text"]

        env = ws.send(
            "slash_commands",
            command | {"text": f"ack {inc.id}", "response_url": responses.url("s2")},
            True,
        )
        assert ws.ack_of(env).get("payload") in (None, {})
        assert wait_for(lambda: responses.to("s2"))[0]["text"].startswith(
            f"You acknowledged `{inc.ref}`"
        )
        assert wait_for(lambda: store.audit_log(inc.id))[0].actor == f"slack:{ANA}"

        action = {
            "type": "block_actions",
            "user": {"id": ANA, "team_id": TEAM_ID},
            "team": {"id": TEAM_ID},
            "api_app_id": "A0PAYBOT01",
            "container": {
                "type": "message",
                "message_ts": inc.slack_ts,
                "channel_id": inc.slack_channel,
            },
            "channel": {"id": inc.slack_channel},
            "message": {"ts": inc.slack_ts, "text": "x"},
            "response_url": responses.url("s3"),
            "trigger_id": "t",
            "actions": [
                {
                    "action_id": ids.RESOLVE,
                    "block_id": ids.ACTIONS_BLOCK + inc.id,
                    "type": "button",
                    "value": inc.id,
                }
            ],
        }
        ws.ack_of(ws.send("interactive", action))
        [refusal] = wait_for(lambda: slack.ephemeral)
        assert refusal["user"] == ANA and "Sorry" in refusal["message"]["text"]
        assert [(a.action, a.allowed) for a in store.audit_log(inc.id)][-1] == ("resolve", False)

        action["user"] = {"id": LEAD, "team_id": TEAM_ID}
        ws.ack_of(ws.send("interactive", action))
        wait_for(lambda: (i := store.incident(inc.id)) and i.state is State.resolved)

        mention = {
            "token": "x",
            "team_id": TEAM_ID,
            "api_app_id": "A0PAYBOT01",
            "type": "event_callback",
            "event_id": "Ev0001",
            "event_time": int(time.time()),
            "event": {
                "type": "app_mention",
                "user": BEN,
                "text": f"<@{BOT_USER_ID}> status",
                "ts": "1700000100.000100",
                "channel": inc.slack_channel,
                "event_ts": "1700000100.000100",
            },
        }
        ws.ack_of(ws.send("events_api", mention))
        answer = wait_for(
            lambda: [
                m
                for m in slack.thread(inc.slack_channel or "", "1700000100.000100")
                if "open" in m["text"]
            ]
        )
        assert "0 open" in text_of(answer) or "No open incidents" in text_of(answer)
        thread = [m["text"] for m in slack.thread(inc.slack_channel or "", inc.slack_ts or "")[1:]]
        assert thread == [
            f":eyes: <@{ANA}> acknowledged this incident.",
            f":white_check_mark: <@{LEAD}> resolved this incident.",
        ]
        assert [k for k, _ in [(m.kind, m.key) for m in store.due(T0 + timedelta(days=1))]] == [
            "incident.updated",
            "incident.updated",
        ]
        assert slack.spec_violations == []
    finally:
        handler.close()
        ws.close()


def test_socket_mode_reconnects_when_slack_refreshes_or_the_network_drops_the_connection(
    slack: SlackApiServer, store: Store, responses: ResponseUrls
) -> None:
    """Slack refreshes Socket Mode connections every few hours (a ``disconnect`` message with
    ``refresh_requested``) and a network can cut one without a close frame: each time the
    app asks ``apps.connections.open`` for a new URL, connects, and answers commands again.
    A cut connection is found by the client's pings (every ``SOCKET_PING_INTERVAL``; Bolt's
    default of 10 s took about a minute to notice)."""
    ws = SocketModeServer()
    slack.socket_mode_url = ws.url
    client = WebClient(token=slack.token, base_url=slack.base_url, timeout=5)
    app: App = create_slack_app(settings("socket"), store, client=client, clock=ticking())
    handler = start_socket_mode(app, APP_TOKEN, block=False)
    command = {
        "token": "x",
        "team_id": TEAM_ID,
        "channel_id": CHANNEL,
        "user_id": ANA,
        "command": "/triage",
        "api_app_id": "A0PAYBOT01",
        "trigger_id": "t",
        "text": "help",
    }

    def answered_on(connection: int) -> None:
        url = responses.url(f"reconnect-{connection}")
        env = ws.send("slash_commands", command | {"response_url": url}, True)
        assert "/triage status" in ws.ack_of(env)["payload"]["text"]
        assert ws.ack_connection[env] == connection

    try:
        assert ws.wait_connections(1, 5)
        answered_on(1)

        ws.disconnect("refresh_requested")
        assert ws.wait_connections(2, 10), "no new connection after Slack's refresh request"
        assert len(slack.calls_to("apps.connections.open")) == 2  # a fresh URL was asked for
        answered_on(2)

        ws.drop()
        # The client notices on its next ping (every 5 s) or when the read fails.
        assert ws.wait_connections(3, 30), "no new connection after the network dropped it"
        assert len(slack.calls_to("apps.connections.open")) == 3
        answered_on(3)
        assert slack.spec_violations == []
    finally:
        handler.close()
        ws.close()


def test_a_postmortem_draft_is_reviewed_in_slack_and_the_approved_one_exported(
    slack: SlackApiServer, store: Store, responses: ResponseUrls
) -> None:
    cfg = settings(review=[LEAD])
    h = run_http(slack, store, responses, cfg)
    try:
        inc = h.incident()
        h.click(ids.POSTMORTEM, inc)
        wait_for(lambda: any("Postmortem draft v1" in t for t in h.thread(inc)))
        [draft] = [f for f in slack.files.values() if f.filename.endswith("-v1.md")]
        assert draft.shares[0].thread_ts == inc.slack_ts
        assert b"## " in draft.content and f"`{inc.ref}`".encode() in draft.content
        [v1] = store.postmortems(inc.id)
        assert v1.author == f"slack:{ANA}" and v1.slack_file == draft.id

        h.click(ids.POSTMORTEM_APPROVE, inc, user=ANA, value=f"{inc.id}:1")  # not a reviewer
        wait_for(lambda: any("Sorry" in t for t in h.ephemeral_to(ANA)))
        assert store.postmortems(inc.id)[0].status == "draft"

        h.click(ids.POSTMORTEM_CHANGES, inc, user=LEAD, value=f"{inc.id}:1")
        wait_for(lambda: any("asked for changes to postmortem v1" in t for t in h.thread(inc)))
        h.click(ids.POSTMORTEM, inc, user=LEAD)
        wait_for(lambda: len(store.postmortems(inc.id)) == 2)
        h.click(ids.POSTMORTEM_APPROVE, inc, user=LEAD, value=f"{inc.id}:1")  # stale version
        wait_for(lambda: any("not the latest" in t for t in h.ephemeral_to(LEAD)))
        h.click(ids.POSTMORTEM_APPROVE, inc, user=LEAD, value=f"{inc.id}:2")
        wait_for(lambda: any("Postmortem v2 approved" in t for t in h.thread(inc)))
        assert [(p.version, p.status) for p in store.postmortems(inc.id)] == [
            (1, "changes_requested"),
            (2, "approved"),
        ]
        exported = Path(cfg.postmortem.export_dir) / f"{inc.id}-v2.md"
        assert exported.read_text() == store.postmortems(inc.id)[1].body
        actions = [(a.action, a.allowed) for a in store.audit_log(inc.id)]
        assert ("review", False) in actions and ("postmortem.approved", True) in actions
        assert slack.spec_violations == []
    finally:
        h.http.close()


def declared_form(title: str, severity: str, labels: str) -> dict[str, Any]:
    return {
        "title": {"title": {"type": "plain_text_input", "value": title}},
        "severity": {"severity": {"type": "static_select", "selected_option": {"value": severity}}},
        "labels": {"labels": {"type": "plain_text_input", "value": labels}},
    }


def test_an_incident_declared_by_hand_is_posted_numbered_and_mitigated(h: Harness) -> None:
    """Issue 20, finding 5: no way to declare an incident by hand, no "mitigated"."""
    from paytriage.notify.slack.sender import slack_worker

    _, name = h.command("declare Adyen 500s in DE checkout severity=critical psp=adyen country=DE")
    said = h.reply(name)["text"]
    assert said.startswith("You declared `INC-1`: Adyen 500s in DE checkout (critical")
    [inc] = h.store.incidents()
    assert (inc.detector, inc.dimensions, inc.ref) == (
        "manual",
        {"psp": "adyen", "country": "DE"},
        "INC-1",
    )
    assert inc.title == "Adyen 500s in DE checkout" and inc.severity.value == "critical"
    assert [a.action for a in h.store.audit_log(inc.id)] == ["declare"]
    sender = slack_worker(h.store, h.client, clock=lambda: inc.opened_at + timedelta(minutes=1))
    assert sender.drain().sent == [f"{inc.id}:opened"]
    [root] = h.slack.messages(CHANNEL)
    assert "INC-1" in root["blocks"][0]["text"]["text"]
    buttons = [
        e["action_id"] for b in root["blocks"] if b["type"] == "actions" for e in b["elements"]
    ]
    assert ids.MITIGATE in buttons
    posted = h.store.incident(inc.id)
    assert posted is not None
    h.click(ids.MITIGATE, posted, user=BEN)
    wait_for(lambda: (i := h.store.incident(inc.id)) and i.state.value == "mitigated")
    assert wait_for(lambda: h.thread(posted))[-1].startswith(
        f":adhesive_bandage: <@{BEN}> marked this incident as mitigated"
    )
    _, name = h.command("mitigate inc-1")  # already mitigated: said, nothing changes
    assert "already mitigated" in h.reply(name)["text"]
    _, name = h.command("resolve INC-1 failed over to stripe", user=LEAD)
    assert h.reply(name)["text"].startswith("You resolved `INC-1`")


def test_declare_without_a_title_opens_a_form_that_names_what_is_wrong(h: Harness) -> None:
    h.command("declare")
    [form] = wait_for(lambda: h.slack.opened_views)
    assert form["callback_id"] == ids.DECLARE_MODAL
    bad = h.submit_values(form, declared_form("Refunds stuck", "error", "psp adyen"))
    assert bad["response_action"] == "errors" and "label=value" in bad["errors"]["labels"]
    assert h.store.incidents() == []
    ok = h.submit_values(form, declared_form("Refunds stuck <!channel>", "warning", "psp=adyen"))
    assert ok == {}
    [inc] = wait_for(lambda: h.store.incidents())
    assert inc.title == "Refunds stuck @channel" and inc.dimensions == {"psp": "adyen"}
    said = wait_for(lambda: h.ephemeral_to(ANA))[0]  # Slack markup made plain: no mention
    assert said.startswith("You declared `INC-1`: Refunds stuck @channel") and "<!" not in said
