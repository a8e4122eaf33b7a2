"""`paytriage replay` over the real Prometheus and OpenSearch: a past period played through
the whole live pipeline, what it would have sent written out, posting nothing."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from slack_sdk import WebClient
from typer.testing import CliRunner

from paytriage.cli import app
from paytriage.core.types import iso
from tests.conftest import OUTAGE, OUTAGE_START, Stack
from tests.support.slack_api import SlackApiServer

pytestmark = pytest.mark.integration
M = timedelta(minutes=1)


def test_replay_writes_what_the_bot_would_have_sent(stack: Stack, tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("slack: {enabled: false}\nsources: {prometheus: {retries: 0}}\n")
    out = tmp_path / "replayed"
    start, end = OUTAGE_START - 20 * M, OUTAGE_START + OUTAGE + 40 * M
    args = ["replay", "--prometheus-url", stack.prometheus_url, "--opensearch-url"]
    args += [stack.opensearch_url, "--start", iso(start), "--end", iso(end), "--out", str(out)]
    res = CliRunner().invoke(app, [*args, "-c", str(cfg)])
    assert res.exit_code == 0, res.output

    doc = json.loads((out / "incidents.json").read_text())
    [outage] = [i for i in doc["incidents"] if i["dimensions"] == {"psp": "stripe"}]
    assert outage["id"].startswith("INC-") and outage["key"].startswith("inc-")
    assert outage["runbook"] == "psp-outage" and outage["resolved_at"] is not None
    assert OUTAGE_START <= _at(outage["opened_at"]) <= OUTAGE_START + OUTAGE
    for inc in doc["incidents"]:  # the story stays true: as paged, so it ends
        assert (inc["title"], inc["runbook"]) == (inc["final_title"], inc["final_runbook"])
    assert f"{outage['id']} " in res.output

    calls = sorted((out / "slack").glob("*.json"))
    assert calls and all(c.name[:4].isdigit() for c in calls)
    roots = [json.loads(c.read_text()) for c in calls if c.name.endswith("-chat.postMessage.json")]
    with SlackApiServer() as slack:  # every message is one Slack accepts
        client = WebClient(token=slack.token, base_url=slack.base_url)
        for body in roots:
            body.pop("thread_ts", None)
            assert client.chat_postMessage(**body)["ok"]
        assert slack.spec_violations == []
    pages = [json.loads(p.read_text()) for p in sorted((out / "pagerduty").glob("*.json"))]
    assert [p["event_action"] for p in pages if p["dedup_key"] == outage["key"]] == [
        "trigger",
        "resolve",
    ]
    assert all("routing_key" not in p for p in pages)
    draft = (out / "postmortems" / f"{outage['id']}.md").read_text()
    assert f"`{outage['id']}`" in draft and "PSP outage" in draft
    assert (out / "paytriage.db").exists()


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
