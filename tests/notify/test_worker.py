"""The outbox worker over a real SQLite store, with a notifier that records what it is
handed: each receiver drains only its own messages, silences and maintenance windows are
asked again when a message is sent, backoff and ``Retry-After`` are kept, an incident's
messages go in order."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any

from paytriage.domain.findings import Finding, Severity
from paytriage.domain.incidents import Grouper, MemberKey
from paytriage.domain.lifecycle import Maintenance, Silence
from paytriage.domain.notifications import (
    PAGERDUTY,
    Change,
    Channel,
    Receiver,
    change_message,
    page_message,
)
from paytriage.notify.worker import Backoff, OutboxWorker, SendFailure
from paytriage.store import OutboxMessage, Store
from tests.support.factories import T0, Clock, M

SLACK = Channel.slack("#payments-oncall")


@dataclass
class Recording:
    """A notifier that records what it is handed; fails the messages in ``failures``."""

    receiver: Receiver
    failures: dict[str, list[SendFailure]] = field(default_factory=dict)
    sent: list[str] = field(default_factory=list)
    given: list[str] = field(default_factory=list)

    def send(self, msg: OutboxMessage, now: datetime) -> Mapping[str, Any]:
        pending = self.failures.get(msg.key)
        if pending:
            raise pending.pop(0)
        self.sent.append(msg.key)
        return {"ok": True}

    def given_up(self, msg: OutboxMessage, error: str, now: datetime) -> None:
        self.given.append(msg.key)


def incident(store: Store, psp: str = "stripe") -> str:
    """An incident in the store (opened by the grouping, as the pipeline would)."""
    f = Finding(
        "decline_spike", Severity.critical, {"psp": psp}, f"Declines up at {psp}",
        0.3, 0.05, (0.0, 0.08), T0 - 3 * M, T0,
    )  # fmt: skip
    inc = Grouper(15 * M, 2 * 60 * M).raised(f, T0)
    with store.begin() as tx:
        tx.save_incident(inc, T0)
    return inc.id


def enqueue_opened(store: Store, inc_id: str, at: datetime = T0) -> str:
    msg = change_message(
        inc_id, Change.OPENED, SLACK, title="t", severity="critical", state="open", at=at,
        reopened=0,
    )  # fmt: skip
    with store.begin() as tx:
        tx.enqueue(msg, at)
    return msg.key


def worker(store: Store, notifier: Recording, clock: Clock, **kw: Any) -> OutboxWorker:
    return OutboxWorker(store, notifier, Backoff(max_attempts=3), clock=clock, **kw)


def test_a_receiver_drains_only_its_own_messages_whatever_the_others_backlog(
    store: Store,
) -> None:
    """Sixty pages wait (PagerDuty down) before one Slack message: Slack still gets it in
    a drain of fifty, and PagerDuty's worker never sees the Slack message."""
    ids = [incident(store, f"psp{i}") for i in range(61)]
    with store.begin() as tx:
        for inc_id in ids[:60]:
            tx.enqueue(page_message(inc_id, "trigger", reopened=0, at=T0), T0)
    key = enqueue_opened(store, ids[60])
    clock = Clock(T0)
    slack = Recording(Receiver.SLACK)
    report = worker(store, slack, clock).drain(limit=50)
    assert slack.sent == [key] and report.sent == [key]
    pd = Recording(Receiver.PAGERDUTY)
    worker(store, pd, clock).drain(limit=100)
    assert len(pd.sent) == 60 and key not in pd.sent
    assert all(m.channel == str(PAGERDUTY) for m in store.due(T0, limit=100)) is True


def test_a_silence_set_while_a_message_waits_in_backoff_stops_it(store: Store) -> None:
    inc_id = incident(store)
    key = enqueue_opened(store, inc_id)
    clock = Clock(T0)
    slack = Recording(Receiver.SLACK, failures={key: [SendFailure("HTTP 500")]})
    w = worker(store, slack, clock)
    assert w.drain().retried == [key]
    with store.begin() as tx:  # someone silences the PSP while the message waits
        tx.add_silence(Silence("s1", None, {"psp": "stripe"}, "known", "slack:U1", T0, T0 + 60 * M))
    clock.now = T0 + 5 * M
    report = w.drain()
    assert report.suppressed == [key] and report.sent == [] and slack.sent == []
    assert store.due(T0 + 60 * M) == []  # closed, never sent later
    [entry] = [e for e in store.timeline(inc_id) if e.kind == "suppressed"]
    assert entry.text == "incident.opened not sent: silenced by slack:U1: known"


def test_a_maintenance_window_holds_back_pages_but_not_their_resolution(store: Store) -> None:
    inc_id = incident(store)
    with store.begin() as tx:
        tx.enqueue(page_message(inc_id, "trigger", reopened=0, at=T0), T0)
        tx.enqueue(page_message(inc_id, "resolve", reopened=0, at=T0 + M), T0 + M)
    window = Maintenance("stripe upgrade", {"psp": "stripe"}, start=T0 - M, end=T0 + 60 * M)
    pd = Recording(Receiver.PAGERDUTY)
    report = worker(store, pd, Clock(T0 + 2 * M), maintenance=[window]).drain()
    assert [k.split(":")[2] for k in report.suppressed] == ["trigger"]
    assert [k.split(":")[2] for k in pd.sent] == ["resolve"]


def test_a_person_s_escalation_goes_out_under_a_silence(store: Store) -> None:
    inc_id = incident(store)
    with store.begin() as tx:
        tx.add_silence(Silence("s1", None, {}, "noisy", "slack:U1", T0, incident_id=inc_id))
        tx.enqueue(page_message(inc_id, "trigger", reopened=1, by="slack:U2"), T0)
    pd = Recording(Receiver.PAGERDUTY)
    assert worker(store, pd, Clock(T0 + M)).drain().sent == pd.sent != []


def test_backoff_doubles_and_gives_up_after_max_attempts(store: Store) -> None:
    inc_id = incident(store)
    key = enqueue_opened(store, inc_id)
    clock = Clock(T0)
    slack = Recording(Receiver.SLACK, failures={key: [SendFailure("HTTP 500")] * 3})
    w = worker(store, slack, clock)
    waits = []
    for _ in range(2):
        assert w.drain().retried == [key]
        [msg] = [m for m in store.due(T0 + 60 * M) if m.key == key]
        waits.append(msg.next_attempt_at - clock.now)
        clock.now = msg.next_attempt_at
    assert waits == [timedelta(seconds=15), timedelta(seconds=30)]
    report = w.drain()
    assert report.given_up == [key] and slack.given == [key]
    assert store.due(T0 + 60 * M) == []


def test_retry_after_is_kept_and_does_not_count_towards_giving_up(store: Store) -> None:
    inc_id = incident(store)
    key = enqueue_opened(store, inc_id)
    clock = Clock(T0)
    limited = [SendFailure("ratelimited", retry_after=42) for _ in range(5)]
    slack = Recording(Receiver.SLACK, failures={key: limited})
    w = worker(store, slack, clock)
    for _ in range(5):  # more than max_attempts (3)
        assert w.drain().retried == [key]
        [msg] = store.due(T0 + 60 * M)
        assert msg.next_attempt_at - clock.now == timedelta(seconds=42)
        clock.now = msg.next_attempt_at
    assert w.drain().sent == [key]


def test_a_permanent_failure_is_given_up_at_once_and_later_messages_wait(store: Store) -> None:
    inc_id = incident(store)
    first = enqueue_opened(store, inc_id)
    later = change_message(
        inc_id, Change.REFRESHED, SLACK, title="t", severity="critical", state="open",
        at=T0 + M, reopened=0,
    )  # fmt: skip
    with store.begin() as tx:
        tx.enqueue(later, T0 + M)
    clock = Clock(T0 + M)
    slack = Recording(
        Receiver.SLACK,
        failures={
            first: [SendFailure("HTTP 500"), SendFailure("channel_not_found", permanent=True)]
        },
    )
    w = worker(store, slack, clock)
    assert w.drain().retried == [first] and slack.sent == []  # the later one waits its turn
    clock.now += timedelta(seconds=15)
    report = w.drain()
    assert report.given_up == [first] and slack.given == [first]
    assert w.drain().sent == [later.key]


def test_members_are_stored_under_the_one_member_key_format(store: Store) -> None:
    f = Finding(
        "traffic_drop", Severity.error, {"psp": "adyen", "country": "GB"}, "Traffic down",
        10.0, 100.0, (80.0, 120.0), T0, T0, details={"kind": "data_problem"},
    )  # fmt: skip
    inc = Grouper(15 * M, 2 * 60 * M).raised(f, T0)
    with store.begin() as tx:
        stored = tx.save_incident(inc, T0)
    key = MemberKey.of(f)
    assert list(stored.members) == [str(key)] == ["traffic_drop/data|country=GB,psp=adyen"]
    assert list(inc.members) == [key]
    assert MemberKey.detector_of(str(key)) == "traffic_drop" and stored.detectors == [
        "traffic_drop"
    ]


def test_maintenance_windows_and_silences_that_do_not_match_let_messages_through(
    store: Store,
) -> None:
    inc_id = incident(store)
    key = enqueue_opened(store, inc_id)
    nightly = Maintenance(
        "adyen", {"psp": "adyen"}, weekday="mon", start_time=time(8), duration=2 * 60 * M
    )
    with store.begin() as tx:
        tx.add_silence(Silence("s2", None, {"psp": "adyen"}, "x", "slack:U1", T0, T0 + 60 * M))
    slack = Recording(Receiver.SLACK)
    assert worker(store, slack, Clock(T0), maintenance=[nightly]).drain().sent == [key]
