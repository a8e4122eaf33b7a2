"""Change evidence: ranking by closeness to onset, redaction, the IO edge."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from paytriage.core.redact import redact as RED
from paytriage.domain.findings import QueryRef
from paytriage.evidence.changes import Change, gather_changes, mentioned, rank_changes, to_change
from paytriage.sources.base import ErrorKind, SourceError
from tests.support.logs import FakeLogs

ONSET = datetime(2026, 11, 16, 10, 30, tzinfo=UTC)
REF = QueryRef("opensearch", "{}", ONSET - timedelta(hours=2), ONSET + timedelta(minutes=5))


def _change(minutes_before: float, service: str = "svc", mentions: tuple[str, ...] = ()) -> Change:
    return Change(
        at=ONSET - timedelta(minutes=minutes_before),
        service=service,
        kind="deploy",
        version="1.0.0",
        author="a",
        description=f"{service} {minutes_before}",
        seconds_before_onset=minutes_before * 60,
        query=REF,
        mentions=mentions,
    )


def test_closeness_to_onset_ranks_and_a_change_just_after_beats_one_long_before() -> None:
    """The onset is an estimate: a change a minute after it can still be the cause, and is
    likelier than one an hour and a half before."""
    far, near, at_onset = _change(90, "far"), _change(4, "near"), _change(0, "at")
    just_after, later_after = _change(-1, "just_after"), _change(-12, "later_after")
    ranked = rank_changes([later_after, far, just_after, near, at_onset])
    assert [c.service for c in ranked] == ["at", "near", "just_after", "far", "later_after"]
    assert not at_onset.after_onset and just_after.after_onset
    assert [c.score for c in ranked] == sorted((c.score for c in ranked), reverse=True)
    assert ranked[0].score == 1.5  # at the onset (1) and our own deploy (0.5)


def test_a_change_naming_the_incident_slice_ranks_first_even_after_the_onset() -> None:
    """Issue 20, finding 3: a feature flag naming the incident's country, 13 min after an
    onset estimated early, sat last behind unrelated changes."""
    named = _change(11, "named", mentions=("braintree",))
    closer = _change(5, "closer")
    after_named = _change(-13, "after_named", mentions=("DE",))
    ranked = rank_changes([closer, after_named, named], after=timedelta(minutes=15))
    assert [c.service for c in ranked] == ["named", "after_named", "closer"]


def test_mentions_are_whole_words_and_short_codes_exact() -> None:
    dims = {"psp": "braintree", "country": "US", "method": "card"}
    assert mentioned("capture delay for Braintree raised to 7d", dims) == ("braintree",)
    assert mentioned("let us roll back", dims) == ()
    assert mentioned("rollout to US and GB", dims) == ("US",)
    assert mentioned("cards_v2 flag; braintreex", dims) == ()
    assert mentioned("anything", None) == ()


def _doc(
    minutes_before: float, service: str, kind: str, description: str, **kw: Any
) -> dict[str, Any]:
    at = ONSET - timedelta(minutes=minutes_before)
    return {
        "@timestamp": at.isoformat().replace("+00:00", "Z"),
        "service": service,
        "kind": kind,
        "version": kw.pop("version", ""),
        "author": kw.pop("author", "m.tanaka"),
        "description": description,
        **kw,
    }


class ChangeSource(FakeLogs):
    """FakeLogs over ISO timestamps, as OpenSearch returns them."""

    def _match(self, start: datetime, end: datetime, filters: Any) -> list[dict[str, Any]]:
        out = []
        for d in self.docs:
            at = datetime.fromisoformat(d["@timestamp"])
            if start <= at < end and all(
                d.get(k) in ({v} if isinstance(v, str) else set(v))
                for k, v in (filters or {}).items()
            ):
                out.append(d)
        return out


def _docs() -> list[dict[str, Any]]:
    return [
        _doc(150, "ledger", "deploy", "too early, outside the lookback", version="2.1.0"),
        _doc(11, "webhook-ingest", "deploy", "switch to batched writes", version="2.22.2"),
        _doc(7, "webhook-ingest", "deploy", "routine fixes", version="2.22.1"),
        _doc(30, "risk-engine", "config", "raise pool size, ping ops jane.doe@example.com"),
        _doc(45, "checkout-api", "feature_flag", "flag new_checkout_flow enabled for GB"),
        _doc(9, "psp-status", "psp_status", "adyen status page: investigating"),
        _doc(-3, "ledger", "deploy", "just after onset", version="2.1.1"),
        _doc(-8, "ledger", "deploy", "too late, outside the after window", version="2.1.2"),
    ]


def test_gather_changes_window_kinds_and_ranking() -> None:
    src = ChangeSource(_docs())
    evd = gather_changes(src, "changes-*", ONSET, redact=RED)
    assert evd.missing is None
    assert (evd.start, evd.end) == (ONSET - timedelta(hours=2), ONSET + timedelta(minutes=5))
    ((_, start, end, filters),) = src.calls
    assert (start, end) == (evd.start, evd.end)
    assert filters == {"kind": ("deploy", "config", "feature_flag", "psp_status")}
    assert [c.description for c in evd.changes] == [
        "routine fixes",
        "switch to batched writes",
        evd.changes[2].description,  # the redacted config change
        "flag new_checkout_flow enabled for GB",
        "adyen status page: investigating",  # a PSP's status page is a change too: not ours
        "just after onset",
    ]
    first = evd.changes[0]
    assert first.seconds_before_onset == 7 * 60 and first.version == "2.22.1"
    assert first.kind == "deploy" and first.service == "webhook-ingest"
    assert evd.changes[-1].seconds_before_onset == -3 * 60 and evd.changes[-1].after_onset
    assert "jane.doe@example.com" not in evd.changes[2].description
    assert evd.changes[2].description.startswith("raise pool size")
    ref = first.query
    assert ref == evd.query and ref is not None
    assert ref.source == "opensearch" and (ref.start, ref.end) == (evd.start, evd.end)
    q = json.loads(ref.query)
    assert q["index"] == "changes-*" and q["filters"] == {
        "kind": ["deploy", "config", "feature_flag", "psp_status"]
    }


def test_gather_changes_with_dimensions_services_and_kinds() -> None:
    src = ChangeSource(_docs())
    evd = gather_changes(src, "changes-*", ONSET, dimensions={"country": "GB"}, redact=RED)
    assert evd.changes[0].description == "flag new_checkout_flow enabled for GB"
    assert evd.changes[0].mentions == ("GB",)
    only = gather_changes(src, "changes-*", ONSET, services=["webhook-ingest"], redact=RED)
    assert {c.service for c in only.changes} == {"webhook-ingest"}
    status = gather_changes(src, "changes-*", ONSET, kinds=("psp_status",), redact=RED)
    assert [c.service for c in status.changes] == ["psp-status"]
    wide = gather_changes(src, "changes-*", ONSET, lookback=timedelta(hours=3), redact=RED)
    assert "too early, outside the lookback" in [c.description for c in wide.changes]


def test_a_failing_source_gives_missing_changes() -> None:
    err = SourceError("opensearch", ErrorKind.connection, "q", "connection refused")
    evd = gather_changes(ChangeSource(_docs(), fail=err), "changes-*", ONSET, redact=RED)
    assert evd.changes == ()
    assert evd.missing is not None and "connection" in evd.missing
    assert evd.query is not None


def test_a_document_without_a_usable_timestamp_is_skipped() -> None:
    assert to_change({"service": "x", "kind": "deploy"}, ONSET, REF, redact=RED) is None
    assert to_change({"@timestamp": "yesterday"}, ONSET, REF, redact=RED) is None
    millis = to_change({"@timestamp": ONSET.timestamp() * 1000 - 60_000}, ONSET, REF, redact=RED)
    assert millis is not None and millis.seconds_before_onset == 60


def test_bad_arguments_are_refused() -> None:
    src = ChangeSource([])
    with pytest.raises(ValueError, match="kinds"):
        gather_changes(src, "changes-*", ONSET, kinds=(), redact=RED)
    with pytest.raises(ValueError, match="negative"):
        gather_changes(src, "changes-*", ONSET, lookback=timedelta(minutes=-1), redact=RED)


def test_another_psps_status_post_is_no_evidence_for_a_psp_incident() -> None:
    """Issue 20, finding 6: a status-page post of another PSP, an hour before onset."""
    src = ChangeSource(_docs())
    stripe = gather_changes(src, "changes-*", ONSET, dimensions={"psp": "stripe"}, redact=RED)
    assert all(c.kind != "psp_status" for c in stripe.changes)
    assert stripe.total == len(stripe.changes) == 5  # the status post is not counted either
    adyen = gather_changes(src, "changes-*", ONSET, dimensions={"psp": "adyen"}, redact=RED)
    assert adyen.changes[0].description == "adyen status page: investigating"
