"""Log evidence: template mining, rise against the window before, redaction, the IO edge."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from typing import Any

import pytest

import paytriage.evidence.logs as ev
from paytriage.config.models import LogFields
from paytriage.core.redact import redact
from paytriage.evidence.logs import (
    LogLine,
    compare_codes,
    gather_logs,
    log_filters,
    mine_patterns,
    rising_patterns,
)
from paytriage.sources.base import Bucket, ErrorKind, SourceError
from tests.support.factories import T0
from tests.support.logs import FakeLogs

RED = redact

CARDS = ("4111111111111111", "5500 0055 5555 5559", "3782-8224-6310-005")
EMAILS = ("jane.doe@example.com", "omar+x@shop.example.net")
TOKENS = ("sk_live_4eC39HqLyjWDarjtT1zdp7dc", "whsec_Aa9Bb8Cc7Dd6Ee5Ff4Gg3Hh2Ii1Jj0Kk")


def _timeouts(n: int, psp: str = "stripe") -> list[LogLine]:
    return [
        LogLine(
            f"authorization failed: timeout after {9000 + 37 * i}ms calling {psp} /payments "
            f"for payment pay_{i:04d}Xk2aa9Lq",
            "psp_timeout",
        )
        for i in range(n)
    ]


def _slow(n: int) -> list[LogLine]:
    return [LogLine(f"slow query {500 + 13 * i}ms on table payments") for i in range(n)]


def test_a_new_template_only_in_the_incident_window_ranks_first_with_its_counts() -> None:
    now = _slow(20) + _timeouts(7)
    before = _slow(20)
    pats = rising_patterns(now, before, redact=RED)
    assert len(pats) == 1
    top = pats[0]
    assert top.template.startswith("authorization failed: timeout after <NUM>ms calling stripe")
    assert top.count_now == 7 and top.count_before == 0
    assert top.new and top.rise is None
    assert top.error_code == "psp_timeout"
    assert top.example.startswith("authorization failed: timeout after 9000ms calling stripe")


def test_a_constant_template_does_not_rise_and_ranks_below_a_rising_one() -> None:
    now = _slow(30) + _timeouts(40)
    before = _slow(30) + _timeouts(10)
    every = mine_patterns(now, before, redact=RED)
    assert [p.template.split()[0] for p in every] == ["authorization", "slow"]
    timeout, slow = every
    assert timeout.rising and timeout.rise == pytest.approx(4.0)
    assert (timeout.count_now, timeout.count_before) == (40, 10)
    assert not slow.rising and slow.rise == pytest.approx(1.0)
    assert (slow.count_now, slow.count_before) == (30, 30)
    assert [p.template for p in rising_patterns(now, before, redact=RED)] == [timeout.template]


def test_rates_are_compared_per_second_when_windows_differ_in_length() -> None:
    # 20 in 10 minutes now, 40 in the 20 minutes before: the same rate, not a rise
    pats = mine_patterns(
        _timeouts(20), _timeouts(40), now_seconds=600, before_seconds=1200, redact=RED
    )
    assert len(pats) == 1
    assert pats[0].rise == pytest.approx(1.0) and not pats[0].rising
    # 20 in 10 minutes against 10 in 20 minutes: four times the rate
    pats = mine_patterns(
        _timeouts(20), _timeouts(10), now_seconds=600, before_seconds=1200, redact=RED
    )
    assert pats[0].rise == pytest.approx(4.0) and pats[0].rising


def test_too_few_occurrences_are_not_a_rise() -> None:
    assert rising_patterns(_timeouts(2), [], redact=RED) == []
    assert len(rising_patterns(_timeouts(3), [], redact=RED)) == 1
    assert rising_patterns(_timeouts(3), [], redact=RED, min_count=4) == []


def test_variable_tokens_are_masked_into_one_template() -> None:
    lines = [
        "webhook evt_9fK2mQ7xLpA3zT1b from 10.1.2.3 took 812ms, trace 9f86d081884c7d65",
        "webhook evt_Q2w8Z0p1kXyYb7cD from 10.1.9.44 took 1503ms, trace 4e07408562bedb8b",
        "webhook evt_m3N4b5V6c7X8z9L0 from 172.16.0.7 took 7ms, trace 2c26b46b68ffc68f",
    ]
    # no secret in these lines: masking alone is under test, whatever paytriage.core.redact does
    pats = mine_patterns(lines, [], redact=lambda text: text)
    assert len(pats) == 1
    assert pats[0].template == "webhook <ID> from <IP> took <NUM>ms, trace <HEX>"
    assert pats[0].count_now == 3


def test_error_code_is_named_only_when_it_dominates() -> None:
    webhook = "failed to process payment.failed webhook evt_{i:04d}abcdef from adyen: {code}"
    mostly = [LogLine(webhook.format(i=i, code="db_deadlock"), "db_deadlock") for i in range(8)]
    mixed = [
        LogLine(webhook.format(i=i, code=c), c)
        for i, c in enumerate(["db_deadlock", "lock_timeout", "signature_invalid"] * 3)
    ]
    other = [LogLine(webhook.format(i=99, code="lock_timeout"), "lock_timeout")]
    assert mine_patterns(mostly + other, [], redact=RED)[0].error_code == "db_deadlock"
    assert mine_patterns(mixed, [], redact=RED)[0].error_code is None


def _leaky_messages() -> list[LogLine]:
    out = []
    for i, card in enumerate(CARDS):
        out.append(LogLine(f"authorization failed for payment pay_{i}aaaa9: card {card} exp 04/28"))
        out.append(
            LogLine(f'authorization failed: request={{"card":{{"number":"{card}","cvc":"737"}}}}')
        )
    for email in EMAILS:
        out.append(LogLine(f"user session renewed for {email}"))
        out.append(LogLine(f"refund failed for customer={email} (retry after 2s)"))
    for tok in TOKENS:
        out.append(LogLine(f"psp call rejected: Authorization: Bearer {tok}"))
    return out


def _assert_no_secret(text: str) -> None:
    digits = re.sub(r"[ -]", "", text)
    for card in CARDS:
        assert re.sub(r"[ -]", "", card) not in digits, text
    for secret in (*EMAILS, *TOKENS):
        assert secret not in text, text
    assert '"cvc":"737"' not in text


def test_card_numbers_emails_and_tokens_never_reach_templates_or_examples() -> None:
    leaky = _leaky_messages()
    pats = mine_patterns(leaky * 3, leaky, redact=RED, min_count=1, min_rise=0)
    assert pats
    assert sum(p.count_now for p in pats) == 3 * len(leaky)
    for p in pats:
        _assert_no_secret(p.template)
        _assert_no_secret(p.example)


def test_messages_are_redacted_before_drain3_sees_them(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    real = ev.new_miner

    def spying_miner(sim_th: float = ev.DEFAULT_SIM_TH) -> Any:
        miner = real(sim_th)
        add = miner.add_log_message

        def record(message: str) -> dict[str, Any]:
            seen.append(message)
            return add(message)

        miner.add_log_message = record
        return miner

    monkeypatch.setattr(ev, "new_miner", spying_miner)
    leaky = _leaky_messages()
    mine_patterns(leaky, leaky, redact=RED)
    assert len(seen) == 2 * len(leaky)
    for message in seen:
        _assert_no_secret(message)


def test_sampled_counts_are_scaled_to_the_matching_totals() -> None:
    now = _timeouts(30) + _slow(10)  # a sample of 40 out of 400 matching documents
    before = _slow(10)
    pats = mine_patterns(now, before, now_total=400, before_total=10, redact=RED)
    by_word = {p.template.split()[0]: p for p in pats}
    assert by_word["authorization"].count_now == 300
    assert by_word["slow"].count_now == 100 and by_word["slow"].count_before == 10
    assert all(p.sampled for p in pats)
    assert not any(p.sampled for p in mine_patterns(now, before, redact=RED))


def test_compare_codes_new_and_rising_first_constant_not_rising() -> None:
    now = [Bucket("psp_timeout", 300), Bucket("db_deadlock", 5), Bucket("lock_timeout", 60)]
    before = [Bucket("psp_timeout", 10), Bucket("db_deadlock", 5), Bucket("rate_limited", 4)]
    codes = compare_codes(now, before)
    assert [c.code for c in codes] == ["psp_timeout", "lock_timeout", "db_deadlock", "rate_limited"]
    pt, lt, dd, rl = codes
    assert (
        pt.rising
        and pt.rise == pytest.approx(30.0)
        and (pt.count_now, pt.count_before) == (300, 10)
    )
    assert lt.rising and lt.new and lt.rise is None
    assert not dd.rising and dd.rise == pytest.approx(1.0)
    assert not rl.rising and rl.count_now == 0 and rl.rise == pytest.approx(0.0)


def test_filters_map_known_dimensions_and_ignore_the_rest() -> None:
    dims = {"psp": "stripe", "country": "GB", "reason": "do_not_honor", "outcome": "error"}
    filters, ignored = log_filters(LogFields(), dims)
    assert filters == {"level": ("ERROR", "WARN"), "country": "GB", "psp": "stripe"}
    assert ignored == ("outcome", "reason")
    # renamed fields: the level field from configuration, a dimension mapped to its own field
    cfg = {"level": "severity", "psp": "provider"}
    filters, ignored = log_filters(cfg, {"psp": "adyen", "method": "card"})
    assert filters == {"severity": ("ERROR", "WARN"), "provider": "adyen", "method": "card"}
    assert ignored == ()
    filters, ignored = log_filters(LogFields(), {"level": "INFO", "message": "x"})
    assert filters == {"level": ("ERROR", "WARN")} and ignored == ("level", "message")
    filters, ignored = log_filters(LogFields(), {"psp": "x"}, dimension_fields={})
    assert "psp" not in filters and ignored == ("psp",)


def _doc(at: datetime, message: str, **fields: Any) -> dict[str, Any]:
    return {"@timestamp": at, "level": "ERROR", "message": message, **fields}


def _incident_docs() -> list[dict[str, Any]]:
    docs = []
    for i in range(20):  # the 20 minutes before: a steady trickle of slow queries at stripe
        docs.append(_doc(T0 - timedelta(minutes=20 - i), f"slow query {500 + i}ms", psp="stripe"))
    for i in range(20):  # the incident: the same trickle plus timeouts with an e-mail leak
        at = T0 + timedelta(minutes=i, seconds=30)
        docs.append(_doc(at, f"slow query {700 + i}ms", psp="stripe"))
        msg = f"timeout after {9000 + i}ms calling stripe for payment pay_{i:03d}abcd"
        if i % 5 == 0:
            msg += f" customer={EMAILS[0]}"
        docs.append(_doc(at, msg, psp="stripe", error_code="psp_timeout"))
        docs.append(_doc(at, msg.replace("stripe", "adyen"), psp="adyen", error_code="psp_timeout"))
        docs.append({**_doc(at, "debug noise"), "level": "DEBUG", "psp": "stripe"})
    return docs


def test_gather_logs_reads_both_windows_with_structured_filters_only() -> None:
    src = FakeLogs(_incident_docs())
    dims = {"psp": "stripe", "reason": "do_not_honor"}
    evd = gather_logs(
        src, "payments-logs-*", LogFields(), dims, T0, T0 + timedelta(minutes=20), redact=RED
    )
    assert evd.missing is None
    assert (evd.before_start, evd.before_end) == (T0 - timedelta(minutes=20), T0)
    assert evd.ignored_dimensions == ("reason",)
    want = {"level": ("ERROR", "WARN"), "psp": "stripe"}
    assert all(flt == want for _, _, _, flt in src.calls)
    assert {(op, s, e) for op, s, e, _ in src.calls} == {
        ("search", T0, T0 + timedelta(minutes=20)),
        ("search", T0 - timedelta(minutes=20), T0),
        ("terms", T0, T0 + timedelta(minutes=20)),
        ("terms", T0 - timedelta(minutes=20), T0),
    }
    assert (evd.total_now, evd.total_before) == (40, 20)
    top = evd.patterns[0]
    assert top.template.startswith("timeout after <NUM>ms calling stripe")
    assert top.error_code == "psp_timeout" and top.count_now == 16 and top.new
    assert all("slow query" not in p.template for p in evd.patterns)
    assert all(EMAILS[0] not in p.template + p.example for p in evd.patterns)
    assert evd.rising_codes[0].code == "psp_timeout" and evd.rising_codes[0].count_now == 20
    # every number carries the query and the window that produced it
    now_ref, before_ref = top.queries
    assert now_ref.source == "opensearch" and (now_ref.start, now_ref.end) == (evd.start, evd.end)
    assert (before_ref.start, before_ref.end) == (evd.before_start, evd.before_end)
    q = json.loads(now_ref.query)
    assert q["op"] == "search" and q["index"] == "payments-logs-*"
    assert q["filters"] == {"level": ["ERROR", "WARN"], "psp": "stripe"}
    tq = json.loads(evd.rising_codes[0].queries[0].query)
    assert tq["op"] == "terms" and tq["field"] == "error_code"


def test_gather_logs_with_a_longer_window_before() -> None:
    src = FakeLogs(_incident_docs())
    evd = gather_logs(
        src,
        "logs",
        LogFields(),
        {"psp": "stripe"},
        T0,
        T0 + timedelta(minutes=10),
        before=timedelta(minutes=30),
        redact=RED,
    )
    assert (evd.before_start, evd.before_end) == (T0 - timedelta(minutes=30), T0)
    timeouts = [c for c in evd.error_codes if c.code == "psp_timeout"]
    assert timeouts and timeouts[0].count_now == 10 and timeouts[0].new


def test_user_supplied_values_stay_exact_terms() -> None:
    src = FakeLogs(_incident_docs())
    evd = gather_logs(
        src,
        "logs",
        LogFields(),
        {"psp": 'stripe" OR psp:*'},
        T0,
        T0 + timedelta(minutes=20),
        redact=RED,
    )
    assert src.calls[0][3]["psp"] == 'stripe" OR psp:*'
    assert evd.patterns == () and evd.total_now == 0


@pytest.mark.parametrize(
    "error",
    [
        SourceError("opensearch", ErrorKind.connection, "q", "connection refused"),
        SourceError("opensearch", ErrorKind.timeout, "q", "no answer within 10s"),
        SourceError("opensearch", ErrorKind.http, "q", "service unavailable", 503),
    ],
)
def test_a_failing_source_is_reported_as_missing_not_raised(error: SourceError) -> None:
    src = FakeLogs(_incident_docs(), fail=error)
    evd = gather_logs(
        src, "logs", LogFields(), {"psp": "stripe"}, T0, T0 + timedelta(minutes=20), redact=RED
    )
    assert evd.missing is not None
    assert error.kind.value in evd.missing and error.detail in evd.missing
    assert evd.patterns == () and evd.error_codes == ()
    assert len(evd.queries) == 4  # what would have been asked is still on record


def test_bad_windows_are_refused() -> None:
    src = FakeLogs([])
    with pytest.raises(ValueError, match="end must be after start"):
        gather_logs(src, "logs", LogFields(), {}, T0, T0, redact=RED)
    with pytest.raises(ValueError, match="before must be positive"):
        gather_logs(
            src,
            "logs",
            LogFields(),
            {},
            T0,
            T0 + timedelta(minutes=1),
            before=timedelta(0),
            redact=RED,
        )
