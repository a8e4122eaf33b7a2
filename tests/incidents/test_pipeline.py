"""The incident pipeline over a real SQLite store, with findings made by hand: what is
recorded, what is notified once, what silences and maintenance suppress, what a restart
picks up, and that failing evidence never loses an incident."""

from __future__ import annotations

from datetime import datetime, time
from pathlib import Path

from paytriage.domain.findings import Finding, Severity
from paytriage.domain.lifecycle import Action, Maintenance, Silence, State
from paytriage.store import Store
from tests.support.factories import T0, M, cleared, raised
from tests.support.pipeline import Counting, finding, pipeline

ROOT = Path(__file__).resolve().parents[2]


def outbox(store: Store, refreshed: bool = False) -> list[tuple[str, str]]:
    """The notifications enqueued, without evidence refreshes unless asked."""
    return [
        (m.kind, m.incident_id or "")
        for m in store.due(T0 + 24 * 60 * M, limit=1000)
        if refreshed or m.kind != "incident.refreshed"
    ]


def test_an_incident_is_stored_with_evidence_and_runbook_and_notified_once(store: Store) -> None:
    gatherer = Counting()
    p = pipeline(store, gatherer)
    f = finding("decline_spike", psp="stripe")
    report = p.step([raised(f)], [f], T0)
    [inc_id] = report.ids("opened")
    p.step([], [finding("decline_spike", T0 + M, psp="stripe")], T0 + M)  # still on: no news
    stored = store.incident(inc_id)
    assert stored is not None and stored.state is State.open
    assert stored.runbook == "psp-outage"
    ev = stored.evidence
    assert ev.runbook is not None and ev.runbook.id == "psp-outage"
    assert ev.logs is not None and ev.logs.missing is not None
    assert "4111 1111 1111 1111" not in str(ev)  # the store redacts evidence
    assert "****1111" in ev.logs.missing
    assert outbox(store) == [("incident.opened", inc_id)]
    assert [c[0] for c in gatherer.calls] == [inc_id]
    kinds = [e.kind for e in store.timeline(inc_id)]
    assert kinds == ["opened"]


def test_a_related_finding_joins_and_updates_instead_of_paging_again(store: Store) -> None:
    p = pipeline(store)
    a = finding("decline_spike", psp="stripe")
    [inc_id] = p.step([raised(a)], [a], T0).ids("opened")
    b = finding("capture_failures", T0 + 5 * M, Severity.critical, psp="stripe")
    report = p.step([raised(b)], [a, b], T0 + 5 * M)
    assert report.changes == {inc_id: ["joined", "severity"]}
    assert [k for k, _ in outbox(store)] == ["incident.opened", "incident.updated"]
    stored = store.incident(inc_id)
    assert stored is not None and stored.severity is Severity.critical
    assert len(store.incidents()) == 1


def test_resolution_and_relapse_each_notify_once(store: Store) -> None:
    p = pipeline(store)
    f = finding("webhook_lag", psp="adyen")
    [inc_id] = p.step([raised(f)], [f], T0).ids("opened")
    assert p.step([cleared(f, T0 + 20 * M)], [], T0 + 20 * M).ids("resolved") == [inc_id]
    again = finding("webhook_lag", T0 + 40 * M, psp="adyen")
    assert p.step([raised(again)], [again], T0 + 40 * M).ids("reopened") == [inc_id]
    p.step([cleared(again, T0 + 60 * M)], [], T0 + 60 * M)
    assert [k for k, _ in outbox(store)] == [
        "incident.opened",
        "incident.resolved",
        "incident.reopened",
        "incident.resolved",
    ]
    stored = store.incident(inc_id)
    assert stored is not None and stored.state is State.resolved and stored.reopened == 1


def test_a_silence_suppresses_the_notification_but_the_incident_is_recorded(store: Store) -> None:
    store.add_silence(
        Silence(
            "s1",
            "decline_spike",
            {"psp": "stripe"},
            "PSP maintenance",
            "slack:U1",
            T0 - M,
            T0 + 60 * M,
        )
    )
    p = pipeline(store)
    f = finding("decline_spike", psp="stripe")
    report = p.step([raised(f)], [f], T0)
    [inc_id] = report.ids("opened")
    assert report.suppressed[inc_id] == "silenced by slack:U1: PSP maintenance"
    assert outbox(store) == []
    assert store.incident(inc_id) is not None
    assert any("not sent: silenced" in e.text for e in store.timeline(inc_id))
    # Another PSP is not silenced.
    g = finding("decline_spike", T0 + M, psp="adyen")
    [other] = p.step([raised(g)], [f, g], T0 + M).ids("opened")
    assert outbox(store) == [("incident.opened", other)]


def test_a_weekly_maintenance_window_suppresses_only_inside_it(store: Store) -> None:
    sunday = Maintenance(
        "adyen sunday", {"psp": "adyen"}, weekday="mon", start_time=time(8, 30), duration=60 * M
    )
    p = pipeline(store, maintenance=[sunday])
    f = finding("webhook_lag", psp="adyen")
    report = p.step([raised(f)], [f], T0)  # Monday 09:00, inside 08:30-09:30
    assert list(report.suppressed.values()) == ["maintenance window adyen sunday"]
    late = finding("webhook_lag", T0 + 90 * M, psp="checkout")
    assert p.step([raised(late)], [f, late], T0 + 90 * M).suppressed == {}
    assert [k for k, _ in outbox(store)] == ["incident.opened"]


def test_failing_evidence_never_loses_the_incident(store: Store) -> None:
    p = pipeline(store, Counting(fail=True))
    f = finding("capture_failures", psp="braintree")
    [inc_id] = p.step([raised(f)], [f], T0).ids("opened")
    stored = store.incident(inc_id)
    assert stored is not None
    assert "opensearch exploded" in (stored.evidence.missing or "")
    assert outbox(store) == [("incident.opened", inc_id)]


def test_evidence_is_refreshed_while_open_not_every_step(store: Store) -> None:
    gatherer = Counting()
    p = pipeline(store, gatherer, refresh_every=5 * M)
    f = finding("refund_sla", psp="adyen")
    p.step([raised(f)], [f], T0)
    for k in range(1, 12):
        p.step([], [finding("refund_sla", T0 + k * M, psp="adyen")], T0 + k * M)
    assert [at for _, at in gatherer.calls] == [T0, T0 + 5 * M, T0 + 10 * M]
    assert [k for k, _ in outbox(store, refreshed=True)] == [
        "incident.opened",
        "incident.refreshed",
        "incident.refreshed",
    ]
    stored = store.incidents()[0]
    rb = stored.evidence.runbook
    assert stored.evidence.version == 3 and rb is not None and rb.id == "refund-sla"


def test_after_a_restart_an_open_incident_is_picked_up_not_opened_again(store: Store) -> None:
    f = finding("decline_spike", psp="stripe")
    [inc_id] = pipeline(store).step([raised(f)], [f], T0).ids("opened")

    p = pipeline(store)  # a new process
    assert p.restore(T0 + 5 * M) == [inc_id]
    again = finding("decline_spike", T0 + 7 * M, psp="stripe")
    report = p.step([raised(again)], [again], T0 + 7 * M)
    assert report.ids("opened") == []
    p.step([cleared(again, T0 + 30 * M)], [], T0 + 30 * M)
    assert [k for k, _ in outbox(store)] == ["incident.opened", "incident.resolved"]
    assert len(store.incidents()) == 1


def test_after_a_restart_a_problem_that_ended_meanwhile_resolves(store: Store) -> None:
    f = finding("traffic_drop", country="GB")
    [inc_id] = pipeline(store).step([raised(f)], [f], T0).ids("opened")
    p = pipeline(store, quiet_after_restart={"traffic_drop": 12 * M})
    p.restore(T0 + 60 * M)
    assert p.step([], [], T0 + 71 * M).ids("resolved") == []
    assert p.step([], [], T0 + 72 * M).ids("resolved") == [inc_id]
    stored = store.incident(inc_id)
    assert stored is not None and stored.state is State.resolved
    assert any("not raised again since the restart" in e.text for e in store.timeline(inc_id))


def test_an_incident_a_person_resolved_is_not_announced_resolved_again(store: Store) -> None:
    p = pipeline(store)
    f = finding("capture_failures", psp="braintree")
    [inc_id] = p.step([raised(f)], [f], T0).ids("opened")
    with store.begin() as tx:
        tx.act(inc_id, Action.resolve, "slack:U42", T0 + 5 * M, "fixed the config")
    p.step([cleared(f, T0 + 20 * M)], [], T0 + 20 * M)
    assert [k for k, _ in outbox(store)] == ["incident.opened"]
    stored = store.incident(inc_id)
    assert stored is not None and stored.resolved_at == T0 + 5 * M


def test_no_channel_means_recorded_but_nothing_enqueued(store: Store) -> None:
    p = pipeline(store)
    p.channel = None
    f = finding("decline_spike", psp="stripe")
    p.step([raised(f)], [f], T0)
    assert outbox(store) == [] and len(store.incidents()) == 1


def test_resolved_incidents_are_forgotten_once_they_can_no_longer_reopen(store: Store) -> None:
    p = pipeline(store)
    f = finding("webhook_lag", psp="adyen")
    p.step([raised(f)], [f], T0)
    p.step([cleared(f, T0 + 10 * M)], [], T0 + 10 * M)
    assert len(p.grouper.incidents) == 1
    p.step([], [], T0 + 10 * M + 121 * M)
    assert p.grouper.incidents == []
    late = finding("webhook_lag", T0 + 200 * M, psp="adyen")
    assert len(p.step([raised(late)], [late], T0 + 200 * M).ids("opened")) == 1


def test_an_incident_keeps_the_title_and_runbook_it_was_paged_with(store: Store) -> None:
    """Issue 20, finding 1: a PSP outage paged as "Technical errors up" with the psp-outage
    runbook ended stored with the issuer-decline runbook, because the recovering slice's
    last reading (issuer declines) replaced the first. Identity is kept; later readings
    are timeline events, and a restart keeps it too."""
    from tests.support import factories

    def reading(at: datetime, cause: str, title: str) -> Finding:
        return factories.finding(
            "decline_spike",
            at=at,
            dimensions={"psp": "stripe"},
            title=title,
            details={"cause": cause},
        )

    p = pipeline(store, refresh_every=5 * M)
    paged = reading(T0, "technical", "Technical errors up at psp=stripe")
    [inc_id] = p.step([raised(paged)], [paged], T0).ids("opened")
    late = reading(T0 + 20 * M, "issuer", "Issuer declines up at psp=stripe: 10.3 %")
    p.step([], [late], T0 + 20 * M)  # refreshed: evidence gathered anew
    other = factories.finding("capture_failures", at=T0 + 21 * M, dimensions={"psp": "stripe"})
    p.step([raised(other)], [late, other], T0 + 21 * M)  # another detector joins
    again = pipeline(store, refresh_every=5 * M)  # a restart
    again.restore(T0 + 22 * M)
    again.step([], [late, other], T0 + 30 * M)
    again.step([cleared(late, T0 + 31 * M), cleared(other, T0 + 31 * M)], [], T0 + 31 * M)
    stored = store.incident(inc_id)
    assert stored is not None and stored.state is State.resolved
    assert stored.title == "Technical errors up at psp=stripe"
    assert stored.runbook == "psp-outage"
    assert stored.evidence.runbook is not None and stored.evidence.runbook.id == "psp-outage"
    assert stored.evidence.version >= 3  # it was refreshed, and kept the runbook each time
    assert not any("Issuer" in e.text for e in store.timeline(inc_id))
