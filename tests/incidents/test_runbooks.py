"""Runbooks: the real ones load, lint clean and match each kind of incident; the linter and
the parser catch what a hand-edited runbook gets wrong."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

import paytriage.detectors.decline_spike as ds
from paytriage.detection.run import DetectorRun
from paytriage.detectors import REGISTRY, traffic_drop
from paytriage.detectors.signals import PRESENT, Frame
from paytriage.domain.evidence import RunbookSection
from paytriage.domain.findings import Finding, Severity
from paytriage.incidents.runbooks import (
    SOURCE_DOWN,
    Runbook,
    RunbookError,
    extract_steps,
    fill_placeholders,
    heading_anchors,
    lint,
    load_runbooks,
    match,
    parse_runbook,
    refers_to_queries,
    resolve_links,
    safe_label_value,
)
from paytriage.lab.simulate import Scenario, SimulationSpec, generate
from tests.support.frames import decline_frame

ROOT = Path(__file__).resolve().parents[2]
RUNBOOKS = ROOT / "runbooks"
DETECTORS = sorted(REGISTRY)
TODAY = date(2026, 11, 25)
M = timedelta(minutes=1)

EXPECTED_IDS = {
    "psp-outage",
    "issuer-decline-spike",
    "payment-method-failure",
    "webhook-backlog",
    "refund-sla",
    "capture-failures",
    "traffic-drop",
    "data-source-down",
    "duplicate-captures-refunds",
}


@pytest.fixture(scope="module")
def real() -> list[Runbook]:
    return load_runbooks(RUNBOOKS)


# --------------------------------------------------------------------------- the real ones


def test_the_real_runbooks_load_with_their_steps(real: list[Runbook]) -> None:
    assert {rb.id for rb in real} == EXPECTED_IDS
    for rb in real:
        assert rb.path == RUNBOOKS / f"{rb.id}.md"
        assert rb.owner and rb.title and rb.last_reviewed <= date.today()
        sections = [h for h, _ in rb.step_sections]
        assert sections == ["First 5 minutes", "Mitigate", "Money follow-ups", "Verify recovery"]
        assert len(rb.steps) >= 10, rb.id
        assert all(len(s) > 20 and not s.startswith(("1.", "- [")) for s in rb.steps)
        assert "## Escalation" in rb.body and "---" not in rb.body.splitlines()[:1]
        assert 60 <= len(rb.path.read_text().splitlines()) <= 150, rb.id


def test_the_real_runbooks_lint_clean_for_the_real_detectors(real: list[Runbook]) -> None:
    reviewed = max(rb.last_reviewed for rb in real)
    assert lint(RUNBOOKS, DETECTORS, today=reviewed) == []
    # later on, only review-age warnings may appear, never errors
    assert [p for p in lint(RUNBOOKS, DETECTORS) if p.severity == "error"] == []
    assert {d for rb in real for d in rb.detectors} == {*REGISTRY, SOURCE_DOWN}


def test_the_real_runbooks_cite_the_reference_telemetry(real: list[Runbook]) -> None:
    by_id = {rb.id: rb.body for rb in real}
    assert 'payment_authorizations_total{outcome="error"}' in by_id["psp-outage"]
    assert "webhook_backlog_oldest_age_seconds" in by_id["webhook-backlog"]
    assert "refunds_pending_over_sla" in by_id["refund-sla"]
    assert "dead-letter queue" in by_id["refund-sla"]
    assert "idempotency key" in by_id["duplicate-captures-refunds"]
    assert "settlement report" in by_id["duplicate-captures-refunds"]
    for body in by_id.values():
        assert "changes-*" in body or "`changes-*`" in body


def _finding(detector: str, dims: dict[str, str], details: dict[str, Any]) -> Finding:
    return Finding(
        detector=detector,
        severity=Severity.error,
        dimensions=dims,
        title="t",
        observed=1.0,
        expected=0.0,
        band=(0.0, 0.5),
        onset=None,
        at=datetime(2026, 11, 16, 9, tzinfo=UTC),
        details=details,
    )


TECHNICAL = {"attempts": 4200.0, "failures": 1900.0, "errors": 1500.0, "cause": "technical"}
ISSUER = {"attempts": 3100.0, "failures": 900.0, "errors": 20.0, "cause": "issuer"}


@pytest.mark.parametrize(
    ("detector", "dims", "details", "expected"),
    [
        ("decline_spike", {"psp": "stripe"}, TECHNICAL, "psp-outage"),
        ("decline_spike", {}, TECHNICAL, "psp-outage"),
        ("decline_spike", {"country": "BR"}, TECHNICAL, "psp-outage"),
        ("decline_spike", {"country": "BR"}, ISSUER, "issuer-decline-spike"),
        ("decline_spike", {"psp": "adyen"}, ISSUER, "issuer-decline-spike"),
        ("decline_spike", {"method": "apple_pay"}, TECHNICAL, "payment-method-failure"),
        ("decline_spike", {"method": "card"}, ISSUER, "payment-method-failure"),
        (
            "webhook_lag",
            {"psp": "adyen"},
            {"lag_p95_seconds": 410.0, "backlog_oldest_age_seconds": 900.0, "reasons": []},
            "webhook-backlog",
        ),
        (
            "refund_sla",
            {"psp": "adyen"},
            {"drain_ratio": 0.1, "pending_over_sla": 40.0, "forecast_breaches_per_hour": 55.0},
            "refund-sla",
        ),
        ("capture_failures", {"psp": "braintree"}, {"failures": 90.0}, "capture-failures"),
        ("traffic_drop", {"country": "GB"}, {"p_value": 1e-9, "ratio": 0.2}, "traffic-drop"),
        (
            "traffic_drop",
            {"psp": "worldpay"},
            {"kind": "data_problem", "max_staleness": "3m"},
            "data-source-down",
        ),
        ("traffic_drop", {"psp": "worldpay", "data": "stale"}, {}, "data-source-down"),
        (SOURCE_DOWN, {"source": "prometheus"}, {}, "data-source-down"),
        (
            "anomaly",
            {"signal": "duplicate-captures", "psp": "stripe"},
            {"z": 9.1},
            "duplicate-captures-refunds",
        ),
    ],
)
def test_each_kind_of_incident_gets_its_runbook(
    real: list[Runbook],
    detector: str,
    dims: dict[str, str],
    details: dict[str, Any],
    expected: str,
) -> None:
    m = match(real, detector, dims, details)
    assert m.runbook is not None and m.runbook.id == expected, m.reason
    assert m.reason.startswith(f"{expected} (applies_to[")
    assert detector in m.reason
    assert m.rule in m.runbook.rules
    for k, v in dims.items():
        if any(k == key for key, _ in m.rule.dimensions):
            assert f"{k}={v}" in m.reason
    # the same answer whatever order the runbooks come in
    assert match(list(reversed(real)), detector, dims, details).runbook == m.runbook


def test_the_reason_names_the_conditions_met(real: list[Runbook]) -> None:
    m = match(real, "decline_spike", {"psp": "stripe"}, TECHNICAL)
    assert m.reason == "psp-outage (applies_to[0]): decline_spike with psp=stripe, cause=technical"
    m = match(real, "capture_failures", {"psp": "adyen"}, {})
    assert m.reason == "capture-failures (applies_to[0]): any capture_failures finding"


def test_no_runbook_says_so(real: list[Runbook]) -> None:
    m = match(real, "fraud_score", {"psp": "stripe", "country": "BR"}, {})
    assert m.runbook is None and m.rule is None
    assert m.reason == "no runbook applies to fraud_score on psp=stripe, country=BR"
    m = match(real, "anomaly", {"signal": "auth-latency-p95"}, {"z": 7.0})
    assert m.runbook is None
    assert m.reason == "no runbook applies to anomaly on signal=auth-latency-p95"
    assert match(real, "fraud_score", {}, {}).reason.endswith("on the whole platform")


def test_a_pinned_runbook_wins_and_a_missing_one_says_so(real: list[Runbook]) -> None:
    m = match(real, "decline_spike", {"psp": "stripe"}, TECHNICAL, pinned="capture-failures")
    assert m.runbook is not None and m.runbook.id == "capture-failures"
    assert "set as the decline_spike detector's runbook" in m.reason
    m = match(real, "decline_spike", {"psp": "stripe"}, TECHNICAL, pinned="gone")
    assert m.runbook is not None and m.runbook.id == "psp-outage"
    assert m.reason.startswith("pinned runbook 'gone' not found; psp-outage")


def _run_decline_spike(scenario: Scenario) -> list[Finding]:
    start = datetime(2026, 11, 16, 6, 0, tzinfo=UTC)
    spec = SimulationSpec(
        start=start, end=start + timedelta(hours=5), seed=21, scenarios=(scenario,), logs=False
    )
    frame = decline_frame(generate(spec))
    run = DetectorRun(ds.Config(), ds.DETECTOR, M)
    found: list[Finding] = []
    for i in range(frame.index(start + timedelta(hours=3)), frame.n):
        found += [e.finding for e in run.step(frame, i) if e.kind == "raised"]
    return found


@pytest.mark.parametrize(
    ("kind", "dims", "expected"),
    [
        ("psp_outage", {"psp": "stripe"}, "psp-outage"),
        ("issuer_decline_spike", {"country": "DE"}, "issuer-decline-spike"),
        ("method_failure", {"method": "apple_pay"}, "payment-method-failure"),
    ],
)
def test_real_decline_spike_findings_get_their_runbook(
    real: list[Runbook], kind: str, dims: dict[str, str], expected: str
) -> None:
    onset = datetime(2026, 11, 16, 10, 0, tzinfo=UTC)
    [f] = _run_decline_spike(Scenario(kind, onset, 30 * M, dims))
    assert f.dimensions == dims
    m = match(real, f.detector, f.dimensions, f.details)
    assert m.runbook is not None and m.runbook.id == expected, m.reason


def test_a_real_traffic_drop_data_problem_gets_the_data_source_runbook(
    real: list[Runbook],
) -> None:
    frame = Frame(datetime(2026, 11, 16, tzinfo=UTC).timestamp(), 60.0, 10, (PRESENT,))
    cfg = traffic_drop.Config()
    key = (("psp", "worldpay"),)
    a = traffic_drop._data_problem(cfg, frame, key, "psp=worldpay", 5, {"age": "q"})
    f = a.finding
    m = match(real, f.detector, f.dimensions, f.details)
    assert m.runbook is not None and m.runbook.id == "data-source-down", m.reason
    m = match(real, f.detector, dict(a.key), f.details)  # the incident key's dimensions
    assert m.runbook is not None and m.runbook.id == "data-source-down"


def test_links_use_the_configured_base_url(real: list[Runbook]) -> None:
    rb = next(r for r in real if r.id == "refund-sla")
    base = "https://git.example.com/org/paytriage/blob/main/runbooks/"
    assert rb.link(base) == base + "refund-sla.md"
    assert rb.link(base.rstrip("/"), anchor="steps") == base + "refund-sla.md#steps"
    assert rb.link(None) == (RUNBOOKS / "refund-sla.md").as_posix()
    assert "steps" in heading_anchors(rb.body)


# --------------------------------------------------------------------------- matching rules

STEPS = "# T\n\n## Steps\n\n1. Do the first thing.\n2. Do the second thing.\n"


def front(**over: Any) -> dict[str, Any]:
    """Valid front matter; each id gets a rule of its own (no two runbooks tie)."""
    rb_id = over.get("id", "x")
    meta: dict[str, Any] = {
        "id": rb_id,
        "title": "A runbook",
        "owner": "payments",
        "last_reviewed": TODAY,
        "applies_to": [{"detectors": ["decline_spike"], "dimensions": {"psp": rb_id}}],
    }
    for k, v in over.items():
        if v is None:
            meta.pop(k, None)
        else:
            meta[k] = v
    return meta


def write(
    directory: Path, name: str, meta: dict[str, Any] | None = None, body: str = STEPS
) -> Path:
    meta = front(id=name) if meta is None else meta
    text = "---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n" + body
    path = directory / f"{name}.md"
    path.write_text(text)
    return path


def book(rb_id: str, *rules: dict[str, Any]) -> Runbook:
    text = "---\n" + yaml.safe_dump(front(id=rb_id, applies_to=list(rules))) + "---\n" + STEPS
    return parse_runbook(Path(f"{rb_id}.md"), text)


def test_the_most_specific_rule_wins_whatever_the_order() -> None:
    generic = book("a-generic", {"detectors": ["decline_spike"]})
    narrow = book(
        "z-narrow",
        {"detectors": ["decline_spike"], "dimensions": ["psp"], "when": {"cause": "technical"}},
    )
    half = book("m-half", {"detectors": ["decline_spike"], "when": {"cause": "technical"}})
    books = [generic, narrow, half]
    for order in (books, books[::-1]):
        assert match(order, "decline_spike", {"psp": "s"}, TECHNICAL).runbook == narrow
        assert match(order, "decline_spike", {"country": "BR"}, TECHNICAL).runbook == half
        assert match(order, "decline_spike", {"psp": "s"}, ISSUER).runbook == generic


def test_ties_go_to_the_rule_with_fewer_detectors_then_the_id() -> None:
    wide = book("a-wide", {"detectors": ["decline_spike", "capture_failures"]})
    only = book("z-only", {"detectors": ["decline_spike"]})
    assert match([wide, only], "decline_spike", {}, {}).runbook == only
    twin = book("b-twin", {"detectors": ["decline_spike"]})
    assert match([only, twin], "decline_spike", {}, {}).runbook == twin
    assert match([twin, only], "decline_spike", {}, {}).runbook == twin


def test_conditions_patterns_lists_ranges_and_missing_details() -> None:
    rb = book(
        "c",
        {
            "detectors": ["anomaly"],
            "dimensions": {"signal": "*duplicate*", "psp": ["stripe", "adyen"]},
        },
        {"detectors": ["webhook_lag"], "when": {"backlog_oldest_age_seconds": {"gt": 600}}},
        {"detectors": ["refund_sla"], "when": {"objective": [0.95, 0.99], "stalled": True}},
        {"detectors": ["traffic_drop"], "when": {"reasons": "oldest delivery*"}},
    )

    def hit(detector: str, dims: dict[str, str], details: dict[str, Any]) -> bool:
        return match([rb], detector, dims, details).runbook is not None

    assert hit("anomaly", {"signal": "duplicate-refunds", "psp": "adyen"}, {})
    assert not hit("anomaly", {"signal": "duplicate-refunds", "psp": "worldpay"}, {})
    assert not hit("anomaly", {"signal": "Duplicate-refunds", "psp": "adyen"}, {})  # case
    assert not hit("anomaly", {"signal": "duplicate-refunds"}, {})  # psp missing
    assert hit("webhook_lag", {}, {"backlog_oldest_age_seconds": 601.0})
    assert not hit("webhook_lag", {}, {"backlog_oldest_age_seconds": 600})
    assert not hit("webhook_lag", {}, {"backlog_oldest_age_seconds": float("nan")})
    assert not hit("webhook_lag", {}, {"backlog_oldest_age_seconds": "900"})
    assert not hit("webhook_lag", {}, {})  # a missing detail never matches
    assert hit("refund_sla", {}, {"objective": 0.99, "stalled": True})
    assert not hit("refund_sla", {}, {"objective": 0.99, "stalled": 1})  # 1 is not True
    assert not hit("refund_sla", {}, {"objective": 0.9, "stalled": True})
    assert hit("traffic_drop", {}, {"reasons": ["P95 lag 90s", "oldest delivery waiting 300s"]})
    assert not hit("traffic_drop", {}, {"reasons": ["P95 lag 90s"]})


# --------------------------------------------------------------------------- steps


def test_steps_are_the_numbered_and_checkbox_items_under_the_steps_heading() -> None:
    body = """# Title

## What this alert means

1. Not a step: outside the steps section.

## Steps

Some intro text.

### First 5 minutes

1. Check the status page.
   It often lags the errors,
   so look at the logs too.

   A second paragraph that is not part of the step.
2) Break errors down by `error_code`:
   ```promql
   # not a heading
   1. not a step either
   ```
   - a nested bullet, not a step
     1. a nested number, not a step

### Mitigate

- [ ] Fail over routing.
- [x] Pause retries.
- a plain bullet is not a step

## Escalation

1. Not a step either.
"""
    assert extract_steps(body) == [
        "Check the status page. It often lags the errors, so look at the logs too.",
        "Break errors down by `error_code`:",
        "Fail over routing.",
        "Pause retries.",
    ]
    rb = parse_runbook(Path("x.md"), "---\n" + yaml.safe_dump(front()) + "---\n" + body)
    assert rb.step_sections == (
        ("First 5 minutes", rb.steps[:2]),
        ("Mitigate", rb.steps[2:]),
    )
    assert extract_steps("# T\n\n## Next steps\n\n1. One.\n") == ["One."]
    assert extract_steps("# T\n\n## Check\n\n1. One.\n") == []


def test_heading_anchors_follow_github() -> None:
    text = "# Stuck refunds / refund SLA\n## First 5 minutes\n## Steps\n## Steps\n```\n# no\n```\n"
    assert heading_anchors(text) == {
        "stuck-refunds--refund-sla",
        "first-5-minutes",
        "steps",
        "steps-1",
    }


# --------------------------------------------------------------------------- parse errors


def test_runbook_error_names_the_file_and_the_key(tmp_path: Path) -> None:
    meta = front(
        id="bad", applies_to=[{"detectors": ["webhook_lag"], "when": {"age": {"over": 5}}}]
    )
    path = write(tmp_path, "bad", meta)
    with pytest.raises(RunbookError) as e:
        load_runbooks(tmp_path)
    assert e.value.path == path and e.value.key == "applies_to[0].when.age"
    assert str(e.value).startswith(f"{path}:")
    assert "applies_to[0].when.age" in str(e.value) and "gt, gte, lt, lte" in str(e.value)
    lines = path.read_text().splitlines()
    assert e.value.line == 1 + next(i for i, t in enumerate(lines) if t.strip().startswith("age:"))


@pytest.mark.parametrize(
    ("meta", "key", "says"),
    [
        (front(owner=None), "owner", "missing"),
        (front(last_reviewed="last week"), "last_reviewed", "YYYY-MM-DD"),
        (front(id="Bad_Id"), "id", "lowercase"),
        (front(applies_to=[]), "applies_to", "non-empty list"),
        (
            front(applies_to=[{"detector": ["decline_spike"]}]),
            "applies_to[0].detector",
            "'detectors'",
        ),
        (front(applies_to=[{"detectors": []}]), "applies_to[0].detectors", "non-empty"),
        (
            front(applies_to=[{"detectors": ["traffic_drop"], "dimensions": {"country": False}}]),
            "applies_to[0].dimensions.country",
            "quote",
        ),
        (front(summary="x"), "summary", "unknown key"),
    ],
)
def test_each_bad_key_is_named(meta: dict[str, Any], key: str, says: str) -> None:
    text = "---\n" + yaml.safe_dump(meta) + "---\n" + STEPS
    with pytest.raises(RunbookError) as e:
        parse_runbook(Path("runbooks/bad.md"), text)
    assert e.value.key == key and says in e.value.problem
    assert str(e.value).startswith("runbooks/bad.md")


def test_norway_unquoted_is_an_error_not_false() -> None:
    text = (
        "---\nid: x\ntitle: T\nowner: o\nlast_reviewed: 2026-11-25\napplies_to:\n"
        "  - detectors: [traffic_drop]\n    dimensions: {country: NO}\n---\n" + STEPS
    )
    with pytest.raises(RunbookError, match=r"applies_to\[0\]\.dimensions\.country"):
        parse_runbook(Path("x.md"), text)


def test_missing_or_broken_front_matter(tmp_path: Path) -> None:
    with pytest.raises(RunbookError) as e:
        parse_runbook(Path("x.md"), "# No front matter\n" + STEPS)
    assert e.value.key == "front matter"
    with pytest.raises(RunbookError) as e:
        parse_runbook(Path("x.md"), "---\nid: [unclosed\n---\n" + STEPS)
    assert e.value.key == "front matter" and "invalid YAML" in e.value.problem
    write(tmp_path, "a")
    write(tmp_path, "b", front(id="a"))
    with pytest.raises(RunbookError, match="duplicate id 'a'") as e:
        load_runbooks(tmp_path)
    assert e.value.path == tmp_path / "b.md"


# --------------------------------------------------------------------------- lint


def lint_tmp(directory: Path, detectors: tuple[str, ...] = ("decline_spike",)) -> list[str]:
    return [
        f"{p.path.name}:{p.line or ''}:{p.severity}:{p.message}"
        for p in lint(directory, detectors, today=TODAY)
    ]


def cover_source_down(directory: Path) -> None:
    write(directory, "down", front(id="down", applies_to=[{"detectors": [SOURCE_DOWN]}]))


def test_a_clean_directory_lints_clean(tmp_path: Path) -> None:
    write(tmp_path, "x")
    cover_source_down(tmp_path)
    (tmp_path / "README.md").write_text("# Runbooks\n\nSee [x](x.md#steps).\n")
    assert lint_tmp(tmp_path) == []


def test_lint_reports_every_front_matter_problem_of_a_file(tmp_path: Path) -> None:
    cover_source_down(tmp_path)
    write(
        tmp_path,
        "x",
        front(
            owner=None,
            last_reviewed="soon",
            applies_to=[{"detectors": ["decline_spike"], "when": {"cause": []}}],
        ),
    )
    (tmp_path / "nofront.md").write_text("# Nothing\n" + STEPS)
    problems = lint_tmp(tmp_path)
    assert "x.md::error:owner: missing" in problems
    assert any(p.startswith("x.md:") and "last_reviewed: must be a date" in p for p in problems)
    assert any("applies_to[0].when.cause" in p for p in problems)
    assert any(p.startswith("nofront.md::error:front matter: missing") for p in problems)
    # the broken runbook does not count as covering decline_spike
    assert "::error:no runbook applies to detector 'decline_spike'" in "\n".join(
        p.removeprefix(tmp_path.name) for p in problems
    )


def test_lint_duplicate_ids_and_unknown_detectors(tmp_path: Path) -> None:
    cover_source_down(tmp_path)
    write(tmp_path, "x")
    write(tmp_path, "y", front(id="x"))
    write(tmp_path, "z", front(id="z", applies_to=[{"detectors": ["decline_spikes"]}]))
    problems = lint_tmp(tmp_path)
    assert any(p.startswith("y.md::error:id: duplicate id 'x'") for p in problems)
    assert any(
        p.startswith("z.md::error:applies_to[0].detectors: unknown detector 'decline_spikes'")
        and "did you mean 'decline_spike'" in p
        for p in problems
    )
    assert "y.md::warning:id: 'x' differs from the file name" in problems


def test_lint_checks_relative_links_and_anchors(tmp_path: Path) -> None:
    cover_source_down(tmp_path)
    write(tmp_path, "other", front(id="other"))
    body = (
        "# T\n\n## What this alert means\n\n"
        "Fine: [other](other.md), [steps](other.md#steps), [here](#what-this-alert-means),\n"
        "[web](https://example.com/x.md), [mail](mailto:a@example.com), `[code](gone.md)`.\n"
        "Broken: [gone](gone.md) and [bad anchor](other.md#nope).\n"
        "Also [self](#nowhere).\n\n"
        "```\n[in a block](gone-too.md)\n```\n\n"
        "[ref]: ../missing/file.yaml\n" + STEPS.removeprefix("# T\n")
    )
    write(tmp_path, "x", body=body)
    (tmp_path / "README.md").write_text("# Runbooks\n\n[x](x.md) [y](y.md)\n")
    lines = (tmp_path / "x.md").read_text().splitlines()

    def line(start: str) -> int:  # 1-based line in the file, front matter included
        return 1 + next(i for i, t in enumerate(lines) if t.startswith(start))

    broken, also, ref = line("Broken:"), line("Also"), line("[ref]")
    assert lint_tmp(tmp_path) == [
        f"x.md:{broken}:error:link 'gone.md': gone.md not found",
        f"x.md:{broken}:error:link 'other.md#nope': no heading #nope in other.md",
        f"x.md:{also}:error:link '#nowhere': no heading #nowhere in x.md",
        f"x.md:{ref}:error:link '../missing/file.yaml': ../missing/file.yaml not found",
        "README.md:3:error:link 'y.md': y.md not found",
    ]


def test_lint_review_dates(tmp_path: Path) -> None:
    cover_source_down(tmp_path)
    write(tmp_path, "x", front(id="x", last_reviewed=TODAY + timedelta(days=1)))
    write(tmp_path, "y", front(id="y", last_reviewed=TODAY - timedelta(days=366)))
    write(tmp_path, "z", front(id="z", last_reviewed=TODAY - timedelta(days=365)))
    problems = [p for p in lint(tmp_path, ["decline_spike"], today=TODAY) if p.path.stem != "down"]
    assert [(p.path.name, p.severity) for p in problems] == [
        ("x.md", "warning"),
        ("y.md", "warning"),
    ]
    assert "in the future" in problems[0].message
    assert "over a year ago" in problems[1].message


def test_lint_a_runbook_without_steps(tmp_path: Path) -> None:
    cover_source_down(tmp_path)
    write(tmp_path, "x", body="# T\n\n## Check\n\n1. Numbered, but not under Steps.\n")
    assert lint_tmp(tmp_path) == [
        "x.md::error:no steps: add numbered or checkbox items under a '## Steps' heading"
    ]


def test_lint_every_detector_and_source_down_needs_a_runbook(tmp_path: Path) -> None:
    write(tmp_path, "x")
    problems = lint_tmp(tmp_path, ("decline_spike", "webhook_lag"))
    assert [p.split(":", 3)[3] for p in problems] == [
        "no runbook applies to detector 'source_down'",
        "no runbook applies to detector 'webhook_lag'",
    ]
    assert all(p.startswith(f"{tmp_path.name}::error:") for p in problems)


def test_lint_warns_when_two_runbooks_tie(tmp_path: Path) -> None:
    cover_source_down(tmp_path)
    rule = {"detectors": ["decline_spike"], "when": {"cause": "issuer"}}
    write(tmp_path, "a", front(id="a", applies_to=[rule]))
    write(tmp_path, "b", front(id="b", applies_to=[{"detectors": ["capture_failures"]}, rule]))
    assert lint_tmp(tmp_path, ("decline_spike", "capture_failures")) == [
        "b.md::warning:applies_to[1] ties with a applies_to[0] for decline_spike: "
        "the runbook id decides which one an incident gets"
    ]


def test_lint_a_missing_directory(tmp_path: Path) -> None:
    [p] = lint(tmp_path / "nope", DETECTORS, today=TODAY)
    assert p.severity == "error" and "not found" in p.message
    assert str(p) == f"{tmp_path / 'nope'}: error: runbooks directory not found"


# --------------------------------------------------------------------------- for an incident

BASE = "https://git.example.com/org/paytriage/blob/main/runbooks"


def test_the_real_runbooks_have_escalation_and_queries(real: list[Runbook]) -> None:
    for rb in real:
        assert len(rb.escalation) >= 3, rb.id
        assert all(len(e) > 20 and not e.startswith("-") for e in rb.escalation)
        assert any(q.code for q in rb.queries), rb.id
        assert all(q.lang in ("promql", "json", "") for q in rb.queries)
        assert all(not q.code.startswith("```") and "```" not in q.code for q in rb.queries)
    psp = next(r for r in real if r.id == "psp-outage")
    [promql, opensearch] = psp.queries
    assert promql.lang == "promql" and promql.text == "" and "# latency P95" in promql.code
    assert opensearch.lang == "json" and opensearch.text.startswith("OpenSearch (")
    assert '"<psp>"' in opensearch.code


def test_for_an_incident_every_step_by_heading_with_the_queries_placed(
    real: list[Runbook],
) -> None:
    rb = next(r for r in real if r.id == "psp-outage")
    section = rb.for_incident({"psp": "stripe"}, base_url=BASE, reason="why")
    assert [(g.heading, len(g.steps), g.queries) for g in section.groups] == [
        ("First 5 minutes", 5, True),
        ("Mitigate", 5, False),
        ("Money follow-ups", 4, False),
        ("Verify recovery", 3, False),
    ]
    assert section.escalation == rb.escalation and section.reason == "why"
    assert section.link == f"{BASE}/psp-outage.md" and section.name == "psp-outage.md"
    # The summary's first steps are shown without the queries: no "below" there.
    assert len(section.steps) == 8 and not any("below" in s for s in section.steps)
    assert "(query in the runbook)" in section.steps[2]
    # Links to other runbooks go where they are published.
    follow = section.groups[2].steps[1]
    assert f"[duplicate captures or refunds]({BASE}/duplicate-captures-refunds.md)" in follow
    # Placeholders filled in with the incident's dimension.
    code = "\n".join(q.code for q in section.queries)
    assert '{"term": {"psp": "stripe"}}' in code and '{psp="stripe"}' in code
    assert "<psp>" not in code and not any(q.notes for q in section.queries)
    # Stored and read back as it is.
    assert RunbookSection.from_json(section.to_json()) == section


def test_later_references_to_the_queries_say_above_and_none_say_in_the_runbook(
    tmp_path: Path,
) -> None:
    steps = (
        "# T\n\n## Steps\n\n### A\n\n1. Look first.\n\n### B\n\n"
        "1. Check the rate (PromQL below).\n\n### C\n\n1. Check again (query below).\n\n"
        "## Escalation\n\n- Call the team (PromQL below).\n\n"
    )
    rb = parse_runbook(
        tmp_path / "x.md",
        "---\n"
        + yaml.safe_dump(front(id="x"))
        + "---\n"
        + steps
        + "## Queries\n\n```promql\nup\n```\n",
    )
    section = rb.for_incident({})
    assert [g.queries for g in section.groups] == [False, True, False]
    assert section.groups[1].steps == ("Check the rate (PromQL below).",)
    assert section.groups[2].steps == ("Check again (query above).",)
    assert section.escalation == ("Call the team (PromQL above).",)
    bare = parse_runbook(
        tmp_path / "y.md", "---\n" + yaml.safe_dump(front(id="y")) + "---\n" + steps
    )
    section = bare.for_incident({})
    assert not bare.queries and not any(g.queries for g in section.groups)
    assert section.groups[1].steps == ("Check the rate (PromQL in the runbook).",)


@pytest.mark.parametrize(
    ("step", "refers"),
    [
        ("Break the errors down (query below).", True),
        ("Look at latency (P95 and P99 PromQL below): rising.", True),
        ("Compare received with processed (PromQL): flat.", True),
        ("Check the OpenSearch errors (OpenSearch query below)", True),
        ("Attempts far below the band (the lower one).", False),
        ("Run `x (PromQL below)` in a shell.", False),
        ("Check PromQL below the fold.", False),
    ],
)
def test_which_steps_refer_to_the_queries(step: str, refers: bool) -> None:
    assert refers_to_queries(step) is refers


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("stripe", True),
        ("checkout.com", True),
        ("apple_pay", True),
        ("BR", True),
        ("eu-west-1:a/b+c", True),
        ("x" * 64, True),
        ("x" * 65, False),
        ("", False),
        ("-lead", False),
        ('stripe"}', False),
        ("a b", False),
        ("a\nb", False),
        ("back\\slash", False),
        ("<psp>", False),
        ("café", False),
        ("a'b", False),
        ("a*b", False),
    ],
)
def test_only_plain_label_values_are_filled_in(value: str, ok: bool) -> None:
    assert safe_label_value(value) is ok
    code, notes = fill_placeholders('up{psp="<psp>"}', {"psp": value}, "promql")
    if ok:
        assert code == f'up{{psp="{value}"}}' and notes == ()
    else:
        assert code == 'up{psp="<psp>"}'
        assert notes == (  # never repeating the value
            "The incident's psp is not a plain label value, so it is not filled in: replace <psp>.",
        )


@pytest.mark.parametrize(
    "value",
    ['stripe"}) or vector(1) #', 'a", "level": {"$ne": null}, "x": "', "a\\", "x\n{", "<!here>"],
)
@pytest.mark.parametrize("key", ["psp", "country", "method"])
def test_a_hostile_dimension_value_never_lands_in_a_real_runbook(
    real: list[Runbook], value: str, key: str
) -> None:
    for rb in real:
        section = rb.for_incident({key: value}, base_url=BASE)
        for q in section.queries:
            assert value not in q.code and value not in q.text
        dump = json.dumps(section.to_json())
        assert json.dumps(value)[1:-1] not in dump, rb.id


def test_placeholders_in_json_lucene_and_inline_code() -> None:
    dims = {"psp": "adyen", "country": "DE"}
    code, notes = fill_placeholders('{"term": {"psp": "<psp>"}}', dims, "json")
    assert code == '{"term": {"psp": "adyen"}}' and notes == ()
    code, notes = fill_placeholders('psp:"<psp>" and country:"<country>"', dims)
    assert code == 'psp:"adyen" and country:"DE"'
    # Unquoted placeholders are for people; missing dimensions are said.
    code, notes = fill_placeholders('detect --at <time> and method:"<method>"', dims)
    assert code == 'detect --at <time> and method:"<method>"'
    assert notes == ("This incident has no method: replace <method> or drop that filter.",)


@pytest.mark.parametrize(
    ("promql", "expected"),
    [
        ('sum(rate(x{country="<country>"}[5m]))', "sum(rate(x[5m]))"),
        ('x{country="<country>", outcome="declined"}', 'x{outcome="declined"}'),
        ('x{outcome="declined", country="<country>"}', 'x{outcome="declined"}'),
        ('x{a="1", country="<country>", b="2"}', 'x{a="1", b="2"}'),
        ('x{country="<country>"} / y{country="<country>"}', "x / y"),
    ],
)
def test_a_promql_matcher_on_a_missing_dimension_is_dropped(promql: str, expected: str) -> None:
    code, notes = fill_placeholders(promql, {"psp": "stripe"}, "promql")
    assert code == expected
    assert notes == ("This incident has no country: the country matcher is left out.",)
    # Not an equality matcher on that label: left, and said.
    code, notes = fill_placeholders('x{region=~"<country>"}', {}, "promql")
    assert code == 'x{region=~"<country>"}' and "replace <country>" in notes[0]


def test_relative_links_resolve_to_the_published_runbooks_or_name_the_file() -> None:
    text = (
        "See [PSP outage](psp-outage.md#mitigate), [here](#steps), [cfg](../config/p.yaml), "
        "[web](https://x.example/a), [evil](javascript:alert(1)) and `[code](gone.md)`."
    )
    assert resolve_links(text, BASE + "/", "refund-sla.md") == (
        f"See [PSP outage]({BASE}/psp-outage.md#mitigate), [here]({BASE}/refund-sla.md#steps), "
        "[cfg](https://git.example.com/org/paytriage/blob/main/config/p.yaml), "
        "[web](https://x.example/a), evil and `[code](gone.md)`."
    )
    assert resolve_links(text, None, "refund-sla.md") == (
        "See PSP outage (`psp-outage.md`), here, cfg, [web](https://x.example/a), evil and "
        "`[code](gone.md)`."
    )


def test_lint_a_step_referring_to_a_query_the_runbook_lacks(tmp_path: Path) -> None:
    cover_source_down(tmp_path)
    body = "# T\n\n## Steps\n\n1. Break it down (PromQL below).\n2. Then fix it.\n"
    write(tmp_path, "x", body=body)
    assert lint_tmp(tmp_path) == [
        "x.md::error:step 1 refers to a query (PromQL below) but the runbook has none: add it "
        "in a code block under a '## Queries' heading"
    ]
    write(tmp_path, "x", body=body + "\n## Queries\n\n```promql\nup\n```\n")
    assert lint_tmp(tmp_path) == []
