"""The runbook in Slack: every section of every real runbook reaches the incident's thread
within Block Kit's limits, with real links, the queries the steps refer to filled in with
the incident's dimensions (never with a hostile value), and a link to the whole runbook
(or, without ``runbooks.base_url``, the file named)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from slack_sdk import WebClient
from slack_sdk.models.blocks import Block

from paytriage.detection.run import Event
from paytriage.domain.evidence import Evidence, RunbookSection
from paytriage.incidents.runbooks import Runbook, load_runbooks, parse_runbook
from paytriage.notify.slack import ids
from paytriage.notify.slack.render import (
    details_text,
    incident_blocks,
    runbook_blocks,
    runbook_fallback,
    runbook_mrkdwn,
)
from paytriage.notify.slack.sender import slack_worker
from paytriage.store import Store, StoredIncident
from tests.notify.slack.test_text import NOW, stored
from tests.support.factories import T0, Clock
from tests.support.pipeline import finding, pipeline
from tests.support.slack_api import SlackApiServer

ROOT = Path(__file__).resolve().parents[3]
BASE = "https://git.example.com/org/paytriage/blob/main/runbooks"
HEADINGS = ["First 5 minutes", "Mitigate", "Money follow-ups", "Verify recovery"]
HOSTILE = [
    'stripe"}) or vector(1) #',
    'adyen", "level": {"$ne": null}, "x": "',
    "<!channel> <https://evil.example|click>",
    "a\nb",
    "back\\slash",
    "x" * 65,
]
# Dimensions each real runbook meets: what its detectors put in a finding.
DIMENSIONS: list[dict[str, str]] = [
    {"psp": "stripe"},
    {"country": "BR"},
    {"method": "apple_pay"},
    {"psp": "checkout.com", "country": "DE"},
    {"signal": "duplicate-captures", "psp": "adyen"},
    {"source": "prometheus"},
    {},
]


@pytest.fixture(scope="module")
def real() -> list[Runbook]:
    return load_runbooks(ROOT / "runbooks")


def incident(rb: Runbook, dims: dict[str, str], base: str | None) -> StoredIncident:
    section = rb.for_incident(dims, base_url=base, reason=f"{rb.id} (applies_to[0])")
    evidence = Evidence(runbook=section).to_json()
    return stored(dimensions=dims, evidence=evidence, runbook=rb.id)


def texts(blocks: list[dict[str, Any]]) -> list[str]:
    """Every mrkdwn text of the blocks, in order."""
    out: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "mrkdwn":
                out.append(node["text"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(blocks)
    return out


def code_blocks(text: str) -> list[str]:
    return re.findall(r"```\n(.*?)\n```", text, flags=re.DOTALL)


def within_limits(blocks: list[dict[str, Any]]) -> None:
    assert 0 < len(blocks) <= 50
    for b in blocks:
        Block.parse(b).validate_json()  # slack_sdk's own checks (a section's text ≤ 3000...)
        if b["type"] == "section":
            assert len(b["text"]["text"]) <= 3000
            assert b["text"]["text"].count("```") % 2 == 0  # every code block closed
        for e in b.get("elements", []):
            assert len(e.get("text", "")) <= 3000


def well_formed(text: str) -> None:
    """No raw Markdown link, no "None"/"nan", every <…> a link Slack reads as one."""
    assert "](" not in text, text
    assert not re.search(r"\bNone\b|\bnan\b", text), text
    for inner in re.findall(r"<([^>]*)>", text):
        assert inner.startswith(("https://", "http://")), inner
        assert "|" in inner and " " not in inner.split("|")[0], inner


def check_below(text: str) -> None:
    """Each "below" has a query (a code block) after it."""
    for m in re.finditer(r"\bbelow\b", text):
        assert "```" in text[m.end() :], text[max(0, m.start() - 200) : m.end()]


def all_cases(real: list[Runbook]) -> Iterator[tuple[Runbook, dict[str, str], str | None]]:
    for rb in real:
        for dims in DIMENSIONS:
            for base in (BASE, None):
                yield rb, dims, base


def test_every_real_runbook_reaches_the_thread_whole_and_within_limits(
    real: list[Runbook],
) -> None:
    for rb, dims, base in all_cases(real):
        blocks = runbook_blocks(incident(rb, dims, base))
        within_limits(blocks)
        body = "\n".join(texts(blocks))
        well_formed(body)
        check_below(body)
        for heading in [*HEADINGS, "Escalation"]:
            assert f"*{heading}*" in body, (rb.id, heading)
        section = incident(rb, dims, base).evidence.runbook
        assert section is not None
        assert [g.heading for g in section.groups] == HEADINGS
        assert sum(len(g.steps) for g in section.groups) == len(rb.steps) > 8
        for step in [*(s for g in section.groups for s in g.steps), *section.escalation]:
            assert runbook_mrkdwn(step) in body, (rb.id, step)  # every step, whole
        assert "Not shown here" not in body
        # The last block links the whole runbook, or names its file and where it lives.
        last = texts(blocks[-1:])[0]
        if base:
            assert f"<{BASE}/{rb.id}.md|{rb.id}.md>" in last
            assert f"*Runbook: <{BASE}/{rb.id}.md|" in body
        else:
            assert f"`{(ROOT / 'runbooks' / rb.name).as_posix()}`" in last
            assert "runbooks.base_url" in last and "runbooks directory" in last
        if base:  # links to other runbooks go where they are published
            assert "(`" not in body.replace("(`/", "") or ".md`)" not in body


def test_the_queries_follow_the_steps_that_refer_to_them_filled_in(real: list[Runbook]) -> None:
    rb = next(r for r in real if r.id == "psp-outage")
    blocks = runbook_blocks(incident(rb, {"psp": "stripe"}, BASE))
    body = "\n".join(texts(blocks))
    first, mitigate = body.index("*First 5 minutes*"), body.index("*Mitigate*")
    queries = body.index("*Queries*")
    assert first < body.index("(query below)") < queries < mitigate
    assert first < body.index("(P95 and P99 PromQL below)") < queries
    code = "\n".join(code_blocks(body))
    assert '{"term": {"psp": "stripe"}}' in code  # the OpenSearch placeholder
    assert 'payment_authorization_duration_seconds_bucket{psp="stripe"}[5m]' in code  # PromQL
    assert "&lt;psp&gt;" not in code and "<psp>" not in code
    assert body.index("*Escalation*") > mitigate


def test_a_missing_dimension_is_left_out_of_promql_and_said(real: list[Runbook]) -> None:
    rb = next(r for r in real if r.id == "issuer-decline-spike")
    body = "\n".join(texts(runbook_blocks(incident(rb, {"psp": "adyen"}, None))))
    code = "\n".join(code_blocks(body))
    assert "payment_declines_total[5m]" in code and "country=" not in code
    assert "This incident has no country: the country matcher is left out." in body
    # Inline, in the Discover query: the placeholder stays (escaped), and a note says so.
    assert '`country:"&lt;country&gt;" and decline_reason:*`' in body
    assert "replace &lt;country&gt; or drop that filter" in body


@pytest.mark.parametrize("value", HOSTILE)
def test_a_hostile_dimension_value_never_lands_in_a_query(real: list[Runbook], value: str) -> None:
    for rb in real:
        for key in ("psp", "country", "method", "signal", "source"):
            dims = {key: value}
            section = rb.for_incident(dims, base_url=BASE)
            dump = json.dumps(section.to_json())
            assert json.dumps(value)[1:-1] not in dump, (rb.id, key)
            blocks = runbook_blocks(incident(rb, dims, BASE))
            within_limits(blocks)
            body = "\n".join(texts(blocks))
            well_formed(body)
            for code in code_blocks(body):
                assert value not in code and "evil" not in code and "$ne" not in code
                assert "vector(1)" not in code
            if f'"<{key}>"' in rb.body:
                assert "not a plain label value" in body, (rb.id, key)


def test_a_long_runbook_stays_within_block_kit_limits(tmp_path: Path) -> None:
    steps = "".join(
        f"\n### Part {h}\n\n"
        + "".join(f"{i}. Step {h}.{i}: " + "do this & that <x> " * 40 + "\n" for i in range(1, 30))
        for h in range(1, 15)
    )
    steps = steps.replace("Step 1.1:", "Step 1.1 (PromQL below):")
    escalation = "".join(f"- Call team {i} " + "y" * 300 + "\n" for i in range(40))
    queries = "".join(
        f"q{i} {'z ' * 3000 * (i == 0)}:\n\n```promql\n" + 'up{psp="<psp>"}\n' * 300 + "```\n\n"
        for i in range(12)
    )
    text = (
        "---\nid: long\ntitle: Long\nowner: me\nlast_reviewed: 2026-11-25\n"
        "applies_to: [{detectors: [decline_spike]}]\n---\n# Long\n\n## Steps\n"
        f"{steps}\n## Escalation\n\n{escalation}\n## Queries\n\n{queries}"
    )
    rb = parse_runbook(tmp_path / "long.md", text)
    assert len(rb.steps) == 14 * 29 and len(rb.escalation) == 40 and len(rb.queries) == 12
    for base in (BASE, None):
        blocks = runbook_blocks(incident(rb, {"psp": "stripe"}, base))
        within_limits(blocks)
        body = "\n".join(texts(blocks))
        well_formed(body)
        check_below(body)
        assert "*Part 1*" in body and 'up{psp="stripe"}' in body
        assert "Not shown here (Slack's limits): Part " in body  # says what is left out
        assert "*Escalation*" in body and "more escalation lines in the whole runbook" in body
        assert ("<" + BASE + "/long.md|long.md>" if base else "/long.md`") in texts(blocks[-1:])[0]


def test_markdown_becomes_mrkdwn() -> None:
    assert (
        runbook_mrkdwn("follow [PSP & co](<https://x.example/a b?q=1&r=2|3>) **now**")
        == "follow <https://x.example/a%20b?q=1&amp;r=2%7C3|PSP &amp; co> *now*"
    )
    assert runbook_mrkdwn("see [`config/x.yaml`](https://x.example/c)") == (
        "see <https://x.example/c|config/x.yaml>"
    )
    assert runbook_mrkdwn("[evil](javascript:alert(1)) and [rel](other.md#mitigate)") == (
        "evil and rel"
    )
    assert runbook_mrkdwn("`a<b>&c` <!channel> *italic*") == (
        "`a&lt;b&gt;&amp;c` &lt;!channel&gt; _italic_"
    )
    assert runbook_mrkdwn("card 4111 1111 1111 1111") != "card 4111 1111 1111 1111"


def test_a_runbook_stored_before_groups_still_reads_well() -> None:
    """Evidence stored by an earlier version: the first steps only, Markdown as written."""
    evidence = {
        "runbook": {
            "id": "psp-outage",
            "title": "PSP outage",
            "link": "runbooks/psp-outage.md",
            "steps": [
                "Break the errors down in OpenSearch (query below).",
                "Follow [duplicates](duplicate-captures-refunds.md) if any.",
            ],
        }
    }
    inc = stored(evidence=evidence)
    blocks = runbook_blocks(inc)
    within_limits(blocks)
    body = "\n".join(texts(blocks))
    well_formed(body)
    check_below(body)
    assert "(query in the runbook)" in body and "Follow duplicates if any." in body
    assert "`runbooks/psp-outage.md`" in texts(blocks[-1:])[0]
    assert runbook_fallback(inc) == "Next steps (runbook): PSP outage"


def test_the_root_message_names_the_runbook_file_without_a_base_url(
    real: list[Runbook],
) -> None:
    rb = next(r for r in real if r.id == "refund-sla")
    root = incident_blocks(incident(rb, {"psp": "adyen"}, None), NOW)
    body = "\n".join(texts(root))
    assert ":book: Runbook: *Stuck refunds / refund SLA*" in body
    assert "`" + (ROOT / "runbooks" / "refund-sla.md").as_posix() + "`" in body
    assert ids.RUNBOOK not in json.dumps(root)  # no button to a path Slack cannot open
    root = incident_blocks(incident(rb, {"psp": "adyen"}, BASE), NOW)
    buttons = [e for b in root if b["type"] == "actions" for e in b["elements"]]
    assert buttons[0]["url"] == f"{BASE}/refund-sla.md"
    none = stored(evidence={"runbook": {"id": None, "reason": "no runbook applies"}})
    assert "No runbook: no runbook applies" in "\n".join(texts(incident_blocks(none, NOW)))
    assert runbook_blocks(none) == [] and runbook_fallback(none) == ""


def test_the_details_reply_leaves_the_steps_to_the_runbook(real: list[Runbook]) -> None:
    rb = next(r for r in real if r.id == "psp-outage")
    assert rb.steps[0] not in details_text(incident(rb, {"psp": "stripe"}, BASE))


@pytest.mark.parametrize("base", [BASE, None])
def test_every_incident_thread_links_its_runbook(tmp_path: Path, base: str | None) -> None:
    """Through the sender, against the local Slack Web API server (Slack's spec checked):
    the runbook is the thread's first reply, and its last block links the runbook."""
    store = Store.open(f"sqlite:///{tmp_path / 'p.db'}")
    pipe = pipeline(store, runbook_base_url=base)
    clock = Clock()
    with SlackApiServer() as slack:
        sender = slack_worker(
            store, WebClient(token=slack.token, base_url=slack.base_url), clock=clock
        )
        findings = [
            finding("decline_spike", psp="stripe"),
            finding("webhook_lag", psp="adyen"),
            finding("traffic_drop", country="BR"),
        ]
        for f in findings:
            pipe.step([Event("raised", f, T0)], [f], T0)
        assert len(sender.drain().sent) == len(findings)
        roots = slack.messages("#payments-oncall")
        assert len(roots) == len(findings)
        for root in roots:
            first = slack.thread("#payments-oncall", root["ts"])[1]  # [0]: the root
            assert first["text"].startswith("Next steps (runbook): ")
            within_limits(first["blocks"])
            body = "\n".join(texts(first["blocks"]))
            well_formed(body)
            check_below(body)
            last = texts(first["blocks"][-1:])[0]
            assert (f"<{BASE}/" if base else "runbooks directory") in last
        assert slack.spec_violations == []
    assert all(isinstance(i.evidence.runbook, RunbookSection) for i in store.incidents())
