"""What the Slack app shows: escaped, redacted, within Slack's limits, honest when data is
missing (mrkdwn helpers and the status / summary / App Home views)."""

from __future__ import annotations

import json
from datetime import UTC, timedelta
from typing import Any

from paytriage.domain.evidence import Evidence
from paytriage.domain.findings import Severity
from paytriage.domain.lifecycle import Silence, State
from paytriage.notify.slack.text import ago, cut, escape, plain, safe, user_ref
from paytriage.reports.summary import build_summary
from paytriage.slack_app.views import home_view, status_message
from paytriage.store import Entry, StoredIncident
from tests.support.factories import T0

NOW = T0 + timedelta(minutes=42)
CARD = "4111 1111 1111 1111"
HOSTILE = "<!channel> <https://evil.example|click> & <@U0BOSS0001>"


def stored(
    title: str = "Stripe declines up",
    evidence: dict[str, Any] | None = None,
    state: State = State.open,
    **kw: Any,
) -> StoredIncident:
    base: dict[str, Any] = {
        "id": "inc-3f9a1c2b7d4e",
        "detector": "decline_spike",
        "dimensions": {"psp": "stripe"},
        "title": title,
        "severity": Severity.critical,
        "state": state,
        "data_problem": False,
        "opened_at": T0,
        "onset": T0 - timedelta(minutes=3),
        "updated_at": T0,
        "acknowledged_at": None,
        "acknowledged_by": None,
        "mitigated_at": None,
        "resolved_at": None,
        "reopened": 0,
        "members": {},
        "evidence": Evidence.from_json(evidence or {}),
        "runbook": None,
        "slack_channel": None,
        "slack_ts": None,
    }
    base.update(kw)
    return StoredIncident(**base)


def all_text(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False)


def test_escape_safe_and_cut() -> None:
    assert escape("a & <b> > c") == "a &amp; &lt;b&gt; &gt; c"
    assert safe(HOSTILE) == (
        "&lt;!channel&gt; &lt;https://evil.example|click&gt; &amp; &lt;@U0BOSS0001&gt;"
    )
    assert CARD not in safe(f"card {CARD} declined") and "****1111" in safe(f"card {CARD}")
    assert cut("x" * 10, 10) == "x" * 10
    assert cut("x" * 20, 10) == "xxx… (cut)"
    # Never half an entity: "&amp;" is kept whole or dropped.
    text = escape("abcd&efgh")  # abcd&amp;efgh
    assert cut(text, 8, "…") == "abcd…"
    assert len(cut("y" * 5000, 3000)) == 3000


def test_plain_reads_slack_markup_back() -> None:
    assert plain("hi <@U1|ana> in <#C1|pay> &lt;b&gt; &amp; <!here> <https://a.b|docs>") == (
        "hi @ana in #pay <b> & @here docs"
    )


def test_user_ref_mentions_only_slack_user_ids() -> None:
    assert user_ref("slack:U0ONCALL01") == "<@U0ONCALL01>"
    assert user_ref("slack:<!channel>") == "slack:&lt;!channel&gt;"
    assert user_ref("paytriage") == "paytriage"
    assert ago(timedelta(minutes=42)) == "42 min"
    assert ago(timedelta(hours=3, minutes=5)) == "3 h 5 min"
    assert ago(timedelta(days=2, hours=4)) == "2 d 4 h"


def test_status_lists_open_incidents_escaped() -> None:
    msg = status_message([stored(title=f"{HOSTILE} {CARD}")], NOW, UTC)
    text = all_text(msg.block_dicts())
    assert "<!channel>" not in text and "<https://evil" not in text and "<@U0BOSS0001>" not in text
    assert "&lt;!channel&gt;" in text and CARD not in text
    assert "inc-3f9a1c2b7d4e" in text and "open for 42 min" in text
    empty = status_message([], NOW, UTC)
    assert "No open incidents" in all_text(empty.block_dicts())


def test_status_of_many_incidents_stays_within_slack_limits() -> None:
    incs = [stored(title="x" * 300 + f" #{i}", id=f"inc-{i:012x}") for i in range(400)]
    blocks = status_message(incs, NOW, UTC).block_dicts()  # to_dict() checks the limits
    assert len(blocks) <= 50
    assert all(len(b.get("text", {}).get("text", "")) <= 3000 for b in blocks)
    assert "… and 57 more incidents" in all_text(
        blocks[-2]
    )  # "… and N incidents" counted, not dropped silently


def test_summary_of_hostile_data_is_escaped_and_redacted() -> None:
    evidence = {
        "breakdown": {"lines": ["psp=stripe: 2.0 % → 31 % failures", f"By country: {HOSTILE}"]},
        "impact": {"lines": ["1,234 payments failed of 4,000 in 10 min."]},
        "logs": {"patterns": [{"template": f"card <*> declined {CARD}", "count_now": 812}]},
        "runbook": {
            "id": "psp-outage",
            "title": "PSP outage",
            "steps": ["Fail over to <!channel> backup PSP"],
        },
    }
    inc = stored(title=f"Stripe <!channel> {CARD}", evidence=evidence)
    s = build_summary(inc, [], [], [], NOW)
    text = all_text(s.block_dicts())
    assert "31 % failures" in text and "1,234 payments failed" in text
    assert "<!channel>" not in text and CARD not in text and "<https://evil" not in text
    assert CARD not in s.text and "<!channel>" not in s.text


def test_summary_of_a_huge_incident_fits_a_message() -> None:
    evidence = {
        "breakdown": {"lines": ["&<>" * 2000] * 50},
        "impact": {"lines": ["y" * 5000] * 10},
        "runbook": {"id": "r", "title": "t", "steps": ["z" * 3000] * 40},
    }
    timeline = [Entry(T0, "opened", "paytriage", "n" * 1000) for _ in range(200)]
    blocks = build_summary(stored(evidence=evidence), timeline, [], [], NOW).block_dicts()
    assert len(blocks) <= 50
    assert all(len(b.get("text", {}).get("text", "")) <= 3000 for b in blocks)
    assert "(cut" in all_text(blocks)


def test_home_view_shows_incidents_silences_and_health() -> None:
    silences = [
        Silence(
            "s1",
            "webhook_lag",
            {"psp": "adyen"},
            "deploy <!here>",
            "slack:U1AB",
            T0,
            NOW + timedelta(hours=1),
        ),
        Silence(
            "s2",
            "decline_spike",
            {"psp": "stripe"},
            "known",
            "slack:U1AB",
            T0,
            None,
            "inc-3f9a1c2b7d4e",
        ),
    ]
    health = {
        "decline_spike": {"last_run": NOW - timedelta(minutes=1), "error": None, "failures": 0},
        "webhook_lag": {"last_run": NOW, "error": "prometheus: timeout <x>", "failures": 3},
    }
    view = home_view([stored(title=HOSTILE)], silences, health, NOW, UTC).to_dict()
    text = all_text(view)
    assert view["type"] == "home"
    assert "Open incidents (1)" in text and "&lt;!channel&gt;" in text
    assert "`webhook_lag` on psp=adyen until 10:42 UTC (1 h left)" in text
    assert "deploy &lt;!here&gt;" in text
    assert "incident `inc-3f9a1c2b7d4e` until the incident resolves" in text
    assert "`decline_spike` :white_check_mark: ok; last run 09:41 UTC (1 min ago)" in text
    assert (
        "failing: prometheus: timeout &lt;x&gt;; last run 09:42 UTC (0 s ago), 3 failed runs"
        in text
    )
    assert "<!" not in text
    sources = {
        "prometheus": {"last_ok": NOW - timedelta(minutes=2), "error": None},
        "opensearch": {"last_ok": None, "error": "connection refused <9200>"},
    }
    text = all_text(home_view([], [], {}, NOW, UTC, sources).to_dict())
    assert "No detector has run yet" in text
    assert "`prometheus` :white_check_mark: ok; last good probe 09:40 UTC (2 min ago)" in text
    assert "`opensearch` :x: failing: connection refused &lt;9200&gt;; no good probe yet" in text
    no_health = all_text(home_view([], [], None, NOW, UTC).to_dict())
    assert "Not available in this process" in no_health and "None." in no_health


def test_detector_health_says_how_fresh_its_data_is() -> None:
    from paytriage.slack_app.views import health_lines

    snap = {
        "decline_spike": {
            "last_run": NOW,
            "error": None,
            "failures": 0,
            "newest_sample": NOW - timedelta(minutes=1),
        },
        "traffic_drop": {
            "last_run": NOW,
            "error": None,
            "failures": 0,
            "newest_sample": NOW - timedelta(minutes=20),
        },
        "webhook_lag": {"last_run": NOW, "error": None, "failures": 0, "newest_sample": None},
    }
    decline, traffic, webhook = health_lines(snap, NOW, UTC)
    assert "newest data 1 min old" in decline and ":warning:" not in decline
    assert ":warning: newest data 20 min old" in traffic
    assert ":warning: no data" in webhook
