"""PagerDuty Events API v2 bodies (paytriage.notify.pagerduty.events.build_event), checked against the
published spec, and the spec validator of the local test server."""

from __future__ import annotations

import importlib.util
import json
import math
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from paytriage.domain.findings import Severity
from paytriage.notify.pagerduty.events import (
    ACTIONS,
    MAX_EVENT_BYTES,
    SUMMARY_MAX,
    Image,
    Link,
    PagerDutyEvents,
    build_event,
    pagerduty_severity,
)
from tests.support.pagerduty_api import enqueue_schema, validate_event

RK = "0123456789abcdef0123456789abcdef"  # 32 characters, like a real integration key
CARD = "4111 1111 1111 1111"
TOKEN = "xoxb-123-abc"
HAS_JSONSCHEMA = importlib.util.find_spec("jsonschema") is not None


def trigger(**kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "routing_key": RK,
        "dedup_key": "paytriage/decline_spike/psp=stripe",
        "summary": "Decline rate on stripe at 12% (baseline 3%)",
        "severity": Severity.critical,
        "source": "paytriage",
    }
    args.update(kw)
    return build_event("trigger", **args)


def assert_spec_valid(body: object) -> None:
    """Valid for PagerDuty: by jsonschema (when installed) and by the hand validator."""
    assert validate_event(body) == []
    assert validate_event(body, use_jsonschema=False) == []
    if HAS_JSONSCHEMA:
        import jsonschema

        jsonschema.Draft4Validator(enqueue_schema()).validate(body)


def leaks(body: object) -> list[str]:
    text = json.dumps(body, ensure_ascii=False)
    return [s for s in (CARD, CARD.replace(" ", ""), TOKEN, "1111 1111 1111") if s in text]


# -- spec validity ----------------------------------------------------------------------


def test_full_trigger_is_spec_valid() -> None:
    body = trigger(
        component="authorisation",
        group="psp",
        class_="decline_spike",
        links=[
            Link("https://grafana.example.com/d/psp", "Dashboard"),
            {"href": "https://runbooks.example.com/declines"},
            ("https://slack.example.com/archives/C1/p1", "Slack thread"),
        ],
        images=[
            Image(
                "https://charts.example.com/1.png", href="https://grafana.example.com", alt="chart"
            ),
            "https://charts.example.com/2.png",
        ],
        custom_details={"psp": "stripe", "rate": 0.12, "baseline": 0.03, "window": ["a", "b"]},
        timestamp=datetime(2026, 11, 16, 9, 0, tzinfo=UTC),
    )
    assert_spec_valid(body)
    assert body["event_action"] == "trigger" and body["routing_key"] == RK
    p = body["payload"]
    assert (p["component"], p["group"], p["class"]) == ("authorisation", "psp", "decline_spike")
    assert p["timestamp"] == "2026-11-16T09:00:00+00:00"
    assert body["links"][0] == {"href": "https://grafana.example.com/d/psp", "text": "Dashboard"}
    assert body["links"][1] == {"href": "https://runbooks.example.com/declines"}
    assert body["images"][1] == {"src": "https://charts.example.com/2.png"}
    assert "class_" not in p


def test_minimal_trigger_has_no_empty_optional_fields() -> None:
    body = trigger(component="", group=None)
    assert_spec_valid(body)
    assert set(body) == {"routing_key", "event_action", "dedup_key", "payload"}
    assert set(body["payload"]) == {"summary", "severity", "source"}


@pytest.mark.parametrize("action", ["acknowledge", "resolve"])
def test_acknowledge_and_resolve_carry_only_key_action_and_dedup_key(action: str) -> None:
    body = build_event(
        action,
        routing_key=RK,
        dedup_key="paytriage/x",
        summary="ignored",
        severity="critical",
        source="ignored",
        custom_details={"ignored": True},
        links=[Link("https://example.com")],
    )
    assert body == {"routing_key": RK, "event_action": action, "dedup_key": "paytriage/x"}
    assert_spec_valid(body)
    # summary, severity and source are not needed for them
    assert build_event(action, routing_key=RK, dedup_key="paytriage/x") == body


def test_timestamp_is_normalised_to_utc_and_must_be_aware() -> None:
    cet = timezone(timedelta(hours=1))
    body = trigger(timestamp=datetime(2026, 11, 16, 10, 0, tzinfo=cet))
    assert body["payload"]["timestamp"] == "2026-11-16T09:00:00+00:00"
    with pytest.raises(ValueError, match="timezone-aware"):
        trigger(timestamp=datetime(2026, 11, 16, 10, 0))


# -- summary ----------------------------------------------------------------------------


def test_long_summary_is_cut_to_pagerdutys_limit_with_an_ellipsis() -> None:
    body = trigger(summary="x" * 5000)
    summary = body["payload"]["summary"]
    assert len(summary) == SUMMARY_MAX == 1024
    assert summary.endswith("…") and summary[:-1] == "x" * 1023
    assert_spec_valid(body)  # the local server's strict limit (1024) holds too


def test_summary_at_the_limit_is_kept_whole() -> None:
    assert trigger(summary="y" * 1024)["payload"]["summary"] == "y" * 1024
    assert trigger(summary="y" * 1025)["payload"]["summary"] == "y" * 1023 + "…"


def test_summary_is_redacted_before_it_is_cut() -> None:
    # cut first, the card's last groups would fall off and what is left would not look
    # like a card to the redactor any more
    summary = "p" * 1010 + " " + CARD + " tail"
    out = trigger(summary=summary)["payload"]["summary"]
    assert len(out) <= SUMMARY_MAX
    assert "4111 1111" not in out and "4111" not in out[1000:]


@pytest.mark.parametrize("summary", ["", "   "])
def test_empty_summary_is_refused(summary: str) -> None:
    with pytest.raises(ValueError, match="summary"):
        trigger(summary=summary)


# -- redaction --------------------------------------------------------------------------


def test_card_number_and_token_are_redacted_everywhere() -> None:
    body = trigger(
        summary=f"Capture failed for card {CARD} (slack token {TOKEN})",
        source=f"worker {TOKEN}",
        component=f"pan {CARD}",
        links=[Link(f"https://logs.example.com/search?q={TOKEN}", f"card {CARD}")],
        custom_details={
            "note": f"customer paid with {CARD}",
            "headers": {"Authorization": f"Bearer {TOKEN}", "X-Slack": TOKEN},
            "samples": [f"token={TOKEN}", {"card": CARD}],
            "pan": 4111111111111111,
        },
    )
    assert leaks(body) == []
    assert_spec_valid(body)
    p = body["payload"]
    assert "[CARD ****1111]" in p["summary"] and "[TOKEN]" in p["summary"]
    assert "[CARD ****1111]" in p["custom_details"]["note"]
    assert p["custom_details"]["pan"] == "[CARD ****1111]"


def test_custom_details_redaction_does_not_change_the_callers_dict() -> None:
    details = {"note": CARD, "nested": {"token": TOKEN}}
    trigger(custom_details=details)
    assert details == {"note": CARD, "nested": {"token": TOKEN}}


def test_dedup_key_is_redacted_the_same_way_for_trigger_and_resolve() -> None:
    key = f"capture/{CARD}"
    t = trigger(dedup_key=key)
    r = build_event("resolve", routing_key=RK, dedup_key=key)
    assert t["dedup_key"] == r["dedup_key"] and leaks(t) == [] and leaks(r) == []


def test_custom_details_become_plain_json() -> None:
    details = {
        "at": datetime(2026, 11, 16, tzinfo=UTC),
        "ratio": math.nan,
        "big": math.inf,
        "amount": Decimal("12.50"),
        "psps": {"stripe"},
        "sev": Severity.warning,
        1: "int key",
    }
    cd = trigger(custom_details=details)["payload"]["custom_details"]
    json.dumps(cd, allow_nan=False)  # strict JSON: no NaN, no Infinity
    assert cd["at"] == "2026-11-16 00:00:00+00:00" and cd["ratio"] == "nan"
    assert cd["amount"] == "12.50" and cd["psps"] == ["stripe"] and cd["sev"] == "warning"
    assert cd["1"] == "int key"


def test_oversized_custom_details_are_replaced_by_a_note() -> None:
    body = trigger(custom_details={"blob": "z" * (MAX_EVENT_BYTES + 10)})
    assert "dropped" in body["payload"]["custom_details"]["note"]
    assert len(json.dumps(body).encode()) <= MAX_EVENT_BYTES
    assert_spec_valid(body)


# -- severity ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("severity", "expected"),
    [
        (Severity.critical, "critical"),
        (Severity.error, "error"),
        (Severity.warning, "warning"),
        (Severity.info, "info"),
        ("critical", "critical"),
        ("Warning", "warning"),
    ],
)
def test_severity_mapping(severity: Severity | str, expected: str) -> None:
    assert pagerduty_severity(severity) == expected
    body = trigger(severity=severity)
    assert body["payload"]["severity"] == expected
    assert_spec_valid(body)


def test_every_paytriage_severity_maps_to_a_pagerduty_one() -> None:
    allowed = enqueue_schema()["components"]["schemas"]["Payload"]["properties"]["severity"]
    assert {pagerduty_severity(s) for s in Severity} == set(allowed["enum"])


@pytest.mark.parametrize("severity", ["fatal", "high", "", "p1"])
def test_unknown_severity_is_refused(severity: str) -> None:
    with pytest.raises(ValueError, match=f"unknown severity '{severity}'"):
        trigger(severity=severity)


# -- bad input --------------------------------------------------------------------------


@pytest.mark.parametrize("action", ["explode", "Trigger", "", "change"])
def test_unknown_action_is_refused_by_name(action: str) -> None:
    with pytest.raises(ValueError, match=f"unknown PagerDuty event action '{action}'"):
        build_event(action, routing_key=RK, dedup_key="k", summary="s", severity="info", source="x")
    assert action not in ACTIONS


def test_trigger_needs_summary_severity_and_source() -> None:
    with pytest.raises(ValueError, match="needs severity, source"):
        build_event("trigger", routing_key=RK, dedup_key="k", summary="s")


@pytest.mark.parametrize("routing_key", ["", "   ", f" {RK}", f"{RK[:16]} {RK[16:]}"])
def test_bad_routing_key_is_refused_without_echoing_it(routing_key: str) -> None:
    with pytest.raises(ValueError, match="routing_key") as err:
        trigger(routing_key=routing_key)
    assert RK[:16] not in str(err.value)


def test_dedup_key_must_be_present_and_short_enough() -> None:
    with pytest.raises(ValueError, match="dedup_key"):
        build_event("resolve", routing_key=RK, dedup_key="")
    assert trigger(dedup_key="k" * 255)["dedup_key"] == "k" * 255
    with pytest.raises(ValueError, match="at most 255"):
        trigger(dedup_key="k" * 256)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"links": [Link("javascript:alert(1)")]}, "link href"),
        ({"links": [{"text": "no href"}]}, "link href"),
        (
            {"images": [Image("http://charts.example.com/1.png")]},
            "image src must be an absolute https",
        ),
        ({"custom_details": ["not", "a", "mapping"]}, "custom_details"),
        ({"source": "  "}, "source"),
    ],
)
def test_bad_optional_fields_are_refused(kw: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        trigger(**kw)


# -- sender configuration (no network) --------------------------------------------------


@pytest.mark.parametrize(
    ("url", "base"),
    [
        ("https://events.pagerduty.com", "https://events.pagerduty.com"),
        ("https://events.eu.pagerduty.com/", "https://events.eu.pagerduty.com"),
        ("https://events.pagerduty.com/v2/enqueue", "https://events.pagerduty.com"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://localhost:8080/v2/enqueue", "http://localhost:8080"),
        ("http://[::1]:8080", "http://[::1]:8080"),
    ],
)
def test_events_url(url: str, base: str) -> None:
    assert PagerDutyEvents(url).events_url == base


@pytest.mark.parametrize(
    "url",
    [
        "http://events.pagerduty.com",  # plain http only for a local test server
        "ftp://events.pagerduty.com",
        "https://user:pw@events.pagerduty.com",
        "https://events.pagerduty.com?key=1",
        "",
    ],
)
def test_bad_events_url_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="events_url"):
        PagerDutyEvents(url)


def test_bad_timeout_is_refused() -> None:
    with pytest.raises(ValueError, match="timeout"):
        PagerDutyEvents("https://events.pagerduty.com", timeout=0)


# -- the local server's validator agrees with jsonschema --------------------------------

BODIES: list[tuple[object, bool]] = [
    ({"routing_key": RK, "event_action": "resolve", "dedup_key": "k"}, True),
    (
        {
            "routing_key": RK,
            "event_action": "trigger",
            "payload": {"summary": "s", "severity": "info", "source": "x"},
        },
        True,
    ),
    (
        {"routing_key": RK, "event_action": "trigger", "payload": {"summary": "s", "source": "x"}},
        False,
    ),
    (
        {
            "routing_key": RK,
            "event_action": "trigger",
            "payload": {"summary": "s", "severity": "fatal", "source": "x"},
        },
        False,
    ),
    ({"routing_key": RK, "event_action": "explode", "dedup_key": "k"}, False),
    ({"event_action": "resolve", "dedup_key": "k"}, False),
    ({"routing_key": 42, "event_action": "resolve", "dedup_key": "k"}, False),
    (
        {
            "routing_key": RK,
            "event_action": "resolve",
            "dedup_key": "k",
            "links": [{"text": "no href"}],
        },
        False,
    ),
    ({"routing_key": RK, "event_action": "resolve", "dedup_key": "k", "images": "nope"}, False),
    (
        {
            "routing_key": RK,
            "event_action": "trigger",
            "payload": {"summary": "s", "severity": "info", "source": "x", "custom_details": "str"},
        },
        False,
    ),
    ([], False),
]


@pytest.mark.parametrize(("body", "valid"), BODIES)
def test_hand_validator_agrees_with_jsonschema(body: object, valid: bool) -> None:
    by_hand = validate_event(body, use_jsonschema=False, strict_limits=False)
    assert (by_hand == []) is valid, by_hand
    if HAS_JSONSCHEMA:
        by_lib = validate_event(body, strict_limits=False)
        assert (by_lib == []) is valid, by_lib


def test_rules_the_spec_states_only_in_prose() -> None:
    assert validate_event({"routing_key": RK, "event_action": "trigger"})  # no payload
    assert validate_event({"routing_key": RK, "event_action": "acknowledge"})  # no dedup_key
    assert validate_event({"routing_key": "short", "event_action": "trigger", "payload": {"summary": "s", "severity": "info", "source": "x"}})  # fmt: skip
    assert not validate_event(
        {"routing_key": "short", "event_action": "resolve", "dedup_key": "k"}, strict_limits=False
    )
