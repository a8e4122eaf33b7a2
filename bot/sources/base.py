"""What the rest of the bot sees of its data sources: labelled series, log hits, one error type."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

import numpy as np

from paytriage.core.redact import redact


class ErrorKind(StrEnum):
    timeout = "timeout"
    connection = "connection"  # refused, DNS, TLS: the source is down or unreachable
    http = "http"  # an HTTP error status that is not about the query
    query = "query"  # the server rejected the query (bad PromQL, bad aggregation)
    response = "response"  # a reply we could not understand


class SourceError(Exception):
    """A data source failed. Names the source, the query and what went wrong; ``detail``
    is redacted (a source's URL may carry a password, its error body a token), as every
    place that shows the error (logs, CLI lines, backtest JSON, /readyz) reads it."""

    def __init__(
        self,
        source: str,
        kind: ErrorKind,
        query: str,
        detail: str,
        status: int | None = None,
    ) -> None:
        self.source = source
        self.kind = kind
        self.query = query
        self.detail = detail = redact(detail)
        self.status = status
        status_txt = f" (HTTP {status})" if status else ""
        super().__init__(f"{source} {kind.value} error{status_txt} for query {query!r}: {detail}")

    @property
    def retryable(self) -> bool:
        """Worth trying again later: the source, not the query, is at fault."""
        return self.kind in (ErrorKind.timeout, ErrorKind.connection) or (
            self.kind is ErrorKind.http and (self.status or 0) >= 500
        )


@dataclass(frozen=True)
class Series:
    """One labelled time series. ``timestamps`` are Unix seconds; values may be NaN or ±Inf."""

    labels: Mapping[str, str]
    timestamps: np.ndarray
    values: np.ndarray

    def __post_init__(self) -> None:
        if self.timestamps.shape != self.values.shape:
            raise ValueError("timestamps and values must have the same length")

    @property
    def last(self) -> float:
        return float(self.values[-1]) if len(self.values) else float("nan")

    def label(self, name: str, default: str = "") -> str:
        return self.labels.get(name, default)


class MetricsSource(Protocol):
    """A PromQL API. Implementations raise :class:`SourceError`, nothing else."""

    name: str

    def query(self, promql: str, at: datetime | None = None) -> list[Series]:
        """Instant query; one single-point Series per result (a scalar has no labels)."""
        ...

    def query_range(
        self, promql: str, start: datetime, end: datetime, step: timedelta
    ) -> list[Series]:
        """Range query over [start, end] at ``step`` resolution."""
        ...


@dataclass(frozen=True)
class Bucket:
    key: str | float
    count: int
    sub: tuple[Bucket, ...] = ()


@dataclass(frozen=True)
class SearchResult:
    total: int
    hits: list[dict[str, Any]] = field(default_factory=list)


Filters = Mapping[str, str | Sequence[str]]
"""Exact-match filters: field -> value or list of values. Never free text from a user."""


class LogSource(Protocol):
    """Time-bounded searches and aggregations over an index pattern."""

    name: str

    def search(
        self,
        index: str,
        start: datetime,
        end: datetime,
        filters: Filters | None = None,
        size: int = 100,
        newest_first: bool = True,
    ) -> SearchResult: ...

    def terms(
        self,
        index: str,
        field: str,
        start: datetime,
        end: datetime,
        filters: Filters | None = None,
        size: int = 10,
    ) -> list[Bucket]: ...

    def date_histogram(
        self,
        index: str,
        start: datetime,
        end: datetime,
        interval: timedelta,
        filters: Filters | None = None,
        split_by: str | None = None,
    ) -> list[Bucket]: ...
