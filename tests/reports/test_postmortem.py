"""Postmortem drafts: the figures come from the stored evidence and timeline (each citing its
query and window), missing evidence reads as unknown, data cannot inject Markdown or leak
secrets, and templates run in a sandbox whose errors name the template and line.

The evidence is built with the same section functions ``EvidenceGatherer`` uses, and the
incident goes through a real SQLite store, so the draft reads what the bot really keeps."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from markdown_it import MarkdownIt
from markdown_it.token import Token

from paytriage.core.types import iso
from paytriage.domain.evidence import Evidence
from paytriage.domain.findings import Finding, QueryRef, Severity
from paytriage.domain.incidents import Incident, MemberKey
from paytriage.domain.lifecycle import Action
from paytriage.evidence.breakdown import EARLIER, Breakdown, Contribution, DimensionBreakdown
from paytriage.evidence.changes import Change, ChangeEvidence
from paytriage.evidence.gather import (
    breakdown_section,
    changes_section,
    finding_section,
    impact_section,
    logs_section,
)
from paytriage.evidence.impact import TicketSize, estimate_impact
from paytriage.evidence.logs import CodeCount, LogEvidence, LogPattern
from paytriage.reports.postmortem import (
    PostmortemError,
    PostmortemFacts,
    escape_markdown,
    fenced,
    postmortem_facts,
    render_postmortem,
    table_cell,
)
from paytriage.store import Entry, Store, StoredIncident
from paytriage.store.store import AuditEntry
from tests.support.factories import T0, M

ONSET = T0 - 3 * M
WINDOW = (ONSET, T0 + 10 * M)  # the evidence window (last gathered at T0 + 10 min)
NOW = T0 + 2 * 60 * M

SIGNAL = 'sum(rate(payment_authorizations_total{outcome=~"declined|error",psp="stripe"}[1m]))'
FAILURES = (
    'sum by () (increase(payment_authorizations_total{outcome=~"declined|error",psp="stripe"}'
    "[13m]))"
)
ATTEMPTS = 'sum by () (increase(payment_authorizations_total{psp="stripe"}[13m]))'
BY_COUNTRY = (
    'sum by (country) (increase(payment_authorizations_total{outcome=~"declined|error",'
    'psp="stripe"}[13m]))'
)
LOGS_QUERY = '{"filters":{"level":["ERROR","WARN"],"psp":"stripe"},"index":"payments-logs-*"}'
CHANGES_QUERY = '{"filters":{"kind":["deploy","config"]},"index":"changes-*","op":"search"}'

CARD = "4111 1111 1111 1111"
TOKEN = "xoxb-1-abc"
EMAIL = "jane.doe@example.com"


# -- the incident ------------------------------------------------------------------------------


def prom(query: str, start: datetime = WINDOW[0], end: datetime = WINDOW[1]) -> QueryRef:
    return QueryRef("prometheus", query, start, end)


def contribution(
    dimension: str, value: str, failures: float, attempts: float, share: float, significant: bool
) -> Contribution:
    return Contribution(
        dimension=dimension,
        value=value,
        failures=failures,
        attempts=attempts,
        rate=failures / attempts,
        baseline_failures=attempts * 0.04,
        baseline_attempts=attempts,
        baseline_rate=0.04,
        baseline_kind=EARLIER,
        baseline_pooled=False,
        excess=failures - attempts * 0.04,
        share=share,
        p_value=1e-9 if significant else 0.3,
        significant=significant,
        queries=(prom(BY_COUNTRY if dimension == "country" else FAILURES),),
        specific=significant,  # as breakdown.contributions marks a value far above the rest
    )


def breakdown() -> Breakdown:
    return Breakdown(
        dimensions={"psp": "stripe"},
        start=WINDOW[0],
        end=WINDOW[1],
        failures=1820.0,
        attempts=5870.0,
        baseline_rate=0.041,
        baseline_kind=EARLIER,
        excess=1820.0 - 5870.0 * 0.041,
        breakdowns=(
            DimensionBreakdown(
                "country",
                (
                    contribution("country", "BR", 1300.0, 2000.0, 0.8, True),
                    contribution("country", "MX", 80.0, 1000.0, 0.03, False),
                ),
            ),
            DimensionBreakdown("method", (contribution("method", "card", 900, 3000, 0.4, False),)),
            DimensionBreakdown("reason", missing="prometheus timeout"),
        ),
        queries=(prom(FAILURES), prom(ATTEMPTS)),
    )


def logs(template: str = "authorization failed: timeout calling <*> /payments") -> LogEvidence:
    q = QueryRef("opensearch", LOGS_QUERY, *WINDOW)
    return LogEvidence(
        start=WINDOW[0],
        end=WINDOW[1],
        before_start=WINDOW[0] - 13 * M,
        before_end=WINDOW[0],
        index="payments-logs-*",
        filters={"psp": "stripe"},
        patterns=(
            LogPattern(template, "psp_timeout", 812, 3, 270.0, "timeout after 9000ms", 1.0, True),
        ),
        error_codes=(CodeCount("psp_timeout", 812, 3, 270.0, 1.0, True),),
        queries=(q,),
    )


def changes(description: str = "bump stripe-sdk to 12.1") -> ChangeEvidence:
    q = QueryRef("opensearch", CHANGES_QUERY, ONSET - 60 * M, ONSET + 10 * M)

    def change(minutes_before: float, service: str, desc: str) -> Change:
        at = ONSET - minutes_before * M
        return Change(at, service, "deploy", "v1.2.3", "alice", desc, minutes_before * 60, q)

    return ChangeEvidence(
        onset=ONSET,
        start=ONSET - 60 * M,
        end=ONSET + 10 * M,
        index="changes-*",
        kinds=("deploy", "config"),
        # ranked by gather_changes: after-onset changes last
        changes=(change(12, "payments-api", description), change(-4, "checkout-web", "css")),
        total=2,
        query=q,
    )


def lead(cause: str = "technical", detector: str = "decline_spike") -> Finding:
    return Finding(
        detector=detector,
        severity=Severity.error,
        dimensions={"psp": "stripe"},
        title="Authorization failures on stripe",
        observed=0.31,
        expected=0.041,
        band=(0.0, 0.06),
        onset=ONSET,
        at=T0,
        unit="ratio",
        queries=(prom(SIGNAL, T0 - 30 * M, T0),),
        details={"cause": cause},
    )


TICKET = TicketSize(45.5, "EUR")


def evidence(ticket: TicketSize | None = TICKET) -> dict[str, Any]:
    b = breakdown()
    return {
        "gathered_at": iso(WINDOW[1]),
        "window": [iso(WINDOW[0]), iso(WINDOW[1])],
        "onset": {
            "at": iso(ONSET),
            "how": "change point on the detector's signal",
            "detected_at": iso(T0),
        },
        "findings": [finding_section(lead()).to_json()],
        "breakdown": breakdown_section(b).to_json(),
        "impact": impact_section(
            estimate_impact(
                b.failures,
                b.attempts,
                b.baseline_rate,
                WINDOW[1] - WINDOW[0],
                ticket,
                queries=b.queries,
            )
        ).to_json(),
        "logs": logs_section(logs()).to_json(),
        "changes": changes_section(changes()).to_json(),
        "concurrent": [],
        "chart": {"rendered": True, "path": "/var/lib/paytriage/charts/inc-1.png"},
        "runbook": {
            "id": "psp-outage",
            "title": "PSP outage",
            "link": "https://runbooks.example/psp-outage.md",
            "steps": ["Check the PSP status page"],
            "reason": "applies to decline_spike",
        },
    }


def stored_incident(
    tmp_path: Path, ev: dict[str, Any] | None = None, finding: Finding | None = None
) -> tuple[StoredIncident, list[Entry], list[AuditEntry]]:
    """An incident opened at T0 (onset 3 min before), acknowledged at +5 min, mitigated at
    +20 and resolved at +45 by people, through the real store."""
    f = finding or lead()
    inc = Incident(
        id="inc-3f9a1c2b7d4e",
        detector=f.detector,
        dimensions=dict(f.dimensions),
        title=f.title,
        severity=Severity.error,
        opened_at=T0,
        onset=ONSET,
        data_problem=False,
        active={MemberKey.of(f): f},
        members={MemberKey.of(f): f},
    )
    store = Store.open(f"sqlite:///{tmp_path / 'pm.db'}")
    try:
        with store.begin() as tx:
            tx.save_incident(inc, T0)
            tx.set_evidence(inc.id, Evidence.from_json(evidence() if ev is None else ev))
            tx.timeline(inc.id, Entry(T0, "opened", "paytriage", f"opened: {f.title}"))
        for action, actor, minutes in (
            (Action.acknowledge, "slack:U0ONCALL01", 5),
            (Action.mitigate, "slack:U0LEAD0002", 20),
            (Action.resolve, "slack:U0ONCALL01", 45),
        ):
            with store.begin() as tx:
                tx.act(inc.id, action, actor, T0 + minutes * M, "failover to adyen")
        stored = store.incident(inc.id)
        assert stored is not None
        return stored, store.timeline(inc.id), store.audit_log(inc.id)
    finally:
        store.close()


@pytest.fixture
def incident(tmp_path: Path) -> tuple[StoredIncident, list[Entry], list[AuditEntry]]:
    return stored_incident(tmp_path)


# -- reading the draft ---------------------------------------------------------------------------


def section(text: str, title: str) -> str:
    """The body of ``## title`` (up to the next ``## ``)."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"no section {title!r}"
    return match.group(1)


def appendix_entry(text: str, ref: str) -> str:
    match = re.search(rf"^### {ref}\n(.*?)(?=^### |\Z)", text, re.M | re.S)
    assert match, f"no appendix entry {ref}"
    return match.group(1)


def refs(line: str) -> list[str]:
    match = re.search(r"\[(E\d+(?:, E\d+)*)\]$", line.strip())
    return match.group(1).split(", ") if match else []


def parse(text: str) -> list[Token]:
    """Tokens of the draft as a GFM-like renderer reads it (tables on, raw HTML allowed)."""
    return MarkdownIt("commonmark").enable("table").parse(text)


def inline_tokens(tokens: list[Token]) -> list[Token]:
    return [c for t in tokens if t.type == "inline" for c in (t.children or [])]


def shown(text: str) -> str:
    """The text a reader sees (escapes resolved), one line per block."""
    return "\n".join(
        "".join(c.content for c in (t.children or []) if c.type in ("text", "code_inline"))
        for t in parse(text)
        if t.type == "inline"
    )


# -- figures ------------------------------------------------------------------------------------


def test_figures_match_the_evidence_and_the_store(incident: Any) -> None:
    stored, timeline, audit = incident
    facts = postmortem_facts(stored, timeline, audit, NOW)
    assert (facts.onset, facts.opened_at) == (ONSET, T0)
    assert facts.time_to_detect == 3 * M  # opened_at - onset
    assert facts.time_to_acknowledge == 5 * M  # first acknowledgement - detection
    assert facts.time_to_mitigate == 23 * M  # from the onset
    assert facts.time_to_resolve == facts.duration == 48 * M
    assert (facts.acknowledged_by, facts.mitigated_by) == ("slack:U0ONCALL01", "slack:U0LEAD0002")
    assert facts.resolved_by == "slack:U0ONCALL01"
    by_bot = postmortem_facts(stored, timeline, [a for a in audit if a.action != "resolve"], NOW)
    assert by_bot.resolved_by == "paytriage"  # no person resolved it: every finding cleared
    assert facts.failed == 1820 and facts.attempts == 5870
    assert facts.excess == pytest.approx(1820 - 5870 * 0.041)
    assert facts.amount_at_risk == pytest.approx((1820 - 5870 * 0.041) * 45.5)
    assert facts.currency == "EUR"
    assert facts.psps == ("stripe",) and facts.countries == ("BR",)  # MX not significant
    assert facts.methods == () and facts.merchants == ()
    assert facts.people == ("slack:U0ONCALL01", "slack:U0LEAD0002")

    text = shown(render_postmortem(stored, timeline, audit, NOW))
    assert "Failed payments: 1,820 of 5,870 attempts in 13 min" in text
    assert "Failed above the usual level: 1,579 (baseline: the same 13 min a week earlier)" in text
    assert "Amount at risk: about 71,860 EUR" in text
    assert "Time to detect (onset → detected): 3 min" in text
    assert (
        "Time to acknowledge (detected → first acknowledgement): 5 min (by slack:U0ONCALL01)"
        in text
    )
    assert "Time to mitigate (onset → mitigated): 23 min" in text
    assert "Countries affected: BR (significant in the breakdown by country)" in text
    assert "PSPs affected: stripe (the incident's slice)" in text
    assert "Merchants affected: unknown (no merchant breakdown in the evidence)" in text
    # the evidence was last gathered long before the resolution: the counts are lower bounds
    assert "so they are lower bounds" in text


def test_time_to_acknowledge_counts_the_first_acknowledgement_after_a_relapse(
    incident: Any,
) -> None:
    stored, timeline, audit = incident
    relapsed = replace(stored, acknowledged_at=None, acknowledged_by=None)  # reset on re-open
    late = AuditEntry(T0 + 90 * M, "slack:U0OTHER003", "acknowledge", stored.id, True, {})
    denied = AuditEntry(T0 + M, "slack:U0INTRUDER", "acknowledge", stored.id, False, {})
    facts = postmortem_facts(relapsed, timeline, [denied, *audit, late], NOW)
    assert facts.time_to_acknowledge == 5 * M and facts.acknowledged_by == "slack:U0ONCALL01"


def test_every_number_in_impact_and_detection_cites_its_query_in_the_appendix(
    incident: Any,
) -> None:
    stored, timeline, audit = incident
    text = render_postmortem(stored, timeline, audit, NOW)
    checked = 0
    for title in ("Impact", "Detection"):
        for line in section(text, title).splitlines():
            if not line.startswith("- ") or "People involved" in line:
                continue  # (people's ids are not figures)
            if not re.search(r"\d", line):
                continue
            cited = refs(line)
            assert cited, f"uncited figure: {line}"
            for ref in cited:
                entry = appendix_entry(text, ref)
                assert "```" in entry or "Incident store record" in entry, entry
            checked += 1
    assert checked >= 9

    failed_line = next(x for x in section(text, "Impact").splitlines() if "Failed payments" in x)
    entry = appendix_entry(text, refs(failed_line)[0])
    fences = {t.content.strip() for t in parse(entry) if t.type == "fence"}
    assert fences == {FAILURES, ATTEMPTS}
    assert "2026-11-16 08:57 UTC → 2026-11-16 09:10 UTC (13 min)" in entry

    onset_line = next(x for x in section(text, "Detection").splitlines() if "Onset" in x)
    assert SIGNAL in appendix_entry(text, refs(onset_line)[0])  # the signal the onset is read on

    facts = postmortem_facts(stored, timeline, audit, NOW)
    failed = [c for c in facts.citations if c.label == "Failed payments"]
    assert {(c.source, c.query, c.start, c.end) for c in failed} == {
        ("prometheus", FAILURES, *WINDOW),
        ("prometheus", ATTEMPTS, *WINDOW),
    }
    assert all(c.value_text.startswith("1,820 of 5,870") for c in failed)


def test_missing_evidence_reads_unknown_never_a_number(tmp_path: Path) -> None:
    ev = evidence(ticket=None)
    del ev["breakdown"], ev["impact"]
    ev["logs"] = {"missing": "no log source configured"}
    ev["changes"] = {"missing": "no log source configured"}
    stored, timeline, audit = stored_incident(tmp_path, ev, lead(detector="webhook_lag"))
    text = render_postmortem(stored, timeline, audit, NOW)
    impact = section(text, "Impact")
    for label in ("Failed payments", "Failed above the usual level", "Amount at risk"):
        line = next(x for x in impact.splitlines() if label in x)
        assert "unknown (not estimated for webhook\\_lag incidents" in line
        assert not re.search(r"\d", line)
    assert "Countries affected:** unknown" in impact
    evidence_text = shown(section(text, "What the evidence says"))
    assert "missing: no log source configured" in evidence_text
    assert "missing: not estimated for webhook_lag incidents" in evidence_text
    assert "(the likeliest change)" not in text and "(the top rising log pattern)" not in text

    no_ticket = evidence(ticket=None)
    (tmp_path / "b").mkdir()
    stored, timeline, audit = stored_incident(tmp_path / "b", no_ticket)
    facts = postmortem_facts(stored, timeline, audit, NOW)
    assert facts.amount_at_risk is None and facts.failed == 1820
    assert facts.figures["amount"].text == "unknown (no average ticket configured)"

    gathered_nothing = replace(stored, evidence=Evidence())
    facts = postmortem_facts(gathered_nothing, timeline, audit, NOW)
    assert facts.failed is None
    assert [h.kind for h in facts.hypotheses] == ["the kind of failure"]  # the finding's own
    assert facts.figures["failed"].text == "unknown (no evidence was gathered for this incident)"
    failed_evidence = replace(stored, evidence=Evidence(version=2, missing="failed: boom"))
    text = render_postmortem(failed_evidence, timeline, audit, NOW)
    assert "Failed payments:** unknown (evidence could not be gathered: failed: boom)" in text


def test_an_open_incident_without_onset_measures_from_detection(incident: Any) -> None:
    stored, timeline, _ = incident
    still_open = replace(
        stored, onset=None, resolved_at=None, mitigated_at=None, acknowledged_at=None
    )
    facts = postmortem_facts(still_open, timeline[:1], [], T0 + 30 * M)
    assert facts.ongoing and facts.duration == 30 * M
    assert facts.time_to_detect is None and facts.time_to_resolve is None
    assert facts.figures["time_to_detect"].text == "unknown (the onset is unknown)"
    assert facts.figures["onset"].refs == ()
    assert facts.figures["duration"].text.startswith("30 min, from detection at")


# -- hypotheses and follow-ups -------------------------------------------------------------------


def test_hypotheses_come_from_the_evidence_and_are_labelled(incident: Any) -> None:
    stored, timeline, audit = incident
    facts = postmortem_facts(stored, timeline, audit, NOW)
    by_kind = {h.kind: h for h in facts.hypotheses}
    change = by_kind["the likeliest change"]
    assert "12 min before onset" in change.text and "payments-api" in change.text
    assert "checkout-web" not in change.text  # deployed after the onset
    assert {c.query for c in change.citations} == {CHANGES_QUERY}
    assert "psp_timeout" in by_kind["the top rising log pattern"].text
    assert "the top rising error code" not in by_kind  # same code as the pattern: said once
    dominant = by_kind["the dominant breakdown value"]
    assert "country=BR" in dominant.text and "80 %" in dominant.text
    assert "technical errors" in by_kind["the kind of failure"].text

    factors = section(render_postmortem(stored, timeline, audit, NOW), "Root cause and trigger")
    items = [x for x in factors.splitlines() if x.startswith("- ")]
    assert len(items) == len(facts.hypotheses) == 4
    assert all(x.startswith("- **Hypothesis**") and refs(x) for x in items)
    assert "to confirm or reject" in factors


@pytest.mark.parametrize(
    ("detector", "cause", "expected"),
    [
        ("refund_sla", None, ["Stuck refunds to reconcile", "Merchant communication"]),
        (
            "capture_failures",
            None,
            ["Captures to retry before authorizations expire", "Reconcile captured amounts"],
        ),
        (
            "decline_spike",
            "technical",
            ["Payments to retry", "Duplicate authorization check", "Scheme and PSP communication"],
        ),
        ("decline_spike", "issuer", ["Issuer declines: no bulk retries"]),
        ("webhook_lag", None, ["Reconcile payment states with PSP reports"]),
        ("traffic_drop", None, ["Lost checkouts", "Merchant communication"]),
    ],
)
def test_money_follow_ups_depend_on_the_detector(
    incident: Any, detector: str, cause: str | None, expected: list[str]
) -> None:
    stored, timeline, audit = incident
    f = finding_section(lead(cause or "", detector)).to_json() | {"details": {"cause": cause}}
    member = {"finding": f, "active": False}
    inc = replace(stored, detector=detector, members={"m": member})
    facts = postmortem_facts(inc, timeline, audit, NOW)
    titles = [fu.title for fu in facts.follow_ups]
    assert all(any(t.startswith(e) for t in titles) for e in expected), titles
    assert ("Duplicate authorization check" in titles) == (cause == "technical")
    follow = section(render_postmortem(inc, timeline, audit, NOW), "Money follow-ups")
    assert all(f"**{t}:**" in follow for t in titles)


# -- Markdown safety -----------------------------------------------------------------------------

HOSTILE = (
    "x](javascript:alert(1)) [click](javascript:alert(2))\n# heading\n| pipes | here |\n"
    "```\n<img src=x onerror=alert(3)>\n    indented\n1. item\n---\n==="
)


def hostile_incident(stored: StoredIncident) -> StoredIncident:
    ev = evidence()
    ev["logs"]["patterns"][0]["template"] = HOSTILE
    ev["changes"]["items"][0]["description"] = HOSTILE
    ev["breakdown"]["dimensions"][0]["top"][0]["text"] = HOSTILE
    ev["breakdown"]["queries"][0]["query"] = "sum(x) ```` \n```\n# out of the fence?"
    ev["runbook"]["title"] = HOSTILE
    return replace(stored, title=f"Stripe {HOSTILE}", evidence=Evidence.from_json(ev))


SECTIONS = [  # the usual blameless structure: what happened, why, how we found and fixed it
    "Summary",
    "Impact",
    "Timeline",
    "Root cause and trigger",
    "Detection",
    "Response",
    "What the evidence says",
    "What went well and what went badly",
    "Action items",
    "Money follow-ups",
    "Evidence appendix",
]


def test_markdown_injection_from_data_is_escaped(incident: Any) -> None:
    stored, timeline, audit = incident
    timeline = [*timeline, Entry(T0 + 6 * M, "note", f"slack:U1|x\n# {HOSTILE}", HOSTILE)]
    text = render_postmortem(hostile_incident(stored), timeline, audit, NOW)
    tokens = parse(text)
    links = [c.attrs.get("href") for c in inline_tokens(tokens) if c.type == "link_open"]
    assert links == ["https://runbooks.example/psp-outage.md"]  # the runbook, nothing forged
    assert not [t for t in tokens if t.type.startswith("html")]
    html = [c.content for c in inline_tokens(tokens) if c.type.startswith("html")]
    assert set(html) == {"<br>"}  # only the line breaks the draft puts in table cells
    headings = [tokens[i + 1].content for i, t in enumerate(tokens) if t.type == "heading_open"]
    assert headings[0].startswith("Postmortem (draft): Stripe x\\]")
    assert [h for h in headings[1:] if not re.fullmatch(r"E\d+", h)] == SECTIONS
    assert not [t for t in tokens if t.type in ("code_block", "hr", "ordered_list_open")]
    # tables keep their shape: every row of the timeline has three cells
    rows = section(text, "Timeline").strip().splitlines()[2:]
    assert len(rows) == len(timeline) + 1  # and the estimated onset
    row_cells = [len(re.split(r"(?<!\\)\|", r)) - 2 for r in rows]
    assert row_cells == [3] * len(rows)
    # the hostile query stays inside one fence, whole
    fences = [t for t in tokens if t.type == "fence"]
    assert "sum(x) ```` \n```\n# out of the fence?\n" in [t.content for t in fences]
    assert all(t.markup.startswith("`") for t in fences)
    # and the data is still there for people to read
    assert "x](javascript:alert(1)) [click](javascript:alert(2))" in shown(text)


def test_escape_markdown_handles_line_starts() -> None:
    assert escape_markdown("a_b *c* `d` [e](f) <g> #h +i -j !k |l| {m} ~n \\o") == (
        "a\\_b \\*c\\* \\`d\\` \\[e\\](f) \\<g\\> \\#h \\+i \\-j \\!k \\|l\\| \\{m\\} \\~n \\\\o"
    )
    assert escape_markdown("1. one\n  2) two\n\n\n= three\n    code") == (
        "1\\. one\n2\\) two\n\\= three\ncode"
    )
    assert table_cell("a|b\nc") == "a\\|b<br>c"
    assert table_cell("") == " "
    block = fenced("a ``` b ```` c", "promql")
    assert block.startswith("`````promql\n") and block.endswith("\n`````")


# -- secrets -------------------------------------------------------------------------------------


def test_planted_secrets_never_appear(incident: Any, tmp_path: Path) -> None:
    stored, timeline, audit = incident
    secrets = f"card {CARD} token {TOKEN} mail {EMAIL}"
    ev = evidence()
    ev["logs"]["patterns"][0]["template"] = secrets
    ev["logs"]["patterns"][0]["example"] = secrets
    ev["changes"]["items"][0]["description"] = secrets
    ev["logs"]["queries"][0]["query"] = f'{{"card": "{CARD}", "q": "{TOKEN}"}}'
    ev["runbook"]["steps"] = [secrets]
    leaky = replace(stored, title=f"Stripe {secrets}", evidence=Evidence.from_json(ev))
    timeline = [*timeline, Entry(T0 + 6 * M, "note", f"slack:{EMAIL}", secrets)]
    custom = tmp_path / "leaky.md.j2"
    custom.write_text(
        "{{ incident.title }}\n{{ incident.evidence }}\n{{ incident.title | cell }}\n"
        "{{ incident.title | code }}\n{{ incident.title | inline }}\n"
        "{% for r in facts.timeline %}{{ r.text }} {{ r.actor }}{% endfor %}\n"
        "{{ incident.evidence.runbook.steps[0] }}\n"
    )
    for template in (None, custom):
        text = render_postmortem(leaky, timeline, audit, NOW, template=template)
        plain = text.replace("\\", "")  # escaping must not be what hides them
        for secret in (CARD, CARD.replace(" ", ""), TOKEN, EMAIL):
            assert secret not in plain, (template, secret)
        assert "[CARD ****1111]" in plain and "[TOKEN]" in plain


# -- templates ------------------------------------------------------------------------------------


def test_a_replacement_template_is_used(incident: Any, tmp_path: Path) -> None:
    stored, timeline, audit = incident
    custom = tmp_path / "ours.md.j2"
    custom.write_text(
        "# {{ facts.title }}\n"
        "{% macro row(label, fig) %}| {{ label }} | {{ fig }} |{% endmacro %}"
        "{{ row('Failed *payments*', facts.figures.failed) }}\n"
        "TTD {{ facts.time_to_detect | duration }} for {{ facts.incident_id | inline }}\n"
    )
    text = render_postmortem(stored, timeline, audit, NOW, template=custom)
    ref = facts_ref(postmortem_facts(stored, timeline, audit, NOW), "failed")
    assert text == (
        "# Authorization failures on stripe\n"
        f"| Failed \\*payments\\* | 1,820 of 5,870 attempts in 13 min [{ref}] |\n"  # escaped once
        f"TTD 3 min for `{stored.ref}`\n"  # the short name people use
    )
    assert render_postmortem(stored, timeline, audit, NOW, template=str(custom)) == text


def facts_ref(facts: PostmortemFacts, key: str) -> str:
    (ref,) = facts.figures[key].refs
    return ref


@pytest.mark.parametrize(
    ("source", "line", "problem"),
    [
        ("ok\n\n{{ ''.__class__.__mro__ }}\n", 3, "unsafe"),
        ("ok\n{{ facts.__dict__ }}\n", 2, "unsafe"),
        ("{{ incident.severity._value_ }}\n", 1, "unsafe"),
        ("{% for x in [1] %}\n{{ x.__class__.__subclasses__() }}\n{% endfor %}\n", 2, "unsafe"),
        ("{{ facts.figures.clear() }}\n", 1, "unsafe"),
        ("a\nb\n{{ no_such_name }}\n", 3, "undefined"),
        ("{{ facts.no_such_figure }}\n", 1, "no_such_figure"),
        ("line one\n{% if %}\n", 2, "Expected an expression"),
        ("{% include 'other.md.j2' %}\n", 1, "other.md.j2"),
        ("\n{{ 1 / 0 }}\n", 2, "ZeroDivisionError"),
    ],
)
def test_template_errors_name_the_template_and_line(
    incident: Any, tmp_path: Path, source: str, line: int, problem: str
) -> None:
    stored, timeline, audit = incident
    path = tmp_path / "bad.md.j2"
    path.write_text(source)
    with pytest.raises(PostmortemError) as err:
        render_postmortem(stored, timeline, audit, NOW, template=path)
    assert err.value.line == line
    assert str(path) in str(err.value) and f"line {line}" in str(err.value)
    assert problem in str(err.value)


def test_a_missing_template_file_is_a_postmortem_error(incident: Any, tmp_path: Path) -> None:
    stored, timeline, audit = incident
    with pytest.raises(PostmortemError, match=r"nope\.md\.j2: cannot be read"):
        render_postmortem(stored, timeline, audit, NOW, template=tmp_path / "nope.md.j2")


def test_the_default_draft_has_every_section(incident: Any) -> None:
    stored, timeline, audit = incident
    text = render_postmortem(stored, timeline, audit, NOW)
    assert re.findall(r"^## (.+)$", text, re.M) == SECTIONS
    assert text.startswith("# Postmortem (draft): Authorization failures on stripe\n")
    timeline_text = shown(section(text, "Timeline"))
    assert "slack:U0LEAD0002" in timeline_text and "mitigate by slack:U0LEAD0002" in timeline_text
    actions = section(text, "Action items")
    assert actions.count("_owner_") == actions.count("\n| ") - 1  # every row but the header rule
    assert "What went well?" in section(text, "What went well and what went badly")
    assert "| Action | Type | Owner | Due | Status |" in actions
    assert "| repair |" in actions  # a money follow-up undoes damage
    response = section(text, "Response")
    assert "Time to acknowledge" in response and "Runbook:" in response
