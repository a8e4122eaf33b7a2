"""Change evidence: deploys, config and feature-flag changes shortly before an incident's onset.

:func:`gather_changes` reads the change-events index (docs/telemetry.md: ``@timestamp``,
``service``, ``kind``, ``version``, ``author``, ``description``) over
``[onset - lookback, onset + after)`` with exact-match filters only, and :func:`rank_changes`
(pure) orders what it found by a stated score (:func:`change_score`):

* naming one of the incident's dimension values (its PSP, country, method) counts most (2);
* closeness to the onset counts up to 1: linearly from 1 at the onset to 0 at ``lookback``
  before it; a change after the onset up to half that, falling to 0 at ``after`` (the
  onset is an estimate, and a change just after it can still be the cause);
* our own changes (deploys, config, feature flags) add 0.5, a PSP's status post naming the
  incident's PSP too. A status post of *another* PSP, when the incident is a PSP's, is no
  evidence and is left out.

Each change says where it sits (before or after the onset) itself, so no heading claims
"before onset" for a list that holds both. Descriptions and authors are redacted before
anyone sees them.
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
    score: float = 0.0  # how likely a cause: see change_score

    @property
    def after_onset(self) -> bool:
        return self.seconds_before_onset < 0


OWN_KINDS = frozenset({"deploy", "config", "feature_flag"})
PSP_STATUS = "psp_status"


def change_score(c: Change, lookback: timedelta, after: timedelta) -> float:
    """How likely ``c`` caused the incident (see the module's docstring): dimension match 2,
    closeness to onset up to 1 (after the onset up to 0.5), our own change or the incident's
    PSP's status post 0.5."""
    match = 2.0 if c.mentions else 0.0
    if c.after_onset:
        span = after.total_seconds()
        near = 0.5 * max(0.0, 1 - -c.seconds_before_onset / span) if span > 0 else 0.0
    else:
        span = lookback.total_seconds()
        near = max(0.0, 1 - c.seconds_before_onset / span) if span > 0 else 1.0
    kind = 0.5 if c.kind in OWN_KINDS or (c.kind == PSP_STATUS and c.mentions) else 0.0
    return round(match + near + kind, 3)


def unrelated(c: Change, dimensions: Mapping[str, str] | None) -> bool:
    """A PSP's status post that does not name the incident's PSP: another PSP's news."""
    return c.kind == PSP_STATUS and bool((dimensions or {}).get("psp")) and not c.mentions


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


def rank_changes(
    changes: Iterable[Change],
    lookback: timedelta = timedelta(hours=2),
    after: timedelta = timedelta(minutes=15),
) -> list[Change]:
    """Most likely cause first, by :func:`change_score` (each change keeps its score); ties
    go to the closer to onset."""
    scored = [replace(c, score=change_score(c, lookback, after)) for c in changes]
    return sorted(
        scored,
        key=lambda c: (-c.score, abs(c.seconds_before_onset), c.service, c.kind, c.description),
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
    read = [
        to_change(h, onset, query, fields=flds, dimensions=dimensions, redact=red) for h in res.hits
    ]
    found = [c for c in read if c is not None and not unrelated(c, dimensions)]
    left_out = sum(1 for c in read if c is not None) - len(found)
    return replace(
        evidence,
        changes=tuple(rank_changes(found, lookback, after)),
        total=max(0, res.total - left_out),
    )


__all__ = [
    "CHANGE_FIELDS",
    "DEFAULT_KINDS",
    "Change",
    "ChangeEvidence",
    "change_score",
    "gather_changes",
    "mentioned",
    "rank_changes",
    "to_change",
]
