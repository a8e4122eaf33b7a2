"""The typed evidence and its one codec: a full evidence survives the round trip, a real
gathered evidence reads back to exactly the JSON the store kept, and old, partial or
malformed rows decode without raising, keeping what they can."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paytriage.config.models import EvidenceConfig
from paytriage.domain.evidence import (
    BreakdownSection,
    ChangeItem,
    ChangesSection,
    ChartSection,
    CodeItem,
    ConcurrentItem,
    DimensionItem,
    Evidence,
    FindingItem,
    ImpactSection,
    LogsSection,
    Onset,
    PatternItem,
    RunbookSection,
    TopValue,
)
from paytriage.domain.findings import Finding, QueryRef, Severity
from paytriage.domain.incidents import Incident, MemberKey
from paytriage.evidence.gather import EvidenceGatherer
from paytriage.evidence.impact import TicketSize
from paytriage.lab.memory import from_simulation
from paytriage.lab.simulate import Scenario, SimulationSpec, generate
from paytriage.store.store import dumps

M = timedelta(minutes=1)
T0 = datetime(2026, 11, 16, 9, 0, tzinfo=UTC)


def stored(ev: Evidence) -> dict[str, Any]:
    """What the store keeps of ``ev`` (its JSON, redacted, through json)."""
    out: dict[str, Any] = json.loads(dumps(ev.to_json()))
    return out


def q(query: str, start: datetime | None = None, end: datetime | None = None) -> QueryRef:
    return QueryRef("prometheus", query, start, end)


def full_evidence() -> Evidence:
    """Every section and field set to something other than its default."""
    window = (T0 - 10 * M, T0)
    return Evidence(
        version=3,
        gathered_at=T0,
        missing=None,
        window=window,
        onset=Onset(T0 - 10 * M, "change point on the detector's signal", T0 - 7 * M),
        findings=(
            FindingItem(
                detector="decline_spike",
                dimensions={"psp": "stripe"},
                title="Technical errors up at psp=stripe",
                observed=0.31,
                expected=0.04,
                band=(0.0, 0.06),
                unit="ratio",
                at=T0 - M,
                onset=T0 - 10 * M,
                queries=(
                    QueryRef("prometheus", "sum(x)", T0 - 6 * M, T0 - M, timedelta(seconds=60)),
                ),
            ),
        ),
        breakdown=BreakdownSection(
            lines=("psp=stripe: 4.1 % → 31 % failures",),
            failures=1820.0,
            attempts=5870.0,
            baseline_rate=0.041,
            baseline="the 1 h before",
            excess=1579.0,
            dimensions=(
                DimensionItem(
                    "country",
                    top=(
                        TopValue(
                            value="BR",
                            text="BR: 3 % → 40 %",
                            rate=0.4,
                            baseline_rate=0.03,
                            failures=900.0,
                            attempts=2250.0,
                            share_of_excess=0.8,
                            significant=True,
                            queries=(q("sum by (country) (x)", *window),),
                        ),
                    ),
                ),
                DimensionItem("merchant", missing="query timed out"),
            ),
            missing=("merchant: query timed out",),
            queries=(q("sum(increase(x[10m]))", *window),),
        ),
        impact=ImpactSection(
            lines=("1,820 payments failed of 5,870 in 10 min.",),
            failed=1820.0,
            attempts=5870.0,
            excess=1579.0,
            per_minute=157.9,
            amount_so_far=71844.5,
            amount_per_minute=7184.45,
            currency="EUR",
            window_seconds=600.0,
            queries=(q("sum(increase(x[10m]))", *window),),
        ),
        logs=LogsSection(
            patterns=(
                PatternItem(
                    template="authorization failed: timeout calling <*>",
                    error_code="psp_timeout",
                    count_now=812,
                    count_before=3,
                    new=True,
                    example="authorization failed: timeout calling stripe",
                    sampled=True,
                ),
            ),
            error_codes=(CodeItem("psp_timeout", 812, 3),),
            window=window,
            before=(T0 - 20 * M, T0 - 10 * M),
            total_now=900,
            total_before=40,
            ignored_dimensions=("merchant",),
            missing="the window before could not be read",
            queries=(QueryRef("opensearch", '{"op": "search"}', *window),),
        ),
        changes=ChangesSection(
            items=(
                ChangeItem(
                    at=T0 - 22 * M,
                    service="payments-api",
                    kind="deploy",
                    version="4.2.0",
                    author="j.doe",
                    description="bump stripe-sdk to 12.1",
                    minutes_before_onset=12.0,
                    mentions=("stripe",),
                ),
            ),
            total=7,
            onset=T0 - 10 * M,
            missing="PSP status pages not indexed",
            queries=(QueryRef("opensearch", '{"op": "changes"}', T0 - 70 * M, T0),),
        ),
        concurrent=(
            ConcurrentItem("traffic_drop", {"country": "BR"}, "Traffic down in BR", T0, True),
        ),
        chart=ChartSection(True, path="/var/lib/paytriage/charts/inc-1-3.png"),
        runbook=RunbookSection(
            id="psp-outage",
            title="PSP outage",
            link="https://runbooks.example/psp-outage.md",
            owner="payments-platform",
            reason="applies to decline_spike",
            steps=("Check the PSP status page", "Fail over"),
        ),
    )


def test_a_full_evidence_survives_the_round_trip() -> None:
    ev = full_evidence()
    assert Evidence.from_json(stored(ev)) == ev
    assert stored(Evidence.from_json(stored(ev))) == stored(ev)


def test_the_stored_shape_is_the_one_every_reader_knew() -> None:
    """Key names, lists for tuples, ISO times with a Z, step_seconds only when known."""
    d = stored(full_evidence())
    assert d["window"] == ["2026-11-16T08:50:00Z", "2026-11-16T09:00:00Z"]
    assert d["findings"][0]["queries"] == [
        {
            "source": "prometheus",
            "query": "sum(x)",
            "start": "2026-11-16T08:54:00Z",
            "end": "2026-11-16T08:59:00Z",
            "step_seconds": 60.0,
        }
    ]
    assert d["findings"][0]["band"] == [0.0, 0.06]
    assert d["breakdown"]["dimensions"][1] == {
        "dimension": "merchant",
        "missing": "query timed out",
        "top": [],
        "standing_out": 0,
        "values": 0,
        "alike": False,
    }
    assert d["logs"]["before"] == ["2026-11-16T08:40:00Z", "2026-11-16T08:50:00Z"]
    assert d["changes"]["items"][0]["mentions"] == ["stripe"]
    assert d["chart"] == {"rendered": True, "path": "/var/lib/paytriage/charts/inc-1-3.png"}
    assert d["version"] == 3 and "missing" not in d


@pytest.fixture(scope="module")
def gathered() -> Evidence:
    """A real gathering on the simulated platform: a stripe outage, a concurrent finding
    elsewhere, completed as the pipeline completes it (version, chart file, runbook)."""
    end = datetime(2026, 11, 16, 12, tzinfo=UTC)
    outage = end - 40 * M
    spec = SimulationSpec(
        start=end - timedelta(hours=3),
        end=end,
        seed=7,
        scenarios=(Scenario("psp_outage", outage, 25 * M, {"psp": "stripe"}),),
    )
    metrics, logs = from_simulation(generate(spec))
    at = outage + 15 * M
    f = Finding(
        "decline_spike",
        Severity.critical,
        {"psp": "stripe"},
        "Technical errors up at psp=stripe",
        0.3,
        0.05,
        (0.0, 0.08),
        outage + M,
        at,
        "ratio",
        (q("sum(x)", at - 5 * M, at),),
        {"cause": "technical"},
    )
    other = replace(f, detector="traffic_drop", dimensions={"country": "DE"}, title="Down in DE")
    inc = Incident(
        "inc-1", f.detector, f.dimensions, f.title, f.severity, at - 5 * M, f.onset, False
    )
    inc.members[MemberKey.of(f)] = inc.active[MemberKey.of(f)] = f
    gatherer = EvidenceGatherer(metrics, logs, EvidenceConfig(), ticket=TicketSize(45.5, "EUR"))
    ev = gatherer.gather(inc, at, active=[f, other]).evidence
    return replace(
        ev,
        version=2,
        chart=ChartSection(True, path="/charts/inc-1-2.png"),
        runbook=RunbookSection(
            "psp-outage", "PSP outage", "/runbooks/psp-outage.md", "pay", "applies", ("Check",)
        ),
    )


def test_a_real_gathered_evidence_reads_back_to_what_the_store_kept(gathered: Evidence) -> None:
    ev = gathered
    # it is the whole thing: every section, with data in each
    assert ev.breakdown is not None and ev.breakdown.dimensions and ev.impact is not None
    assert ev.logs is not None and ev.logs.patterns and ev.logs.error_codes
    assert ev.changes is not None and ev.changes.items and ev.concurrent
    raw = stored(ev)
    decoded = Evidence.from_json(raw)
    assert decoded.to_json() == raw
    assert decoded == ev  # nothing lost or changed on the way through the store
    order = "gathered_at window onset findings breakdown impact logs changes concurrent chart"
    assert list(ev.to_json()) == [*order.split(), "version", "runbook"]  # as always written


def test_what_the_pipeline_stores_when_gathering_failed_or_found_no_source() -> None:
    nothing: dict[str, Any] = {}
    failed = {
        "version": 2,
        "gathered_at": "2026-11-16T09:00:00Z",
        "missing": "failed: boom",
        "runbook": {"id": None, "reason": "no runbook applies to webhook_lag"},
    }
    no_logs = {
        "gathered_at": "2026-11-16T09:00:00Z",
        "window": ["2026-11-16T08:50:00Z", "2026-11-16T09:00:00Z"],
        "findings": [],
        "logs": {"missing": "no log source configured"},
        "changes": {"missing": "no log source configured"},
        "concurrent": [],
        "chart": {"rendered": False, "missing": "no chart for this detector's signal"},
    }
    for raw in (nothing, failed, no_logs):
        assert Evidence.from_json(raw).to_json() == raw
    assert Evidence.from_json(nothing) == Evidence() and Evidence().empty
    ev = Evidence.from_json(failed)
    assert not ev.empty and ev.missing == "failed: boom" and ev.version == 2
    assert ev.gathered_at == T0
    assert ev.runbook == RunbookSection(None, reason="no runbook applies to webhook_lag")
    assert ev.logs is None and ev.breakdown is None and ev.findings == ()
    unavailable = Evidence.from_json(no_logs)
    assert unavailable.logs == LogsSection(missing="no log source configured")
    assert unavailable.changes == ChangesSection(missing="no log source configured")


def test_an_old_row_reads_with_defaults_for_what_it_lacks() -> None:
    """Rows written before a field existed (``mentions``, ``sampled``, ``step_seconds``...)
    and hand-written partial ones read with the defaults."""
    old = {
        "gathered_at": "2026-11-16T09:00:00Z",
        "impact": {"lines": ["1,234 payments failed of 4,000 in 10 min."]},
        "logs": {"patterns": [{"template": "card declined <*>", "count_now": 812}]},
        "changes": {"items": [{"kind": "deploy", "service": "api", "minutes_before_onset": 4}]},
        "runbook": {"id": "psp-outage", "title": "PSP outage", "steps": ["Check"]},
        "extra": {"from": "a later version"},
    }
    ev = Evidence.from_json(old)
    assert ev.impact == ImpactSection(lines=("1,234 payments failed of 4,000 in 10 min.",))
    assert ev.logs is not None and ev.logs.window is None
    assert ev.logs.patterns == (PatternItem("card declined <*>", count_now=812),)
    assert ev.changes is not None
    assert ev.changes.items == (
        ChangeItem(None, service="api", kind="deploy", minutes_before_onset=4.0),
    )
    assert ev.changes.items[0].when == "4 min before onset"
    assert ChangeItem(None, minutes_before_onset=-2.5).when == "2.5 min after onset"
    assert ChangeItem(None).when == "near onset"
    assert ev.runbook == RunbookSection("psp-outage", "PSP outage", steps=("Check",))
    assert ev.window is None and ev.findings == () and ev.version == 0


def test_a_malformed_row_keeps_what_it_can_and_never_raises() -> None:
    raw = {
        "version": "3",
        "gathered_at": "yesterday",
        "window": ["2026-11-16T08:50:00Z"],
        "onset": {"at": 12, "how": None, "detected_at": "2026-11-16T08:53:00+01:00"},
        "findings": "none",
        "breakdown": [1, 2],
        "impact": {"lines": "abc", "failed": "12", "attempts": True, "excess": 10**400},
        "logs": {"patterns": [1, {"template": 3, "count_now": 2.0}], "window": [None, None]},
        "changes": None,
        "concurrent": [None, {"detector": "traffic_drop", "dimensions": {"country": 1}}],
        "chart": {"rendered": "yes", "path": 3},
        "runbook": {"id": "r", "steps": [1, "step"]},
    }
    ev = Evidence.from_json(raw)
    assert ev.version == 0 and ev.gathered_at is None and ev.window is None
    assert ev.onset == Onset(None, "", datetime(2026, 11, 16, 7, 53, tzinfo=UTC))
    assert ev.findings == () and ev.breakdown is None and ev.changes is None
    assert ev.impact == ImpactSection()
    assert ev.logs == LogsSection(patterns=(PatternItem("", count_now=2),))
    assert ev.concurrent == (ConcurrentItem("traffic_drop", {}),)
    assert ev.chart == ChartSection(False)
    assert ev.runbook == RunbookSection("r", steps=("step",))
    not_a_row: object
    for not_a_row in (None, [], "x", 3):
        assert Evidence.from_json(not_a_row) == Evidence()


KEYS = [
    *Evidence.__dataclass_fields__,
    *BreakdownSection.__dataclass_fields__,
    *TopValue.__dataclass_fields__,
    *LogsSection.__dataclass_fields__,
    *PatternItem.__dataclass_fields__,
    *ChangeItem.__dataclass_fields__,
    *RunbookSection.__dataclass_fields__,
    "top",
    "items",
    "start",
    "end",
    "query",
    "step_seconds",
]
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(min_value=-1e9, max_value=1e9)  # (a step of centuries loses microseconds)
    | st.sampled_from([math.nan, math.inf, -math.inf])
    | st.text(max_size=8)
    | st.sampled_from(["2026-11-16T09:00:00Z", "2026-11-16T09:00:00", "0001-01-01T00:00:00+01:00"])
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=4), inner, max_size=6)
    ),
    max_leaves=40,
)


@given(json_values)
def test_any_json_decodes_and_encodes_without_raising(raw: object) -> None:
    ev = Evidence.from_json(raw)
    once = ev.to_json()
    json.dumps(once, allow_nan=False)  # plain JSON: no NaN, no datetime
    assert Evidence.from_json(once) == ev  # decoding is where anything is dropped, once
