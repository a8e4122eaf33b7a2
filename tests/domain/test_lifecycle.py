"""Lifecycle transitions, silences and maintenance windows (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest

from paytriage.domain.lifecycle import (
    Action,
    Maintenance,
    Silence,
    State,
    TransitionError,
    suppressed_by,
    transition,
)
from tests.support.factories import T0

H = timedelta(hours=1)


def test_forward_moves_may_skip_states_but_never_go_back() -> None:
    assert transition(State.open, Action.acknowledge) is State.acknowledged
    assert transition(State.open, Action.resolve) is State.resolved
    assert transition(State.acknowledged, Action.mitigate) is State.mitigated
    with pytest.raises(TransitionError, match="already mitigated"):
        transition(State.mitigated, Action.acknowledge)
    with pytest.raises(TransitionError, match="resolved"):
        transition(State.resolved, Action.acknowledge)


def test_only_a_resolved_incident_reopens() -> None:
    assert transition(State.resolved, Action.reopen) is State.open
    with pytest.raises(TransitionError, match="cannot reopen an incident that is open"):
        transition(State.open, Action.reopen)


def test_a_silence_covers_its_detector_and_slice_until_it_expires() -> None:
    s = Silence("s", "traffic_drop", {"country": "BR"}, "sale", "slack:U1", T0, T0 + H)
    args = ("traffic_drop", {"country": "BR", "psp": "adyen"}, "inc-1")
    assert suppressed_by(*args, T0 + H / 2, silences=[s]) == "silenced by slack:U1: sale"
    assert suppressed_by(*args, T0 + H, silences=[s]) is None  # expired
    assert suppressed_by("decline_spike", {"country": "BR"}, "inc-1", T0, silences=[s]) is None
    assert suppressed_by("traffic_drop", {"country": "DE"}, "inc-1", T0, silences=[s]) is None


def test_a_silence_until_resolved_covers_only_its_incident_while_open() -> None:
    s = Silence("s", None, {}, "known", "slack:U1", T0, incident_id="inc-1")
    assert suppressed_by("decline_spike", {}, "inc-1", T0 + H, silences=[s]) is not None
    assert suppressed_by("decline_spike", {}, "inc-2", T0 + H, silences=[s]) is None
    resolved = ["inc-1"]
    assert suppressed_by("decline_spike", {}, "inc-1", T0 + H, [s], [], resolved) is None


def test_a_weekly_maintenance_window_spans_midnight() -> None:
    m = Maintenance(
        "adyen weekly",
        {"psp": "adyen"},
        weekday="sun",
        start_time=time(23, 0),
        duration=timedelta(hours=2),
    )
    sunday_late = datetime(2026, 11, 22, 23, 30, tzinfo=UTC)
    monday_early = datetime(2026, 11, 23, 0, 59, tzinfo=UTC)
    monday_after = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)
    assert m.active(sunday_late) and m.active(monday_early)
    assert not m.active(monday_after)
    assert not m.active(datetime(2026, 11, 22, 22, 59, tzinfo=UTC))
    why = suppressed_by("decline_spike", {"psp": "adyen"}, "i", monday_early, maintenance=[m])
    assert why == "maintenance window adyen weekly"
    assert suppressed_by("decline_spike", {"psp": "stripe"}, "i", monday_early, [], [m]) is None


def test_a_maintenance_window_must_be_once_or_weekly() -> None:
    with pytest.raises(ValueError, match="either start and end"):
        Maintenance("x", {}, start=T0)
    with pytest.raises(ValueError, match="weekday must be one of"):
        Maintenance("x", {}, weekday="monday", start_time=time(1), duration=H)
    once = Maintenance("x", {}, ("capture_failures",), start=T0, end=T0 + H)
    assert once.active(T0) and not once.active(T0 + H)
    assert not once.covers("decline_spike", {}) and once.covers("capture_failures", {})
