"""Findings into incidents: relapse re-opens, related findings join, unrelated ones stay apart."""

from __future__ import annotations

from datetime import datetime

from paytriage.detection.run import Event, EventKind
from paytriage.domain.findings import Finding, Severity
from paytriage.domain.incidents import Grouper, fingerprint, related
from paytriage.lab.backtest import group
from tests.support.factories import T0, M


def finding(
    detector: str,
    severity: Severity = Severity.error,
    onset: datetime | None = None,
    data: bool = False,
    **dims: str,
) -> Finding:
    return Finding(
        detector=detector,
        severity=severity,
        dimensions=dims,
        title=f"{detector} {dims}",
        observed=1.0,
        expected=0.0,
        band=(0.0, 0.5),
        onset=onset,
        at=T0,
        details={"kind": "data_problem"} if data else {},
    )


def grouper() -> Grouper:
    return Grouper(correlation_window=15 * M, reopen_within=2 * 60 * M)


def test_related_means_one_slice_contains_the_other() -> None:
    assert related({"psp": "stripe"}, {"psp": "stripe", "country": "DE"})
    assert related({"psp": "stripe", "country": "DE"}, {"psp": "stripe"})
    assert related({}, {"country": "GB"})
    assert not related({"psp": "stripe"}, {"psp": "adyen"})
    assert not related({"psp": "stripe"}, {"country": "GB"})
    assert not related({"psp": "stripe", "country": "DE"}, {"psp": "stripe", "method": "card"})


def test_a_psps_declines_and_capture_failures_at_the_same_time_are_one_incident() -> None:
    g = grouper()
    a = g.raised(finding("decline_spike", onset=T0 - 3 * M, psp="stripe"), T0)
    b = g.raised(
        finding("capture_failures", Severity.critical, onset=T0 - 5 * M, psp="stripe"), T0 + 6 * M
    )
    assert a is b and len(g.incidents) == 1
    assert a.detector == "decline_spike" and a.dimensions == {"psp": "stripe"}
    assert a.severity is Severity.critical  # the worst of its findings
    assert a.onset == T0 - 5 * M  # the earliest onset
    assert a.detectors == ["capture_failures", "decline_spike"]
    # it resolves only when both have cleared
    g.cleared(finding("decline_spike", psp="stripe"), T0 + 30 * M)
    assert a.is_open
    g.cleared(finding("capture_failures", psp="stripe"), T0 + 40 * M)
    assert a.resolved_at == T0 + 40 * M


def test_problems_on_the_same_psp_that_start_far_apart_stay_apart() -> None:
    g = grouper()
    g.raised(finding("refund_sla", psp="adyen"), T0)
    g.raised(finding("webhook_lag", psp="adyen"), T0 + 38 * M)
    assert [i.detector for i in g.incidents] == ["refund_sla", "webhook_lag"]


def test_unrelated_slices_at_the_same_time_are_separate_incidents() -> None:
    g = grouper()
    g.raised(finding("decline_spike", psp="stripe"), T0)
    g.raised(finding("decline_spike", country="GB"), T0 + M)
    g.raised(finding("decline_spike", psp="adyen"), T0 + M)
    assert len(g.incidents) == 3


def test_a_relapse_within_the_window_reopens_and_later_one_opens_anew() -> None:
    g = grouper()
    first = g.raised(finding("decline_spike", psp="stripe"), T0)
    g.cleared(finding("decline_spike", psp="stripe"), T0 + 20 * M)
    again = g.raised(finding("decline_spike", psp="stripe"), T0 + 50 * M)
    assert again is first and first.is_open and first.reopened == 1
    assert [e.what.split(":")[0] for e in first.timeline] == [
        "opened",
        "decline_spike cleared on psp=stripe",
        "resolved",
        "re-opened",
    ]
    g.cleared(finding("decline_spike", psp="stripe"), T0 + 60 * M)
    later = g.raised(finding("decline_spike", psp="stripe"), T0 + 60 * M + 2 * 60 * M + M)
    assert later is not first and len(g.incidents) == 2


def test_data_problems_never_join_payment_incidents() -> None:
    g = grouper()
    drop = g.raised(finding("traffic_drop", psp="worldpay"), T0)
    gap = g.raised(finding("traffic_drop", data=True, psp="worldpay"), T0 + M)
    assert gap is not drop and gap.data_problem and not drop.data_problem
    # and clearing the data problem leaves the traffic drop open
    g.cleared(finding("traffic_drop", data=True, psp="worldpay"), T0 + 5 * M)
    assert drop.is_open and not gap.is_open


def test_group_replays_events_and_ids_are_stable() -> None:
    f = finding("decline_spike", psp="stripe")
    events = [Event("raised", f, T0), Event("cleared", f, T0 + 25 * M)]
    [a] = group(events, 15 * M, 2 * 60 * M)
    [b] = group(events, 15 * M, 2 * 60 * M)
    assert a.id == b.id == fingerprint("decline_spike", {"psp": "stripe"}, T0)
    assert a.id != fingerprint("decline_spike", {"psp": "adyen"}, T0)
    assert a.as_dict()["opened_at"] == "2026-11-16T09:00:00Z"
    assert a.as_dict()["resolved_at"] == "2026-11-16T09:25:00Z"


def test_a_clear_for_an_unknown_finding_changes_nothing() -> None:
    g = grouper()
    inc = g.raised(finding("decline_spike", psp="stripe"), T0)
    assert g.cleared(finding("decline_spike", psp="adyen"), T0 + M) is None
    assert inc.is_open


def test_impact_ends_when_the_last_finding_went_back_not_when_it_cleared() -> None:
    """Issue 20, finding 2: *impact ended* (the signals back in their bands) and *resolved*
    (the last finding cleared after its hysteresis) are two times."""
    g = grouper()
    inc = g.raised(finding("decline_spike", psp="stripe"), T0)
    g.raised(finding("capture_failures", psp="stripe"), T0 + 2 * M)
    # declines back at +20, cleared at +25; captures back at +22 but slower to clear (+40)
    g.cleared(finding("decline_spike", psp="stripe"), T0 + 25 * M, T0 + 20 * M)
    assert inc.is_open and inc.impact_ended_at is None  # a finding is still active
    g.cleared(finding("capture_failures", psp="stripe"), T0 + 40 * M, T0 + 22 * M)
    assert inc.resolved_at == T0 + 40 * M
    assert inc.impact_ended_at == T0 + 22 * M  # the latest of the two recoveries
    assert inc.as_dict()["impact_ended_at"] == "2026-11-16T09:22:00Z"
    # a relapse re-opens it: its impact is on again, and ends with its next recovery
    g.raised(finding("decline_spike", psp="stripe"), T0 + 50 * M)
    assert inc.impact_ended_at is None and inc.as_dict()["impact_ended_at"] is None
    g.cleared(finding("decline_spike", psp="stripe"), T0 + 60 * M, T0 + 55 * M)
    assert inc.impact_ended_at == T0 + 55 * M and inc.reopened == 1


def test_the_recovery_a_cleared_finding_carries_is_read_from_it() -> None:
    """The live pipeline hands the grouper the cleared finding only: its details say when its
    signal went back. Without one, impact ended when it cleared; never after that."""
    g = grouper()
    a = g.raised(finding("decline_spike", psp="stripe"), T0)
    cleared = finding("decline_spike", psp="stripe")
    cleared.details["recovered_at"] = "2026-11-16T09:17:00Z"
    g.cleared(cleared, T0 + 22 * M)
    assert a.impact_ended_at == T0 + 17 * M
    b = g.raised(finding("webhook_lag", psp="adyen"), T0)
    g.cleared(finding("webhook_lag", psp="adyen"), T0 + 9 * M)
    assert b.impact_ended_at == T0 + 9 * M
    c = g.raised(finding("traffic_drop", country="GB"), T0)
    g.cleared(finding("traffic_drop", country="GB"), T0 + 9 * M, T0 + 12 * M)
    assert c.impact_ended_at == T0 + 9 * M


def test_group_carries_the_recovery_of_cleared_events() -> None:
    f = finding("decline_spike", psp="stripe")
    events = [
        Event(EventKind.RAISED, f, T0),
        Event(EventKind.CLEARED, f, T0 + 25 * M, recovered_at=T0 + 20 * M),
    ]
    [a] = group(events, 15 * M, 2 * 60 * M)
    assert a.as_dict()["impact_ended_at"] == "2026-11-16T09:20:00Z"
    assert a.as_dict()["resolved_at"] == "2026-11-16T09:25:00Z"
