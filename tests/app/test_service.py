"""The data sources' health behind /readyz: readiness and its body are read together."""

from __future__ import annotations

import threading

from paytriage.app.service import SourceHealth


def test_ready_only_when_every_probed_source_answered_its_last_probe() -> None:
    h = SourceHealth()
    assert h.state() == (False, {"sources": {}})  # nothing probed yet: not ready
    h.record("prometheus", None)
    h.record("opensearch", None)
    ok, body = h.state()
    assert ok and set(body["sources"]) == {"prometheus", "opensearch"}
    h.record("opensearch", "connection refused")
    ok, body = h.state()
    assert not ok and body["sources"]["opensearch"]["error"] == "connection refused"
    assert body["sources"]["prometheus"]["error"] is None


def test_not_ready_until_every_source_the_bot_reads_has_answered() -> None:
    """The start-up probe checks Prometheus, then OpenSearch: /readyz once answered 200 in
    between, with only Prometheus in its body."""
    h = SourceHealth(expected=frozenset({"prometheus", "opensearch"}))
    ok, body = h.state()
    assert not ok and body["sources"]["opensearch"]["error"] == "not probed yet"
    h.record("prometheus", None)
    ok, body = h.state()
    assert not ok and body["sources"]["opensearch"]["error"] == "not probed yet"
    assert body["sources"]["prometheus"]["error"] is None
    h.record("opensearch", None)
    ok, body = h.state()
    assert ok and all(s["error"] is None for s in body["sources"].values())


def test_a_probe_between_two_reads_never_reports_ready_with_a_body_that_says_otherwise() -> None:
    """/readyz once answered 200 with no source in its body: the body was read before the
    first probe landed and readiness after it."""
    h = SourceHealth()
    stop = threading.Event()

    def probe() -> None:
        k = 0
        while not stop.is_set():
            h.record("prometheus", None if k % 2 else "timeout")
            h.record("opensearch", None)
            k += 1

    t = threading.Thread(target=probe)
    t.start()
    try:
        for _ in range(20_000):
            ok, body = h.state()
            if ok:
                sources = body["sources"]
                assert set(sources) == {"prometheus", "opensearch"}
                assert all(s["error"] is None for s in sources.values())
    finally:
        stop.set()
        t.join()
