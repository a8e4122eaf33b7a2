"""Change evidence: deploys, config and feature-flag changes shortly before an incident's onset.

:func:`gather_changes` reads the change-events index (docs/telemetry.md: ``@timestamp``,
``service``, ``kind``, ``version``, ``author``, ``description``) over
``[onset - lookback, onset + after)`` with exact-match filters only, and :func:`rank_changes`
(pure) orders what it found: changes at or before onset first, the closest to onset first;
changes just after onset are listed but ranked after every change before it. When the
incident's dimensions are given, a change whose description names one of their values (the
PSP, the country, the method) is ranked ahead of the others on its side of the onset.
Descriptions and authors are redacted before anyone sees them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from paytriage.core.redact import redact as default_redact
from paytriage.domain.findings import QueryRef
from paytriage.evidence.logs import describe_query
from paytriage.sources.base import LogSource, SourceError

Redactor = Callable[[str], str]

DEFAULT_KINDS: tuple[str, ...] = ("deploy", "config", "feature_flag", "psp_status")
DEFAULT_MAX_CHANGES = 500

CHANGE_FIELDS: Mapping[str, str] = {
    "timestamp": "@timestamp",
    "service": "service",
    "kind": "kind",
    "version": "version",
    "author": "author",
    "description": "description",
}
"""Field names of the change-events index in the reference schema."""


@dataclass(frozen=True)
class Change:
    """One change event. ``seconds_before_onset`` is negative for a change after onset."""

    at: datetime
    service: str
    kind: str
    version: str
    author: str
    description: str  # redacted
    seconds_before_onset: float
    query: QueryRef
    mentions: tuple[str, ...] = ()  # incident dimension values its description names

    @property
    def after_onset(self) -> bool:
        return self.seconds_before_onset < 0


@dataclass(frozen=True)
class ChangeEvidence:
    onset: datetime
    start: datetime
    end: datetime
    index: str
    kinds: tuple[str, ...]
    changes: tuple[Change, ...] = ()  # ranked, most suspicious first
    total: int = 0  # matching events (more than ``changes`` when capped)
    query: QueryRef | None = None
    missing: str | None = None


def rank_changes(changes: Iterable[Change]) -> list[Change]:
    """Most suspicious first: at or before onset before after onset; on each side, changes
    naming an incident dimension value first, then the closest to onset."""
    return sorted(
        changes,
        key=lambda c: (
            c.after_onset,
            not c.mentions,
            abs(c.seconds_before_onset),
            c.service,
            c.kind,
            c.description,
        ),
    )


def mentioned(text: str, dimensions: Mapping[str, str] | None) -> tuple[str, ...]:
    """The dimension values ``text`` names as whole words (case-insensitive from 4
    characters on, exact for short codes such as ``GB``, so "us" is not the country US)."""
    found = []
    for dim in sorted(dimensions or {}):
        value = (dimensions or {})[dim]
        if not value or not isinstance(value, str):
            continue
        flags = re.IGNORECASE if len(value) >= 4 else 0
        if re.search(rf"(?<![A-Za-z0-9_]){re.escape(value)}(?![A-Za-z0-9_])", text, flags):
            found.append(value)
    return tuple(found)


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000.0, UTC)  # epoch millis, OpenSearch's own
    if not isinstance(value, str) or not value:
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        return None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _as_utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at


def to_change(
    doc: Mapping[str, Any],
    onset: datetime,
    query: QueryRef,
    *,
    fields: Mapping[str, str] = CHANGE_FIELDS,
    dimensions: Mapping[str, str] | None = None,
    redact: Redactor | None = None,
) -> Change | None:
    """One change-event document as a :class:`Change` (None without a usable timestamp)."""
    red = redact or default_redact
    at = _parse_time(doc.get(fields["timestamp"]))
    if at is None:
        return None

    def text(name: str) -> str:
        v = doc.get(fields[name])
        return "" if v is None else str(v)

    description = red(text("description"))
    return Change(
        at=at,
        service=text("service"),
        kind=text("kind"),
        version=text("version"),
        author=red(text("author")),
        description=description,
        seconds_before_onset=(_as_utc(onset) - at).total_seconds(),
        query=query,
        mentions=mentioned(description, dimensions),
    )


def gather_changes(
    source: LogSource,
    index: str,
    onset: datetime,
    lookback: timedelta = timedelta(hours=2),
    after: timedelta = timedelta(minutes=5),
    kinds: Sequence[str] = DEFAULT_KINDS,
    *,
    dimensions: Mapping[str, str] | None = None,
    services: Sequence[str] | None = None,
    fields: Mapping[str, str] | None = None,
    max_changes: int = DEFAULT_MAX_CHANGES,
    redact: Redactor | None = None,
) -> ChangeEvidence:
    """Changes of the given kinds in ``[onset - lookback, onset + after)``, ranked by
    :func:`rank_changes`. A failing source gives evidence with ``missing`` set."""
    if lookback < timedelta(0) or after < timedelta(0):
        raise ValueError("lookback and after must not be negative")
    if not kinds:
        raise ValueError("kinds must not be empty")
    red = redact or default_redact
    flds = {**CHANGE_FIELDS, **(fields or {})}
    onset = _as_utc(onset)
    start, end = onset - lookback, onset + after
    filters: dict[str, str | tuple[str, ...]] = {flds["kind"]: tuple(kinds)}
    if services:
        filters[flds["service"]] = tuple(services)
    query = QueryRef(
        "opensearch",
        describe_query(
            "search", index, filters, size=max_changes, sort=f"{flds['timestamp']} desc"
        ),
        start,
        end,
    )
    evidence = ChangeEvidence(onset, start, end, index, tuple(kinds), query=query)
    try:
        res = source.search(index, start, end, filters, size=max_changes)
    except SourceError as exc:
        detail = f"{exc.source} {exc.kind.value} error: {red(exc.detail)}"
        return replace(evidence, missing=f"changes unavailable: {detail}")
    found = [
        c
        for c in (
            to_change(h, onset, query, fields=flds, dimensions=dimensions, redact=red)
            for h in res.hits
        )
        if c is not None
    ]
    return replace(evidence, changes=tuple(rank_changes(found)), total=res.total)


__all__ = [
    "CHANGE_FIELDS",
    "DEFAULT_KINDS",
    "Change",
    "ChangeEvidence",
    "gather_changes",
    "mentioned",
    "rank_changes",
    "to_change",
]
