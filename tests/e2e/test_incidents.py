"""Simulator scenarios through the whole incident pipeline, on the real Prometheus and
OpenSearch: detectors stepped minute by minute as the live bot would see them, grouping,
evidence (breakdown, impact, log patterns, changes, chart), runbooks, the store and outbox.

For each scenario type: one incident, on the injected slice, whose evidence names the
injected error pattern and the change placed before it, linked to the right runbook; and no
card number, e-mail or token planted in the logs reaches anything the bot stored.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from paytriage.config.models import PrometheusConfig
from paytriage.core.redact import is_card_number
from paytriage.detection.replay import replay_steps
from paytriage.detection.run import runs_for
from paytriage.detectors import DetectorsConfig
from paytriage.incidents.pipeline import IncidentPipeline
from paytriage.sources import PrometheusSource
from paytriage.store import Store, StoredIncident
from tests.conftest import (
    DATA_END,
    DATA_START,
    DAY2_END,
    DAY2_START,
    OUTAGE_START,
    Stack,
)
from tests.support.pipeline import stack_pipeline

pytestmark = pytest.mark.integration
M = timedelta(minutes=1)
DETECTORS = ("decline_spike", "webhook_lag", "refund_sla", "capture_failures", "traffic_drop")

# What each scenario kind must become: detector, runbook, and the log evidence that shows
# the injected cause (an error code that rose, or a message template).
EXPECTED: dict[str, tuple[str, str, str]] = {
    "psp_outage": ("decline_spike", "psp-outage", "code:psp_timeout|psp_5xx"),
    # Issuer declines are outcomes, not errors: the decline reasons in the breakdown show them.
    "issuer_decline_spike": ("decline_spike", "issuer-decline-spike", ""),
    "method_failure": ("decline_spike", "payment-method-failure", "code:wallet_session_invalid"),
    "webhook_backlog": ("webhook_lag", "webhook-backlog", "text:webhook queue for"),
    "refund_stall": ("refund_sla", "refund-sla", "code:refund_stuck"),
    "capture_failures": ("capture_failures", "capture-failures", "code:capture_"),
    "traffic_drop": ("traffic_drop", "traffic-drop", "code:client_script_error"),
    "scrape_gap": ("traffic_drop", "data-source-down", ""),
}


def _t(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


@dataclass
class Run:
    store: Store
    charts: Path


def _play(stack: Stack, pipeline: IncidentPipeline, start: datetime, end: datetime) -> None:
    prom = PrometheusSource(PrometheusConfig(url=stack.prometheus_url))
    dc = DetectorsConfig()
    runs = runs_for([getattr(dc, d) for d in DETECTORS], M)
    for step in replay_steps(prom, runs, start, end, M):
        pipeline.step(step.events, step.active, step.at, step.frames)


@pytest.fixture(scope="module")
def played(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> list[Run]:
    out = []
    for start, end in (
        (DATA_START + timedelta(hours=1), DATA_END),
        (DAY2_START + timedelta(hours=1), DAY2_END),
    ):
        d = tmp_path_factory.mktemp("e2e")
        store = Store.open(f"sqlite:///{d / 'paytriage.db'}")
        _play(stack, stack_pipeline(stack, store, d / "charts"), start, end)
        out.append(Run(store, d / "charts"))
    return out


def _scenarios(stack: Stack) -> list[dict[str, Any]]:
    return [*stack.labels["scenarios"], *stack.day2_labels["scenarios"]]  # type: ignore[misc]


def _changes(stack: Stack) -> list[dict[str, Any]]:
    return [*stack.labels["related_changes"], *stack.day2_labels["related_changes"]]  # type: ignore[misc]


def _incidents(played: list[Run]) -> list[StoredIncident]:
    return [i for r in played for i in r.store.incidents()]


def _for(scenario: dict[str, Any], incidents: list[StoredIncident]) -> list[StoredIncident]:
    start, end = _t(scenario["start"]), _t(scenario["end"])
    detector = EXPECTED[scenario["kind"]][0]
    return [
        i
        for i in incidents
        if all(i.dimensions.get(k) == v for k, v in scenario["dims"].items())
        and detector in {i.detector, *(m.split("|")[0] for m in i.members)}
        and start <= i.opened_at <= end + 10 * M
    ]


def test_every_scenario_kind_is_covered(stack: Stack) -> None:
    assert {s["kind"] for s in _scenarios(stack)} >= set(EXPECTED) - {"flash_sale", "blip"}


def test_one_incident_per_scenario_and_nothing_else(stack: Stack, played: list[Run]) -> None:
    incidents = _incidents(played)
    claimed: set[str] = set()
    for s in _scenarios(stack):
        mine = _for(s, incidents)
        assert len(mine) == 1, (s["kind"], [(i.detector, i.dimensions) for i in mine])
        [inc] = mine
        detector, _, _ = EXPECTED[s["kind"]]
        assert inc.detector == detector, s["kind"]
        assert inc.dimensions == s["dims"], s["kind"]  # the right PSP / country / method
        assert inc.data_problem == (s["kind"] == "scrape_gap")
        claimed.add(inc.id)
    assert {i.id for i in incidents} == claimed  # no false page on top


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_evidence_names_the_injected_cause_and_the_runbook(
    stack: Stack, played: list[Run], kind: str
) -> None:
    [s] = [x for x in _scenarios(stack) if x["kind"] == kind]
    [inc] = _for(s, _incidents(played))
    _, runbook, pattern = EXPECTED[kind]
    assert inc.runbook == runbook
    ev = inc.evidence.to_json()  # as stored
    assert ev["runbook"]["id"] == runbook and ev["runbook"]["link"].endswith(f"{runbook}.md")
    assert ev["runbook"]["steps"], "the runbook's next steps travel with the incident"

    # When it began: the onset is close to the injected start, before detection.
    onset = _t(ev["onset"]["at"])
    if kind != "scrape_gap":
        assert abs(onset - _t(s["start"])) <= 10 * M, (onset, s["start"])
        assert onset <= _t(ev["onset"]["detected_at"])

    logs = ev["logs"]
    assert logs["missing"] is None
    if pattern.startswith("code:"):
        wanted = pattern[5:].split("|")
        codes = [c["code"] for c in logs["error_codes"]]
        assert any(c.startswith(w) for c in codes[:3] for w in wanted), codes
    elif pattern.startswith("text:"):
        templates = [p["template"] for p in logs["patterns"][:3]]
        assert any(pattern[5:] in t for t in templates), templates
    for p in logs["patterns"]:
        assert p["example"], "each pattern shows one (redacted) example line"
    assert all(q["start"] and q["end"] for q in logs["queries"])

    # The change the simulator placed before the scenario is among the closest before it.
    mine = [c for c in _changes(stack) if c["scenario"] == s["id"]]
    before = [c for c in ev["changes"]["items"] if c["minutes_before_onset"] >= 0]
    for change in mine:
        if _t(change["@timestamp"]) <= onset:  # among the closest before onset
            assert change["description"] in [c["description"] for c in before[:3]], before[:3]
        else:  # e.g. a PSP's status page after the errors began: listed, not first
            assert change["description"] in [c["description"] for c in ev["changes"]["items"]]

    if detector_has_ratio(inc.detector):
        b = ev["breakdown"]
        assert b["missing"] == [] and b["failures"] > 0 and b["attempts"] > b["failures"]
        assert b["queries"] and all("increase(" in q["query"] for q in b["queries"])
        assert ev["impact"]["excess"] is not None and ev["impact"]["excess"] > 0
    if kind == "issuer_decline_spike":
        [by_reason] = [d for d in ev["breakdown"]["dimensions"] if d["dimension"] == "reason"]
        assert by_reason["top"][0]["value"] in {
            "do_not_honor",
            "issuer_unavailable",
            "suspected_fraud",
        }
    if kind != "scrape_gap":
        assert ev["chart"]["rendered"] and Path(ev["chart"]["path"]).stat().st_size > 5_000


def detector_has_ratio(detector: str) -> bool:
    return detector in ("decline_spike", "capture_failures")


def test_each_incident_notifies_once_per_change(played: list[Run]) -> None:
    for run in played:
        with run.store.engine.connect() as c:
            rows = c.execute(text("SELECT idempotency_key, kind, incident_id FROM outbox")).all()
        opened = [r for r in rows if r.kind == "incident.opened"]
        ids = {i.id for i in run.store.incidents()}
        assert sorted(r.incident_id for r in opened) == sorted(ids)
        resolved = [r.incident_id for r in rows if r.kind == "incident.resolved"]
        assert len(resolved) == len(set(resolved))
        assert {i.id for i in run.store.incidents() if i.state.value == "resolved"} == set(resolved)


def _everything_stored(run: Run) -> str:
    parts = []
    with run.store.engine.connect() as c:
        for table in ("incidents", "timeline", "outbox", "audit", "silences"):
            for row in c.execute(text(f"SELECT * FROM {table}")):  # noqa: S608 - fixed names
                parts.append(json.dumps([str(v) for v in row]))
    return "\n".join(parts)


def test_no_planted_secret_reaches_the_store(stack: Stack, played: list[Run]) -> None:
    dumps = "\n".join(_everything_stored(r) for r in played)
    assert "[CARD" in dumps or "[EMAIL" in dumps, "the evidence did carry redacted log lines"
    for labels in (stack.labels, stack.day2_labels):
        planted: dict[str, list[str]] = labels["planted_secrets"]  # type: ignore[assignment]
        for kind in ("card_numbers", "emails", "tokens"):
            for secret in planted.get(kind, []):
                assert secret not in dumps, kind
    # Any 13-19 digit number (spaces or dashes allowed) that is a valid card number; the
    # digits of a float's fraction are not one.
    for m in re.finditer(r"(?<![\d.])\d(?:[ -]?\d){12,18}(?![\d])", dumps):
        assert not is_card_number(re.sub(r"\D", "", m.group(0))), m.group(0)


def test_a_restart_picks_up_open_incidents_without_posting_twice(
    stack: Stack, tmp_path: Path
) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'paytriage.db'}")
    cut = OUTAGE_START + 10 * M  # the stripe outage is open
    _play(stack, stack_pipeline(stack, store, tmp_path), OUTAGE_START - timedelta(hours=1), cut)
    [before] = [i for i in store.incidents(open_only=True) if i.dimensions == {"psp": "stripe"}]

    # A new process: new detectors (no memory), a new pipeline restored from the store.
    again = stack_pipeline(stack, store, tmp_path)
    assert before.id in again.restore(cut + M)
    _play(stack, again, cut + M, OUTAGE_START + timedelta(minutes=50))

    stripe = [i for i in store.incidents() if i.dimensions == {"psp": "stripe"}]
    assert [i.id for i in stripe] == [before.id]
    assert stripe[0].state.value == "resolved"
    with store.engine.connect() as c:
        keys = [r[0] for r in c.execute(text("SELECT idempotency_key FROM outbox"))]
    assert keys.count(f"{before.id}:opened") == 1
    assert len([k for k in keys if k.startswith(f"{before.id}:resolved")]) == 1
