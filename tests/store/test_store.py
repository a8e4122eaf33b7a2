"""The store against a SQLite file and a real PostgreSQL: what is written survives a restart,
notifications are enqueued once, the audit log cannot be rewritten, nothing secret is kept."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from paytriage.domain.incidents import Grouper
from paytriage.domain.lifecycle import Action, Silence, State, TransitionError
from paytriage.domain.notifications import Outgoing
from paytriage.store import Entry, Store, StoreError
from paytriage.store.schema import Base
from paytriage.store.store import finding_from_dict, finding_to_dict
from tests.support.factories import T0, M, open_one
from tests.support.factories import stored_finding as finding

# Half of these run on PostgreSQL (the ``url`` fixture).
pytestmark = pytest.mark.integration

CARD = "4111 1111 1111 1111"


def test_the_migrations_create_exactly_the_models(url: str, store: Store) -> None:
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_an_incident_and_its_findings_survive_a_restart(url: str, store: Store) -> None:
    inc_id = open_one(store)
    store.close()
    again = Store.open(url)  # a new process: migrations are a no-op, the data is there
    stored = again.incident(inc_id)
    assert stored is not None and stored.state is State.open
    assert stored.opened_at == T0 and stored.onset == T0 - 3 * M
    [f] = stored.active_findings()
    assert f == finding()
    assert [e.kind for e in again.timeline(inc_id)] == ["opened"]
    assert [m.key for m in again.due(T0)] == [f"{inc_id}:post"]
    again.close()


def test_lifecycle_actions_are_recorded_with_who_did_them(store: Store) -> None:
    inc_id = open_one(store)
    with store.begin() as tx:
        assert tx.act(inc_id, Action.acknowledge, "slack:U1", T0 + M) is State.acknowledged
    with pytest.raises(TransitionError), store.begin() as tx:
        tx.act(inc_id, Action.acknowledge, "slack:U2", T0 + 2 * M)
    with store.begin() as tx:
        tx.act(inc_id, Action.mitigate, "slack:U1", T0 + 3 * M, note="failed over to adyen")
        tx.act(inc_id, Action.resolve, "slack:U3", T0 + 9 * M)
    stored = store.incident(inc_id)
    assert stored is not None
    assert (stored.state, stored.acknowledged_by) == (State.resolved, "slack:U1")
    assert stored.resolved_at == T0 + 9 * M
    kinds = [(e.kind, e.actor) for e in store.timeline(inc_id)]
    assert kinds == [
        ("opened", "detector:decline_spike"),
        ("acknowledge", "slack:U1"),
        ("mitigate", "slack:U1"),
        ("resolve", "slack:U3"),
    ]  # the refused second acknowledge left nothing behind
    audit = [(a.actor, a.action) for a in store.audit_log(inc_id)]
    assert audit == [("slack:U1", "acknowledge"), ("slack:U1", "mitigate"), ("slack:U3", "resolve")]


def test_a_relapse_reopens_the_stored_incident(store: Store) -> None:
    g = Grouper(timedelta(minutes=10), timedelta(minutes=30))
    f = finding()
    inc = g.raised(f, T0)
    with store.begin() as tx:
        tx.save_incident(inc, T0)
    g.cleared(f, T0 + 20 * M)
    with store.begin() as tx:
        assert tx.save_incident(inc, T0 + 20 * M).state is State.resolved
    again = g.raised(finding(at=T0 + 30 * M), T0 + 30 * M)
    assert again.id == inc.id
    with store.begin() as tx:
        stored = tx.save_incident(again, T0 + 30 * M)
    assert (stored.state, stored.reopened, stored.resolved_at) == (State.open, 1, None)


def test_a_notification_is_enqueued_once_and_sent_once(url: str, store: Store) -> None:
    inc_id = open_one(store)
    with store.begin() as tx:  # the same decision replayed after a restart
        assert not tx.enqueue(Outgoing(f"{inc_id}:post", "slack", "post", {}, inc_id), T0 + M)
    [msg] = store.due(T0 + M)
    store.mark_failed(msg.id, T0 + M, "ratelimited", retry_at=T0 + 3 * M)
    assert store.due(T0 + 2 * M) == []
    [retry] = store.due(T0 + 3 * M)
    assert (retry.id, retry.attempts) == (msg.id, 1)
    store.mark_sent(retry.id, T0 + 3 * M, {"ts": "1700000000.000100"})
    store.close()
    again = Store.open(url)
    assert again.due(T0 + 60 * M) == []
    again.close()


def test_a_notification_given_up_is_not_due_again(store: Store) -> None:
    open_one(store)
    [msg] = store.due(T0)
    store.mark_failed(msg.id, T0, "invalid_auth", retry_at=None)
    assert store.due(T0 + 60 * M) == []


def test_the_audit_log_is_append_only(store: Store) -> None:
    inc_id = open_one(store)
    with store.begin() as tx:
        tx.act(inc_id, Action.acknowledge, "slack:U1", T0 + M)
    for sql in ("UPDATE audit SET actor = 'someone else'", "DELETE FROM audit"):
        with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as conn:
            conn.execute(text(sql))
    assert [a.actor for a in store.audit_log()] == ["slack:U1"]


def test_silences_until_resolved_and_with_expiry(store: Store) -> None:
    inc_id = open_one(store)
    store.add_silence(
        Silence("s1", None, {}, "known, PSP on it", "slack:U1", T0, incident_id=inc_id)
    )
    store.add_silence(
        Silence("s2", "traffic_drop", {"country": "BR"}, "sale", "slack:U2", T0, T0 + 60 * M)
    )
    assert {s.id for s in store.silences(T0 + M)} == {"s1", "s2"}
    assert {s.id for s in store.silences(T0 + 61 * M)} == {"s1"}
    with store.begin() as tx:
        tx.act(inc_id, Action.resolve, "slack:U1", T0 + 70 * M)
    assert store.silences(T0 + 71 * M) == []
    store.end_silence("s2", "slack:U2", T0 + 5 * M)
    assert {s.id for s in store.silences(T0 + 6 * M)} == set()  # s1 ended with its incident
    assert [a.action for a in store.audit_log()][-1] == "unsilence"


def test_nothing_secret_is_stored(url: str, store: Store) -> None:
    title = f"Errors up; sample: card {CARD} for jane.doe@example.com"
    inc_id = open_one(store, title=title)
    with store.begin() as tx:
        tx.timeline(inc_id, Entry(T0, "note", "slack:U1", f"customer paid with {CARD}"))
        tx.enqueue(
            Outgoing("k2", "slack", "thread", {"log": f"pan={CARD.replace(' ', '')}"}, inc_id), T0
        )
        tx.audit("slack:U1", "note", inc_id, T0, {"text": f"Bearer sk_live_{'a' * 24}"})
    dump = []
    with store.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            dump += [str(row) for row in conn.execute(select(table))]
    everything = "\n".join(dump)
    assert "4111" not in everything.replace("****1111", "")
    assert "jane.doe@example.com" not in everything
    assert "sk_live_" not in everything
    assert "stripe" in everything  # the rest is kept


def test_findings_round_trip_through_json() -> None:
    f = finding()
    assert finding_from_dict(finding_to_dict(f)) == f


def test_postmortem_versions_and_review(store: Store) -> None:
    inc_id = open_one(store)
    v1 = store.add_postmortem(inc_id, "# Draft\ncard 4111 1111 1111 1111", "paytriage", T0)
    assert v1.version == 1 and v1.status == "draft" and "4111 1111" not in v1.body
    with pytest.raises(StoreError, match="approved"):
        store.review_postmortem(inc_id, 1, "published", "slack:U1", T0)
    store.review_postmortem(inc_id, 1, "changes_requested", "slack:U9", T0 + M, "add the timeline")
    v2 = store.add_postmortem(inc_id, "# Draft 2", "slack:U1", T0 + 2 * M)
    with pytest.raises(StoreError, match="not the latest"):
        store.review_postmortem(inc_id, 1, "approved", "slack:U9", T0 + 3 * M)
    store.review_postmortem(inc_id, 2, "approved", "slack:U9", T0 + 3 * M)
    with pytest.raises(StoreError, match="approved already"):
        store.review_postmortem(inc_id, 2, "changes_requested", "slack:U9", T0 + 4 * M)
    versions = store.postmortems(inc_id)
    assert [(p.version, p.status, p.reviewed_by) for p in versions] == [
        (1, "changes_requested", "slack:U9"),
        (2, "approved", "slack:U9"),
    ]
    assert versions[0].review_note == "add the timeline" and v2.author == "slack:U1"
    actions = [a.action for a in store.audit_log(inc_id)]
    assert actions[-4:] == [
        "postmortem.version",
        "postmortem.changes_requested",
        "postmortem.version",
        "postmortem.approved",
    ]


def test_incidents_are_numbered_in_order_and_found_by_number_or_key(store: Store) -> None:
    g = Grouper(15 * M, 120 * M)
    ids = []
    for k, psp in enumerate(("stripe", "adyen", "braintree")):
        f = replace(finding(at=T0 + k * 60 * M), dimensions={"psp": psp})
        inc = g.raised(f, T0 + k * 60 * M)  # unrelated slices, apart: three incidents
        with store.begin() as tx:
            ids.append(tx.save_incident(inc, T0 + k * 60 * M).id)
    refs = [store.incident(i).ref for i in ids]  # type: ignore[union-attr]
    assert refs == ["INC-1", "INC-2", "INC-3"]
    for ref, key in zip(refs, ids, strict=True):
        assert store.find(ref.lower()).id == key  # type: ignore[union-attr]
        assert store.find(f" {ref} ").id == key  # type: ignore[union-attr]
        assert store.find(key.upper()).id == key  # type: ignore[union-attr]
    assert store.find("INC-4") is None and store.find("INC-0") is None
    assert store.find("inc-1; DROP TABLE incidents") is None


def test_the_numbering_migration_numbers_existing_incidents_by_opening(url: str) -> None:
    from alembic import command
    from alembic.config import Config as AlembicConfig
    from sqlalchemy import create_engine

    from paytriage.store.store import files

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(files("paytriage.store") / "migrations"))
    engine = create_engine(url)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0003")
        for key, hours in (
            ("inc-00000000000b", 2),
            ("inc-00000000000a", 5),
            ("inc-00000000000c", 1),
        ):
            conn.execute(
                text(
                    "INSERT INTO incidents (id, detector, dimensions, title, severity, state,"
                    " data_problem, opened_at, updated_at, reopened, members, evidence, version)"
                    " VALUES (:id, 'decline_spike', '{}', 't', 'error', 'open', false, :at, :at,"
                    " 0, '{}', '{}', 1)"
                ),
                {"id": key, "at": T0 + hours * 60 * M},
            )
    engine.dispose()
    store = Store.open(url)  # migrates to the head
    try:
        assert [
            store.incident(k).ref
            for k in ("inc-00000000000c", "inc-00000000000b", "inc-00000000000a")
        ] == ["INC-1", "INC-2", "INC-3"]  # type: ignore[union-attr]
    finally:
        store.close()
