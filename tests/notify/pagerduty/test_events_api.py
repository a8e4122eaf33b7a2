"""PagerDutyEvents against the local Events API v2 (tests/support/pagerduty_api.py).

No other stack is needed: the server runs in-process on 127.0.0.1 and checks every body
against PagerDuty's published spec.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from paytriage.domain.findings import Severity
from paytriage.notify.pagerduty.events import PagerDutyEvents, SendResult, build_event
from tests.support.pagerduty_api import PagerDutyEventsServer

RK = "f00dfacecafebabe0123456789abcdef"  # 32 characters, like a real integration key
DEDUP = "paytriage/decline_spike/psp=stripe"


@pytest.fixture
def pd() -> Iterator[PagerDutyEventsServer]:
    with PagerDutyEventsServer() as server:
        yield server


@pytest.fixture
def sender(pd: PagerDutyEventsServer) -> PagerDutyEvents:
    return PagerDutyEvents(pd.url, timeout=5)


def trigger(dedup_key: str = DEDUP, **kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "summary": "Decline rate on stripe at 12% (baseline 3%), card 4111 1111 1111 1111",
        "severity": Severity.critical,
        "source": "paytriage",
        "custom_details": {"psp": "stripe", "token": "xoxb-123-abc"},
    }
    args.update(kw)
    return build_event("trigger", routing_key=RK, dedup_key=dedup_key, **args)


def event(action: str, dedup_key: str = DEDUP) -> dict[str, Any]:
    return build_event(action, routing_key=RK, dedup_key=dedup_key)


def assert_no_key(result: SendResult, sender: PagerDutyEvents) -> None:
    assert RK not in (result.error or "")
    assert RK not in repr(result) and RK not in repr(sender) and RK not in str(result)


def test_trigger_acknowledge_resolve_is_one_incident(
    pd: PagerDutyEventsServer, sender: PagerDutyEvents
) -> None:
    results = [sender.send(trigger()), sender.send(event("acknowledge"))]
    assert [i.status for i in pd.incidents] == ["acknowledged"]
    results.append(sender.send(event("resolve")))

    for r in results:
        assert r == SendResult(ok=True, dedup_key=DEDUP, status=202)
    assert len(pd.incidents) == 1
    incident = pd.incidents[0]
    assert (incident.routing_key, incident.dedup_key) == (RK, DEDUP)
    assert incident.status == "resolved" and incident.history == [
        "trigger",
        "acknowledge",
        "resolve",
    ]
    assert incident.severity == "critical" and "[CARD ****1111]" in incident.summary
    assert pd.open_incidents == []
    # what went over the wire is redacted
    wire = str(pd.events)
    assert "4111 1111 1111 1111" not in wire and "xoxb-123-abc" not in wire


def test_a_repeated_trigger_does_not_page_twice(
    pd: PagerDutyEventsServer, sender: PagerDutyEvents
) -> None:
    first = sender.send(trigger())
    again = sender.send(trigger(summary="Decline rate on stripe at 15%"))
    assert first.ok and again.ok and first.dedup_key == again.dedup_key == DEDUP
    assert len(pd.incidents) == 1 and pd.incidents[0].alerts == 2
    assert pd.incidents[0].status == "triggered"

    other = sender.send(trigger(dedup_key="paytriage/decline_spike/psp=adyen"))
    assert other.ok and len(pd.incidents) == 2  # another dedup key is another incident

    # once resolved, the same dedup key opens a new incident, as in PagerDuty
    assert sender.send(event("resolve")).ok
    assert sender.send(trigger()).ok
    mine = [i for i in pd.incidents if i.dedup_key == DEDUP]
    assert [i.status for i in mine] == ["resolved", "triggered"]


def test_acknowledge_or_resolve_with_nothing_open_is_accepted_and_changes_nothing(
    pd: PagerDutyEventsServer, sender: PagerDutyEvents
) -> None:
    assert sender.send(event("resolve", "paytriage/never-triggered")).ok
    assert sender.send(event("acknowledge", "paytriage/never-triggered")).ok
    assert pd.incidents == []


def test_trigger_without_dedup_key_gets_the_servers(
    pd: PagerDutyEventsServer, sender: PagerDutyEvents
) -> None:
    body = trigger()
    del body["dedup_key"]
    r = sender.send(body)
    assert r.ok and r.dedup_key and pd.incidents[0].dedup_key == r.dedup_key


@pytest.mark.parametrize("status", [429, 500, 503])
def test_throttling_and_server_errors_are_retryable_and_page_nobody(
    pd: PagerDutyEventsServer, sender: PagerDutyEvents, status: int
) -> None:
    pd.fail_next(status)
    started = time.monotonic()
    r = sender.send(trigger())
    assert time.monotonic() - started < 2  # no sleeping retry inside send
    assert not r.ok and r.retryable and r.status == status and r.dedup_key is None
    assert r.error is not None and f"HTTP {status}" in r.error
    assert pd.incidents == []
    assert len(pd.requests) == 1  # the package did not retry on its own
    assert_no_key(r, sender)

    # what the outbox does later: the same body again, which now pages once
    assert sender.send(trigger()).ok
    assert len(pd.incidents) == 1 and len(pd.requests) == 2


def test_retry_after_is_reported(pd: PagerDutyEventsServer, sender: PagerDutyEvents) -> None:
    pd.fail_next(429, retry_after=30)
    r = sender.send(trigger())
    assert r.retryable and r.retry_after == 30


def test_several_failures_in_a_row(pd: PagerDutyEventsServer, sender: PagerDutyEvents) -> None:
    pd.fail_next(500, count=2)
    assert [sender.send(trigger()).status for _ in range(3)] == [500, 500, 202]
    assert len(pd.incidents) == 1


def test_spec_invalid_body_is_rejected_and_not_retryable(
    pd: PagerDutyEventsServer, sender: PagerDutyEvents
) -> None:
    body = {  # built by hand: build_event would not make it
        "routing_key": RK,
        "event_action": "trigger",
        "dedup_key": DEDUP,
        "payload": {"summary": "no severity", "source": "paytriage"},
    }
    r = sender.send(body)
    assert not r.ok and not r.retryable and r.status == 400 and r.retry_after is None
    assert r.error is not None and "severity" in r.error
    assert pd.incidents == [] and pd.requests[0].status == 400
    assert_no_key(r, sender)


def test_wrong_routing_key_length_is_rejected(
    pd: PagerDutyEventsServer, sender: PagerDutyEvents
) -> None:
    body = build_event(
        "trigger",
        routing_key="too-short",
        dedup_key=DEDUP,
        summary="s",
        severity="info",
        source="x",
    )
    r = sender.send(body)
    assert r.status == 400 and not r.retryable and "too-short" not in (r.error or "")


def test_routing_key_never_appears_in_the_result(
    pd: PagerDutyEventsServer, sender: PagerDutyEvents
) -> None:
    # a server (or a proxy in front of it) that echoes the key back
    pd.fail_next(500, message=f"could not route event for routing_key {RK}")
    r = sender.send(trigger())
    assert r.retryable and "[SECRET]" in (r.error or "")
    assert_no_key(r, sender)
    bad = sender.send({"routing_key": RK, "event_action": "explode", "dedup_key": "k"})
    assert not bad.ok and not bad.retryable and "explode" in (bad.error or "")
    assert_no_key(bad, sender)


def test_timeout_is_retryable(pd: PagerDutyEventsServer) -> None:
    pd.delay(1.0)
    quick = PagerDutyEvents(pd.url, timeout=0.2)
    started = time.monotonic()
    r = quick.send(trigger())
    assert time.monotonic() - started < 0.9  # one attempt, no retry
    assert not r.ok and r.retryable and r.status is None and "Timeout" in (r.error or "")
    assert_no_key(r, quick)


def test_connection_refused_is_retryable_without_waiting() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sender = PagerDutyEvents(f"http://127.0.0.1:{port}", timeout=2)
    started = time.monotonic()
    r = sender.send(trigger())
    assert time.monotonic() - started < 1.5  # the package would sleep 3 s, 6 s, 12 s
    assert not r.ok and r.retryable and r.status is None and "ConnectError" in (r.error or "")
    assert_no_key(r, sender)


def test_body_with_a_key_send_event_would_misread_is_not_sent(
    pd: PagerDutyEventsServer, sender: PagerDutyEvents
) -> None:
    r = sender.send({**trigger(), "action": "resolve"})
    assert not r.ok and not r.retryable and "action" in (r.error or "")
    assert pd.requests == []


def test_body_without_routing_key_is_not_sent(
    pd: PagerDutyEventsServer, sender: PagerDutyEvents
) -> None:
    body = trigger()
    del body["routing_key"]
    r = sender.send(body)
    assert not r.ok and not r.retryable and "routing_key" in (r.error or "")
    assert pd.requests == []
