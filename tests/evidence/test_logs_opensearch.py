"""Log and change evidence against the real OpenSearch, loaded with the simulator's data.

The fixed dataset (tests/conftest.py) injects, among others, a stripe outage (timeouts and
5xx), a checkout broken in GB (a browser error that only exists during it, preceded by a
feature flag) and capture failures at braintree (preceded by a config change naming it).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

import pytest

from paytriage.config.models import LogFields, OpenSearchConfig
from paytriage.core.redact import redact as RED
from paytriage.evidence.changes import gather_changes
from paytriage.evidence.logs import gather_logs
from paytriage.sources import OpenSearchSource
from tests.conftest import (
    CAPTURE_START,
    DATA_END,
    DROP,
    DROP_START,
    OUTAGE,
    OUTAGE_START,
    STALL_START,
    Stack,
)

pytestmark = pytest.mark.integration

LOGS = "payments-logs-*"
CHANGES = "changes-*"


@pytest.fixture(scope="module")
def osrc(stack: Stack) -> OpenSearchSource:
    return OpenSearchSource(OpenSearchConfig(hosts=[stack.opensearch_url]))


def _related(stack: Stack, scenario: str) -> dict[str, Any]:
    related: list[dict[str, Any]] = stack.labels["related_changes"]  # type: ignore[assignment]
    linked = [c for c in related if c["scenario"] == scenario]
    assert len(linked) == 1
    return dict(linked[0])


def test_the_broken_checkout_error_is_the_top_rising_pattern_and_code(
    osrc: OpenSearchSource,
) -> None:
    end = DROP_START + DROP
    evd = gather_logs(
        osrc, LOGS, LogFields(), {"country": "GB", "reason": "x"}, DROP_START, end, redact=RED
    )
    assert evd.missing is None
    assert evd.ignored_dimensions == ("reason",)
    assert evd.total_now == evd.messages_now > 0  # no sampling: counts are exact
    top = evd.patterns[0]
    assert top.template.startswith("client error reported: TypeError: cannot read properties")
    assert top.error_code == "client_script_error"
    assert top.new and top.count_before == 0 and not top.sampled
    exact = osrc.search(
        LOGS, DROP_START, end, {"country": "GB", "error_code": "client_script_error"}, size=0
    )
    assert top.count_now == exact.total > 20
    code = evd.rising_codes[0]
    assert code.code == "client_script_error" and code.new and code.count_now == exact.total
    # the window before is the 30 minutes before onset, and the refs say so
    assert (evd.before_start, evd.before_end) == (DROP_START - DROP, DROP_START)
    assert {(q.start, q.end) for q in top.queries} == {
        (DROP_START, end),
        (DROP_START - DROP, DROP_START),
    }
    assert all('"country":"GB"' in q.query and q.source == "opensearch" for q in evd.queries)


def test_the_psp_outage_raises_timeouts_and_5xx_at_that_psp(osrc: OpenSearchSource) -> None:
    end = OUTAGE_START + OUTAGE
    evd = gather_logs(osrc, LOGS, LogFields(), {"psp": "stripe"}, OUTAGE_START, end, redact=RED)
    assert evd.missing is None
    outage_codes = {"psp_timeout", "psp_5xx"}
    assert {c.code for c in evd.rising_codes[:2]} == outage_codes
    assert [p.error_code for p in evd.patterns[:2]] == [
        evd.rising_codes[0].code,
        evd.rising_codes[1].code,
    ]
    top = evd.patterns[0]
    assert "stripe" in top.template and "<ID>" in top.template and "<NUM>" in top.template
    assert re.search(r"pay_[A-Za-z0-9]{14}", top.example)  # an actual line, redacted
    by_code = {c.code: c for c in evd.error_codes}
    assert top.count_now <= by_code[str(top.error_code)].count_now
    assert top.count_now >= 0.9 * by_code[str(top.error_code)].count_now
    assert by_code[str(top.error_code)].count_now > 20 * max(
        1, by_code[str(top.error_code)].count_before
    )
    # every pattern and code is about stripe only: no other PSP's name in any template
    assert not any(
        p in t.template for t in evd.patterns for p in ("adyen", "worldpay", "braintree")
    )


def test_a_sample_gives_scaled_estimates_close_to_the_exact_counts(osrc: OpenSearchSource) -> None:
    end = OUTAGE_START + OUTAGE
    full = gather_logs(osrc, LOGS, LogFields(), {"psp": "stripe"}, OUTAGE_START, end, redact=RED)
    sample = gather_logs(
        osrc, LOGS, LogFields(), {"psp": "stripe"}, OUTAGE_START, end, max_messages=150, redact=RED
    )
    assert sample.messages_now == 150 < sample.total_now == full.total_now
    assert all(p.sampled for p in sample.patterns)
    exact = {p.template: p.count_now for p in full.patterns}
    top = sample.patterns[0]
    assert top.template in exact
    assert abs(top.count_now - exact[top.template]) <= 0.35 * exact[top.template]
    # error codes come from terms aggregations: exact whatever the sample
    assert sample.error_codes == full.error_codes


def test_no_planted_secret_reaches_a_template_or_an_example(
    stack: Stack, osrc: OpenSearchSource
) -> None:
    planted: dict[str, list[str]] = stack.labels["planted_secrets"]  # type: ignore[assignment]
    start, end = OUTAGE_START, OUTAGE_START + timedelta(hours=2)
    raw = osrc.search(LOGS, start, end, {"level": ["ERROR", "WARN"]}, size=5000)
    assert raw.total == len(raw.hits)
    raw_messages = {h["message"] for h in raw.hits}
    raw_text = _flat("\n".join(raw_messages))
    leaked = [
        s for kind in ("card_numbers", "emails", "tokens") for s in planted[kind] if s in raw_text
    ]
    assert len(leaked) >= 5  # the raw logs do leak, so this test can fail
    evd = gather_logs(
        osrc,
        LOGS,
        LogFields(),
        {},
        start,
        end,
        before=timedelta(hours=1),
        max_messages=5000,
        min_count=1,
        min_rise=0,
        limit=None,
        redact=RED,
    )
    assert len(evd.patterns) > 10
    # some examples shown are leaky lines, redacted (so they differ from every raw line)
    assert any(p.example not in raw_messages for p in evd.patterns)
    shown = "\n".join(p.template + "\n" + p.example for p in evd.patterns)
    for secret in (*planted["card_numbers"], *planted["emails"], *planted["tokens"]):
        assert secret not in _flat(shown)
    for cvv in planted["cvvs"]:
        assert f'"cvc":"{cvv}"' not in shown


def _flat(text: str) -> str:
    """Card numbers are logged as 4111111111111111, 4111 1111 … or 4111-1111-…"""
    return re.sub(r"(?<=\d)[ -](?=\d)", "", text)


def test_the_flag_flipped_before_the_broken_checkout_ranks_first(
    stack: Stack, osrc: OpenSearchSource
) -> None:
    flag = _related(stack, "it-drop")
    evd = gather_changes(osrc, CHANGES, DROP_START, dimensions={"country": "GB"}, redact=RED)
    assert evd.missing is None
    first = evd.changes[0]
    assert (first.kind, first.service, first.description) == (
        flag["kind"],
        flag["service"],
        flag["description"],
    )
    assert first.at == datetime.fromisoformat(flag["@timestamp"])
    assert 0 < first.seconds_before_onset <= 15 * 60
    # without dimensions it is still first: nothing is closer before onset
    plain = gather_changes(osrc, CHANGES, DROP_START, redact=RED).changes[0]
    assert (plain.at, plain.description, plain.mentions) == (first.at, first.description, ())
    assert first.query.start == DROP_START - timedelta(hours=2)


def test_the_config_change_naming_braintree_outranks_a_closer_routine_deploy(
    stack: Stack, osrc: OpenSearchSource
) -> None:
    cfg = _related(stack, "it-capture")
    plain = gather_changes(osrc, CHANGES, CAPTURE_START, redact=RED)
    # ranked by the stated score (evidence.changes.change_score), most likely first
    scores = [c.score for c in plain.changes]
    assert scores == sorted(scores, reverse=True) and len(set(scores)) > 1
    cfg_rank = [c.description for c in plain.changes].index(cfg["description"])
    named = gather_changes(
        osrc, CHANGES, CAPTURE_START, dimensions={"psp": "braintree"}, redact=RED
    )
    assert named.changes[0].description == cfg["description"]
    assert named.changes[0].kind == "config" and named.changes[0].mentions == ("braintree",)
    # in this dataset a routine deploy lands closer to onset: without the incident's
    # dimensions, closeness ranks it first; naming braintree (2) outranks closeness (≤ 1)
    assert cfg_rank > 0 and plain.changes[0].kind == "deploy"
    assert named.changes[0].score > named.changes[1].score


def test_the_deploy_before_the_refund_stall_ranks_first_for_its_service(
    stack: Stack, osrc: OpenSearchSource
) -> None:
    deploy = _related(stack, "it-refunds")
    evd = gather_changes(osrc, CHANGES, STALL_START, services=["refund-worker"], redact=RED)
    first = evd.changes[0]
    assert (first.kind, first.version, first.description) == (
        "deploy",
        deploy["version"],
        deploy["description"],
    )
    assert not first.after_onset


def test_a_cluster_that_is_down_is_reported_missing(stack: Stack) -> None:
    down = OpenSearchSource(
        OpenSearchConfig(hosts=["http://127.0.0.1:9"], retries=0, timeout=timedelta(seconds=2))
    )
    logs = gather_logs(
        down, LOGS, LogFields(), {"psp": "stripe"}, OUTAGE_START, DATA_END, redact=RED
    )
    assert logs.missing is not None and "connection" in logs.missing and logs.patterns == ()
    changes = gather_changes(down, CHANGES, OUTAGE_START, redact=RED)
    assert changes.missing is not None and "connection" in changes.missing and changes.changes == ()
