"""Acknowledge, resolve, silence, escalate from Slack against a real SQLite store: the
incident, its timeline, the audit log and the outbox change together (or not at all), and
what does not apply or is not permitted gets a polite answer."""

from __future__ import annotations

from collections.abc import Collection
from datetime import timedelta
from pathlib import Path
from typing import Any

from paytriage.app.compose import slack_app_options
from paytriage.config import Settings
from paytriage.domain.findings import Finding, Severity
from paytriage.domain.incidents import Incident, MemberKey, fingerprint
from paytriage.domain.lifecycle import State
from paytriage.slack_app.operations import Operations
from paytriage.slack_app.permissions import GroupLookupError, Permissions
from paytriage.store import Store, StoredIncident
from tests.support.factories import T0, ticking

ANA, BEN, LEAD = "U0ANA00001", "U0BEN00001", "U0LEAD0001"


def settings(pagerduty: bool = False, **permissions: list[str]) -> Settings:
    data: dict[str, Any] = {
        "slack": {
            "enabled": True,
            "mode": "http",
            "bot_token": "${SLACK_BOT_TOKEN}",
            "signing_secret": "${SLACK_SIGNING_SECRET}",
            "permissions": permissions,
            "routes": [{"match": {"detector": "webhook_lag"}, "channel": "#payments-webhooks"}],
        },
        "pagerduty": {"enabled": pagerduty, "routing_key": "${PD_KEY}"},
    }
    env = {"SLACK_BOT_TOKEN": "xoxb-t", "SLACK_SIGNING_SECRET": "s", "PD_KEY": "k" * 32}
    return Settings.model_validate(data, context={"env": env})


def make_incident(
    store: Store, detector: str = "decline_spike", title: str = "Stripe declines up", **dims: str
) -> StoredIncident:
    dims = dims or {"psp": "stripe"}
    f = Finding(detector, Severity.critical, dims, title, 0.3, 0.05, (0.0, 0.08), T0, T0)
    inc = Incident(
        fingerprint(detector, dims, T0), detector, dims, title, f.severity, T0, T0, False
    )
    inc.members[MemberKey.of(f)] = inc.active[MemberKey.of(f)] = f
    with store.begin() as tx:
        return tx.save_incident(inc, T0)


def ops(
    store: Store, s: Settings | None = None, groups: dict[str, list[str]] | None = None
) -> Operations:
    def members_of(group: str) -> Collection[str]:
        if groups is None or group not in groups:
            raise GroupLookupError("no_such_subteam")
        return groups[group]

    s = s or settings()
    return Operations(
        slack_app_options(s), store, Permissions(s.slack.permissions, members_of), ticking()
    )


def outbox(store: Store) -> list[tuple[str, str, str]]:
    return [(m.kind, m.channel, m.key) for m in store.due(T0 + timedelta(days=1), limit=100)]


def test_acknowledge_changes_state_timeline_audit_and_enqueues_one_update(store: Store) -> None:
    inc = make_incident(store)
    out = ops(store).acknowledge(inc.id, ANA, "button")
    assert out.ok and out.note == f":eyes: <@{ANA}> acknowledged this incident."
    assert out.incident is not None and out.incident.state is State.acknowledged
    assert out.incident.acknowledged_by == f"slack:{ANA}"
    [(kind, channel, key)] = outbox(store)
    assert (kind, channel) == ("incident.updated", "slack:#payments-oncall")
    assert key.startswith(f"{inc.id}:action:acknowledge:2026-11-16T09:05:")
    [msg] = store.due(T0 + timedelta(days=1))
    assert msg.payload["by"] == f"slack:{ANA}" and msg.payload["state"] == "acknowledged"
    assert [(a.actor, a.action, a.allowed) for a in store.audit_log(inc.id)] == [
        (f"slack:{ANA}", "acknowledge", True)
    ]
    assert [e.kind for e in store.timeline(inc.id)] == ["acknowledge"]


def test_an_action_that_does_not_apply_is_answered_politely(store: Store) -> None:
    inc = make_incident(store)
    o = ops(store)
    assert o.acknowledge(inc.id, ANA, "button").ok
    again = o.acknowledge(inc.id, BEN, "button")
    assert not again.ok and again.note is None
    assert f"already acknowledged by <@{ANA}> at 09:05 UTC; nothing changed" in again.reply
    assert o.resolve(inc.id, BEN, "command", "fixed").ok
    late = o.acknowledge(inc.id, ANA, "command")
    assert "is already resolved at 09:05 UTC; nothing to acknowledge" in late.reply
    assert [k for k, _, _ in outbox(store)] == ["incident.updated", "incident.updated"]
    stored = store.incident(inc.id)
    assert stored is not None and stored.acknowledged_by == f"slack:{ANA}"


def test_a_refused_resolve_changes_nothing_and_is_audited(store: Store) -> None:
    inc = make_incident(store)
    o = ops(store, settings(resolve=[LEAD, "S0ONCALL01"]), {"S0ONCALL01": [BEN]})
    out = o.resolve(inc.id, ANA, "button")
    assert not out.ok and "Sorry, only the people and user groups set in" in out.reply
    assert "slack.permissions.resolve" in out.reply
    stored = store.incident(inc.id)
    assert stored is not None and stored.state is State.open
    assert outbox(store) == [] and store.timeline(inc.id) == []
    [audit] = store.audit_log(inc.id)
    assert (audit.actor, audit.action, audit.allowed) == (f"slack:{ANA}", "resolve", False)
    assert audit.data == {"via": "button", "reason": "not permitted"}
    # A member of the group may.
    ok = o.resolve(inc.id, BEN, "command", "PSP recovered <!channel>")
    assert ok.ok and ok.note is not None and "PSP recovered &lt;!channel&gt;" in ok.note
    assert [e.text for e in store.timeline(inc.id)] == [
        f"resolve by slack:{BEN}: PSP recovered <!channel>"
    ]


def test_silence_an_incident_for_a_while_then_until_resolved(store: Store) -> None:
    inc = make_incident(store)
    o = ops(store)
    out = o.silence_incident(inc.id, ANA, "button", timedelta(hours=1))
    assert out.ok and "for 1 h (until 10:05 UTC)" in out.reply
    assert (
        out.note
        == f":mute: <@{ANA}> silenced this incident for 1 h (until 10:05 UTC): no reason given"
    )
    [s] = store.silences(T0 + timedelta(minutes=10))
    assert (s.detector, dict(s.dimensions), s.incident_id) == (
        "decline_spike",
        {"psp": "stripe"},
        inc.id,
    )
    assert s.expires_at is not None and s.created_by == f"slack:{ANA}"
    again = o.silence_incident(inc.id, BEN, "button", timedelta(hours=1))
    assert not again.ok and "already silenced" in again.reply
    forever = o.silence_incident(inc.id, BEN, "command", None, "known issue")
    assert forever.ok and "until it resolves" in forever.reply
    assert [x.expires_at for x in store.silences(T0 + timedelta(minutes=10))][1] is None
    kinds = [(k, key.split(":")[2]) for k, _, key in outbox(store)]
    assert kinds == [("incident.updated", "silence"), ("incident.updated", "silence")]
    assert [a.action for a in store.audit_log(inc.id)] == ["silence", "silence"]
    assert [e.kind for e in store.timeline(inc.id)] == ["silenced", "silenced"]


def test_silence_a_detector_on_labels(store: Store) -> None:
    o = ops(store, settings(silence=[ANA]))
    out = o.silence_detector(
        "decline_spike", {"psp": "adyen"}, ANA, "command", timedelta(hours=4), "PSP maint"
    )
    assert out.ok and "`decline_spike` on psp=adyen for 4 h" in out.reply
    [s] = store.silences(T0 + timedelta(hours=1))
    assert (s.detector, dict(s.dimensions), s.incident_id, s.reason) == (
        "decline_spike",
        {"psp": "adyen"},
        None,
        "PSP maint",
    )
    assert outbox(store) == []
    refused = o.silence_detector(None, {"psp": "adyen"}, BEN, "command", timedelta(hours=1))
    assert not refused.ok
    assert [(a.actor, a.allowed) for a in store.audit_log()] == [
        (f"slack:{ANA}", True),
        (f"slack:{BEN}", False),
    ]


def test_escalate_is_honest_without_pagerduty_and_pages_once_with_it(store: Store) -> None:
    inc = make_incident(store)
    out = ops(store).escalate(inc.id, ANA, "button")
    assert not out.ok and "PagerDuty is not configured" in out.reply and "nobody" in out.reply
    assert outbox(store) == []
    o = ops(store, settings(pagerduty=True))
    out = o.escalate(inc.id, ANA, "button")
    assert out.ok and "page is queued" in out.reply
    assert [(k, c) for k, c, _ in outbox(store)] == [
        ("page.trigger", "pagerduty"),
        ("incident.updated", "slack:#payments-oncall"),
    ]
    page = store.due(T0 + timedelta(days=1), receiver="pagerduty")[0]
    assert page.key == f"{inc.id}:escalate"
    assert page.payload == {"incident_id": inc.id, "by": f"slack:{ANA}"}
    again = o.escalate(inc.id, BEN, "button")
    assert not again.ok and "already escalated" in again.reply
    assert len(outbox(store)) == 2
    assert [(a.action, a.actor) for a in store.audit_log(inc.id)] == [("escalate", f"slack:{ANA}")]


def test_updates_go_to_the_message_s_channel_or_the_route(store: Store) -> None:
    o = ops(store)
    webhooks = make_incident(store, "webhook_lag", "Adyen webhooks late", psp="adyen")
    assert str(o.channel_of(webhooks)) == "slack:#payments-webhooks"
    with store.begin() as tx:
        tx.set_message(webhooks.id, "C0WEBHOOKS1", "1700000000.000100")
    posted = store.incident(webhooks.id)
    assert posted is not None and str(o.channel_of(posted)) == "slack:C0WEBHOOKS1"


def test_unknown_incident_and_postmortem(store: Store) -> None:
    o = ops(store)
    assert (
        "I know no incident `inc-000000000000`"
        in o.acknowledge("inc-000000000000", ANA, "command").reply
    )
    inc = make_incident(store)
    pm = o.postmortem(inc.id, ANA)
    assert pm.ok and pm.postmortem is not None and pm.postmortem.version == 1
    assert "Draft v1 of the postmortem" in pm.reply
    [stored] = store.postmortems(inc.id)
    assert stored.author == f"slack:{ANA}" and f"`{inc.ref}`" in stored.body
    assert outbox(store) == []  # nothing to send: the app uploads the draft itself
    o.postmortem_template = Path("/nonexistent/postmortem.md.j2")
    bad = o.postmortem(inc.id, ANA)
    assert not bad.ok and "template failed" in bad.reply and len(store.postmortems(inc.id)) == 1
