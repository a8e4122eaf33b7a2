"""The root message follows the incident: the title keeps what it was paged with, a "Now"
line the latest reading, how bad it got, and that it is recovering (issue 20, finding 2)."""

from __future__ import annotations

import json

from paytriage.notify.slack.render import incident_blocks
from paytriage.store import Store
from tests.support import factories
from tests.support.factories import T0, M, raised
from tests.support.pipeline import pipeline


def reading(minute: int, observed: float) -> factories.Finding:
    return factories.finding(
        "decline_spike",
        at=T0 + minute * M,
        dimensions={"psp": "stripe"},
        title="Technical errors up at psp=stripe: 30 %",
        observed=observed,
        expected=0.05,
        band=(0.0, 0.08),
        unit="ratio",
        details={"cause": "technical"},
    )


def facts(store: Store, key: str) -> str:
    inc = store.incident(key)
    assert inc is not None
    return json.dumps(incident_blocks(inc, T0 + 60 * M)[1], ensure_ascii=False)


def test_the_root_message_says_how_it_is_now_and_how_bad_it_got(store: Store) -> None:
    p = pipeline(store)
    first = reading(0, 0.30)
    [key] = p.step([raised(first)], [first], first.at).ids("opened")
    p.step([], [reading(5, 0.42)], T0 + 5 * M)
    text = facts(store, key)
    assert "*Now:* 42 % (expected 5.0 %)" in text and "recovering" not in text
    p.step([], [reading(20, 0.06)], T0 + 20 * M)
    text = facts(store, key)
    assert "*Now:* 6.0 % (expected 5.0 %) · back within its expected range: recovering" in text
    assert "*Worst:* 42 % at <!date^" in text
    stored = store.incident(key)
    assert stored is not None and stored.title == "Technical errors up at psp=stripe: 30 %"


def test_impact_ended_is_kept_and_shown_apart_from_the_resolution(store: Store) -> None:
    from tests.support.factories import cleared

    p = pipeline(store)
    first = reading(0, 0.30)
    [key] = p.step([raised(first)], [first], first.at).ids("opened")
    back = reading(25, 0.05)
    back = factories.Finding(
        **{**back.__dict__, "details": {**back.details, "recovered_at": T0 + 20 * M}}
    )
    p.step([cleared(back, T0 + 25 * M)], [], T0 + 25 * M)
    stored = store.incident(key)
    assert stored is not None and stored.resolved_at == T0 + 25 * M
    assert stored.impact_ended_at == T0 + 20 * M  # the signal came back before the alert cleared
    text = facts(store, key)
    assert "*Impact ended:* <!date^" in text and "*Resolved:* <!date^" in text
    again = reading(40, 0.3)
    p.step([raised(again)], [again], T0 + 40 * M)  # re-opened: the impact is on again
    reopened = store.incident(key)
    assert reopened is not None and reopened.impact_ended_at is None
    assert "Impact ended" not in facts(store, key)
