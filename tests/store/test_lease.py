"""The scheduler lease and the outbox claims, on SQLite and on the real PostgreSQL: one
leader at a time, take-over after the ttl, release on a clean stop, a leader that cannot
reach the store stops leading by its own clock; a claimed message is not sent twice."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine

from paytriage.domain.notifications import Outgoing
from paytriage.store import Store
from paytriage.store.lease import Lease
from tests.support.factories import T0, open_one

pytestmark = pytest.mark.integration


class Time:
    """One clock for both replicas and the database, moved by the test."""

    def __init__(self) -> None:
        self.t = datetime(2026, 11, 16, 9, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.t

    def monotonic(self) -> float:
        return self.t.timestamp()


def test_one_leader_at_a_time_and_a_follower_takes_over_after_the_ttl(store: Store) -> None:
    ttl = timedelta(seconds=30)
    clock = Time()
    a, b = (
        Lease(store.engine, holder=h, ttl=ttl, monotonic=clock.monotonic, clock=clock.now)
        for h in ("replica-a", "replica-b")
    )
    assert a.hold() and a.valid() and a.epoch == 1
    assert not b.hold() and not b.valid()
    assert a.hold()  # renewing keeps it
    clock.t += ttl * 0.6
    assert a.hold() and not b.hold()  # renewed within the ttl: still a's
    holder, epoch, _ = b.current() or ("", 0, None)
    assert (holder, epoch) == ("replica-a", 1)
    # a dies (no release, like kill -9): b gets it once a's last renewal is ttl old
    clock.t += ttl - timedelta(seconds=1)
    assert a.valid() and not b.hold()  # a second before: still a's
    clock.t += timedelta(seconds=1)
    assert not a.valid()  # a, were it only paused, would know it no longer leads
    assert b.hold() and b.epoch == 2
    assert not a.hold()  # and cannot take it back while b renews


def test_a_clean_stop_hands_over_at_once(store: Store) -> None:
    a = Lease(store.engine, holder="replica-a", ttl=timedelta(minutes=5))
    b = Lease(store.engine, holder="replica-b", ttl=timedelta(minutes=5))
    changes: list[bool] = []
    a.on_change = changes.append
    assert a.hold() and not b.hold()
    a.release()
    assert not a.valid() and changes == [True, False]
    assert b.hold() and b.epoch == 2


def test_many_replicas_racing_for_a_free_lease_one_wins(store: Store) -> None:
    leases = [
        Lease(store.engine, holder=f"replica-{i}", ttl=timedelta(minutes=1)) for i in range(6)
    ]
    won: list[str] = []
    go = threading.Barrier(len(leases))

    def race(lease: Lease) -> None:
        go.wait()
        if lease.hold():
            won.append(lease.holder)

    threads = [threading.Thread(target=race, args=(x,)) for x in leases]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(won) == 1


def test_a_leader_that_loses_the_store_stops_leading_by_its_own_clock(store: Store) -> None:
    clock = [100.0]
    a = Lease(
        store.engine, holder="replica-a", ttl=timedelta(seconds=30), monotonic=lambda: clock[0]
    )
    assert a.hold()
    broken = Lease(
        create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none", pool_pre_ping=False),
        holder="replica-a",
        ttl=timedelta(seconds=30),
        monotonic=lambda: clock[0],
    )
    broken._valid_until, broken._epoch = a._valid_until, a.epoch  # the same replica, cut off
    clock[0] += 20
    assert broken.hold() is not False or broken.valid()  # still within its ttl: still leads
    clock[0] += 11
    assert not broken.hold() and not broken.valid()  # 31 s since the last renewal


def test_a_claimed_message_is_not_sent_by_another_sender(store: Store) -> None:
    iid = open_one(store)
    [msg] = store.due(T0)
    assert store.claim(msg, "replica-a", T0)
    assert not store.claim(msg, "replica-b", T0)  # a has it
    assert store.due(T0 + timedelta(seconds=30)) == []  # not due while claimed
    # a died mid-send: after the claim ttl it is due again, and known to be uncertain
    [again] = store.due(T0 + timedelta(minutes=3))
    assert again.uncertain and again.started_at is not None
    assert store.claim(again, "replica-b", T0 + timedelta(minutes=3))
    store.mark_sent(again.id, T0 + timedelta(minutes=3), {"ts": "1.2"})
    assert not store.claim(again, "replica-c", T0 + timedelta(hours=1))  # sent: never again
    with store.begin() as tx:
        assert tx.enqueue(Outgoing(f"{iid}:x", "slack", "post", {}, iid), T0)
    [fresh] = store.due(T0)
    assert not fresh.uncertain
