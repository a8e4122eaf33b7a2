"""`paytriage demo` runs the whole pipeline on the embedded simulated platform with no
servers: every injected incident is found once on its slice and the flash sale is not, the
Block Kit it wrote is accepted by the local Slack Web API server (checked against Slack's
spec), and nothing it wrote carries a planted secret."""

from __future__ import annotations

import io
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from rich.console import Console
from slack_sdk import WebClient

from paytriage.lab.demo import mrkdwn_to_rich, run_demo
from paytriage.lab.simulate import SCENARIO_KINDS
from tests.support.slack_api import SlackApiServer

END = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, str, Path]:
    out = tmp_path_factory.mktemp("demo")
    screen = io.StringIO()
    result = run_demo(out, Console(file=screen, width=120), end=END)
    return result, screen.getvalue(), out


def test_every_injected_incident_is_found_once_on_its_slice_and_the_flash_sale_is_not(
    demo: tuple[object, str, Path],
) -> None:
    result, _, _ = demo
    incidents = [i for i in result.incidents if not i.data_problem]  # type: ignore[attr-defined]
    real = [s for s in result.injected if not SCENARIO_KINDS[s.kind].harmless]  # type: ignore[attr-defined]
    assert len(real) >= 4
    for s in real:
        found = [i for i in incidents if i.dimensions == dict(s.dims)]
        assert len(found) == 1, (s.kind, s.dims, [(i.detector, i.dimensions) for i in incidents])
        assert s.start <= found[0].opened_at <= s.start + s.duration  # found while it lasted
        assert found[0].resolved_at is not None  # and resolved once it healed
    assert len(incidents) == len(real)  # nothing else, the flash sale included


def test_every_incident_says_what_it_cost_in_its_own_terms(
    demo: tuple[object, str, Path],
) -> None:
    """The commander's summary said "Impact: unknown" for traffic drops and webhooks."""
    result, _, _ = demo
    for inc in result.incidents:  # type: ignore[attr-defined]
        lines = inc.evidence.impact.lines if inc.evidence.impact is not None else ()
        assert lines and not any("unknown (no data" in x for x in lines), (inc.detector, lines)
    cost = {i.detector: " ".join(i.evidence.impact.lines) for i in result.incidents}  # type: ignore[attr-defined]
    assert "payment attempts that did not come" in cost["traffic_drop"]
    assert "webhook deliveries processed after 60 s" in cost["webhook_lag"]
    [drop] = [i for i in result.incidents if i.detector == "traffic_drop"]  # type: ignore[attr-defined]
    draft = (result.out / "postmortems" / f"{drop.ref}.md").read_text()  # type: ignore[attr-defined]
    impact = draft.split("## Impact", 1)[1].split("## ", 1)[0]
    assert "**What it cost:** " in impact and "payment attempts that did not come" in impact
    assert "Failed payments" not in impact  # not a failure-ratio incident


def test_every_incident_ends_with_the_title_and_runbook_it_was_paged_with(
    demo: tuple[object, str, Path],
) -> None:
    _, _, out = demo
    doc = json.loads((out / "incidents.json").read_text())
    assert doc["incidents"]
    for inc in doc["incidents"]:
        assert (inc["title"], inc["runbook"]) == (inc["final_title"], inc["final_runbook"])
        assert inc["runbook"] is not None and inc["id"].startswith("INC-")
        if inc["resolved_at"] is not None:
            assert (out / "postmortems" / f"{inc['id']}.md").exists()
            # the impact ended before the alert cleared, and not long before
            ended = datetime.fromisoformat(inc["impact_ended_at"].replace("Z", "+00:00"))
            resolved = datetime.fromisoformat(inc["resolved_at"].replace("Z", "+00:00"))
            assert timedelta(0) < resolved - ended <= timedelta(minutes=30)


def test_the_block_kit_it_wrote_is_what_slack_accepts(demo: tuple[object, str, Path]) -> None:
    _, screen, out = demo
    files = sorted((out / "slack").glob("*.json"))
    posts = [json.loads(f.read_text()) for f in files if f.name.endswith("-chat.postMessage.json")]
    roots = [p for p in posts if "thread_ts" not in p]
    assert roots and all(r["blocks"] and r["text"] for r in roots)
    with SlackApiServer() as slack:
        client = WebClient(token=slack.token, base_url=slack.base_url)
        for f in files:
            body = json.loads(f.read_text())
            if f.name.endswith("-chat.postMessage.json"):
                body.pop("thread_ts", None)  # the demo's thread ids mean nothing to Slack
                assert client.chat_postMessage(**body)["ok"]
        assert slack.spec_violations == []
    assert "#payments-oncall · new message" in screen and "[ Acknowledge ]" in screen
    assert "#payments-webhooks · new message" in screen  # routed by detector
    charts = list((out / "charts").glob("*.png"))
    assert charts and all(c.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for c in charts)


def test_pages_postmortem_and_no_planted_secret_anywhere(demo: tuple[object, str, Path]) -> None:
    result, screen, out = demo
    pages = [json.loads(f.read_text()) for f in sorted((out / "pagerduty").glob("*.json"))]
    triggered = {p["dedup_key"] for p in pages if p["event_action"] == "trigger"}
    resolved = {p["dedup_key"] for p in pages if p["event_action"] == "resolve"}
    critical = {i.id for i in result.incidents if i.severity.value == "critical"}  # type: ignore[attr-defined]
    assert triggered == critical and resolved == critical
    assert all("routing_key" not in p for p in pages)
    pm = result.postmortem  # type: ignore[attr-defined]
    text = pm.read_text()
    assert pm.exists() and f"`{pm.stem}`" in text  # postmortems/INC-n.md names INC-n
    assert "increase(payment_authorizations_total" in text  # figures cite their queries
    from paytriage.lab.demo import DEMO_SEED, HISTORY, PLAYED, demo_scenarios
    from paytriage.lab.simulate import (
        SimulationSpec,
        generate,  # the same planted secrets as the demo's logs
    )

    spec = SimulationSpec(
        start=END - PLAYED - HISTORY,
        end=END,
        seed=DEMO_SEED,
        scenarios=tuple(demo_scenarios(END - PLAYED)),
    )
    planted = generate(spec).labels["planted_secrets"]
    secrets = [s for k in ("card_numbers", "emails", "tokens") for s in planted[k]]
    assert secrets
    written = [screen]
    for f in out.rglob("*"):
        if f.suffix in (".json", ".md"):
            written.append(f.read_text(errors="replace"))
    conn = sqlite3.connect(out / "paytriage.db")
    written.append("\n".join(conn.iterdump()))
    conn.close()
    blob = "\n".join(written)
    assert "[CARD" in blob or "[EMAIL" in blob  # log lines with secrets did come through...
    leaked = [s for s in secrets if s in blob]
    assert leaked == []  # ...masked


def test_mrkdwn_is_shown_readably_in_the_terminal() -> None:
    shown = mrkdwn_to_rich(
        "*PSP* `psp_timeout` <https://x.example/a|the runbook> &lt;b&gt; _pay_x1_"
    )
    assert shown.plain == "PSP psp_timeout the runbook <b> pay_x1"
    assert {s.style for s in shown.spans} >= {"bold", "cyan", "italic"}
